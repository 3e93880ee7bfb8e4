"""The reproducer: a failure's one-line command rebuilds exactly the drawn case and judges it again."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import torch

import harness.repro as repro
from harness.case import Case

ROOT = Path(__file__).resolve().parents[2]

# Small enough for the interpreter: a grouped 4-bit weight with float zeros, a bias, GEMV.
CASE = Case(
    format="A16W4_HQQ_INT", group_size=32, zeros="float", M=2, K=96, N=24, bias="input", seed=5, family="GEMV"
)


def test_reproducer_line_round_trips_the_case():
    line = repro.reproducer(CASE)
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "harness.repro"] and len(argv) == 4
    assert Case.from_json(argv[3]) == CASE


def test_run_case_is_exact_and_deterministic(device):
    a = repro.run_case(CASE, device)
    b = repro.run_case(CASE, device)
    assert a.comparison.ok, a.comparison.message()
    assert torch.equal(a.y, b.y) and torch.equal(a.y_golden, b.y_golden)
    assert a.comparison.repro == repro.reproducer(CASE)


def test_main_exit_codes(capsys, monkeypatch):
    assert repro.main([CASE.to_json(), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "within the error bound" in out and CASE.to_json() in out

    assert repro.main(["{not json"]) == 2
    assert "not valid JSON" in capsys.readouterr().err

    # A kernel that is off by one everywhere: the rerun says so and exits 1.
    real = repro.run_layer
    monkeypatch.setattr(repro, "run_layer", lambda layer, x, family: real(layer, x, family) + 1)
    assert repro.main([CASE.to_json(), "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "OUTSIDE the error bound" in out and "reproduce: python -m harness.repro" in out


def test_command_line_rebuilds_the_case_in_a_fresh_process():
    # What a user pastes from a failure: a new interpreter, which must switch the Triton interpreter on
    # by itself (no GPU here) before gemlite is imported.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(ROOT)
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = subprocess.run(
        [sys.executable, "-m", "harness.repro", CASE.to_json()],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "within the error bound" in proc.stdout
    assert "format A16W4_HQQ_INT/g32, family GEMV, M=2 K=96 N=24, device cpu" in proc.stdout
