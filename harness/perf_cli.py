"""The performance harness's command line (what ``nox -s perf`` and ``nox -s report`` run).

    python -m harness.perf_cli run --gpu h100 [--quick] [--update-baseline] [--against REF] ...
    python -m harness.perf_cli report [KEY ...]

``run``: identify the GPU and refuse a different one; load the GPU's suite; measure every case
through pytest + pytest-benchmark (``suites/perf/test_perf.py``; one test per case, progress printed
as it goes); compare with the stored baseline and re-measure suspects (`harness.baselines`); write
``reports/<gpu key>.{md,json}`` + figures (full suite; a subset goes to ``results/``);
``--update-baseline`` records the run as the baseline. Exit status: 0 pass, 1 confirmed regression
or a gemlite case that failed, 2 unusable setup (no GPU, wrong GPU, bad option, broken baseline).

``report``: re-render the markdown and figures from ``reports/<key>.json`` (no GPU, no torch).

``--dry-run`` replaces the GPU by synthetic timings (`harness.perf_run.FakeMeasurer`) and writes
under ``results/dry-run/``: the whole pipeline can be exercised on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

# Light imports only at the top: `report` must run where torch is not installed. `run` imports the
# suite and measuring modules (torch, gemlite's vocabulary) when it starts.
from harness import baselines as bl
from harness.gpu import ACCEPTS, GpuMismatchError, NoGpuError, require, suite_for_key
from harness.perf_report import build_report, geomean, md_table, peer_geomeans, write_report
from harness.timing import TimingConfig

__all__ = ["BenchmarkHooks", "PerfPlugin", "main"]

ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = ROOT / "suites" / "perf"
REPORTS_DIR = ROOT / "reports"
AUTOTUNE_MODES = ("fast", "max", "off")  # harness.perf_run.AUTOTUNE_MODES (checked there too)
RESULTS_DIR = ROOT / "results"


def log(msg: str = "") -> None:
    print(msg, flush=True)


class PerfPlugin:
    """Handed to pytest.main: ``suites/perf/conftest.py`` finds it and runs `session`'s cases."""

    is_gemlite_perf_plugin = True

    def __init__(self, session) -> None:
        self.session = session


class BenchmarkHooks:
    """pytest-benchmark hooks (registered only when the plugin is installed): put the GPU and the
    run metadata into its JSON, whose machine_info otherwise knows nothing of GPUs."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def pytest_benchmark_update_machine_info(self, config, machine_info):
        machine_info["gpu"] = self.meta.get("gpu")
        machine_info["gpu_key"] = self.meta.get("gpu_key")
        machine_info["gpu_driver"] = self.meta.get("driver")

    def pytest_benchmark_update_json(self, config, benchmarks, output_json):
        output_json["gemlite_perf"] = {
            k: self.meta.get(k)
            for k in (
                "gpu",
                "gpu_key",
                "driver",
                "torch",
                "triton",
                "commit",
                "date",
                "copy_gbps",
                "suite",
                "dry_run",
            )
        }
        output_json["gemlite_perf"]["note"] = (
            "stats are wall time per graph replay (many calls); the authoritative per-call CUDA-event "
            "numbers are in each benchmark's extra_info (us, iqr_us)"
        )


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness.perf_cli", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="time the GPU's suite, gate against the baseline, write the report")
    r.add_argument(
        "--gpu",
        required=True,
        choices=sorted(ACCEPTS),
        help="the GPU the suite is for; any other GPU is refused (h100 = H100 SXM or PCIe)",
    )
    r.add_argument("--quick", action="store_true", help="the suite's small development subset")
    r.add_argument("--formats", help="comma-separated labels, e.g. A16W4_HQQ_INT/g128,A16W8_INT8")
    r.add_argument("--shapes", help="comma-separated KxN, e.g. 4096x4096,8192x28672")
    r.add_argument("--m", help="comma-separated batch sizes, e.g. 1,16,256")
    r.add_argument("--no-refs", action="store_true", help="do not time the cuBLAS references")
    r.add_argument(
        "--update-baseline",
        action="store_true",
        help="record this run as the GPU's baseline (a subset merges into the existing one)",
    )
    r.add_argument(
        "--against", metavar="GIT_REF", help="A/B: time this revision and the working tree interleaved"
    )
    r.add_argument(
        "--against-dir", metavar="PATH", help="A/B against a checkout of the base revision at PATH"
    )
    r.add_argument(
        "--ab-rounds", type=int, default=2, help="A/B measurements per side per case (default 2: ABBA)"
    )
    r.add_argument(
        "--peer",
        metavar="PATH",
        help="also time the public GemLite release (a source tree, wheel or sdist) on the formats both "
        "have, in its own process, after the run's cases: the report gains a 'vs GemLite' column",
    )
    r.add_argument(
        "--peer-minutes",
        type=float,
        help="the peer's own time budget (its new cases start only within it; default: no limit)",
    )
    r.add_argument(
        "--autotune",
        choices=AUTOTUNE_MODES,
        default=os.environ.get("GEMLITE_PERF_AUTOTUNE") or "fast",
        help="gemlite autotune mode (env GEMLITE_PERF_AUTOTUNE; 'off' = one heuristic config per "
        "kernel family, the honest way to plant a slowdown)",
    )
    r.add_argument(
        "--force-config",
        default=os.environ.get("GEMLITE_PERF_FORCE_CONFIG"),
        help='JSON {"FAMILY": {config}} forced through gemlite.autotune for the run '
        "(env GEMLITE_PERF_FORCE_CONFIG)",
    )
    r.add_argument(
        "--no-config-cache",
        action="store_true",
        help="neither load nor write gemlite/configs/<gpu>.json (autotune from scratch)",
    )
    r.add_argument(
        "--max-minutes",
        type=float,
        help="time budget: new cases start only in its first 85%% (later ones are 'not run'); the rest "
        "is for re-measuring suspects",
    )
    r.add_argument(
        "--retune-m",
        metavar="M,...",
        help="leave the cache's entries of these batch sizes (their M buckets) out when loading it, so "
        "they are tuned again (after a kernel or config-space change; with --tune-only or a plain run "
        "the new winners replace them in the file, an A/B tunes both sides afresh)",
    )
    r.add_argument("--replays", type=int, default=TimingConfig.replays, help="timed replays per case")
    r.add_argument(
        "--host-calls",
        type=int,
        help="eager calls timed per case of the suite's host subset (default 10000, --quick 2000)",
    )
    r.add_argument(
        "--rel-floor",
        type=float,
        default=bl.GateRule.rel_floor,
        help="gate: smallest relative threshold of a memory-bound case",
    )
    r.add_argument(
        "--compute-floor",
        type=float,
        default=bl.GateRule.compute_floor,
        help="gate: smallest relative threshold of a compute-bound case (intensity >= 300 flop/byte)",
    )
    r.add_argument(
        "--host-floor",
        type=float,
        default=bl.GateRule.host_floor,
        help="gate: smallest relative threshold of the eager host time",
    )
    r.add_argument(
        "--noise-k", type=float, default=bl.GateRule.noise_k, help="gate: threshold = k x relative IQR"
    )
    r.add_argument(
        "--abs-floor-us", type=float, default=bl.GateRule.abs_floor_us, help="gate: smallest slowdown in us"
    )
    r.add_argument(
        "--confirm-runs", type=int, default=bl.GateRule.confirm_runs, help="gate: re-measurements per suspect"
    )
    r.add_argument("--dry-run", action="store_true", help="synthetic timings, no GPU (tests the pipeline)")
    r.add_argument(
        "--tune-only",
        action="store_true",
        help="only autotune every gemlite case and write gemlite/configs/<gpu>.json (no timing): "
        "a cold cache's tuning then does not eat the timed run's budget",
    )
    r.add_argument(
        "--jobs",
        type=int,
        default=min(16, os.cpu_count() or 1),
        help="--tune-only: processes that first compile every candidate the tuning will launch "
        "(harness.precompile; 0: none, the tuning compiles as it goes)",
    )
    r.add_argument(
        "--export", metavar="DIR", help="copy the report, baseline, config cache and raw results here"
    )
    r.add_argument(
        "--results-dir", type=Path, help="raw results (default results/, dry run results/dry-run/)"
    )
    r.add_argument(
        "--reports-dir", type=Path, help="reports (default reports/, dry run results/dry-run/reports/)"
    )
    r.add_argument(
        "--baselines-dir",
        type=Path,
        help="baselines (default suites/perf/baselines/, dry run results/dry-run/baselines/)",
    )

    rep = sub.add_parser("report", help="re-render reports/<key>.md and figures from reports/<key>.json")
    rep.add_argument("keys", nargs="*", help="GPU keys (default: every reports/*.json)")
    rep.add_argument("--reports-dir", type=Path, default=REPORTS_DIR)
    return p


# --------------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------------


def retune_buckets(text: str) -> tuple[int, ...]:
    """``--retune-m``'s batch sizes as the M buckets the config cache is keyed by (``3`` re-tunes the
    entries of bucket 4, which M = 3 uses)."""
    from gemlite.formats import m_bucket

    try:
        ms = [int(m) for m in text.split(",")]
        return tuple(sorted({m_bucket(m) for m in ms}))
    except ValueError:
        raise ValueError(f"--retune-m: expected comma-separated batch sizes >= 1, got {text!r}") from None


def _run_pytest(session, bench_json: Path) -> int:
    import pytest

    args = [
        str(SUITES_DIR / "test_perf.py"),
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "-rfE",
        "--tb=short",
    ]
    plugins: list = [PerfPlugin(session)]
    try:
        import pytest_benchmark  # noqa: F401

        args += [
            "--benchmark-json",
            str(bench_json),
            "--benchmark-quiet",
            "--benchmark-sort=name",
            # a skipped case never calls the fixture; that is expected, not worth a warning
            "-W",
            "ignore:Benchmark fixture was not used",
        ]
        plugins.append(BenchmarkHooks(session.meta))
    except ImportError:
        log("note: pytest-benchmark is not installed; no benchmark JSON (the CUDA-event numbers stand)")
    return int(pytest.main(args, plugins=plugins))


def export_name(path: Path) -> str:
    """The flat name a file gets in --export DIR. The baseline, the config cache and the report JSON
    of one GPU share a file name, so the first two get a prefix: ``baseline-<key>.json``,
    ``configs-<key>.json`` (put them back as suites/perf/baselines/<key>.json and
    gemlite/configs/<key>.json); report files keep theirs (reports/, figures/). The peer's config
    cache (``results/peer-configs-<version>/<key>.json``) becomes ``peer-configs-<version>-<key>.json``."""
    path = Path(path)
    parent = path.parent.name
    if parent.startswith("peer-configs-"):
        return f"{parent}-{path.name}"
    if parent in ("baselines", "configs"):
        return f"{'baseline' if parent == 'baselines' else 'configs'}-{path.name}"
    return path.name


def _export(paths: list[Path], dest: str) -> None:
    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    copied = []
    for p in paths:
        if p and Path(p).exists():
            shutil.copy2(p, d / export_name(p))
            copied.append(export_name(p))
    log(f"exported to {d}: {', '.join(copied)}")


def _drift_lines(measurements, baseline: dict | None, meta: dict) -> list[str]:
    """Machine-state hints: copy bandwidth and cuBLAS fp16 now vs at the baseline."""
    if not baseline:
        return []
    out = []
    bmeta = baseline.get("meta", {})
    if bmeta.get("copy_gbps") and meta.get("copy_gbps"):
        r = meta["copy_gbps"] / bmeta["copy_gbps"]
        out.append(
            f"copy bandwidth now {meta['copy_gbps']:.0f} GB/s vs {bmeta['copy_gbps']:.0f} at the baseline "
            f"({(r - 1) * 100:+.1f}%)"
        )
    cases = baseline.get("cases", {})
    fp16 = [
        m
        for m in measurements
        if m.case.kind == "ref" and m.case.name == "cublas_fp16" and m.status == "ok" and m.case_id in cases
    ]
    ratios = [m.us / cases[m.case_id]["us"] for m in fp16]
    g = geomean(ratios)
    if g is not None:
        out.append(
            f"cuBLAS fp16 time now / baseline: geomean {g:.3f} over {len(ratios)} cases "
            "(far from 1: the machine, driver or torch changed, not gemlite)"
        )
    host = [
        m.host_us / cases[m.case_id]["host_us"] for m in fp16 if m.host_us and cases[m.case_id].get("host_us")
    ]
    g = geomean(host)
    if g is not None:
        out.append(
            f"F.linear eager host time now / baseline: geomean {g:.3f} over {len(host)} cases "
            "(far from 1: the host CPU, Python or torch changed, not gemlite)"
        )
    return out


def _tune_only(a: argparse.Namespace, cases: list, settings, gpu, t0: float) -> int:
    """Autotune (first call of) every gemlite case and write the config cache; nothing is timed."""
    from harness.perf_run import GpuMeasurer, config_cache_path

    if a.dry_run or not settings.writes_config_cache:
        log("error: --tune-only fills the config cache: it needs a GPU, autotuning on and the cache written")
        return 2
    measurer = GpuMeasurer(settings, gpu, log)
    try:
        measurer.start()
    except Exception as e:  # noqa: BLE001 - nothing can be tuned then
        log(f"error: could not start: {type(e).__name__}: {e}")
        return 2
    if a.jobs:
        from harness.precompile import precompile

        precompile(cases, settings.autotune, a.jobs, log)
    deadline = t0 + 60 * a.max_minutes if a.max_minutes else None
    errors, left = 0, []
    for i, case in enumerate(cases):
        if deadline is not None and time.monotonic() > deadline:
            left.append(case)
            continue
        m = measurer.tune(case)
        errors += m.status == "error"
        what = f"first call {m.warm_s:.2f} s" if m.status == "ok" else f"ERROR {m.reason}"
        log(f"[{i + 1:>4}/{len(cases)} {time.monotonic() - t0:6.0f} s] tune {case.case_id}: {what}")
        if i % 20 == 19:
            measurer.save_config_cache()  # a run killed from outside keeps what it tuned
    measurer.finish()
    log(f"config cache: {config_cache_path(gpu.key, settings.autotune)}")
    if left:
        shapes = sorted({f"{c.K}x{c.N}" for c in left})
        log(
            f"{len(left)} cases NOT TUNED (--max-minutes); run again (tuned keys are instant): "
            f"--shapes {','.join(shapes)}"
        )
    if a.export:
        _export([config_cache_path(gpu.key, settings.autotune)], a.export)
    return 1 if errors else 0


def cmd_run(a: argparse.Namespace) -> int:
    t0 = time.monotonic()
    from harness.perf_cases import load_suite, parse_selection, suite_path
    from harness.perf_run import (
        FakeMeasurer,
        GpuMeasurer,
        PerfSession,
        RunSettings,
        base_meta,
        config_cache_path,
        fake_gpu,
        write_json_atomic,
    )

    if a.against and a.against_dir:
        log("error: give --against or --against-dir, not both")
        return 2
    if (a.against or a.against_dir or a.tune_only) and a.update_baseline:
        log("error: --update-baseline records a plain timed run (not --against / --tune-only)")
        return 2
    peer_source = None
    if a.peer_minutes is not None and (a.peer is None or not a.peer_minutes > 0):
        log(f"error: --peer-minutes: expected a positive budget with --peer, got {a.peer_minutes} "
            f"({'with' if a.peer else 'without'} --peer)")  # fmt: skip
        return 2
    if a.peer is not None:
        from harness.peer import PeerError, inspect_peer

        if a.against or a.against_dir or a.tune_only:
            log("error: --peer: the peer is timed beside a plain run (not --against / --tune-only)")
            return 2
        try:
            peer_source = inspect_peer(a.peer)
        except PeerError as e:
            log(f"error: {e}")
            return 2
    try:
        force = json.loads(a.force_config) if a.force_config else None
        timing = TimingConfig(replays=a.replays)
        host_calls = a.host_calls
        if host_calls is None:
            host_calls = RunSettings.QUICK_HOST_CALLS if a.quick else RunSettings.host_calls
        retune_m = ()
        if a.retune_m:
            if a.no_config_cache:
                raise ValueError("--retune-m re-tunes entries of the config cache: not with "
                                 "--no-config-cache")
            retune_m = retune_buckets(a.retune_m)
        settings = RunSettings(
            timing=timing,
            autotune=a.autotune,
            config_cache=not a.no_config_cache,
            write_config_cache=not (a.against or a.against_dir),
            force_config=force,
            dry_run=a.dry_run,
            host_calls=host_calls,
            retune_m=retune_m,
        )
        rule = bl.GateRule(
            a.rel_floor,
            a.noise_k,
            a.abs_floor_us,
            a.confirm_runs,
            compute_floor=a.compute_floor,
            host_floor=a.host_floor,
        )
        selection = parse_selection(a.formats, a.shapes, a.m, refs=not a.no_refs)
    except (ValueError, TypeError) as e:
        log(f"error: {e}")
        return 2

    # -- the GPU ----------------------------------------------------------------------------------
    try:
        gpu = fake_gpu(a.gpu) if a.dry_run else require(a.gpu)
    except (NoGpuError, GpuMismatchError, ValueError) as e:
        log(f"error: {e}")
        if isinstance(e, NoGpuError):
            log("(to exercise the harness without a GPU: add --dry-run)")
        return 2
    dry = RESULTS_DIR / "dry-run"
    results_dir = a.results_dir or (dry if a.dry_run else RESULTS_DIR)
    reports_dir = a.reports_dir or (dry / "reports" if a.dry_run else REPORTS_DIR)
    baselines_dir = a.baselines_dir or (dry / "baselines" if a.dry_run else bl.BASELINES_DIR)

    # -- the suite --------------------------------------------------------------------------------
    try:
        suite_name = suite_for_key(gpu.key)
        suite = load_suite(suite_path(suite_name))
        cases = suite.cases(quick=a.quick, selection=selection)
    except (ValueError, FileNotFoundError) as e:
        log(f"error: {e}")
        return 2
    if not cases:
        log("error: the selection leaves no case to run")
        return 2
    full = not a.quick and selection.is_everything
    stem = gpu.key if full else f"{gpu.key}-{'quick' if a.quick else 'subset'}"
    sel_desc = {k: v for k, v in (("formats", a.formats), ("shapes", a.shapes), ("m", a.m)) if v}
    if a.no_refs:
        sel_desc["refs"] = False
    n_gemlite = sum(c.kind == "gemlite" for c in cases)
    log(
        f"GPU: {gpu.name} (key {gpu.key}, {gpu.sm_count} SMs, L2 {gpu.l2_bytes / 2**20:.0f} MiB, "
        f"driver {gpu.driver}); suite {suite_name}: {n_gemlite} gemlite cases + "
        f"{len(cases) - n_gemlite} cuBLAS reference cases{' (quick)' if a.quick else ''}"
    )

    # -- tune only ----------------------------------------------------------------------------------
    if a.tune_only:
        return _tune_only(a, [c for c in cases if c.kind == "gemlite"], settings, gpu, t0)

    # -- A/B ----------------------------------------------------------------------------------------
    if a.against or a.against_dir:
        from harness.ab import run_ab

        # The host subset's F.linear cases come along: the eager host time the goal compares with,
        # and a control (the same torch on both sides: its ratio should be 1).
        ab_cases = [c for c in cases if c.kind == "gemlite" or c.host]
        try:
            code = run_ab(
                ab_cases,
                settings=settings,
                gpu=a.gpu,
                against=a.against,
                against_dir=a.against_dir,
                rounds=a.ab_rounds,
                out_dir=results_dir,
                stem=f"ab-{stem}",
                log=log,
                deadline=t0 + 60 * a.max_minutes if a.max_minutes else None,
            )
        except (ValueError, RuntimeError, FileNotFoundError) as e:
            log(f"error: {e}")
            return 2
        if a.export:
            _export([Path(results_dir) / f"ab-{stem}.md", Path(results_dir) / f"ab-{stem}.json"], a.export)
        return code

    # -- the baseline -----------------------------------------------------------------------------
    bpath = bl.baseline_path(gpu.key, baselines_dir)
    try:
        baseline = bl.load_baseline(bpath, gpu.key, dry_run=a.dry_run)
    except bl.BaselineError as e:
        log(f"error: {e}")
        return 2
    log(
        f"baseline: {bpath} ({len(baseline['cases'])} cases, {baseline['meta'].get('date')})"
        if baseline
        else f"baseline: none at {bpath}"
    )

    # -- measure ----------------------------------------------------------------------------------
    meta = base_meta(gpu, suite_name, settings, a.quick, sel_desc)
    measurer = (FakeMeasurer if a.dry_run else GpuMeasurer)(settings, gpu, log)
    try:
        measurer.start()
    except Exception as e:  # noqa: BLE001 - anything here means the run cannot happen
        log(f"error: could not start measuring: {type(e).__name__}: {e}")
        return 2
    meta.update(measurer.meta())
    # New cases start only in the first 85% of --max-minutes; the rest is kept for re-measuring suspects.
    deadline = t0 + 60 * a.max_minutes if a.max_minutes else None
    measure_deadline = t0 + 0.85 * 60 * a.max_minutes if a.max_minutes else None
    results_path = Path(results_dir) / f"{stem}-run.json"
    session = PerfSession(cases, measurer, meta, results_path, deadline=measure_deadline, log=log)
    bench_json = Path(results_dir) / f"{stem}-benchmark.json"
    bench_json.parent.mkdir(parents=True, exist_ok=True)
    rc = _run_pytest(session, bench_json)
    if rc not in (0, 1):
        log(f"error: pytest could not run the perf suite (exit code {rc}); see its output above")
        measurer.finish()
        return 2
    measurements = session.measurements()
    not_run = [m for m in measurements if m.status == "not_run"]

    # -- the gate -----------------------------------------------------------------------------------
    gated = lambda m: m.case.kind == "gemlite"  # noqa: E731
    verdicts = bl.compare(measurements, baseline, rule, gated)
    if baseline and not a.update_baseline:
        by_id = {c.case_id: c for c in cases}

        def remeasure(case_id: str, metric: str) -> float | None:
            m = measurer.measure(by_id[case_id])
            return getattr(m, metric) if m.status == "ok" else None

        # Re-measuring may pass --max-minutes by one suspect's re-measurements at most.
        bl.confirm(verdicts, remeasure, rule, log, deadline=deadline)
    measurer.finish()
    meta.update(measurer.meta())
    meta["not_run"] = len(not_run)
    session.meta = meta
    session.write()

    # -- outputs ------------------------------------------------------------------------------------
    log("")
    log(session.time_summary())
    if not_run:
        shapes = sorted({f"{m.case.K}x{m.case.N}" for m in not_run})
        log(f"{len(not_run)} cases NOT RUN (--max-minutes); to finish them: --shapes {','.join(shapes)}")
    peer_ms, peer_cache = [], None
    if peer_source is not None:
        # After the run's own cases and the gate (their weights are freed): the peer's measurements
        # are their own kind, in the results and the report, never gated and never in the baseline.
        from harness.peer import run_peer

        log("")
        ours = {m.case_id: m.us for m in measurements if m.case.kind == "gemlite" and m.status == "ok"}
        timed = [c for c in cases if c.kind == "gemlite" and c.case_id in ours]  # a ratio needs both
        peer = run_peer(
            peer_source, timed, settings=settings, gpu=a.gpu, gpu_key=gpu.key, results_dir=results_dir,
            minutes=a.peer_minutes, ours=ours, log=log,
        )  # fmt: skip
        peer_ms, peer_cache = peer.measurements, peer.config_cache
        meta["peer"] = peer.meta()
        session.results.update({m.case_id: m for m in peer_ms})
        session.meta = meta
        session.write()
    report = build_report(meta, measurements + peer_ms, baseline)
    # Only a full-suite run makes reports/<key>.md; quick and subset runs stay under results/.
    report_dir = reports_dir if full else results_dir
    written = write_report(report, Path(report_dir), stem)
    exported = list(written)
    if a.update_baseline:
        try:
            new = bl.merge_baseline(baseline, meta, measurements)
        except ValueError as e:
            log(f"error: baseline not written: {e}")
            return 2
        write_json_atomic(bpath, new)
        log(f"baseline written: {bpath} ({len(new['cases'])} cases; this run {new['meta']['cases']})")
        exported.append(bpath)
    cache = config_cache_path(gpu.key, settings.autotune)
    if settings.writes_config_cache and not a.dry_run:
        exported.append(cache)
    if peer_cache is not None:
        exported.append(peer_cache)
    exported += [results_path, bench_json]
    log(f"report: {', '.join(str(p) for p in written)}")
    vs_peer = peer_geomeans(report)
    if vs_peer:
        log("vs GemLite (peer time / gemlite time, above 1: gemlite is faster), geomeans:")
        rows = [[k, str(n), "-" if g is None else f"{g:.3f}"] for k, (n, g) in vs_peer.items()]
        log(md_table(["format", "cases", "vs GemLite"], rows))
    for line in _drift_lines(measurements, baseline, meta):
        log(line)
    problems = [m for m in measurements if m.status == "error"]
    for m in problems[:20]:
        log(f"ERROR {m.case_id}: {m.reason}")
    log("")
    if a.update_baseline:
        code = 1 if any(v.status == "error" for v in verdicts) else 0
        changed = [v for v in verdicts if v.status in ("suspect", "improvement")]
        log(f"(--update-baseline: not gated; {len(changed)} cases moved beyond their band vs the old one)")
    else:
        log(bl.render_verdicts(verdicts, has_baseline=baseline is not None))
        code = bl.exit_code(verdicts)
    if a.export:
        _export(exported, a.export)
    log(f"exit {code} ({'FAIL' if code else 'ok'})")
    return code


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def cmd_report(a: argparse.Namespace) -> int:
    rdir = Path(a.reports_dir)
    paths = [rdir / f"{k}.json" for k in a.keys] if a.keys else sorted(rdir.glob("*.json"))
    done = 0
    for p in paths:
        if not p.exists():
            log(f"error: {p} does not exist")
            return 2
        try:
            report = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            log(f"error: {p}: not valid JSON ({e})")
            return 2
        if not (isinstance(report, dict) and "meta" in report and "results" in report):
            if a.keys:
                log(f"error: {p} is not a performance report (no meta/results)")
                return 2
            continue  # e.g. another JSON in reports/
        written = write_report(report, rdir, p.stem, write_json=False)
        log(f"rendered {', '.join(str(w) for w in written)}")
        done += 1
    if not done:
        log(f"no performance report JSON in {rdir} (a GPU run writes reports/<gpu key>.json)")
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    return cmd_run(a) if a.cmd == "run" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
