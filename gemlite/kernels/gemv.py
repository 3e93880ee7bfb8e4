"""GEMV: one activation row per program, CUDA-core FMAs reduced with ``tl.sum`` (decode, M of 1-4).

Program (m, column block, K split) walks its contiguous K range in BLOCK_K steps: it loads
``x[m, k:k+BLOCK_K]`` and the ``[BLOCK_K, BLOCK_N]`` weight tile, dequantizes the tile in fp32 (no
rounding to fp16/bf16 at all: there is no tensor core to feed), and adds ``sum_k x * w`` to a
``[BLOCK_N]`` fp32 accumulator. SPLIT_K programs per column block keep enough weight bytes in flight
at M = 1; their partials are combined as `common` describes (fixed-order reduction by default).
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
def gemv_kernel(
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
    K_PER_SPLIT,  # K elements per split, a multiple of BLOCK_K
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
    PRE_SCALE: tl.constexpr,  # scales (and float zeros) multiply each weight in the K loop
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks
    WRITE_MODE: tl.constexpr,  # common.WRITE_*
    # Tile configuration
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Partial y[m, n-block] over K split program_id(1); see the module docstring."""
    # -- 1. map program ids to (row, column block, K split) ----------------------------------------
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    pid_m = pid % M  # the rows of one column block run side by side and share its weight in L2
    pid_n = pid // M

    # -- 2. offsets ----------------------------------------------------------------------------------
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_n = offs_n < N
    x_row = x_ptr + pid_m.to(tl.int64) * stride_xm

    scale = tl.zeros((BLOCK_N,), dtype=tl.float32)
    zero = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if PRE_SCALE and GROUP_SIZE == 0:
        scale, zero = load_group_meta(s_ptr, z_ptr, 0, offs_n, mask_n, stride_sg, ZERO_MODE)

    # -- 3. walk this split's K range --------------------------------------------------------------
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    k_start = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    for k0 in range(k_start, k_end, BLOCK_K):
        k_idx = k0 + offs_k
        mask_k = k_idx < K
        x = tl.load(x_row + k_idx, mask=mask_k, other=0.0).to(tl.float32)
        codes = load_codes(w_ptr, k0, offs_n, mask_n, K, stride_wk, stride_wn,
                           W_KIND, W_BITS, ELEMS_PER_WORD, BLOCK_K, BLOCK_N, not EVEN_K)  # fmt: skip
        if GROUP_SIZE > 0:
            # BLOCK_K divides GROUP_SIZE and K_PER_SPLIT is a multiple of BLOCK_K: one group per step.
            scale, zero = load_group_meta(
                s_ptr, z_ptr, k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE
            )
        w = dequantize(codes, scale, zero, zero_int, W_KIND, ZERO_MODE, POST_SCALE, tl.float32)
        acc += tl.sum(x[:, None] * w, axis=0)

    # -- 4. write the row block (final) or this split's partial -------------------------------------
    offs_mn = pid_m.to(tl.int64) * N + offs_n
    write_result(
        acc, offs_mn, mask_n, offs_n, mask_n, pid_k, MN, out_ptr, ws_ptr, s_ptr, b_ptr,
        WRITE_MODE, POST_SCALE, HAS_BIAS,
    )  # fmt: skip
