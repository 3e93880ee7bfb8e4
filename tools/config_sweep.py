"""Time one kernel family over a grid of launch configs on layer shapes (the evidence behind config spaces).

    python tools/config_sweep.py --helper A16W4_HQQ_INT --family GEMV --shapes 4096x14336,14336x4096 \
        --M 1 --grid BLOCK_N=64,128,256 BLOCK_K=32,64,128 SPLIT_K=1,4,8,16 num_warps=1,2,4 --top 8

Shapes are K x N as in the perf suites. Every config is forced through `gemlite.autotune.forced_config`
and timed with the harness timer (CUDA graph over rotating weight copies, cold L2), so the numbers
match the perf suite's; illegal configs for a layout are skipped. Kernels are compiled first in
``--jobs`` worker processes (they fill Triton's on-disk cache), so the timing pass only loads them.
Prints, per shape and M, the fastest configs with their time and fraction of the measured copy
bandwidth, and (``--json``) writes every result.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

from gemlite import autotune
from harness.gpu import identify
from harness.perf_cases import FormatEntry, weight_bytes
from harness.perf_run import build_layer
from harness.precompile import PEAK_BYTES_PER_WEIGHT, launch_forced
from harness.timing import GraphTimer, TimingConfig, copy_bandwidth, rotation_copies


def _grid(items: list[str]) -> list[autotune.Config]:
    keys, values = [], []
    for item in items:
        key, _, vals = item.partition("=")
        keys.append(key)
        values.append([int(v) for v in vals.split(",")])
    out = []
    for combo in itertools.product(*values):
        try:
            out.append(autotune.Config(**dict(zip(keys, combo))))
        except ValueError:
            pass
    return out


def _compile(job) -> int:
    """Worker: run each config once (compiles it into Triton's cache); returns how many ran (a
    failing config is reported by the timing pass)."""
    entry, K, N, family, M, cfgs = job
    layer = build_layer(FormatEntry.from_dict(entry), K, N, "cuda")
    x = torch.randn(M, K, dtype=torch.float16, device="cuda")
    ran, _ = launch_forced(layer, x, family, [autotune.Config(**cfg) for cfg in cfgs])
    torch.cuda.synchronize()
    return ran


def _time(copies, x, family: str, cfg, n: int, tcfg) -> float:
    """Median us per call of `family` forced to `cfg` (raises what the launch raises)."""
    with autotune.forced_config(family, cfg):
        timer = GraphTimer(lambda i: copies[i].forward_manual(x, matmul_type=family), n, tcfg)
        try:
            timer.prepare()
            return timer.run().median
        finally:
            timer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--helper", default="A16W4_HQQ_INT")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--family", required=True)
    p.add_argument("--shapes", required=True, help="KxN,KxN,...")
    p.add_argument("--M", default="1")
    p.add_argument("--grid", nargs="+", required=True, help="FIELD=v1,v2,... (autotune.Config fields)")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1))
    p.add_argument("--json", default=None)
    a = p.parse_args()
    gpu = identify()
    tcfg = TimingConfig(replays=7)
    bw = copy_bandwidth().median
    shapes = [tuple(int(v) for v in s.split("x")) for s in a.shapes.split(",")]
    ms = [int(m) for m in a.M.split(",")]
    configs = _grid(a.grid)
    entry = FormatEntry(
        f"{a.helper}/g{a.group_size}" if "HQQ" in a.helper else a.helper,
        a.helper,
        {"group_size": a.group_size} if "HQQ" in a.helper else {},
    )
    print(f"{gpu.name}: copy {bw:.0f} GB/s; {a.helper} {a.family}, {len(configs)} configs", flush=True)
    results = []
    for K, N in shapes:
        layer = build_layer(entry, K, N, "cuda")
        legal = [c for c in configs if autotune.illegal_reason(a.family, c, layer.layout) is None]
        # Each worker quantizes its own copy of the layer, so big layers get fewer workers than --jobs.
        free = torch.cuda.mem_get_info()[0]
        workers = max(1, min(a.jobs, int(0.8 * free) // (PEAK_BYTES_PER_WEIGHT * K * N)))
        jobs = [
            (entry.to_dict(), K, N, a.family, M, [c.as_dict() for c in legal[i::workers]])
            for M in ms
            for i in range(workers)
        ]
        with ProcessPoolExecutor(workers, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
            list(pool.map(_compile, jobs))
        nbytes = sum(b.numel() * b.element_size() for b in layer.buffers())
        n = rotation_copies(nbytes, gpu.l2_bytes, tcfg)
        copies = [layer] + [copy.deepcopy(layer) for _ in range(n - 1)]
        for M in ms:
            x = torch.randn(M, K, dtype=torch.float16, device="cuda")
            traffic = weight_bytes(entry.format, K, N) + 2 * M * (K + N)
            rows = []
            for cfg in legal:
                try:
                    rows.append((_time(copies, x, a.family, cfg, n, tcfg), cfg, ""))
                except Exception as e:  # noqa: BLE001 - a config that fails on this GPU is listed
                    rows.append((float("inf"), cfg, f"{type(e).__name__}: {str(e)[:80]}"))
            rows.sort(key=lambda r: r[0])
            print(f"K={K} N={N} M={M}: {len(rows)} configs", flush=True)
            for us, cfg, err in rows[: a.top]:
                pct = 100 * traffic / (us * 1e-6) / (bw * 1e9) if us != float("inf") else 0
                print(f"  {us:9.2f} us {pct:5.1f}% copy  {cfg.short()} {err}", flush=True)
            results += [
                {"K": K, "N": N, "M": M, "us": us, "config": c.as_dict(), "error": err} for us, c, err in rows
            ]
        copies.clear()
        torch.cuda.empty_cache()
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"gpu": gpu.name, "copy_gbps": bw, "family": a.family, "results": results}, f)


if __name__ == "__main__":
    sys.exit(main())
