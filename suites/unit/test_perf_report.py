"""Reports: the JSON schema built from measurements, the markdown rendered from the JSON alone,
figure data, and `nox -s report`'s re-rendering (python -m harness.perf_cli report)."""

import json
import sys

import pytest

from harness import perf_cli
from harness.gpu import SPECS
from harness.perf_cases import Case, FormatEntry
from harness.perf_report import (
    HOST_GOAL,
    build_report,
    figure_series,
    geomean,
    md_table,
    peak_tflops,
    render_figures,
    render_markdown,
    write_report,
)
from harness.perf_run import Measurement

E4 = FormatEntry("A16W4_HQQ_INT/g128", "A16W4_HQQ_INT", {"group_size": 128})
E8 = FormatEntry("A16W8_INT8", "A16W8_INT8", {})
META = {
    "gpu": "NVIDIA H100 80GB HBM3",
    "gpu_key": "h100-sxm",
    "driver": "580",
    "torch": "2.11",
    "triton": "3.6",
    "python": "3.12",
    "commit": "abc",
    "dirty": False,
    "date": "2026-11-24",
    "copy_gbps": 3000.0,
    "suite": "h100",
    "quick": False,
    "selection": {},
    "dry_run": False,
    "settings": {"autotune": "fast", "timing": {"replays": 15, "l2_multiple": 2.0}},
}


def ok(kind, name, M, us, entry=None, K=4096, N=4096, host_us=None):
    return Measurement(
        Case(kind, name, K, N, M, entry, host=host_us is not None),
        "ok",
        us=us,
        q1_us=us * 0.99,
        q3_us=us * 1.01,
        replays=15,
        host_us=host_us,
        host_calls=10_000 if host_us is not None else 0,
    )


def measurements():
    out = []
    for M, fp16, w4, w8 in ((1, 20.0, 6.0, 10.0), (16, 21.0, 7.0, 11.0), (256, 30.0, 28.0, 29.0)):
        out += [
            ok("ref", "cublas_fp16", M, fp16),
            ok("ref", "cublas_int8_int_mm", M, fp16 / 2),
            ok("gemlite", E4.label, M, w4, E4),
            ok("gemlite", E8.label, M, w8, E8),
        ]
    out.append(
        Measurement(Case("gemlite", E8.label, 4096, 4096, 4096, E8), "error", reason="RuntimeError: boom")
    )
    out.append(
        Measurement(Case("ref", "cublas_int8_int_mm", 4096, 4096, 1), "skipped", reason="needs M > 16")
    )
    out.append(Measurement(Case("gemlite", E4.label, 4096, 4096, 4096, E4), "not_run", reason="budget"))
    return out


def baseline():
    return {
        "meta": {"date": "d0", "commit": "c0"},
        "cases": {f"{E4.label} 4096x4096 M1": {"us": 5.0}, f"{E8.label} 4096x4096 M16": {"us": 11.0}},
    }


def test_build_report_schema():
    rep = build_report(META, measurements(), baseline())
    assert {"gpu", "torch", "triton", "commit", "date", "copy_gbps"} <= set(rep["meta"])
    assert rep["meta"]["baseline"] == {"date": "d0", "commit": "c0"} and rep["meta"]["autotune"] == "fast"
    assert len(rep["results"]) == 6 and len(rep["references"]) == 6
    r = rep["results"][0]
    assert set(r) == {
        "format",
        "K",
        "N",
        "M",
        "us",
        "iqr_us",
        "fp16_us",
        "bytes",
        "flops",
        "baseline_us",
        "host_us",
        "fp16_host_us",
        "baseline_host_us",
        "peer_us",
    }
    assert r["host_us"] is None and r["fp16_host_us"] is None and rep["meta"]["host_calls"] is None
    assert r["peer_us"] is None and rep["peer"] is None  # no peer in this run (harness.peer)
    assert (r["format"], r["M"], r["us"], r["fp16_us"], r["baseline_us"]) == (E4.label, 1, 6.0, 20.0, 5.0)
    assert r["flops"] == 2 * 4096 * 4096 and r["iqr_us"] == pytest.approx(0.12)
    assert r["bytes"] == 4096 * 4096 // 2 + 2 * 4096 * 32 * 2 + 4096 * 2 + 4096 * 2
    assert [p["status"] for p in rep["problems"]] == ["error", "skipped"]  # not_run is not a problem
    json.dumps(rep)  # serialisable as is


def test_markdown_from_json_alone():
    rep = json.loads(json.dumps(build_report(META, measurements(), baseline())))
    md = render_markdown(rep, ["figures/h100-sxm-speedup.png"])
    assert md.startswith("# gemlite performance on NVIDIA H100 80GB HBM3")
    assert "## A16W4_HQQ_INT/g128" in md and "## A16W8_INT8" in md and "## cuBLAS references" in md
    assert "![h100-sxm-speedup](figures/h100-sxm-speedup.png)" in md
    # 4096x4096 M=1, W4: 6 us, vs fp16 20/6 = 3.33x, vs base +20%, TFLOP/s 2*4096^2/6e-6/1e12 = 0.0056
    rows = [
        [c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("|")
    ]
    row = next(r for r in rows if r[:4] == ["4096", "4096", "1", "6.00"])
    assert row[-2:] == ["3.33x", "+20.0%"]
    assert row[5] == f"{2 * 4096 * 4096 / 6e-6 / 1e12:.1f}"
    assert "## Cases not timed" in md and "RuntimeError: boom" in md
    summary = next(line for line in md.splitlines() if line.startswith(f"| {E4.label}") and "x |" in line)
    assert f"{geomean([20 / 6, 21 / 7, 30 / 28]):.2f}x" in summary
    dry = render_markdown({**rep, "meta": {**rep["meta"], "dry_run": True}})
    assert dry.startswith("# DRY RUN")


def test_peaks_follow_the_dot_dtype():
    s = SPECS["h100-sxm"]
    assert peak_tflops("A16W4_HQQ_INT/g128", s) == s.fp16_tflops
    assert peak_tflops("A8W8_INT8_dynamic", s) == s.int8_tops
    assert peak_tflops("A8W8_FP8_dynamic", s) == s.fp8_tflops
    assert peak_tflops("A4W4_NVFP_dynamic", s) == s.fp8_tflops


def test_helpers():
    assert geomean([2.0, 8.0]) == pytest.approx(4.0) and geomean([]) is None and geomean([None, 0.0]) is None
    t = md_table(["a", "b"], [["x", "1"], ["yy", "22"]])
    assert t.splitlines() == ["| a   |   b |", "|:----|----:|", "| x   |   1 |", "| yy  |  22 |"]  # tabulate
    with pytest.raises(ValueError):
        md_table(["a"], [["x", "y"]])


def test_figure_series():
    rep = build_report(META, measurements())
    s = figure_series(rep)
    assert s["shapes"] == [(4096, 4096)]
    assert s["speedup"][(4096, 4096)][E4.label] == [(1, 20 / 6), (16, 3.0), (256, 30 / 28)]
    mem = s["membw"][(4096, 4096)]
    assert [m for m, _ in mem[E4.label]] == [1, 16] and "cuBLAS fp16" in mem
    bytes_m1 = rep["results"][0]["bytes"]
    assert mem[E4.label][0][1] == pytest.approx(bytes_m1 / (6.0 * 1e3) / 3000.0)


def test_figures_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    paths, note = render_figures(build_report(META, measurements()), tmp_path, "x")
    assert paths == [] and "matplotlib is not installed" in note
    written = write_report(build_report(META, measurements()), tmp_path, "h100-sxm")
    assert [p.name for p in written] == ["h100-sxm.json", "h100-sxm.md"]
    assert "matplotlib is not installed" in (tmp_path / "h100-sxm.md").read_text()


def test_figures_render(tmp_path):
    pytest.importorskip("matplotlib", reason="figures are optional; the rest of the report renders without")
    paths, note = render_figures(build_report(META, measurements()), tmp_path, "h100-sxm")
    assert [p.name for p in paths] == ["h100-sxm-speedup.png", "h100-sxm-membw.png"] and note == ""
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_report_command_rerenders(tmp_path, capsys):
    rep = build_report(META, measurements(), baseline())
    (tmp_path / "h100-sxm.json").write_text(json.dumps(rep))
    (tmp_path / "correctness.json").write_text("{}")  # other JSON in reports/ is left alone
    assert perf_cli.main(["report", "--reports-dir", str(tmp_path)]) == 0
    md = (tmp_path / "h100-sxm.md").read_text()
    assert "## A16W4_HQQ_INT/g128" in md and "+20.0%" in md
    assert perf_cli.main(["report", "--reports-dir", str(tmp_path), "h200"]) == 2
    assert "does not exist" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# The eager host time
# --------------------------------------------------------------------------------------------

E16 = FormatEntry("A16W16", "A16W16", {})


def host_measurements():
    """The host subset at 4096x4096 M=1 and 4: F.linear 6 / 7 us; W4 8 us (1.33x) and 12 us (1.71x,
    over the goal); A16W16 at M=1 within 1.2x of its kernel time (GPU-bound?). M=16 has no host time."""
    return [
        ok("ref", "cublas_fp16", 1, 20.0, host_us=6.0),
        ok("ref", "cublas_fp16", 4, 20.0, host_us=7.0),
        ok("ref", "cublas_fp16", 16, 21.0),
        ok("gemlite", E4.label, 1, 6.0, E4, host_us=8.0),
        ok("gemlite", E4.label, 4, 6.5, E4, host_us=12.0),
        ok("gemlite", E4.label, 16, 7.0, E4),
        ok("gemlite", E16.label, 1, 8.0, E16, host_us=9.0),
    ]


def test_report_json_carries_host_times():
    base = {
        "meta": {"date": "d0", "commit": "c0"},
        "cases": {f"{E4.label} 4096x4096 M1": {"us": 6.0, "host_us": 10.0}},
    }
    rep = json.loads(
        json.dumps(build_report({**META, "settings": {"host_calls": 10_000}}, host_measurements(), base))
    )
    res = {(r["format"], r["M"]): r for r in rep["results"]}
    assert (res[(E4.label, 1)]["host_us"], res[(E4.label, 1)]["fp16_host_us"]) == (8.0, 6.0)
    assert res[(E4.label, 1)]["baseline_host_us"] == 10.0
    assert (res[(E4.label, 4)]["host_us"], res[(E4.label, 4)]["fp16_host_us"]) == (12.0, 7.0)
    assert res[(E4.label, 4)]["baseline_host_us"] is None
    assert res[(E4.label, 16)]["host_us"] is None and res[(E4.label, 16)]["fp16_host_us"] is None
    refs = {r["M"]: r for r in rep["references"]}
    assert refs[1]["host_us"] == 6.0 and refs[16]["host_us"] is None
    assert rep["meta"]["host_calls"] == 10_000


def _table(md: str, section: str) -> list[list[str]]:
    part = md.split(f"## {section}")[1].split("\n## ")[0]
    return [
        [c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("|")
    ]


def test_markdown_host_section():
    rep = build_report({**META, "settings": {"host_calls": 10_000}}, host_measurements())
    md = render_markdown(json.loads(json.dumps(rep)))
    assert md.index("## Summary") < md.index("## Eager host time") < md.index(f"## {E4.label}")
    rows = _table(md, "Eager host time")
    assert rows[0] == [
        "case",
        "gemlite host us",
        "F.linear host us",
        "ratio",
        f"<= {HOST_GOAL}x",
        "kernel us",
        "vs base",
    ]
    body = {r[0]: r for r in rows[2:]}
    assert body[f"{E4.label} 4096x4096 M1"][1:5] == ["8.00", "6.00", "1.33x", "met"]
    assert body[f"{E4.label} 4096x4096 M4"][1:5] == ["12.00", "7.00", "1.71x", "MISSED"]
    assert body["A16W16 4096x4096 M1"][1:5] == ["9.00 *", "6.00", "1.50x", "met"]  # 1.5x is inside the goal
    assert len(body) == 3  # only the cases with a host time
    assert "10000 back-to-back eager calls" in md
    assert "Goal met in 2 of 3 cases; worst ratio 1.71x." in md and "1 time(s) marked *" in md
    assert "## Eager host time" not in render_markdown(build_report(META, measurements()))  # old reports


def test_old_report_json_renders_without_host_section(tmp_path):
    rep = json.loads(json.dumps(build_report(META, measurements(), baseline())))
    for r in rep["results"]:  # a report JSON written before the host subset existed
        for k in ("host_us", "fp16_host_us", "baseline_host_us"):
            del r[k]
    for r in rep["references"]:
        del r["host_us"]
    del rep["meta"]["host_calls"]
    md = render_markdown(rep)
    assert "## A16W4_HQQ_INT/g128" in md and "Eager host time" not in md
