"""GEMV_REVSPLITK: GEMV with one short K slice per program, two chunks sharing one scale load.

Public GemLite's decode kernel for packed low-bit weights. Every program reduces exactly
``2 * BLOCK_K`` consecutive K elements of one activation row against BLOCK_N columns: the K axis is
split as finely as the tile allows (``cdiv(K, 2 * BLOCK_K)`` programs per column block), which puts a
large number of independent weight loads in flight at M = 1. The two BLOCK_K chunks lie in one scale
group (legality: ``2 * BLOCK_K`` divides the group size), so the group's scales and zeros are loaded
once for both. Per-split partial sums are combined as `common` describes (fixed-order reduction by
default, fp32 atomics only when determinism is off).
"""

from __future__ import annotations

import triton
import triton.language as tl

from gemlite.kernels.common import (
    dequantize,
    load_codes,
    load_group_meta,
    write_result,
)


@triton.jit
def gemv_revsplitk_kernel(
    # Pointers
    x_ptr,  # [M, K] activations, compute dtype
    w_ptr,  # weight (layout.py): packed [K // E, N] or [N, K]
    s_ptr,  # scales [K // GROUP, N] (or [1, N]); unused for FLOAT
    z_ptr,  # float zeros, same layout as scales (ZERO_FLOAT only)
    b_ptr,  # bias [N] (HAS_BIAS only)
    out_ptr,  # [M, N] output, contiguous
    ws_ptr,  # fp32 workspace for partial sums (WRITE_PARTIAL / WRITE_ATOMIC)
    # Sizes
    M,
    N,
    K,
    MN,  # M * N (int64 when large): the size of one workspace slice
    zero_int,  # the integer zero-point (ZERO_INT only)
    # Strides
    stride_xm,
    stride_wk,
    stride_wn,
    stride_sg,
    # Weight layout (WeightLayout.constexprs, from its scheme)
    W_KIND: tl.constexpr,
    W_BITS: tl.constexpr,
    ELEMS_PER_WORD: tl.constexpr,
    GROUP_SIZE: tl.constexpr,  # K per scale row; 0 = one row for all of K
    ZERO_MODE: tl.constexpr,
    POST_SCALE: tl.constexpr,  # scales multiply the accumulator (exact codes)
    PRE_SCALE: tl.constexpr,  # scales (and float zeros) multiply each weight
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % (2 * BLOCK_K) == 0: no K masks
    WRITE_MODE: tl.constexpr,  # common.WRITE_*
    # Tile configuration
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Partial y[m, n-block] over K slice [2 * BLOCK_K * pid_k, 2 * BLOCK_K * (pid_k + 1))."""
    # -- 1. map program ids to (row, column block, K slice) ----------------------------------------
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = pid % M  # the rows of one column block run side by side and share its weight in L2
    pid_n = pid // M

    # -- 2. offsets of the two chunks ---------------------------------------------------------------
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    k_base = pid_k * (2 * BLOCK_K)
    k_lo = k_base + tl.arange(0, BLOCK_K)
    k_hi = k_lo + BLOCK_K
    mask_lo = k_lo < K
    mask_hi = k_hi < K
    x_row = x_ptr + pid_m.to(tl.int64) * stride_xm

    # -- 3. issue every load first (both chunks), then dequantize and reduce ---------------------
    x_lo = tl.load(x_row + k_lo, mask=mask_lo, other=0.0).to(tl.float32)
    x_hi = tl.load(x_row + k_hi, mask=mask_hi, other=0.0).to(tl.float32)
    codes_lo = load_codes(w_ptr, k_base, offs_n, mask_n, K, stride_wk, stride_wn,
                          W_KIND, W_BITS, ELEMS_PER_WORD, BLOCK_K, BLOCK_N, not EVEN_K)  # fmt: skip
    codes_hi = load_codes(w_ptr, k_base + BLOCK_K, offs_n, mask_n, K, stride_wk, stride_wn,
                          W_KIND, W_BITS, ELEMS_PER_WORD, BLOCK_K, BLOCK_N, not EVEN_K)  # fmt: skip
    scale = tl.zeros((BLOCK_N,), dtype=tl.float32)
    zero = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if PRE_SCALE:
        # One group for both chunks: 2 * BLOCK_K divides GROUP_SIZE (autotune legality).
        group = 0
        if GROUP_SIZE > 0:
            group = k_base // GROUP_SIZE
        scale, zero = load_group_meta(s_ptr, z_ptr, group, offs_n, mask_n, stride_sg, ZERO_MODE)
    w_lo = dequantize(codes_lo, scale, zero, zero_int, W_KIND, ZERO_MODE, POST_SCALE, tl.float32)
    w_hi = dequantize(codes_hi, scale, zero, zero_int, W_KIND, ZERO_MODE, POST_SCALE, tl.float32)
    acc = tl.sum(x_lo[:, None] * w_lo, axis=0) + tl.sum(x_hi[:, None] * w_hi, axis=0)

    # -- 4. write the row block (final) or this slice's partial -------------------------------------
    offs_mn = pid_m.to(tl.int64) * N + offs_n
    write_result(
        acc, offs_mn, mask_n, offs_n, mask_n, pid_k, MN, out_ptr, ws_ptr, s_ptr, b_ptr,
        WRITE_MODE, POST_SCALE, HAS_BIAS,
    )  # fmt: skip
