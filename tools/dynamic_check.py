"""Check the dynamic-activation formats (issue 10) on a GPU: correctness, A8W4 accuracy, timing.

    PYTHONPATH=$PWD python tools/dynamic_check.py [--quick] [--autotune fast] [--json out.json]
    PYTHONPATH=$PWD TRITON_INTERPRET=1 python tools/dynamic_check.py --device cpu --sqnr-only

1. Correctness: one harness case per format, shape and M (4096x14336 at M = 1, 16, 1024, 4096;
   8192x28672 at M = 1 and 4096), through the layer's own dispatch (``harness.repro.run_case``:
   operands from a seed, the layer through the helper, the float64 golden, the element-wise bound, and
   the activation codes and scales compared with the reference bit for bit). Prints the worst bound
   ratio (<= 1 passes).
2. A8W4 against A16W4 on the same HQQ weights (4-bit, g128, float zeros; weights ~N(0, 0.02^2) as in an
   LLM): SQNR of each against the unquantized product, and of the obvious design for scale (each
   dequantized weight cast to e4m3, as public GemLite does), computed in float64 from the same codes.
3. Timing (GPU only), as ``tools/config_sweep.py`` times: a CUDA graph over rotating weight copies
   (together >= 2x L2), median of the replays, per call. gemlite's full forward (quantizer + matmul),
   the quantizer alone, cuBLAS fp16 (``F.linear``) and cuBLAS fp8 (``torch._scaled_mm``, activations
   already quantized, per-row scales, bf16 out). Prints us, speed-up vs cuBLAS fp16, the fraction of
   cuBLAS fp8's speed, and for M <= 16 the fraction of the measured copy bandwidth.

Configs: the heuristic default of each family (``--autotune fast`` times the "fast" space first, which
takes several minutes). About 3 minutes on an H200 with the defaults (``--quick``: one shape, M = 1
and 1024, about a minute). Exit status 1 if a correctness case fails.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import time

import torch

FORMATS = ["A8W8_INT8_dynamic", "A8W8_FP8_dynamic", "A8W8_INT8_block_dynamic", "A8W8_FP8_block_dynamic",
           "A8W4_HQQ_INT_dynamic", "A8W2_HQQ_INT_dynamic", "A8W158_INT_dynamic"]  # fmt: skip
SHAPES = [(4096, 14336), (8192, 28672)]  # K x N
MS = [1, 16, 1024, 4096]


def _kwargs(name: str) -> dict:
    return {"group_size": 128} if "HQQ" in name else {}


def correctness(device: str, shapes, ms) -> list[dict]:
    from harness.case import pinned
    from harness.repro import run_case

    rows = []
    for name in FORMATS:
        extra = {"group_size": 128, "zeros": "float"} if "HQQ" in name else {}
        for K, N in shapes:
            # the large shape at its M extremes only: its float64 golden is the slow part of a case
            for M in ms if K * N <= 4096 * 14336 else [m for m in ms if m in (ms[0], ms[-1])]:
                case = pinned(name, K=K, N=N, M=M, family="AUTO", bias="input", seed=K + M, **extra)
                t0 = time.time()
                r = run_case(case, device)
                c = r.comparison
                codes = r.act_diff is None
                rows.append(dict(format=name, K=K, N=N, M=M, ok=r.ok, bound_ratio=c.bound_ratio,
                                 sqnr_float_db=c.sqnr_float_db, act_codes_equal=codes))  # fmt: skip
                line = f"  {name:24s} {K:5d}x{N:<5d} M={M:<4d} {'ok ' if r.ok else 'FAIL'} bound ratio "
                line += f"{c.bound_ratio:.3g}  SQNR vs float {c.sqnr_float_db:.1f} dB  codes "
                print(line + f"{'equal' if codes else 'DIFFER'}  ({time.time() - t0:.1f} s)", flush=True)
                if not r.ok:
                    print(c.message() if not c.ok else r.act_diff or r.reload_diff, flush=True)
                if device == "cuda":
                    torch.cuda.empty_cache()
    return rows


def sqnr_a8w4(device: str, K: int = 4096, N: int = 4096, M: int = 256, std: float = 0.02) -> dict:
    """SQNR (dB) vs the float product of A16W4, gemlite's A8W4 and the e4m3-cast design, same codes,
    for weights ~N(0, std**2)."""
    import reference as ref
    from gemlite import helper
    from gemlite.formats import FORMATS as F
    from gemlite.quantize import quantize_hqq
    from harness.numerics import sqnr_db

    g = torch.Generator().manual_seed(0)
    W = (torch.randn((N, K), generator=g) * std).to(device)
    x = torch.randn((M, K), generator=g)
    x[:, torch.rand((K,), generator=g) < 0.01] *= 20.0  # a few outlier channels, as LLM activations have
    x = x.to(device, torch.float16)
    codes, scales, zeros = quantize_hqq(W, 4, 128, scale_dtype=torch.float16)
    y_float = x.double() @ W.double().T
    out = {}
    a16 = helper.A16W4_HQQ_INT(device=device, dtype=torch.float16).from_weights(codes, scales, zeros)
    a8 = helper.A8W4_HQQ_INT_dynamic(device=device, dtype=torch.float16).from_weights(codes, scales, zeros)
    out["A16W4_HQQ_INT g128"] = sqnr_db(y_float, a16(x))
    out["A8W4_HQQ_INT_dynamic g128 (gemlite: exact codes)"] = sqnr_db(y_float, a8(x))
    fmt = F["A8W4_HQQ_INT_dynamic"]
    qw = ref.QuantizedWeight(fmt.with_group_size(128), codes, scales, zeros)
    w_deq = ref.dequantize_weight(qw)
    x_hat = ref.dequantize_activation(ref.quantize_activation(fmt.act, x))
    out["A8W4 golden (reference, float64)"] = sqnr_db(y_float, x_hat @ w_deq.T)
    w_cast = w_deq.to(torch.float32).to(torch.float8_e4m3fn).double()  # the obvious design
    out["A8W4, weights cast to e4m3 (public GemLite)"] = sqnr_db(y_float, x_hat @ w_cast.T)
    sub = float((w_deq.abs() < 2.0**-6).double().mean())
    print(
        f"  weights ~N(0, {std}^2): {100 * sub:.0f}% of the dequantized ones are below e4m3's smallest "
        "normal 2**-6"
    )
    for k, v in out.items():
        print(f"  {k:48s} {v:6.2f} dB")
    return out


def _median_us(call, n: int, tcfg) -> float:
    """Median us per call of ``call(i)`` (i: which of the n weight copies) in a CUDA graph."""
    from harness.timing import GraphTimer

    timer = GraphTimer(call, n, tcfg)
    try:
        timer.prepare()
        return timer.run().median
    finally:
        timer.close()


def _cublas_us(K: int, N: int, ms, gpu, tcfg) -> dict:
    """{M: (cuBLAS fp16 us, torch._scaled_mm fp8 us)} over rotating weight copies."""
    import torch.nn.functional as F

    from harness.timing import rotation_copies

    w16 = torch.randn(N, K, device="cuda", dtype=torch.float16) * K**-0.5
    c16 = [w16] + [w16.clone() for _ in range(rotation_copies(w16.numel() * 2, gpu.l2_bytes, tcfg) - 1)]
    sw = w16.float().abs().amax(dim=1).clamp(min=1e-6) / 448.0
    w8 = (w16.float() / sw[:, None]).to(torch.float8_e4m3fn)
    c8 = [w8] + [w8.clone() for _ in range(rotation_copies(w8.numel(), gpu.l2_bytes, tcfg) - 1)]
    scale_b = sw.view(1, N).contiguous()

    def fp16_call(i, x):
        return F.linear(x, c16[i])

    def fp8_call(i, x8, sx):
        # mat2 column-major ([N, K] row-major, transposed), as cuBLASLt's fp8 GEMM wants
        return torch._scaled_mm(x8, c8[i].t(), scale_a=sx, scale_b=scale_b, out_dtype=torch.bfloat16)

    out = {}
    for M in ms:
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        sx = x.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-6) / 448.0
        x8 = (x.float() / sx).to(torch.float8_e4m3fn)
        fp16 = _median_us(functools.partial(fp16_call, x=x), len(c16), tcfg)
        fp8 = _median_us(functools.partial(fp8_call, x8=x8, sx=sx), len(c8), tcfg)
        out[M] = (fp16, fp8)
        print(f"  {K}x{N} M={M:<4d} cuBLAS fp16 {fp16:9.1f} us   torch._scaled_mm fp8 {fp8:9.1f} us")
    return out


def _gemlite_rows(name: str, K: int, N: int, ms, refs: dict, gpu, tcfg, bw: float) -> list[dict]:
    """Time one format's full forward and its quantizer alone at every M."""
    from gemlite import helper
    from gemlite.kernels.plan import quantize_activation
    from harness.perf_cases import Case as PerfCase
    from harness.perf_cases import FormatEntry, case_bytes
    from harness.timing import rotation_copies

    lin = torch.nn.Linear(K, N, bias=False, dtype=torch.float16, device="cuda")
    layer = getattr(helper, name)(device="cuda", dtype=torch.float16).from_linear(lin, **_kwargs(name))
    del lin
    nbytes = sum(b.numel() * b.element_size() for b in layer.buffers())
    copies = [layer] + [copy.deepcopy(layer) for _ in range(rotation_copies(nbytes, gpu.l2_bytes, tcfg) - 1)]
    entry = FormatEntry(layer.format.label, name, _kwargs(name))
    scheme, group = layer.layout.act_scheme, layer.layout.act.group_size

    def forward(i, x):
        return copies[i](x)

    def quantizer(i, x):
        return quantize_activation(x, scheme, group)

    rows = []
    for M in ms:
        x = torch.randn(M, K, device="cuda", dtype=torch.float16)
        us = _median_us(functools.partial(forward, x=x), len(copies), tcfg)
        q_us = _median_us(functools.partial(quantizer, x=x), 1, tcfg)
        fp16, fp8 = refs[M]
        traffic = case_bytes(PerfCase("gemlite", entry.label, K, N, M, entry=entry))
        frac = traffic / (us * 1e-6) / (bw * 1e9)
        rows.append(dict(format=name, K=K, N=N, M=M, us=us, quant_us=q_us, cublas_fp16_us=fp16,
                         scaled_mm_fp8_us=fp8, copy_fraction=frac))  # fmt: skip
        line = f"  {name:24s} {K}x{N} M={M:<4d} {us:9.1f} us (quantizer {q_us:6.1f})  "
        line += f"{fp16 / us:5.2f}x fp16  {fp8 / us:5.2f}x of scaled_mm"
        print(line + (f"  {100 * frac:5.1f}% of copy bw" if M <= 16 else ""), flush=True)
    copies.clear()
    torch.cuda.empty_cache()
    return rows


def timing(shapes, ms, autotune_mode) -> list[dict]:
    from gemlite import autotune
    from harness.gpu import identify
    from harness.timing import TimingConfig, copy_bandwidth

    autotune.set_autotune(autotune_mode)
    gpu = identify()
    tcfg = TimingConfig(replays=7)
    bw = copy_bandwidth().median
    print(f"  {gpu.name}: copy bandwidth {bw:.0f} GB/s; configs: autotune={autotune_mode}", flush=True)
    rows = []
    for K, N in shapes:
        refs = _cublas_us(K, N, ms, gpu, tcfg)
        torch.cuda.empty_cache()
        for name in FORMATS:
            rows += _gemlite_rows(name, K, N, ms, refs, gpu, tcfg, bw)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="one shape (4096x14336) and M = 1, 1024")
    p.add_argument("--autotune", default="off", choices=("off", "fast", "max"))
    p.add_argument("--sqnr-only", action="store_true", help="only section 2 (runs on CPU too, small)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    shapes, ms = (SHAPES[:1], [1, 1024]) if a.quick else (SHAPES, MS)
    result = {}
    t0 = time.time()
    if a.sqnr_only:
        print("A8W4 vs A16W4 (same weights)", flush=True)
        small = a.device == "cpu"
        sizes = (512, 256, 16) if small else ()
        result["sqnr"] = [sqnr_a8w4(a.device, *sizes, std=std) for std in (0.02, 0.005)]
    else:
        if a.device != "cuda":
            print("dynamic_check: sections 1 and 3 need a GPU (use --sqnr-only on CPU)", file=sys.stderr)
            return 2
        print("1. correctness (harness cases, AUTO dispatch)", flush=True)
        result["correctness"] = correctness(a.device, shapes, ms)
        print("2. A8W4 vs A16W4 on the same weights", flush=True)
        result["sqnr"] = [sqnr_a8w4(a.device, std=std) for std in (0.02, 0.005)]
        print("3. timing", flush=True)
        result["timing"] = timing(shapes, ms, False if a.autotune == "off" else a.autotune)
    print(f"done in {time.time() - t0:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=str)
    bad = [r for r in result.get("correctness", []) if not r["ok"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
