"""Time every kernel family on one layer shape (forced through forward_manual), for dispatch decisions.

    python tools/family_sweep.py --K 8192 --N 28672 --M 1,2,4,16,64,256

Uses the harness timer (CUDA graph over rotating weight copies), so numbers match the perf suite's.
"""

from __future__ import annotations

import argparse
import copy

import torch

from gemlite import helper
from gemlite.formats import FAMILIES as MATMUL_TYPES
from harness.gpu import identify
from harness.timing import GraphTimer, TimingConfig, rotation_copies


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--K", type=int, default=8192)
    p.add_argument("--N", type=int, default=28672)
    p.add_argument("--M", default="1,2,4,16,64,256")
    p.add_argument("--group-size", type=int, default=128)
    p.add_argument("--helper", default="A16W4_HQQ_INT", help="a processor of gemlite.helper")
    a = p.parse_args()
    gpu = identify()
    cfg = TimingConfig()
    lin = torch.nn.Linear(a.K, a.N, bias=False, dtype=torch.float16, device="cuda")
    proc = getattr(helper, a.helper)(device="cuda", dtype=torch.float16)
    kwargs = {"group_size": a.group_size} if "HQQ" in a.helper else {}
    layer = proc.from_linear(lin, **kwargs)
    nbytes = sum(b.numel() * b.element_size() for b in layer.buffers())
    n = rotation_copies(nbytes, gpu.l2_bytes, cfg)
    copies = [layer] + [copy.deepcopy(layer) for _ in range(n - 1)]
    print(f"{gpu.name}: {a.helper} K={a.K} N={a.N} g={a.group_size}, {n} copies of {nbytes / 1e6:.1f} MB")
    for M in (int(m) for m in a.M.split(",")):
        x = torch.randn(M, a.K, dtype=torch.float16, device="cuda")
        row = []
        for family in MATMUL_TYPES:
            timer = GraphTimer(lambda i, f=family, x=x: copies[i].forward_manual(x, matmul_type=f), n, cfg)
            try:
                timer.prepare()
                row.append(f"{family}={timer.run().median:8.2f}us")
            except Exception as e:  # a family may refuse a shape; say so and go on
                row.append(f"{family}=error({type(e).__name__})")
            finally:
                timer.close()
        print(f"M={M:5d} " + " ".join(row), flush=True)


if __name__ == "__main__":
    main()
