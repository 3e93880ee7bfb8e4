"""DEQUANT: the whole weight dequantized once into a ``[K, N]`` scratch tensor of the activation dtype,
for the large-M path that hands the product to cuBLAS (a GEMM config with ``DEQUANT=1``).

At prefill sizes a fused kernel pays its dequantization inside a compute-bound loop; writing the
dequantized weight once costs ``K * N * (bits / 8 + 2)`` bytes of traffic (about 0.15 ms for an
8192 x 28672 4-bit weight on an H200) against a GEMM of milliseconds at M = 4096, and cuBLAS's GEMM
runs near the tensor cores' peak. Each program dequantizes one ``[BLOCK_K, BLOCK_N]`` tile exactly as
the fused kernels do (fp32, one rounding to the activation dtype); post-scaled layouts get their
channel scale here too, since cuBLAS has no per-column scale epilogue.

Both operands (`WeightLayout.operands_scratch`: MX / NVFP4 weights or activations, activations
quantized at run time): `dequant_act_kernel` writes x's dequantized codes ``[M, K]`` and this kernel the
weight's ``[K, N]``, both bf16 and exact (the values the fused K loop's bf16 dot multiplies), for a
cuBLAS product whose fp32 accumulator then takes the row scales or the two NVFP4 tensor scales.

CODES_NK (packed codes with float zeros against e4m3 activation codes, ``WeightLayout.codes_scratch``):
the exact codes instead, as e4m3 bytes in an ``[N, K]`` scratch (K contiguous, the layout an 8-bit
wgmma operand takes), which the GEMM then reads through typed loads as it reads an FP8 weight, with the
layout's group scales and zeros (`gemlite.kernels.plan`). K * N bytes written, against a K loop that
otherwise unpacks and converts every code in every output tile's program.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gemlite.kernels.common import (
    XQ_FP8,
    XQ_NVFP4,
    dequantize,
    dequantize_mx,
    is_mx,
    load_act_mx,
    load_bias,
    load_codes,
    load_group_meta,
    nvfp4_out_scale,
)


@triton.jit
def dequant_kernel(
    # Pointers
    w_ptr,  # weight (gemlite/layout.py): packed [K // E, N] or [N, K]
    s_ptr,  # scales [K // GROUP, N] (or [1, N]); unused for FLOAT
    z_ptr,  # float zeros, same layout as scales (ZERO_FLOAT only)
    out_ptr,  # [K, N] dequantized weight, N contiguous, in the compute dtype
    # Sizes
    N,
    K,
    zero_int,  # the integer zero-point (ZERO_INT only)
    # Strides
    stride_wk,
    stride_wn,
    stride_sg,
    # Weight layout (WeightLayout.constexprs, from its scheme)
    W_KIND: tl.constexpr,
    W_BITS: tl.constexpr,
    ELEMS_PER_WORD: tl.constexpr,
    GROUP_SIZE: tl.constexpr,
    ZERO_MODE: tl.constexpr,
    POST_SCALE: tl.constexpr,
    PRE_SCALE: tl.constexpr,
    X_QUANT: tl.constexpr,  # NVFP4 activations: the weight's tensor scale is left for after the product
    EVEN_K: tl.constexpr,
    CODES_NK: tl.constexpr,  # write the exact codes' e4m3 bytes to out [N, K] (uint8) instead
    # Tile configuration
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[k0:k0+BLOCK_K, n0:n0+BLOCK_N] = dequant(W) for program (k tile, n tile)."""
    k0 = tl.program_id(0) * BLOCK_K
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = k0 + tl.arange(0, BLOCK_K)
    mask_n = offs_n < N
    codes = load_codes(w_ptr, k0, offs_n, mask_n, K, stride_wk, stride_wn,
                       W_KIND, W_BITS, ELEMS_PER_WORD, BLOCK_K, BLOCK_N, not EVEN_K)  # fmt: skip
    mask = (offs_k < K)[:, None] & mask_n[None, :]
    if CODES_NK:
        # The e4m3 byte of an integer code q < 16 from q's fp32 bits (exponent 0..3, at most 3 mantissa
        # bits below the leading one; 0 for q = 0), by integer operations as the quantizer builds its
        # bytes (`gemlite.kernels.act_quant`: the interpreter's float-to-fp8 cast is not trusted). Not
        # the quantizer's `_e4m3_byte`: an exact integer needs none of its rounding, and calling it took
        # this kernel from 528 to 1368 sm_90 SASS instructions a program (estimated from the counts:
        # ~0.1 ms more issue time at 8192x28672; not timed).
        bits = codes.to(tl.float32).to(tl.int32, bitcast=True)
        byte = tl.where(codes == 0, 0, (((bits >> 23) - 120) << 3) | ((bits >> 20) & 7))
        ptrs = out_ptr + offs_n.to(tl.int64)[None, :] * K + offs_k[:, None]
        tl.store(ptrs, byte.to(tl.uint8), mask=mask)
    else:
        scale = tl.zeros((BLOCK_N,), dtype=tl.float32)
        zero = tl.zeros((BLOCK_N,), dtype=tl.float32)
        if PRE_SCALE or POST_SCALE:
            group = 0
            if GROUP_SIZE > 0:
                group = k0 // GROUP_SIZE  # BLOCK_K divides GROUP_SIZE: one group per tile
            scale, zero = load_group_meta(s_ptr, z_ptr, group, offs_n, mask_n, stride_sg, ZERO_MODE)
        if is_mx(W_KIND):  # MX / NVFP4: scale groups of 32 (16) inputs inside the tile
            codes = dequantize_mx(codes, s_ptr, z_ptr, k0, K, offs_n, mask_n, stride_sg, W_KIND, BLOCK_K,
                                  BLOCK_N, X_QUANT != XQ_NVFP4)  # fmt: skip
        w = dequantize(codes, scale[None, :], zero[None, :], zero_int, W_KIND, ZERO_MODE, POST_SCALE,
                       tl.float32)  # fmt: skip
        if POST_SCALE:
            w = w * scale[None, :]
        ptrs = out_ptr + offs_k.to(tl.int64)[:, None] * N + offs_n[None, :]
        tl.store(ptrs, w.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def dequant_act_kernel(
    x_ptr,  # the quantizer's codes: e4m3 bytes [M, K], or two e2m1 codes per byte [M, K // 2]
    xs_ptr,  # microscaled activations: their scale bytes [M, K // G] (unused for per-token e4m3 codes)
    out_ptr,  # [M, K] bf16: the values the fused K loop's bf16 dot takes
    M,
    K,
    stride_xm,  # bytes per row of codes
    X_QUANT: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[m0:m0+BLOCK_M, k0:k0+BLOCK_K] = x's dequantized codes (`WeightLayout.operands_scratch`):
    value(code) * scale for microscaled activations (`common.load_act_mx`; NVFP4's tensor scale is
    left for the accumulator), the e4m3 value itself for per-token codes (their row scale likewise).
    Exact in bf16 (`common.load_act_mx`)."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rows = offs_m.to(tl.int64)[:, None]
    mask = (offs_m < M)[:, None] & (offs_k < K)[None, :]
    if X_QUANT == XQ_FP8:
        b = tl.load(x_ptr + rows * stride_xm + offs_k[None, :], mask=mask, other=0)
        v = b.to(tl.float8e4nv, bitcast=True).to(tl.float32)
    else:
        v = load_act_mx(x_ptr, xs_ptr, rows, offs_k[None, :], mask, K, stride_xm, X_QUANT)
    tl.store(out_ptr + rows * K + offs_k[None, :], v.to(tl.bfloat16), mask=mask)


@triton.jit
def scale_cast_kernel(
    acc_ptr,  # [M, N] fp32: cuBLAS's product of the two bf16 scratch operands
    xs_ptr,  # per-token codes: the fp32 row scales [M]
    xt_ptr,  # NVFP4: the activations' fp32 [amax, ts]
    z_ptr,  # NVFP4: the weight's tensor scale
    b_ptr,  # bias [N] (HAS_BIAS only)
    out_ptr,  # [M, N] output
    M,
    N,
    X_QUANT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """out = acc * (x's row scale, or NVFP4's 1 / (ts_x * ts_w)) + bias, one rounding: the fused
    GEMM's epilogue (`gemm.gemm_kernel`, `common.write_result`) on the product of
    `WeightLayout.operands_scratch`'s operands. One pass over the fp32 product (torch's multiply, add
    and cast would take three)."""
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m = offs_m < M
    mask_n = offs_n < N
    offs_mn = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    acc = tl.load(acc_ptr + offs_mn, mask=mask, other=0.0)
    if X_QUANT == XQ_NVFP4:
        acc = acc * nvfp4_out_scale(xt_ptr, z_ptr)
    elif X_QUANT == XQ_FP8:
        acc = acc * tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)[:, None]
    if HAS_BIAS:
        acc = acc + load_bias(b_ptr, offs_n, mask_n)[None, :]
    tl.store(out_ptr + offs_mn, acc.to(out_ptr.dtype.element_ty), mask=mask)
