"""Reports: the JSON schema built from measurements, the markdown rendered from the JSON alone,
figure data, and `nox -s report`'s re-rendering (python -m harness.perf_cli report)."""

import json
import sys

import pytest

from harness import perf_cli
from harness.gpu import SPECS
from harness.perf_cases import Case, FormatEntry
from harness.perf_report import (
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


def ok(kind, name, M, us, entry=None, K=4096, N=4096):
    return Measurement(
        Case(kind, name, K, N, M, entry), "ok", us=us, q1_us=us * 0.99, q3_us=us * 1.01, replays=15
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
    assert set(r) == {"format", "K", "N", "M", "us", "iqr_us", "fp16_us", "bytes", "flops", "baseline_us"}
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
    assert t.splitlines() == ["| a  |  b |", "|----|---:|", "| x  |  1 |", "| yy | 22 |"]
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
