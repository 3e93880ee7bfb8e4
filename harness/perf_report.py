"""Performance reports: ``reports/<gpu>.json`` (the numbers) -> ``reports/<gpu>.md`` + figures.

`build_report` turns a run's measurements into the report JSON:

    {"meta": {"gpu", "gpu_key", "driver", "torch", "triton", "commit", "date", "copy_gbps", ...},
     "results": [{"format", "K", "N", "M", "us", "iqr_us", "fp16_us", "bytes", "flops", "baseline_us",
                  "host_us", "fp16_host_us", "baseline_host_us"}],
     "references": [{"name", "K", "N", "M", "us", "iqr_us", "bytes", "flops", "host_us"}],
     "problems": [{"case_id", "status", "reason"}],
     "peer": null | {"version", "source", "minutes", "cases", "timed", "not_run", "not_in_peer",
                     "results": [{"format", "K", "N", "M", "us", "iqr_us"}]}}

``format`` is the suite label ("A16W4_HQQ_INT/g128"); ``us`` the median time per call, ``iqr_us``
its inter-quartile range over replays; ``fp16_us`` cuBLAS fp16 on the same K, N, M; ``bytes`` the
minimum HBM traffic of a call (packed weight + scales/zeros + x + y); ``flops`` 2*M*N*K;
``baseline_us`` the stored baseline at the time of the run (null when none). For the cases of the
suite's host subset (null elsewhere): ``host_us`` the eager host time per call (back-to-back
forwards, one sync at the end), ``fp16_host_us`` that of ``torch.nn.functional.linear`` fp16 on the
same K, N, M, ``baseline_host_us`` the baseline's. The goal is host_us <= HOST_GOAL x fp16_host_us.
When the run timed the peer (the public GemLite release, `harness.peer`): ``peer_us`` its time on the
same case (null elsewhere), and ``peer`` what was run and its own times; *vs GemLite* = peer_us / us.

`render_markdown` and `render_figures` read only that JSON (no torch, no GPU), which is what
``nox -s report`` re-runs. Figures use matplotlib's Agg backend; without matplotlib the markdown says
so and everything else still renders.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path

from tabulate import tabulate

from harness.gpu import SPECS

__all__ = [
    "build_report",
    "peak_tflops",
    "figure_series",
    "geomean",
    "md_table",
    "peer_geomeans",
    "render_figures",
    "render_markdown",
    "write_report",
]

DECODE_MAX_M = 16  # "small M": memory-bound decode batches
PREFILL_MIN_M = 256
# The eager host time goal (issue "Core v2"): a gemlite forward costs the host at most 1.5x what
# torch.nn.functional.linear costs it on the same machine.
HOST_GOAL = 1.5


def md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A GitHub-markdown table (tabulate's "pipe" format; cells as given, never re-parsed as numbers).
    align: one char per column, "l" or "r" (default: first l, rest r)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    if len(align) != len(headers) or any(len(r) != len(headers) for r in rows):
        raise ValueError("md_table: every row and `align` need one entry per header")
    colalign = ["right" if a == "r" else "left" for a in align]
    return tabulate(
        [[str(c) for c in r] for r in rows], headers=[str(h) for h in headers], tablefmt="pipe",
        colalign=colalign, disable_numparse=True,
    )  # fmt: skip


def geomean(values: Iterable[float]) -> float | None:
    """Geometric mean of positive values; None when there are none."""
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


# --------------------------------------------------------------------------------------------
# Building the report JSON
# --------------------------------------------------------------------------------------------


def build_report(meta: dict, measurements: Iterable, baseline: dict | None = None) -> dict:
    """The report JSON of a run (see the module docstring).

    meta: the run's metadata (must hold gpu, gpu_key, torch, triton, commit, date, copy_gbps).
    measurements: `harness.perf_run.Measurement` objects. baseline: the baseline file compared
    against, or None.
    """
    ms = list(measurements)
    fp16_ms = {
        (m.case.K, m.case.N, m.case.M): m
        for m in ms
        if m.case.kind == "ref" and m.case.name == "cublas_fp16" and m.status == "ok"
    }
    fp16 = {k: m.us for k, m in fp16_ms.items()}
    fp16_host = {k: m.host_us for k, m in fp16_ms.items() if getattr(m, "host_us", None)}
    peer_us = {
        (m.case.name, m.case.K, m.case.N, m.case.M): m.us
        for m in ms
        if m.case.kind == "peer" and m.status == "ok"
    }
    base_cases = (baseline or {}).get("cases", {})
    results, refs, problems, peer_results = [], [], [], []
    for m in ms:
        c = m.case
        if m.status != "ok":
            if m.status != "not_run":
                problems.append({"case_id": m.case_id, "status": m.status, "reason": m.reason})
            continue
        common = {
            "K": c.K,
            "N": c.N,
            "M": c.M,
            "us": m.us,
            "iqr_us": m.iqr_us,
            "bytes": m.bytes,
            "flops": m.flops,
        }
        host_us = getattr(m, "host_us", None)
        if c.kind == "ref":
            refs.append({"name": c.name, **common, "host_us": host_us})
        elif c.kind == "peer":
            peer_results.append({"format": c.name, **{k: common[k] for k in ("K", "N", "M", "us", "iqr_us")}})
        else:
            b = base_cases.get(m.case_id)
            results.append(
                {
                    "format": c.name,
                    **common,
                    "fp16_us": fp16.get((c.K, c.N, c.M)),
                    "baseline_us": b["us"] if b else None,
                    "host_us": host_us,
                    "fp16_host_us": fp16_host.get((c.K, c.N, c.M)) if host_us is not None else None,
                    "baseline_host_us": b.get("host_us") if b and host_us is not None else None,
                    "peer_us": peer_us.get((c.name, c.K, c.N, c.M)),
                }
            )
    keys = (
        "not_run",
        "gpu",
        "gpu_key",
        "driver",
        "torch",
        "triton",
        "python",
        "commit",
        "dirty",
        "date",
        "copy_gbps",
        "suite",
        "quick",
        "selection",
        "dry_run",
    )
    out_meta = {k: meta.get(k) for k in keys}
    settings = meta.get("settings") or {}
    out_meta["autotune"] = settings.get("autotune")
    out_meta["force_config"] = settings.get("force_config")
    out_meta["timing"] = settings.get("timing")
    out_meta["host_calls"] = settings.get("host_calls") if any(r["host_us"] for r in results + refs) else None
    bmeta = (baseline or {}).get("meta")
    out_meta["baseline"] = {"date": bmeta.get("date"), "commit": bmeta.get("commit")} if bmeta else None
    peer = {**meta["peer"], "results": peer_results} if meta.get("peer") else None
    return {"meta": out_meta, "results": results, "references": refs, "problems": problems, "peer": peer}


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def _f(v: float | None, fmt: str, none: str = "-") -> str:
    return none if v is None else format(v, fmt)


def peak_tflops(label: str, spec) -> float:
    """The datasheet rate of the tensor-core product a format's dot runs in: A16 formats dequantize
    the weight to fp16/bf16 (fp16 peak); A8 formats with int8 activations use int8, other A8 / A4
    formats fp8 (the datasheet tables have no separate fp4 rate for Hopper)."""
    if label.startswith("A8") and "INT" in label.split("/")[0]:
        return spec.int8_tops
    if label.startswith(("A8", "A4")):
        return spec.fp8_tflops
    return spec.fp16_tflops


def _derived(r: dict, copy_gbps: float | None, spec) -> dict:
    us = r["us"]
    tflops = r["flops"] / (us * 1e6)
    gbps = r["bytes"] / (us * 1e3)
    out = {
        "tflops": tflops,
        "gbps": gbps,
        "copy_frac": gbps / copy_gbps if copy_gbps else None,
        "vs_fp16": r["fp16_us"] / us if r.get("fp16_us") else None,
        "vs_base": us / r["baseline_us"] - 1 if r.get("baseline_us") else None,
        "vs_peer": r["peer_us"] / us if r.get("peer_us") else None,
        "roofline": None,
    }
    if spec is not None:
        # The time floor on paper: all bytes at HBM speed or all FLOPs at the tensor-core rate of the
        # format's dot, whichever is slower; roofline = floor / time (1.0 = at the datasheet limit).
        floor_us = max(
            r["bytes"] / (spec.hbm_gbps * 1e3), r["flops"] / (peak_tflops(r["format"], spec) * 1e6)
        )
        out["roofline"] = floor_us / us
    return out


def peer_geomeans(report: dict) -> dict[str, tuple[int, float | None]]:
    """{format label: (cases with both times, geomean of peer time / gemlite time)} plus "all", over
    the report's results; {} when the run timed no peer. Above 1: gemlite is faster."""
    if not report.get("peer"):
        return {}
    both = [r for r in report.get("results", []) if r.get("peer_us")]
    out = {}
    for label in dict.fromkeys(r["format"] for r in both):
        rs = [r for r in both if r["format"] == label]
        out[label] = (len(rs), geomean(r["peer_us"] / r["us"] for r in rs))
    out["all"] = (len(both), geomean(r["peer_us"] / r["us"] for r in both))
    return out


def _summary_rows(results: list[dict], copy_gbps, spec, peer: bool = False) -> list[list[str]]:
    rows = []
    for label in dict.fromkeys(r["format"] for r in results):
        rs = [r for r in results if r["format"] == label]
        d = [(r, _derived(r, copy_gbps, spec)) for r in rs]

        def sp(pred, d=d):
            return geomean(x["vs_fp16"] for r, x in d if pred(r["M"]))

        small = [x["copy_frac"] for r, x in d if r["M"] <= DECODE_MAX_M and x["copy_frac"] is not None]
        change = geomean(1 + x["vs_base"] for r, x in d if x["vs_base"] is not None)
        rows.append(
            [
                label,
                str(len(rs)),
                _f(sp(lambda m: True), ".2f") + "x",
                _f(sp(lambda m: m <= DECODE_MAX_M), ".2f") + "x",
                _f(sp(lambda m: DECODE_MAX_M < m < PREFILL_MIN_M), ".2f") + "x",
                _f(sp(lambda m: m >= PREFILL_MIN_M), ".2f") + "x",
                _f(100 * statistics.median(small) if small else None, ".0f") + "%",
                "-" if change is None else f"{100 * (change - 1):+.1f}%",
            ]
        )
        if peer:
            vs = geomean(x["vs_peer"] for _, x in d if x["vs_peer"] is not None)
            rows[-1].append("-" if vs is None else f"{vs:.2f}x")
    return rows


def render_markdown(report: dict, figures: Sequence[str] = (), figure_note: str = "") -> str:
    """The report as markdown: metadata, how to read it, geomean summaries, the figures (paths
    relative to the markdown file), one table per format, cuBLAS references, problems."""
    meta = report["meta"]
    spec = SPECS.get(meta.get("gpu_key") or "")
    copy_gbps = meta.get("copy_gbps")
    results, refs = report.get("results", []), report.get("references", [])
    timing = meta.get("timing") or {}
    title = "DRY RUN (synthetic numbers, no GPU) - " if meta.get("dry_run") else ""
    out = [f"# {title}gemlite performance on {meta.get('gpu')}", ""]
    base = meta.get("baseline")
    facts = [
        ("GPU", f"{meta.get('gpu')} (key `{meta.get('gpu_key')}`), driver {meta.get('driver')}"),
        ("software", f"torch {meta.get('torch')}, triton {meta.get('triton')}, python {meta.get('python')}"),
        ("commit", f"`{meta.get('commit')}`" + (" (uncommitted changes)" if meta.get("dirty") else "")),
        ("date", str(meta.get("date"))),
        (
            "measured copy bandwidth",
            f"{_f(copy_gbps, '.0f')} GB/s (read + write, 1 GiB device-to-device copy)",
        ),
        (
            "datasheet",
            f"{spec.product}: {spec.hbm_gbps:.0f} GB/s HBM, {spec.fp16_tflops:.0f} TFLOP/s fp16 dense, "
            f"{spec.fp8_tflops:.0f} fp8, {spec.int8_tops:.0f} TOP/s int8"
            if spec
            else "not in the table",
        ),
        (
            "suite",
            f"{meta.get('suite')}"
            + (" (quick subset)" if meta.get("quick") else "")
            + (f", selection {meta.get('selection')}" if meta.get("selection") else ""),
        ),
        (
            "autotune",
            str(meta.get("autotune"))
            + (f"; FORCED configs {json.dumps(meta['force_config'])}" if meta.get("force_config") else ""),
        ),
        ("baseline", f"{base.get('date')} at `{base.get('commit')}`" if base else "none"),
    ]
    if meta.get("not_run"):
        facts.append(("INCOMPLETE", f"{meta['not_run']} cases were not run (time budget); see the run's log"))
    peer = report.get("peer")
    if peer:
        budget = f"{peer['minutes']:g} min" if peer.get("minutes") is not None else "no limit"
        facts.append(
            (
                "peer",
                f"public GemLite {peer.get('version')} ({peer.get('source')}), timed after the run's cases "
                f"in its own process by the same method: {peer.get('timed')} of {peer.get('cases')} cases "
                f"(its own budget: {budget}"
                + (f"; {peer['not_run']} not run" if peer.get("not_run") else "")
                + "); not in the peer: "
                + (", ".join(peer.get("not_in_peer") or {}) or "none"),
            )
        )
    out += [f"- **{k}**: {v}" for k, v in facts]
    out += [
        "",
        "How to read: each time is the median per call over "
        f"{timing.get('replays', '?')} CUDA-graph replays; every call reads a different copy of the "
        f"weights (copies totalling at least {timing.get('l2_multiple', 2)}x the L2 cache), so weights "
        "come from HBM as in a model. TFLOP/s = 2MNK / time. GB/s = minimum traffic (packed weight + "
        "scales/zeros + x + y, each once) / time; *% copy* divides that by the measured copy "
        "bandwidth (100% = as fast as memory moves). *roofline* = the datasheet time floor, "
        "max(bytes / HBM bandwidth, FLOPs / peak of the format's dot, fp16 for A16 formats), over the "
        "time. *vs fp16* = cuBLAS fp16 time / gemlite time (above 1: gemlite is faster). "
        "*vs base* = change of time against the stored baseline (negative: faster)."
        + (
            " *vs GemLite* = the public GemLite release's time on the same case / gemlite's (above 1: "
            "gemlite is faster)."
            if peer
            else ""
        ),
        "",
        "## Summary (geometric means)",
        "",
        md_table(
            [
                "format",
                "cases",
                "vs fp16 (all)",
                f"M<={DECODE_MAX_M}",
                f"{DECODE_MAX_M}<M<{PREFILL_MIN_M}",
                f"M>={PREFILL_MIN_M}",
                f"median % copy (M<={DECODE_MAX_M})",
                "vs base",
            ]
            + (["vs GemLite"] if peer else []),
            _summary_rows(results, copy_gbps, spec, peer=bool(peer)),
        )
        if results
        else "No gemlite case was timed.",
        "",
    ]
    if peer:
        n_all, g_all = peer_geomeans(report).get("all", (0, None))
        out += [f"vs GemLite over all formats: geomean {_f(g_all, '.2f')}x over {n_all} cases.", ""]
    if refs:
        fp16 = {(r["K"], r["N"], r["M"]): r["us"] for r in refs if r["name"] == "cublas_fp16"}
        rrows = []
        for name in dict.fromkeys(r["name"] for r in refs):
            rs = [r for r in refs if r["name"] == name]
            g = geomean(
                fp16[(r["K"], r["N"], r["M"])] / r["us"] for r in rs if (r["K"], r["N"], r["M"]) in fp16
            )
            rrows.append([name, str(len(rs)), _f(g, ".2f") + "x"])
        out += [
            "cuBLAS references (geomean speed against cuBLAS fp16 on the cases each ran):",
            "",
            md_table(["reference", "cases", "vs fp16"], rrows),
            "",
        ]
    out += _host_section(results, meta.get("host_calls"))
    if figures:
        out += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures] + [""]
    elif figure_note:
        out += [f"Figures: {figure_note}", ""]
    for label in dict.fromkeys(r["format"] for r in results):
        rows = []
        for r in sorted((r for r in results if r["format"] == label), key=lambda r: (r["K"], r["N"], r["M"])):
            d = _derived(r, copy_gbps, spec)
            rows.append(
                [
                    str(r["K"]),
                    str(r["N"]),
                    str(r["M"]),
                    _f(r["us"], ".2f"),
                    _f(r.get("iqr_us"), ".2f"),
                    _f(d["tflops"], ".1f"),
                    _f(d["gbps"], ".0f"),
                    _f(None if d["copy_frac"] is None else 100 * d["copy_frac"], ".0f")
                    + ("%" if d["copy_frac"] else ""),
                    _f(None if d["roofline"] is None else 100 * d["roofline"], ".0f")
                    + ("%" if d["roofline"] else ""),
                    _f(d["vs_fp16"], ".2f") + ("x" if d["vs_fp16"] else ""),
                    _f(None if d["vs_base"] is None else 100 * d["vs_base"], "+.1f")
                    + ("%" if d["vs_base"] is not None else ""),
                ]
                + ([_f(d["vs_peer"], ".2f") + ("x" if d["vs_peer"] else "")] if peer else [])
            )
        out += [
            f"## {label}",
            "",
            md_table(
                [
                    "K",
                    "N",
                    "M",
                    "time us",
                    "IQR us",
                    "TFLOP/s",
                    "GB/s",
                    "% copy",
                    "roofline",
                    "vs fp16",
                    "vs base",
                ]
                + (["vs GemLite"] if peer else []),
                rows,
                align="rrrrrrrrrrr" + ("r" if peer else ""),
            ),
            "",
        ]
    if refs:
        rows = [
            [
                r["name"],
                str(r["K"]),
                str(r["N"]),
                str(r["M"]),
                _f(r["us"], ".2f"),
                _f(r.get("iqr_us"), ".2f"),
                _f(r["flops"] / (r["us"] * 1e6), ".1f"),
                _f(r["bytes"] / (r["us"] * 1e3), ".0f"),
            ]
            for r in sorted(refs, key=lambda r: (r["name"], r["K"], r["N"], r["M"]))
        ]
        out += [
            "## cuBLAS references",
            "",
            md_table(["reference", "K", "N", "M", "time us", "IQR us", "TFLOP/s", "GB/s"], rows),
            "",
        ]
    problems = report.get("problems", [])
    if problems:
        out += [
            "## Cases not timed",
            "",
            md_table(
                ["case", "status", "reason"],
                [[p["case_id"], p["status"], p["reason"][:160]] for p in problems],
                align="lll",
            ),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


def _host_section(results: list[dict], calls: int | None) -> list[str]:
    """The "Eager host time" section: the host subset's gemlite cases against F.linear fp16 and the
    HOST_GOAL; nothing when the run measured no host time (or the report predates it)."""
    rs = [r for r in results if r.get("host_us") is not None]  # run order: shape, format, M
    if not rs:
        return []
    rows, ratios, flagged = [], [], 0
    for r in rs:
        ratio = r["host_us"] / r["fp16_host_us"] if r.get("fp16_host_us") else None
        if ratio is not None:
            ratios.append(ratio)
        # Back-to-back calls measure the host only while the GPU keeps up; within 1.2x of the case's
        # kernel time (weights from HBM, an upper bound of the L2-resident time here) it may not.
        gpu_bound = r["host_us"] < 1.2 * r["us"]
        flagged += gpu_bound
        goal = "-" if ratio is None else ("met" if ratio <= HOST_GOAL else "MISSED")
        base = r.get("baseline_host_us")
        rows.append(
            [
                f"{r['format']} {r['K']}x{r['N']} M{r['M']}",
                _f(r["host_us"], ".2f") + (" *" if gpu_bound else ""),
                _f(r.get("fp16_host_us"), ".2f"),
                _f(ratio, ".2f") + ("x" if ratio is not None else ""),
                goal,
                _f(r["us"], ".2f"),
                _f(None if not base else 100 * (r["host_us"] / base - 1), "+.1f") + ("%" if base else ""),
            ]
        )
    met = sum(x <= HOST_GOAL for x in ratios)
    worst = max(ratios) if ratios else None
    out = [
        "## Eager host time",
        "",
        f"Goal: a gemlite forward costs the host at most {HOST_GOAL}x what `torch.nn.functional.linear` "
        f"(fp16, cuBLAS) costs it on the same K, N, M. Each time is the wall time of "
        f"{calls or '?'} back-to-back eager calls of one layer on one x (warmed up, no sync in between, "
        "one `torch.cuda.synchronize()` at the end) over the number of calls: the host's cost of a call "
        "(Python, checks, launch), as long as the GPU keeps up. *kernel us* is the case's CUDA-graph time "
        "from the tables below; *vs base* the change of host time against the baseline.",
        "",
        md_table(
            [
                "case",
                "gemlite host us",
                "F.linear host us",
                "ratio",
                f"<= {HOST_GOAL}x",
                "kernel us",
                "vs base",
            ],
            rows,
            align="lrrrlrr",
        ),
        "",
        f"Goal met in {met} of {len(ratios)} cases"
        + (f"; worst ratio {worst:.2f}x." if worst is not None else ".")
        + (
            f" {flagged} time(s) marked * are within 1.2x of the kernel time: the GPU, not the host, may"
            " bound them."
            if flagged
            else ""
        ),
        "",
    ]
    return out


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def figure_series(report: dict) -> dict:
    """The data behind the figures, without matplotlib (so it is unit-tested anywhere).

    Returns {"shapes": [(K, N), ...], "speedup": {(K, N): {label: [(M, vs_fp16), ...]}},
    "membw": {(K, N): {label: [(M, fraction of copy bandwidth), ...]}} with small M only, and the
    cuBLAS fp16 fraction under the label "cuBLAS fp16"}.
    """
    copy_gbps = report["meta"].get("copy_gbps")
    results, refs = report.get("results", []), report.get("references", [])
    shapes = list(dict.fromkeys((r["K"], r["N"]) for r in results))
    speed: dict = {s: {} for s in shapes}
    membw: dict = {s: {} for s in shapes}
    for r in sorted(results, key=lambda r: r["M"]):
        s = (r["K"], r["N"])
        if r.get("fp16_us"):
            speed[s].setdefault(r["format"], []).append((r["M"], r["fp16_us"] / r["us"]))
        if copy_gbps and r["M"] <= DECODE_MAX_M:
            membw[s].setdefault(r["format"], []).append((r["M"], r["bytes"] / (r["us"] * 1e3) / copy_gbps))
    for r in sorted(refs, key=lambda r: r["M"]):
        s = (r["K"], r["N"])
        if r["name"] == "cublas_fp16" and s in membw and copy_gbps and r["M"] <= DECODE_MAX_M:
            membw[s].setdefault("cuBLAS fp16", []).append((r["M"], r["bytes"] / (r["us"] * 1e3) / copy_gbps))
    return {"shapes": shapes, "speedup": speed, "membw": membw}


def render_figures(report: dict, fig_dir: Path, stem: str) -> tuple[list[Path], str]:
    """Draw ``<stem>-speedup.png`` (speed-up vs cuBLAS fp16 against M, one panel per shape) and
    ``<stem>-membw.png`` (fraction of the measured copy bandwidth at M <= 16) into `fig_dir`.

    Returns (paths written, note); without matplotlib: ([], "matplotlib is not installed ...").
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "not rendered: matplotlib is not installed (pip install matplotlib, then nox -s report)"
    series = figure_series(report)
    shapes = series["shapes"]
    if not shapes:
        return [], "no gemlite results to plot"
    fig_dir = Path(fig_dir)
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    gpu = report["meta"].get("gpu")
    for kind, ylabel, title, logx in (
        ("speedup", "speed-up vs cuBLAS fp16 (x)", "gemlite speed-up over cuBLAS fp16 by batch size", True),
        ("membw", "fraction of measured copy bandwidth", f"memory-bound batches (M <= {DECODE_MAX_M})", True),
    ):
        cols = min(3, len(shapes))
        rows = math.ceil(len(shapes) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
        for ax, shape in zip(axes.flat, shapes):
            for label, pts in series[kind][shape].items():
                if not pts:
                    continue
                xs, ys = zip(*pts)
                style = {"color": "0.4", "linestyle": "--"} if label.startswith("cuBLAS") else {}
                ax.plot(xs, ys, marker="o", markersize=3, label=label, **style)
            ax.axhline(1.0, color="0.6", linewidth=0.8)
            if kind == "membw":  # fractions of one ceiling: the same scale in every panel
                top = max([1.05] + [y for pts in series[kind][shape].values() for _, y in pts])
                ax.set_ylim(0, top * 1.02)
            if logx:
                ax.set_xscale("log", base=2)
            ax.set_title(f"K={shape[0]}  N={shape[1]}", fontsize=9)
            ax.set_xlabel("M (batch)", fontsize=8)
            ax.set_ylabel(ylabel, fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(shapes) :]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8)
        fig.suptitle(f"{title} - {gpu}", fontsize=11)
        fig.tight_layout(rect=(0, 0.05, 1, 0.96))
        path = fig_dir / f"{stem}-{kind}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written, ""


def write_report(report: dict, out_dir: Path, stem: str, write_json: bool = True) -> list[Path]:
    """Write ``<out_dir>/<stem>.json`` (unless write_json is False), the figures under
    ``<out_dir>/figures/`` and ``<out_dir>/<stem>.md``; return the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    if write_json:
        p = out_dir / f"{stem}.json"
        p.write_text(json.dumps(report, indent=1) + "\n")
        paths.append(p)
    figs, note = render_figures(report, out_dir / "figures", stem)
    paths += figs
    md = out_dir / f"{stem}.md"
    md.write_text(render_markdown(report, [f.relative_to(out_dir).as_posix() for f in figs], note))
    paths.append(md)
    return paths
