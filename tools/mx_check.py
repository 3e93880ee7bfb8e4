"""Check the microscaled formats (issue 11) on a GPU: correctness against the reference, SQNR, and timing.

    PYTHONPATH=$PWD python tools/mx_check.py [--json PATH] [--autotune fast|max|off] [--skip-timing]

1. Correctness: every microscaled format of the support registry (`harness.support.SUPPORT`: A16W8_MXFP,
   A16W4_MXFP, A16W4_NVFP and whichever dynamic MX/NVFP4 formats it holds) on every kernel family, forced
   and AUTO, at M = 1, 16, 300 (the GEMV families at M <= 16), K = 4192 (a K tail behind every power-of-two
   tile) and N = 1000, fp16 and bf16, plus a forced DEQUANT=1 tile: each case against the float64 golden
   of the same quantized operands under the harness's element-wise bound (`harness.repro.run_case`).
   Prints per format the cases, failures, the worst bound ratio.
2. SQNR (dB) of each format's gemlite output against the UNQUANTIZED product x @ W.T, on normal and on
   outlier-heavy operands (`harness.build` distributions "normal" and "outliers"), next to
   A16W4_HQQ_INT g128 (float zeros, fp16 scales).
3. Timing at K x N = 8192 x 28672, M = 1, 16, 4096: A16W4_MXFP (and A16W4_NVFP, A4W4_NVFP_dynamic when
   present) against A16W4_HQQ_INT g128, each through the layer's own dispatch (autotuned, ``--autotune``),
   timed by `harness.timing.GraphTimer` (CUDA graph over rotating weight copies > 2x L2), with the time,
   the fraction of the measured copy bandwidth (weight + x + y bytes) and the ratio to cuBLAS fp16
   (``torch.nn.functional.linear``, timed the same way).

Takes about 2-3 minutes on an H200 from a cold Triton cache (most of it compiling and autotuning).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time

import torch

from harness.support import SUPPORT

MICROSCALED = [n for n in SUPPORT if "MXFP" in n or "NVFP" in n]
FAMILIES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM", "AUTO")
GEMV = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK")


def correctness(device: str, K: int = 4192, N: int = 1000, ms=(1, 16, 300)) -> dict:
    from harness.case import pinned
    from harness.repro import run_case

    out = {}
    for name in MICROSCALED:
        rows, worst, failed = 0, 0.0, []
        cases = []
        for i, family in enumerate(FAMILIES):
            for M in ms:
                if family in GEMV and M > 16:
                    continue
                for dt in ("float16", "bfloat16"):
                    cases.append(dict(family=family, M=M, input_dtype=dt, output_dtype=dt, seed=7 * i + M))
        dequant = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "DEQUANT": 1}
        cases.append(dict(family="GEMM", M=ms[-1], tile=dequant))
        cases.append(dict(family="GEMM_SPLITK", M=33, deterministic=False, output_dtype="float32"))
        for fields in cases:
            base = dict(K=K, N=N, bias="input", dist="outliers" if fields.get("seed", 0) % 2 else "normal")
            base.update(fields)
            try:
                case = pinned(name, **base)
            except ValueError:  # not a legal case of this format (e.g. DEQUANT=1 with dynamic activations)
                continue
            result = run_case(case, device, autotune=False)
            c = result.comparison
            rows += 1
            worst = max(worst, c.bound_ratio)
            if not c.ok or result.reload_diff or getattr(result, "act_diff", None):
                failed.append(c.message()[:2000] if not c.ok else str(getattr(result, "act_diff", "")))
        out[name] = {"cases": rows, "failed": len(failed), "worst_bound_ratio": worst}
        print(f"{name:22s} {rows:3d} cases, {len(failed)} failed, worst bound ratio {worst:.3g}", flush=True)
        for f in failed[:3]:
            print("   ", f.replace("\n", "\n    "))
    return out


def sqnr(device: str, K: int = 4096, N: int = 4096, M: int = 64) -> dict:
    from harness.build import build_layer, golden, make_operands, run_layer
    from harness.case import pinned
    from harness.numerics import sqnr_db

    out = {}
    names = ["A16W4_HQQ_INT", *MICROSCALED]
    for dist in ("normal", "outliers"):
        for name in names:
            extra = {"group_size": 128, "zeros": "float", "scale_dtype": "float16"} if "HQQ" in name else {}
            case = pinned(name, K=K, N=N, M=M, dist=dist, family="AUTO", seed=5, **extra)
            ops = make_operands(case, device)
            y = run_layer(build_layer(case, ops), ops.x, "AUTO")
            gold = golden(case, ops)
            label = "A16W4_HQQ_INT/g128" if "HQQ" in name else name
            out[f"{label} {dist}"] = db = sqnr_db(gold.y_float, y)
            print(f"SQNR vs unquantized  {label:22s} {dist:9s} {db:6.2f} dB", flush=True)
    return out


def timing(autotune_mode) -> dict:
    import gemlite
    from gemlite import helper
    from harness.gpu import identify
    from harness.timing import GraphTimer, TimingConfig, copy_bandwidth, rotation_copies

    gemlite.set_autotune(autotune_mode)
    K, N = 8192, 28672
    gpu = identify()
    tcfg = TimingConfig(replays=7)
    bw = copy_bandwidth().median  # GB/s
    print(f"{gpu.name}: copy bandwidth {bw:.0f} GB/s; K x N = {K} x {N}", flush=True)
    names = ["A16W4_HQQ_INT", "A16W4_MXFP", "A16W4_NVFP"]
    names += [n for n in ("A4W4_NVFP_dynamic", "A8W8_FP8_dynamic") if hasattr(helper, n) and n in SUPPORT]
    lin = torch.nn.Linear(K, N, bias=False, dtype=torch.float16, device="cuda")
    out = {}

    def timed(ops, x, nbytes) -> tuple[float, float]:
        """Median us per call of ``ops[i](x)`` rotating over ops, and the fraction of copy bandwidth."""
        timer = GraphTimer(lambda i: ops[i](x), len(ops), tcfg)
        try:
            timer.prepare()
            us = timer.run().median
        finally:
            timer.close()
        return us, nbytes / (us * 1e-6) / (bw * 1e9)

    w16 = lin.weight.detach()
    for M in (1, 16, 4096):
        x = torch.randn(M, K, dtype=torch.float16, device="cuda")
        n = rotation_copies(w16.numel() * 2, gpu.l2_bytes, tcfg)
        weights = [w16, *(w16.clone() for _ in range(n - 1))]
        refs = [functools.partial(torch.nn.functional.linear, weight=w) for w in weights]
        ref_us, _ = timed(refs, x, w16.numel() * 2)
        for name in names:
            kwargs = {"group_size": 128} if "HQQ" in name else {}
            layer = getattr(helper, name)(device="cuda", dtype=torch.float16).from_linear(
                copy.deepcopy(lin), **kwargs
            )
            layer(x)  # tune (outside any graph) and compile
            nbytes = sum(b.numel() * b.element_size() for b in layer.buffers())
            n = rotation_copies(nbytes, gpu.l2_bytes, tcfg)
            layers = [layer] + [copy.deepcopy(layer) for _ in range(n - 1)]
            us, frac = timed(layers, x, nbytes + M * K * 2 + M * N * 2)
            label = "A16W4_HQQ_INT/g128" if "HQQ" in name else name
            out[f"{label} M={M}"] = {"us": us, "copy_bw_fraction": frac, "vs_cublas_fp16": ref_us / us}
            print(
                f"M={M:5d} {label:22s} {us:9.1f} us  {100 * frac:5.1f}% of copy BW  "
                f"{ref_us / us:5.2f}x cuBLAS fp16 ({ref_us:.1f} us)",
                flush=True,
            )
            del layers, layer
            torch.cuda.empty_cache()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--autotune", default="fast", choices=("fast", "max", "off"))
    p.add_argument("--skip-timing", action="store_true")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("mx_check: needs a CUDA GPU", file=sys.stderr)
        return 2
    t0 = time.time()
    report = {"correctness": correctness("cuda"), "sqnr_db": sqnr("cuda")}
    if not a.skip_timing:
        report["timing"] = timing(False if a.autotune == "off" else a.autotune)
    print(f"mx_check: {time.time() - t0:.0f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    bad = sum(v["failed"] for v in report["correctness"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
