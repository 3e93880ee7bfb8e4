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

import os
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


def launch_candidates(layer, M: int, mode: str, dtype, device: str) -> tuple[int, int]:
    """Launch, forced, every config the tuner would time for `layer` on x of M rows and `dtype` (the
    family `forward` dispatches to, `autotune.legal_configs` of `mode` that suit M); returns
    ``(launched, failed)``."""
    import torch

    from gemlite import autotune
    from gemlite.dispatch import choose_matmul_type

    family = choose_matmul_type(M, layer.layout)
    x = torch.randn(M, layer.layout.in_features, dtype=dtype, device=device)
    ok = failed = 0
    for cfg in autotune.legal_configs(family, layer.layout, mode, M):
        try:
            with autotune.forced_config(family, cfg):
                layer.forward_manual(x, matmul_type=family)
            ok += 1
        except Exception:  # noqa: BLE001 - the tuner launches it again and reports what fails
            failed += 1
    return ok, failed


def build_layer(entry: dict, K: int, N: int, device: str):
    """The suite entry's layer at K x N (random weights, quantized by its helper)."""
    import torch

    import gemlite.helper as helper
    from harness.perf_cases import FormatEntry

    e = FormatEntry.from_dict(entry)
    dtype = getattr(torch, e.act_dtype)
    linear = torch.nn.Linear(K, N, bias=False, dtype=dtype, device=device)
    return getattr(helper, e.helper)(device=device, dtype=dtype, **e.init).from_linear(linear, **e.kwargs)


def _worker(args: tuple[list, str, str]) -> tuple[int, int, list[str]]:
    """One worker: every item's layer, then every M's candidates; ``(launched, failed, errors)``."""
    jobs, mode, device = args
    import torch

    import gemlite
    from gemlite import autotune

    autotune.use_shipped_configs(False)
    gemlite.set_autotune(mode)
    ok = failed = 0
    errors: list[str] = []
    for entry, K, N, ms in jobs:
        try:
            layer = build_layer(entry, K, N, device)
            for M in ms:
                n_ok, n_failed = launch_candidates(layer, M, mode, getattr(torch, entry["act_dtype"]), device)
                ok, failed = ok + n_ok, failed + n_failed
            del layer
        except Exception as e:  # noqa: BLE001 - that layer is compiled by the tuner instead
            errors.append(f"{entry['label']} {K}x{N}: {type(e).__name__}: {e}"[:200])
        if device == "cuda":
            torch.cuda.empty_cache()
    if device == "cuda":
        torch.cuda.synchronize()
    return ok, failed, errors


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
    workers = max(1, min(jobs, os.cpu_count() or 1, int(0.8 * free) // (PEAK_BYTES_PER_WEIGHT * largest)))
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
    failed = sum(r[1] for r in results)
    errors = [e for r in results for e in r[2]]
    log(f"precompiled: {ok} launches, {failed} failed, in {time.monotonic() - t0:.0f} s")
    for e in errors[:5]:
        log(f"  precompile: {e}")
