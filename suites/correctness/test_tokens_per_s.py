"""``tools/tokens_per_s.py`` (the H200 decode-throughput table) on a tiny Llama under the interpreter:
both modes run (compile with the ``aot_eager`` backend, which needs no C++ compiler), the table has a
row per (format, mode), and ``--max-minutes`` skips what the budget leaves no time for."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.interpreter,
    pytest.mark.skipif(
        importlib.util.find_spec("transformers") is None or importlib.util.find_spec("tabulate") is None,
        reason="transformers or tabulate is not installed (nox -s tests installs them)",
    ),
]

TOOL = Path(__file__).resolve().parents[2] / "tools" / "tokens_per_s.py"


def _tool():
    spec = importlib.util.spec_from_file_location("tokens_per_s", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("|")][2:]  # past header and rule
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_tokens_per_s_tiny(tmp_path, device, capsys) -> None:
    out = tmp_path / "table.md"
    args = ["--tiny", "--device", device, "--formats", "fp16", "A16W8_INT8", "--modes", "eager", "compile"]
    args += ["--compile-backend", "aot_eager", "--tokens", "3", "--prompt", "4", "--repeats", "1"]
    assert _tool().main([*args, "--output", str(out)]) == 0
    rows = _rows(out.read_text())
    assert [r[:2] for r in rows] == [
        ["fp16", "eager"], ["fp16", "compile"], ["A16W8_INT8", "eager"], ["A16W8_INT8", "compile"]
    ]  # fmt: skip
    for fmt, mode, decode, e2e, _ratio, _warmup, graphs in rows:
        # decode subtracts two timings, which a busy CPU can make n/a at 3 tokens; end-to-end cannot be
        assert float(e2e) > 0 and (decode == "n/a" or float(decode) > 0), (fmt, mode, decode)
        assert (int(graphs) > 0) == (mode == "compile"), (fmt, mode, graphs)
    assert out.read_text() in capsys.readouterr().out


def test_tokens_per_s_budget(tmp_path, device) -> None:
    out = tmp_path / "table.md"
    args = ["--tiny", "--device", device, "--formats", "fp16", "A16W4_HQQ_INT", "--max-minutes", "0"]
    assert _tool().main([*args, "--output", str(out)]) == 0
    rows = _rows(out.read_text())
    assert len(rows) == 4 and all(r[2] == "skipped (--max-minutes)" for r in rows)
