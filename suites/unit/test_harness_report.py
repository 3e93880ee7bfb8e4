"""The correctness report renders what was recorded, and the recorder keeps one record per case."""

from __future__ import annotations

import json
import math

from harness.correctness_report import Meta, Record, render, summarize, write_report
from harness.pytest_plugin import Recorder

FAMS = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM", "AUTO")


def _rec(label, family, ok=True, ratio=0.1, rel=1e-4, mae=1e-5, sg=60.0, sf=30.0, case="{}", **kw) -> Record:
    return Record(label, family, ok, ratio, rel, mae, sg, sf, case, **kw)


def _meta(**kw) -> Meta:
    base = dict(
        date="2026-01-01 00:00 UTC",
        device="CPU (x86_64), Triton interpreter",
        profile="cpu",
        torch="2.13.0",
        triton="3.9.0",
        python="3.11.7",
        commit="abc1234",
        interpreter=True,
        fp_fusion="1",
        tests_passed=3,
    )
    base.update(kw)
    return Meta(**base)


def test_summarize_aggregates_per_format_and_family():
    records = [
        _rec("A16W4_HQQ_INT/g128", "GEMM", ratio=0.2, rel=1e-3, sg=50.0, sf=25.0, case="a"),
        _rec("A16W4_HQQ_INT/g128", "GEMM", ratio=0.4, rel=2e-3, sg=40.0, sf=None, case="b"),
        _rec("A16W4_HQQ_INT/g128", "GEMV", ok=False, ratio=3.0, case="c"),
        _rec("A16W16", "AUTO", case="d"),
    ]
    rows = summarize(records, FAMS)
    assert [(r.label, r.family) for r in rows] == [
        ("A16W4_HQQ_INT/g128", "GEMV"),
        ("A16W4_HQQ_INT/g128", "GEMM"),
        ("A16W16", "AUTO"),
    ]
    gemm = rows[1]
    assert gemm.cases == 2 and gemm.failed == 0
    assert gemm.worst_bound_ratio == 0.4 and gemm.max_rel_error == 2e-3
    assert gemm.min_sqnr_golden_db == 40.0 and gemm.min_sqnr_float_db == 25.0
    assert rows[0].failed == 1 and rows[0].worst_bound_ratio == 3.0


def test_an_exception_counts_as_a_failure_with_infinite_ratio():
    class _Case:
        label, family = "A16W8_INT8", "GEMV_SPLITK"

        def to_json(self):
            return '{"x":1}'

    rec = Record.from_error(_Case(), ValueError("group_size: 96 is not supported\nmore"), test="t::x")
    assert not rec.ok and rec.error == "ValueError: group_size: 96 is not supported"
    (row,) = summarize([rec])
    assert row.failed == 1 and math.isinf(row.worst_bound_ratio)


def _table_rows(text: str) -> list[list[str]]:
    """The cells of every markdown table row (separator rows left out)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not set(line) <= set("|:- ")
    ]


def test_render_shows_meta_rows_and_failures():
    records = [
        _rec("A16W2_HQQ_INT/g64", "GEMM_SPLITK", sf=None),
        _rec(
            "A16W2_HQQ_INT/g64",
            "GEMV",
            ok=False,
            ratio=7.5,
            rel=0.3,
            test="suites/correctness/test_formats.py::test_format[GEMV-A16W2_HQQ_INT]",
            repro='python -m harness.repro \'{"format":"A16W2_HQQ_INT"}\'',
            case="z",
        ),
    ]
    text = render(records, _meta(tests_failed=1), FAMS)
    assert text.startswith("# gemlite correctness report")
    rows = _table_rows(text)
    assert ["verdict", "**FAIL**"] in rows
    assert ["profile / gemlite autotune mode", "cpu / False"] in rows
    assert "2.13.0 / 3.9.0" in text and "abc1234" in text
    results = {tuple(r[:2]): r for r in rows if len(r) == 9}
    assert results[("A16W2_HQQ_INT/g64", "GEMV")][2:5] == ["1", "1", "7.5"]
    assert results[("A16W2_HQQ_INT/g64", "GEMM_SPLITK")][2:5] == ["1", "0", "0.1"]
    assert results[("A16W2_HQQ_INT/g64", "GEMM_SPLITK")][7] == "n/a"  # no unquantized SQNR for that row
    assert "reproduce: `python -m harness.repro" in text
    assert "2 run, 1 failed" in text


def test_render_pass_and_empty(tmp_path):
    text = render([_rec("A16W16", "GEMM")], _meta(), FAMS)
    assert ["verdict", "**PASS**"] in _table_rows(text) and "## Failures\n\nNone." in text
    empty = render([], _meta(), FAMS)
    assert "(no cases recorded)" in empty
    path = write_report(tmp_path / "sub" / "correctness.md", [_rec("A16W16", "GEMM")], _meta(), FAMS)
    assert path.read_text() == text


def test_meta_collect_reads_versions():
    meta = Meta.collect("quick")
    assert meta.profile == "quick" and meta.torch and meta.triton and meta.date.endswith("UTC")


def test_recorder_keeps_the_last_record_of_a_repeated_case():
    r = Recorder()
    r.add(_rec("A16W16", "GEMM", ok=False, case="same", test="t"))
    r.add(_rec("A16W16", "GEMM", ok=True, case="same", test="t"))
    r.add(_rec("A16W16", "GEMM", case="other", test="t"))
    assert len(r.records) == 2 and r.records[0].ok


_RECORDING_TEST = """
from harness.correctness_report import Record


def test_one_case(correctness_recorder):
    correctness_recorder.add(Record("{label}", "GEMV", {ok}, 0.5, 1e-4, 1e-5, 60.0, 30.0, "{{}}", "{label}"))
"""


def test_a_split_run_merges_into_one_report(tmp_path):
    # A suite too long for one call runs in parts: the first part writes its records, the second
    # adds them to its own report (cases, test outcomes and failures of both).
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}

    def run(name: str, label: str, ok: bool, *args: str, rc: int = 0, report: bool = True) -> str:
        test = tmp_path / name / "test_part.py"
        test.parent.mkdir()
        test.write_text(_RECORDING_TEST.format(label=label, ok=ok))
        path = tmp_path / f"{name}.md"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "harness.pytest_plugin", str(test),
               "--correctness-profile", "quick", *(["--correctness-report", str(path)] if report else []),
               *args]  # fmt: skip
        done = subprocess.run(cmd, cwd=tmp_path / name, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == rc, done.stdout + done.stderr
        return path.read_text() if rc == 0 and report else done.stderr

    first = run("a", "A16W8_INT8", True, "--correctness-records", str(tmp_path / "a.json"))
    assert "1 run, 0 failed" in first
    merged = run("b", "A16W4_HQQ_INT/g128", False, "--correctness-merge", str(tmp_path / "a.json"))
    assert "2 run, 1 failed" in merged and "2 passed, 0 failed" in merged
    assert "| A16W8_INT8 " in merged and "| A16W4_HQQ_INT/g128 " in merged
    missing = run("c", "A16W16", True, "--correctness-merge", str(tmp_path / "none.json"), rc=4)
    assert "--correctness-merge: expected a records file" in missing and "none.json" in missing
    # The first part needs no report of its own: its records alone, into a folder not made yet.
    run("d", "A16W16", True, "--correctness-records", str(tmp_path / "parts" / "d.json"), report=False)
    alone = json.loads((tmp_path / "parts" / "d.json").read_text())
    assert [r["label"] for r in alone["records"]] == ["A16W16"] and alone["outcomes"]["passed"] == 1
