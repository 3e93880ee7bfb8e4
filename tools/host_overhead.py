"""Eager host time of a GemLiteLinear forward next to torch.nn.functional.linear, and where it goes.

    python tools/host_overhead.py --helper A16W4_HQQ_INT --K 4096 --N 4096 --M 1,4 --calls 10000

For each M: the time per call of `calls` back-to-back eager calls synchronised once at the end
(gemlite, F.linear on an fp16 weight of the same shape), and a breakdown of gemlite's call: the
kept replay alone (what a layer's repeated call runs after its checks), and a planned call (no
replay) split into the launch choice, the plan (allocations, arguments) and the launch.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from gemlite import helper
from gemlite import matmul as gm
from gemlite.kernels.plan import plan


def _per_call_us(fn, calls: int) -> float:
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1e6 / calls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--helper", default="A16W4_HQQ_INT")
    p.add_argument("--K", type=int, default=4096)
    p.add_argument("--N", type=int, default=4096)
    p.add_argument("--M", default="1,4")
    p.add_argument("--calls", type=int, default=10000)
    p.add_argument("--profile", action="store_true", help="cProfile the layer's calls (top 12 by own time)")
    a = p.parse_args()
    lin = torch.nn.Linear(a.K, a.N, bias=False, dtype=torch.float16, device="cuda")
    w = lin.weight.detach().clone()
    kwargs = {"group_size": 128} if "HQQ" in a.helper else {}
    layer = getattr(helper, a.helper)(device="cuda", dtype=torch.float16).from_linear(lin, **kwargs)
    for M in (int(m) for m in a.M.split(",")):
        _report(a, layer, w, M)


def _report(a, layer, w, M: int) -> None:
    x = torch.randn(M, a.K, dtype=torch.float16, device="cuda")
    layer(x)  # tune
    t_lin = _per_call_us(lambda: F.linear(x, w), a.calls)
    t_gl = _per_call_us(lambda: layer(x), a.calls)
    tensors = (layer.W_q, layer.scales, layer.zeros, None, layer.layout, torch.float16)
    fam, cfg = gm._choose(x, *tensors, None, layer._locks)
    t_choose = _per_call_us(lambda: gm._choose(x, *tensors, None, layer._locks), a.calls)
    t_plan = _per_call_us(lambda: plan(fam, x, *tensors, cfg, layer._locks), a.calls)
    _, launches = plan(fam, x, *tensors, cfg, layer._locks)
    t_launch = _per_call_us(lambda: [s.run() for s in launches], a.calls)
    t_planned = _per_call_us(lambda: gm._impl(x, *tensors, None, layer._locks), a.calls)
    hit = layer._replays.get((M, None))
    t_replay = _per_call_us(lambda: hit[2](x), a.calls) if hit is not None else float("nan")
    print(
        f"{a.helper} K={a.K} N={a.N} M={M} ({fam} {cfg.short()}): gemlite {t_gl:.1f} us/call, "
        f"F.linear {t_lin:.1f} us/call, ratio {t_gl / t_lin:.2f}; replay alone {t_replay:.1f} "
        f"({'kept' if hit is not None else 'NOT kept'}); planned call {t_planned:.1f} = choose "
        f"{t_choose:.1f} + plan {t_plan:.1f} + launch {t_launch:.1f} ({len(launches)} launch(es))",
        flush=True,
    )
    if a.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        for _ in range(a.calls):
            layer(x)
        prof.disable()
        torch.cuda.synchronize()
        pstats.Stats(prof).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
