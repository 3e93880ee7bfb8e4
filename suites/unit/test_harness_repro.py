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


# Every user-selectable path at once: atomics, a forced tile with a K tail, row chunks, packed words
# and a state_dict round trip (HQQ with an integer zero: the metadata carries it).
PATH_CASE = Case(
    format="A16W4_HQQ_INT", group_size=None, zeros="int", M=3, K=96, N=24, bias="float32", seed=5,
    family="GEMV", output_dtype="float32", scale_dtype="float32", deterministic=False,
    tile={"BLOCK_N": 32, "BLOCK_K": 64, "SPLIT_K": 2}, workspace_bytes=2 * 2 * 24 * 4, packed_input="int32",
    state_dict=True,
)  # fmt: skip


def test_path_settings_are_applied_and_restored(device):
    import gemlite
    from gemlite.kernels import plan

    before = (gemlite.is_deterministic(), plan.MAX_WORKSPACE_BYTES, gemlite.get_autotune())
    result = repro.run_case(PATH_CASE, device)
    assert result.ok, result.comparison.message()
    assert result.reload_diff is None and result.reload_comparison is not None  # atomics: judged, not bitwise
    assert (gemlite.is_deterministic(), plan.MAX_WORKSPACE_BYTES, gemlite.get_autotune()) == before
    det = repro.run_case(PATH_CASE.replace(deterministic=True), device)
    assert det.ok and det.reload_diff is None and det.reload_comparison is None


def test_a_round_trip_that_changes_the_output_fails(capsys, monkeypatch):
    import harness.build as build

    real = build.reload_layer

    def broken(layer):  # a checkpoint that loses the integer zero-point
        fresh = real(layer)
        object.__setattr__(fresh, "_layout", None)
        fresh.metadata[15] = 1
        return fresh

    monkeypatch.setattr(repro, "reload_layer", broken)
    case = PATH_CASE.replace(deterministic=True)
    result = repro.run_case(case, "cpu")
    assert result.comparison.ok and not result.ok and "reloaded from its state_dict" in result.reload_diff
    assert repro.main([case.to_json(), "--device", "cpu"]) == 1
    assert "the reloaded layer's output differs" in capsys.readouterr().out
