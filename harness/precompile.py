"""Compile a tuning run's kernels in parallel before it tunes (``perf_cli run --tune-only --jobs N``).

The autotuner times every candidate config of a key in turn, and the first launch of each compiles it:
for a format whose kernels are not yet in Triton's on-disk cache, compiling one config after another in
one process takes most of a tuning run. Here worker processes (spawned, one CUDA context each) build
the layers of the cases and launch every candidate the tuner will time, forced, once: they fill the
cache, and the tuning process that follows loads each kernel instead of compiling it. Nothing is timed
and nothing is cached in gemlite's config cache; a failing candidate or worker only means the tuner
compiles that kernel itself (the tuner reports what fails to launch).

A kernel is specialized on its constexprs and on its integer arguments' divisibility by 16 (and
equality to 1), so the workers launch at the cases' own K, N and M, not at a stand-in shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

#: A worker's GPU memory while it quantizes a layer (float64 temporaries; 8192x28672 A16W8_INT8 took
#: 12.6 GB, `tools/config_sweep.py`).
PEAK_BYTES_PER_WEIGHT = 64


def jobs_for(cases, workers: int) -> list[list[tuple[dict, int, int, tuple[int, ...]]]]:
    """The gemlite cases as `workers` lists of ``(entry dict, K, N, Ms)``: one item per format and
    shape (its M together, so a worker builds each layer once), dealt round-robin from the largest
    layer down so the lists carry similar work."""
    by_layer: dict[tuple, list[int]] = {}
    entries: dict[tuple, dict] = {}
    for c in cases:
        if c.kind != "gemlite" or c.entry is None:
            continue
        key = (c.entry.label, c.K, c.N)
        by_layer.setdefault(key, []).append(c.M)
        entries[key] = c.entry.to_dict()
    items = sorted(by_layer, key=lambda k: -k[1] * k[2])
    out: list[list] = [[] for _ in range(max(1, workers))]
    for i, key in enumerate(items):
        out[i % len(out)].append((entries[key], key[1], key[2], tuple(sorted(set(by_layer[key])))))
    return [jobs for jobs in out if jobs]


def launch_forced(layer, x, family: str, configs) -> tuple[int, list[str]]:
    """Launch `layer` on x through `family` once per config, forced (each compiles on its first
    launch); returns how many ran and the failures, one line each."""
    from gemlite import autotune

    ok, errors = 0, []
    for cfg in configs:
        try:
            with autotune.forced_config(family, cfg):
                layer.forward_manual(x, matmul_type=family)
            ok += 1
        except Exception as e:  # noqa: BLE001 - returned, and the tuner launches it again and warns
            errors.append(f"{family} {cfg.short()}: {type(e).__name__}: {e}"[:200])
    return ok, errors


def launch_candidates(layer, M: int, mode: str, dtype, device: str) -> tuple[int, list[str]]:
    """`launch_forced` of every config the tuner would time for `layer` on x of M rows and `dtype`:
    the family `forward` dispatches to, `autotune.legal_configs` of `mode` that suit M."""
    import torch

    from gemlite import autotune
    from gemlite.dispatch import choose_matmul_type

    family = choose_matmul_type(M, layer.layout)
    x = torch.randn(M, layer.layout.in_features, dtype=dtype, device=device)
    return launch_forced(layer, x, family, autotune.legal_configs(family, layer.layout, mode, M))


def _worker(args: tuple[list, str, str]) -> tuple[int, list[str]]:
    """One worker: every item's layer, then every M's candidates; ``(launched, failures)``."""
    jobs, mode, device = args
    import torch

    import gemlite
    from gemlite import autotune
    from harness.perf_cases import FormatEntry
    from harness.perf_run import build_layer

    autotune.use_shipped_configs(False)
    gemlite.set_autotune(mode)
    ok, errors = 0, []
    for entry, K, N, ms in jobs:
        try:
            layer = build_layer(FormatEntry.from_dict(entry), K, N, device)
            for M in ms:
                n_ok, failed = launch_candidates(layer, M, mode, getattr(torch, entry["act_dtype"]), device)
                ok += n_ok
                errors += [f"{entry['label']} {K}x{N} M={M} {e}" for e in failed]
            del layer
        except Exception as e:  # noqa: BLE001 - returned; the tuner builds and compiles that layer itself
            errors.append(f"{entry['label']} {K}x{N}: {type(e).__name__}: {e}"[:200])
        if device == "cuda":
            torch.cuda.empty_cache()
    if device == "cuda":
        torch.cuda.synchronize()
    return ok, errors


def precompile(cases, mode: str, jobs: int, log: Callable[[str], None]) -> None:
    """Fill Triton's cache with the kernels the tuning of `cases` will launch, in `jobs` processes
    (fewer where the largest layer's quantization would not fit the GPU's free memory N times)."""
    import torch

    if jobs < 1 or not torch.cuda.is_available():
        return
    largest = max((c.K * c.N for c in cases if c.kind == "gemlite"), default=0)
    if not largest:
        return
    free = torch.cuda.mem_get_info()[0]
    workers = max(1, min(jobs, int(0.8 * free) // (PEAK_BYTES_PER_WEIGHT * largest)))
    parts = jobs_for(cases, workers)
    t0 = time.monotonic()
    log(f"precompiling the candidates of {len(cases)} cases in {len(parts)} processes ...")
    ctx = torch.multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(len(parts), mp_context=ctx) as pool:
            results = list(pool.map(_worker, [(p, mode, "cuda") for p in parts]))
    except Exception as e:  # noqa: BLE001 - the tuner compiles as it goes then
        log(f"precompile failed ({type(e).__name__}: {e}); the tuning compiles as it goes")
        return
    ok = sum(r[0] for r in results)
    errors = [e for r in results for e in r[1]]
    log(f"precompiled: {ok} launches, {len(errors)} failed, in {time.monotonic() - t0:.0f} s")
    for e in errors[:5]:  # the tuner meets the same failures, and names them in its warning
        log(f"  precompile: {e}")
