"""Run one gemlite layer's forward a few times, eagerly, for a profiler to watch (ncu, nsys).

    ncu --clock-control none --set full -k regex:gemv --launch-skip 2 --launch-count 1 \
        python tools/ncu_case.py --helper A16W4_HQQ_INT --shape 4096x14336 --M 1 [--family GEMV \
        --config '{"BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 8, "num_warps": 4}']

The layer is built as the perf suite builds it (random weights quantized by the helper, fp16); without
--config its config comes from the shipped cache for this GPU (or the autotuner). The first call
tunes and compiles, so skip it in the profiler (``--launch-skip``). Prints the family and config
that ran, so the profile can be matched to a config.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--helper", default="A16W4_HQQ_INT")
    p.add_argument("--group-size", type=int, default=128, help="HQQ helpers only")
    p.add_argument("--shape", required=True, help="KxN")
    p.add_argument("--M", type=int, default=1)
    p.add_argument("--family", help="force this kernel family (with --config: that config)")
    p.add_argument("--config", help="JSON autotune.Config fields (needs --family)")
    p.add_argument("--calls", type=int, default=3)
    a = p.parse_args(argv)
    if a.config and not a.family:
        p.error("--config needs --family")
    from gemlite import autotune, helper

    K, N = (int(v) for v in a.shape.split("x"))
    kwargs = {"group_size": a.group_size} if "HQQ" in a.helper else {}
    linear = torch.nn.Linear(K, N, bias=False, dtype=torch.float16, device="cuda")
    layer = getattr(helper, a.helper)(device="cuda", dtype=torch.float16).from_linear(linear, **kwargs)
    x = torch.randn(a.M, K, dtype=torch.float16, device="cuda")
    forced = (
        autotune.forced_config(a.family, autotune.Config.from_dict(json.loads(a.config)))
        if a.config
        else contextlib.nullcontext()
    )
    with forced:
        for _ in range(a.calls):
            y = layer.forward_manual(x, matmul_type=a.family) if a.family else layer(x)
        torch.cuda.synchronize()
        ran = f"{a.family} {autotune.Config.from_dict(json.loads(a.config)).short()}" if a.config else None
    if ran is None:
        from harness.perf_run import launch_choice_of

        ran = a.family or launch_choice_of(layer, x)
    print(f"{a.helper} {K}x{N} M={a.M}: {a.calls} calls of {ran}, y {tuple(y.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
