"""Compile every kernel config for sm_90 (H100) without a GPU, and report what came out.

    TRITON_INTERPRET=0 python -m gemlite.kernels.compile_check [--jobs 2] [--families GEMM,GEMV]
                                                               [--layouts hqq4_g128_fp16,int8] [--report PATH]
                                                               [--cover]

Every config of every mode on every layout, or with ``--cover`` the covering selection (`all_jobs`):
every config on `COVER_LAYOUTS`, the default configs on the others (what the CPU test suite compiles).

Prints a JSON list, one entry per compiled kernel: family, layout, config, kernel name, ``shared``
(bytes of shared memory per block), ``tensor_core`` ("wgmma", "mma" or "none", read from the PTX),
``ok`` and ``error``. ``--report PATH`` also writes a plain-text table.

Why a separate process: under ``TRITON_INTERPRET=1`` (how the CPU test suite runs the kernels)
``@triton.jit`` returns interpreter objects that cannot be compiled. The interpreter is chosen when
the kernel modules are imported, so the compile-only test runs this module in a subprocess with the
interpreter off. The launch arguments come from the launchers' own ``plan`` functions run on "meta"
tensors, so the compiled signatures are exactly those a real launch would use.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from gemlite import autotune
from gemlite.formats import FAMILIES, FORMATS, Zeros
from gemlite.kernels import interpreter_active
from gemlite.kernels.plan import plan
from gemlite.layout import WeightLayout

H100_MAX_SHARED = 232448  # bytes of shared memory one block may use on sm_90 (227 KB)
TARGET = ("cuda", 90, 32)  # GPUTarget(backend, arch, warp_size)

# Representative layouts: name -> (format, compute dtype, word bits, zero_int, scale dtype).
_F16, _BF16, _F32 = torch.float16, torch.bfloat16, torch.float32
LAYOUTS = {
    "hqq4_g128_fp16": (FORMATS["A16W4_HQQ_INT"], _F16, 32, None, _F16),
    "hqq2_g64_bf16": (FORMATS["A16W2_HQQ_INT"].with_group_size(64), _BF16, 32, None, _BF16),
    "hqq1_g32_fp16_int": (
        FORMATS["A16W1_HQQ_INT"].with_group_size(32).with_zeros(Zeros.INT),
        _F16,
        32,
        1,
        _F16,
    ),
    "hqq8_chan_bf16_w8": (
        FORMATS["A16W8_HQQ_INT"].with_group_size(None).with_zeros(Zeros.INT),
        _BF16,
        8,
        128,
        _BF16,
    ),
    "int8_fp16": (FORMATS["A16W8_INT8"], _F16, 8, None, _F32),
    "fp8_bf16": (FORMATS["A16W8_FP8"], _BF16, 8, None, _F32),
    "a16w16_fp16": (FORMATS["A16W16"], _F16, 16, None, _F32),
    # microscaled weights (scales are bytes: the scheme's storage names their dtype)
    "mxfp8_bf16": (FORMATS["A16W8_MXFP"], _BF16, 8, None, None),
    "mxfp4_fp16": (FORMATS["A16W4_MXFP"], _F16, 32, None, None),
    "nvfp4_bf16_w8": (FORMATS["A16W4_NVFP"], _BF16, 8, None, None),
    "mxfp4_fp8_dyn_fp16": (FORMATS["A8W4_MXFP_post_scale_dynamic"], _F16, 32, None, None),
    # microscaled activations (MXFP8 / MXFP4 / NVFP4 codes + byte scales, dequantized to bf16 per K tile)
    "mxfp8_mxfp8_dyn_bf16": (FORMATS["A8W8_MXFP_dynamic"], _BF16, 8, None, None),
    "mxfp4_mxfp4_dyn_bf16": (FORMATS["A4W4_MXFP_dynamic"], _BF16, 32, None, None),
    "nvfp4_nvfp4_dyn_fp16_w8": (FORMATS["A4W4_NVFP_dynamic"], _F16, 8, None, None),
    # dynamic activations (gemlite/kernels/act_quant.py runs first: its launch is compiled too)
    "a8w8_int8_dyn_fp16": (FORMATS["A8W8_INT8_dynamic"], _F16, 8, None, _F32),
    "a8w8_fp8_dyn_bf16": (FORMATS["A8W8_FP8_dynamic"], _BF16, 8, None, _F32),
    "a8w4_g128_dyn_fp16": (FORMATS["A8W4_HQQ_INT_dynamic"], _F16, 32, None, _F16),
    "a8w2_chan_int_dyn_bf16": (
        FORMATS["A8W2_HQQ_INT_dynamic"].with_group_size(None).with_zeros(Zeros.INT),
        _BF16,
        8,
        1,
        _BF16,
    ),
    "a8w158_dyn_fp16": (FORMATS["A8W158_INT_dynamic"], _F16, 32, 1, _F32),
    "a8w8_int8_block_fp16": (FORMATS["A8W8_INT8_block_dynamic"], _F16, 8, None, _F32),
    "a8w8_fp8_block_bf16": (FORMATS["A8W8_FP8_block_dynamic"], _BF16, 8, None, _F32),
    # 8-bit codes given by the caller, no scales: int8 x int8 with an int32 output and bias (int32 sums,
    # int32 atomics, int32 partials as workspace bits); e4m3 x e4m3 with an fp32 output
    "a8w8_int8_codes_i32": (FORMATS["A8W8_INT8"], torch.int8, 8, None, _F32),
    "a8w8_fp8_codes_f32": (FORMATS["A8W8_FP8"], torch.float8_e4m3fn, 8, None, _F32),
}
K_COMPILE, N_COMPILE = 4096, 4096  # shapes only matter through divisibility: real LLM-like sizes
M_FOR_FAMILY = {"GEMV": 1, "GEMV_REVSPLITK": 1, "GEMV_SPLITK": 2, "GEMM_SPLITK": 16, "GEMM": 256}

_TL_TYPES = {
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.float32: "fp32",
    torch.int8: "i8",
    torch.uint8: "u8",
    torch.int32: "i32",
    torch.float8_e4m3fn: "fp8e4nv",
}


def io_dtypes(layout) -> tuple[torch.dtype, torch.dtype]:
    """(output dtype, bias dtype) a launch of `layout` is compiled with: the activation dtype for
    fp16/bf16 activations; int32 for int8 codes (their exact output), fp32 for e4m3 codes."""
    if layout.compute_dtype in (_F16, _BF16):
        return layout.compute_dtype, layout.compute_dtype
    out = torch.int32 if layout.compute_dtype == torch.int8 else _F32
    return out, out


def make_layout(name: str):
    fmt, dtype, word_bits, zero_int, _ = LAYOUTS[name]
    group = K_COMPILE if fmt.weight.group_size is None else fmt.weight.group_size
    return WeightLayout(fmt, K_COMPILE, N_COMPILE, group, word_bits, dtype, zero_int)


def meta_tensors(name: str, layout):
    """Weight tensors with the prepared shapes and dtypes (the scheme's `storage`), on the "meta"
    device (no data); empty placeholders where the layout has no such tensor."""
    scale_dtype = LAYOUTS[name][4]
    out = []
    for want in layout.scheme.storage(layout).values():
        shape = (0,) if want.shape is None else want.shape
        out.append(torch.empty(shape, dtype=want.dtype or scale_dtype, device="meta"))
    return tuple(out)


def _signature(launch):
    """(signature, constexprs, attrs) for triton.compile, mimicking the runtime's specialization:
    pointers 16-byte aligned, ints divisible by 16 marked so, ints equal to 1 made constants."""
    kernel = launch.kernel
    params = [p for p in kernel.params if not p.is_constexpr]
    if len(params) != len(launch.args):
        raise AssertionError(f"{kernel.__name__}: {len(launch.args)} args for {len(params)} runtime params")
    signature, constexprs, attrs = {}, {}, {}
    for p in kernel.params:
        if p.is_constexpr:
            signature[p.name] = "constexpr"
            constexprs[p.name] = launch.constexprs.get(p.name, p.default)
    for p, value in zip(params, launch.args):
        idx = kernel.arg_names.index(p.name)
        if isinstance(value, torch.Tensor):
            signature[p.name] = "*" + _TL_TYPES[value.dtype]
            attrs[(idx,)] = [["tt.divisibility", 16]]
        elif isinstance(value, bool):
            signature[p.name] = "i1"
        elif isinstance(value, int):
            if value == 1:
                signature[p.name] = "constexpr"
                constexprs[p.name] = 1
                continue
            signature[p.name] = "i32" if -(2**31) <= value < 2**31 else "i64"
            if value % 16 == 0:
                attrs[(idx,)] = [["tt.divisibility", 16]]
        else:
            raise AssertionError(f"{kernel.__name__}: unsupported argument {p.name}={value!r}")
    return signature, constexprs, attrs


def _tensor_core(ptx: str) -> str:
    if "wgmma" in ptx:
        return "wgmma"
    if "mma.sync" in ptx:
        return "mma"
    return "none"


def kernel_launches(layout_name: str, family: str, config, M: int | None = None) -> list:
    """The kernel launches (`gemlite.kernels.plan` steps with a Triton kernel; cuBLAS steps compile
    nothing) of a (layout, family, config) call with M rows of x (default: `M_FOR_FAMILY`, and at
    least the config's BLOCK_M: an M of 1 compiles as a constant), planned on "meta" tensors."""
    layout = make_layout(layout_name)
    W_q, scales, zeros = meta_tensors(layout_name, layout)
    if M is None:
        M = max(M_FOR_FAMILY[family], config.BLOCK_M)
    x = torch.empty((M, layout.in_features), dtype=layout.compute_dtype, device="meta")
    if x.dtype == torch.float8_e4m3fn:
        x = x.view(torch.uint8)  # e4m3 codes reach the kernels as their bytes (gemlite.matmul)
    out_dtype, bias_dtype = io_dtypes(layout)
    bias = torch.empty((layout.out_features,), dtype=bias_dtype, device="meta")
    _, launches = plan(family, x, W_q, scales, zeros, bias, layout, out_dtype, config)
    return [step for step in launches if step.kernel is not None]


def compile_launch(launch):
    """`triton.compile` of one planned launch for sm_90 (the compiled kernel: ``asm``, ``metadata``)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature, constexprs, attrs = _signature(launch)
    return triton.compile(
        ASTSource(launch.kernel, signature, constexprs, attrs),
        target=GPUTarget(*TARGET),
        options={"num_warps": launch.num_warps, "num_stages": launch.num_stages},
    )


def compile_one(job: tuple[str, str, dict]) -> list[dict]:
    """Compile the kernel of a (layout, family, config) launch. One result dict per kernel."""
    layout_name, family, cfg_dict = job
    config = autotune.Config.from_dict(cfg_dict)
    results = []
    for launch in kernel_launches(layout_name, family, config):
        entry = {
            "family": family,
            "layout": layout_name,
            "config": config.short(),
            "kernel": launch.kernel.__name__,
            "num_warps": launch.num_warps,
            "num_stages": launch.num_stages,
        }
        t0 = time.time()
        try:
            compiled = compile_launch(launch)
            ptx = compiled.asm["ptx"]
            entry.update(
                ok=True,
                error=None,
                shared=int(compiled.metadata.shared),
                tensor_core=_tensor_core(ptx),
                ld_global=ptx.count("ld.global"),
            )
        except Exception as exc:  # noqa: BLE001 - reported, not hidden: ok=False fails the test
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000], shared=None, tensor_core=None)
        entry["seconds"] = round(time.time() - t0, 2)
        results.append(entry)
    return results


# Layouts compiled with every config of every mode under the covering selection (`all_jobs`): one per
# kind of tile the shared memory holds (packed int32 words, 16-bit weights, byte codes with byte
# scales, int8 x int8, MX activation codes with their scales, e4m3 codes with an fp32 output). The
# others get their default configs (mode False, what an untuned layer launches).
COVER_LAYOUTS = (
    "hqq4_g128_fp16",
    "a16w16_fp16",
    "mxfp8_bf16",
    "a8w8_int8_dyn_fp16",
    "mxfp4_mxfp4_dyn_bf16",
    "a8w8_fp8_codes_f32",
)


def all_jobs(families, layouts, every: bool = True) -> list[tuple[str, str, dict]]:
    """The (layout, family, config) triples to compile. every=True: each config of every mode legal for
    the layout. every=False (the covering selection the CPU test suite compiles, a third of the
    kernels): that on `COVER_LAYOUTS`, and each other layout's default-mode configs. Where every
    config is compiled, a GEMV family whose space has no two-row config (GEMV_SPLITK, GEMV_REVSPLITK)
    also compiles its first config with two rows per program (BLOCK_M = 2)."""
    jobs = []
    for layout_name in layouts:
        layout = make_layout(layout_name)
        full = every or layout_name in COVER_LAYOUTS
        modes = autotune.MODES if full else (False,)
        for family in families:
            seen = []
            for mode in modes:
                for cfg in autotune.legal_configs(family, layout, mode):
                    if cfg not in seen:
                        seen.append(cfg)
            if full and family.startswith("GEMV") and seen and all(c.BLOCK_M == 1 for c in seen):
                pair = dataclasses.replace(seen[0], BLOCK_M=2)
                if autotune.illegal_reason(family, pair, layout) is None:
                    seen.append(pair)
            jobs += [(layout_name, family, cfg.as_dict()) for cfg in seen]
    return jobs


def format_table(results: list[dict]) -> str:
    lines = [f"{'family':<15} {'layout':<20} {'kernel':<24} {'config':<40} {'shared':>7} {'tc':<6} ok"]
    for r in results:
        shared = "-" if r["shared"] is None else str(r["shared"])
        tc = r["tensor_core"] or "-"
        head = f"{r['family']:<15} {r['layout']:<20} {r['kernel']:<24} {r['config']:<40}"
        lines.append(f"{head} {shared:>7} {tc:<6} {r['ok']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="compile processes")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--report", default=None, help="also write a text table here")
    parser.add_argument(
        "--cover",
        action="store_true",
        help="the covering selection: every config on COVER_LAYOUTS, default configs elsewhere",
    )
    args = parser.parse_args(argv)
    if interpreter_active():
        print(
            "compile_check: run with TRITON_INTERPRET unset or 0 (the interpreter cannot compile)",
            file=sys.stderr,
        )
        return 2
    families = [f for f in args.families.split(",") if f]
    layouts = [name for name in args.layouts.split(",") if name]
    for f in families:
        if f not in FAMILIES:
            parser.error(f"--families: unknown family {f!r}; known: {FAMILIES}")
    for name in layouts:
        if name not in LAYOUTS:
            parser.error(f"--layouts: unknown layout {name!r}; known: {list(LAYOUTS)}")
    jobs = all_jobs(families, layouts, every=not args.cover)
    results: list[dict] = []
    if args.jobs <= 1:
        for job in jobs:
            results += compile_one(job)
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for batch in pool.map(compile_one, jobs):
                results += batch
    if args.report:
        with open(args.report, "w") as f:
            f.write(format_table(results))
    json.dump(results, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
