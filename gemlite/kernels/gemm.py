"""GEMM: tensor-core tiles, with or without a K split (GEMM_SPLITK: small and medium M; GEMM: large M;
the two differ only in their config spaces and in GEMM's DEQUANT alternative).

Each program owns a ``[BLOCK_M, BLOCK_N]`` output tile and K split ``pid_k`` of SPLIT_K: it walks K
tiles ``pid_k, pid_k + SPLIT_K, ...`` (interleaved, so concurrently running splits read neighbouring
weight rows) in BLOCK_K steps, dequantizing each weight tile in registers (fp32, then one rounding to
the activation dtype) and feeding ``tl.dot`` with fp32 accumulation. At a few tens of rows the
output tiles alone leave most SMs idle, and splitting K multiplies the programs (and the weight
bytes in flight); their partials are combined in the same launch (`common.write_result`). With
SPLIT_K = 1 the tile is written once, deterministic by construction. Tiles are visited in grouped
order (GROUP_M tile-rows share their weight columns while they are in L2), as in Triton's matmul
tutorial.

Dynamic activations (``X_QUANT``): x arrives as int8 / e4m3 codes and the weight tile as its exact
codes, so the dot is int8 x int8 (int32 accumulator) or e4m3 x e4m3; per-row scales multiply the
accumulator after the K loop, per-group weight scales (HQQ groups, 128 x 128 blocks) and per-block
activation scales (``X_GROUP``) multiply each K tile's product in fp32 (``common.py``: numerics).
Codes given by the caller without scales (``X_SCALE`` off) meet weight codes without scales: the int8
dot's int32 accumulator then reaches `common.write_result` as it is.
Microscaled activations (MXFP8 / MXFP4 / NVFP4 codes with byte scales per 32 / 16 inputs) are
dequantized per K tile into bf16 (exact) and meet the MX / NVFP4 weight tile dequantized the same way
in a bf16 dot; NVFP4's two tensor scales multiply the accumulator after the K loop.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gemlite.kernels.common import (
    KIND_FP8,
    KIND_INT8,
    KIND_PACKED,
    SUM_CHUNK,
    XQ_FP8,
    XQ_INT8,
    XQ_NONE,
    XQ_NVFP4,
    ZERO_FLOAT,
    act_operand,
    dequantize,
    dequantize_mx,
    dequantize_words,
    dot_acc,
    is_mx,
    is_mx_act,
    load_act_mx,
    load_codes,
    load_group_meta,
    load_words,
    nvfp4_out_scale,
    write_result,
)


@triton.jit
def _load_typed(x_rows, w_cols, k_idx, stride_wk, mask_m, mask_n):
    """An x tile and a weight tile of 8-bit codes, loaded typed as the dot takes them (no K mask)."""
    x = tl.load(x_rows + k_idx[None, :], mask=mask_m[:, None])
    w = tl.load(w_cols + k_idx[:, None] * stride_wk, mask=mask_n[None, :])
    return x, w


@triton.jit
def gemm_kernel(
    # Pointers
    x_ptr,  # [M, K] activations: compute dtype, or int8 / e4m3-byte codes (X_QUANT); MXFP4/NVFP4 [M, K // 2]
    xs_ptr,  # activation scales (X_QUANT only): fp32 [M] or [M, K // X_GROUP]; MX / NVFP4: bytes
    xt_ptr,  # NVFP4 activations: fp32 [amax, ts] of the call's x (unused otherwise)
    xsum_ptr,  # 8-bit activations against float zeros: fp32 sums of SUM_CHUNK codes [M, cdiv(K, SUM_CHUNK)]
    w_ptr,  # weight (gemlite/layout.py): packed [K // E, N] or [N, K]
    s_ptr,  # scales [K // GROUP, N] (or [1, N]); unused for FLOAT
    z_ptr,  # float zeros, same layout as scales (ZERO_FLOAT only)
    b_ptr,  # bias [N] (HAS_BIAS only)
    out_ptr,  # [M, N] output, contiguous
    ws_ptr,  # fp32 workspace for partial sums (WRITE_PARTIAL / WRITE_ATOMIC)
    lock_ptr,  # int32 counters, one per output tile, zero between launches (split K only)
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
    POST_SCALE: tl.constexpr,  # scales multiply the accumulator (exact codes in the dot)
    PRE_SCALE: tl.constexpr,  # scales (and float zeros) multiply each weight in the K loop
    X_QUANT: tl.constexpr,  # common.XQ_*: how x is stored (the activation scheme's constant)
    X_GROUP: tl.constexpr,  # K per activation scale (128: 1 x 128 blocks, applied per K tile); 0: per row
    X_SCALE: tl.constexpr,  # x's codes come with fp32 scales (False: fp16/bf16 x, MX, codes given as is)
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks
    TILE_PAIRS: tl.constexpr,  # K % (2 * SPLIT_K * BLOCK_K) == 0: each split walks an even number of K tiles
    WRITE_MODE: tl.constexpr,  # common.WRITE_*
    # Tile configuration
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SPLIT_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """y[M, N] (or this split's partial of it) = x[M, K] @ dequant(W)[K, N] (+ bias)."""
    # -- 1. map program ids to an output tile (grouped order) and a K split -------------------------
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    num_pid_in_group = GROUP_M * num_pid_n
    group_id = pid // num_pid_in_group
    first_pid_m = group_id * GROUP_M
    group_size_m = min(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((pid % num_pid_in_group) % group_size_m)
    pid_n = (pid % num_pid_in_group) // group_size_m

    # -- 2. offsets of the tile ------------------------------------------------------------------
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    x_rows = x_ptr + offs_m.to(tl.int64)[:, None] * stride_xm

    # Channel-wise pre-scale metadata is one row for all of K: load it once.
    scale = tl.zeros((BLOCK_N,), dtype=tl.float32)
    zero = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if PRE_SCALE and GROUP_SIZE == 0:
        scale, zero = load_group_meta(s_ptr, z_ptr, 0, offs_n, mask_n, stride_sg, ZERO_MODE)

    # -- 3. walk this split's K tiles: load x, unpack + dequantize W, accumulate on tensor cores ------
    if X_QUANT == XQ_INT8 and not PRE_SCALE:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)  # int8 x int8: exact
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    # 8-bit codes against 8-bit activations of the same type (channel scales after the loop, or 128 x
    # 128 blocks per tile): both dot operands load straight from memory typed as the dot takes them.
    # An op between a load and the dot (the byte loads' bitcasts) makes Triton's pipeliner stage the
    # tile through registers (LDS, STS into the operand's layout) and wait on each wgmma; typed loads
    # go to shared memory by async copies and feed the wgmma as they are (NOTES 2026-12-07, third
    # session). No `other`: a masked row of x or column of W only reaches output elements never
    # written. Without EVEN_K the K tail must read zeros (0 * NaN), and the byte path below does that.
    DIRECT_8BIT: tl.constexpr = EVEN_K and (
        (X_QUANT == XQ_FP8 and W_KIND == KIND_FP8) or (X_QUANT == XQ_INT8 and W_KIND == KIND_INT8)
    )
    if DIRECT_8BIT:
        if X_QUANT == XQ_FP8:
            x_typed = x_ptr.to(tl.pointer_type(tl.float8e4nv))
            w_typed = w_ptr.to(tl.pointer_type(tl.float8e4nv))
        else:
            x_typed = x_ptr.to(tl.pointer_type(tl.int8))
            w_typed = w_ptr.to(tl.pointer_type(tl.int8))
        x_rows_typed = x_typed + offs_m.to(tl.int64)[:, None] * stride_xm
        w_cols_typed = w_typed + offs_n.to(tl.int64)[None, :] * stride_wn
    k_first = pid_k * BLOCK_K
    # e4m3 x e4m3 against channel scales: each tile's product is promoted to the fp32 accumulator
    # (`common.dot_acc`), and Triton waits for a tile's wgmma right after issuing it, so the tensor
    # cores idle while the 64 FADDs a thread of its promotion issue (sm_90 SASS). Here two tiles an
    # iteration, each product added one iteration late: each tile's FADDs issue under the other tile's
    # wgmma. The same sums in the same order (H100, BM128 BN128 BK128 w8 s3 at M = 4096: 0.86-0.88x
    # the one-tile loop's time; suites/perf/NOTES.md, 2026-12-07 fifth session). Only where every split
    # walks an even number of tiles (TILE_PAIRS): a second loop for an odd tile made ptxas serialize
    # the wgmmas of this one. And only for 128-row tiles (one program an SM, two warpgroups): a 64-row
    # tile leaves room for two programs an SM, one adding while the other's wgmma runs, and paired its
    # stages double (BM64 BN128 BK128 s4: 192 KB, one program an SM, spills). Larger tiles hold more
    # than three 64-register accumulators a thread: BM256 BN128 BK64 paired spilled 1034 LDL/STL.
    PAIRED: tl.constexpr = BLOCK_M == 128 and BLOCK_N <= 128
    if DIRECT_8BIT and X_QUANT == XQ_FP8 and not PRE_SCALE and TILE_PAIRS and PAIRED:
        STEP: tl.constexpr = SPLIT_K * BLOCK_K
        lag0 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        lag1 = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(k_first, K, 2 * STEP):
            x_a, w_a = _load_typed(x_rows_typed, w_cols_typed, k0 + offs_k, stride_wk, mask_m, mask_n)
            x_b, w_b = _load_typed(x_rows_typed, w_cols_typed, k0 + STEP + offs_k, stride_wk, mask_m, mask_n)
            acc += lag0
            lag0 = tl.dot(x_a, w_a)  # a fresh accumulator: BLOCK_K products in the MMA, as in dot_acc
            acc += lag1
            lag1 = tl.dot(x_b, w_b)
        acc += lag0
        acc += lag1
        k_first = K  # (the loop below is then empty, and compiled away)
    for k0 in range(k_first, K, SPLIT_K * BLOCK_K):
        k_idx = k0 + offs_k
        if DIRECT_8BIT:
            x, w = _load_typed(x_rows_typed, w_cols_typed, k_idx, stride_wk, mask_m, mask_n)
        elif is_mx_act(X_QUANT):
            # Microscaled activations: codes x scales, exact in bf16 (common.load_act_mx).
            x = load_act_mx(x_ptr, xs_ptr, offs_m.to(tl.int64)[:, None], k_idx[None, :], mask_m[:, None], K,
                            stride_xm, X_QUANT).to(tl.bfloat16)  # fmt: skip
        elif EVEN_K:
            x = tl.load(x_rows + k_idx[None, :], mask=mask_m[:, None], other=0.0)
        else:
            x = tl.load(x_rows + k_idx[None, :], mask=mask_m[:, None] & (k_idx < K)[None, :], other=0.0)
        if GROUP_SIZE > 0:
            # BLOCK_K divides GROUP_SIZE (autotune legality), so the tile lies in one group.
            scale, zero = load_group_meta(
                s_ptr, z_ptr, k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE
            )
        if not DIRECT_8BIT:
            # Pre-scaled packed codes against fp16/bf16 x: dequantized from the words in place.
            FROM_WORDS: tl.constexpr = (W_KIND == KIND_PACKED and PRE_SCALE and not POST_SCALE
                                        and X_QUANT == XQ_NONE and BLOCK_K % ELEMS_PER_WORD == 0)  # fmt: skip
            if FROM_WORDS:
                codes = load_words(w_ptr, k0, offs_n, mask_n, K, stride_wk, stride_wn, ELEMS_PER_WORD,
                                   BLOCK_K, not EVEN_K)  # fmt: skip
            else:
                codes = load_codes(w_ptr, k0, offs_n, mask_n, K, stride_wk, stride_wn,
                                   W_KIND, W_BITS, ELEMS_PER_WORD, BLOCK_K, BLOCK_N, not EVEN_K)  # fmt: skip
            if is_mx(W_KIND):
                # MX / NVFP4: the tile holds BLOCK_K / 32 (16) scale groups (or lies inside one).
                codes = dequantize_mx(codes, s_ptr, z_ptr, k0, K, offs_n, mask_n, stride_sg,
                                      W_KIND, BLOCK_K, BLOCK_N, X_QUANT != XQ_NVFP4)  # fmt: skip
            x = act_operand(x, X_QUANT)
            if is_mx(W_KIND) and X_QUANT != XQ_NONE:
                # e4m3 codes against MX weights (exact in bf16, not in e4m3): a bf16 dot
                x = x.to(tl.bfloat16)
            if FROM_WORDS:
                w = dequantize_words(codes, scale, zero, zero_int, W_BITS, ELEMS_PER_WORD, ZERO_MODE,
                                     x.dtype)
            else:
                # Quantized activations meet the weight's exact codes (common.py: numerics).
                w = dequantize(
                    codes,
                    scale[None, :],
                    zero[None, :],
                    zero_int,
                    W_KIND,
                    ZERO_MODE,
                    POST_SCALE or X_QUANT != XQ_NONE,
                    x.dtype,
                )
        if PRE_SCALE and X_QUANT != XQ_NONE:
            # HQQ groups (or 128 x 128 weight blocks) with 8-bit activations: this tile's exact-code
            # product, then its group's zero (through the tile's row sums of x) and scale, in fp32.
            # (A K tile lies in one group, and in one activation block.)
            if X_QUANT == XQ_INT8:
                part = dot_acc(x, w, tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)).to(tl.float32)
            else:
                part = dot_acc(x, w, tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32))
            if ZERO_MODE == ZERO_FLOAT:
                # The tile's row sums of x, from the quantizer's sums of SUM_CHUNK codes (exact; adding
                # up the x tile here cost ~100 of the 631 K-loop instructions of a 4-bit BM128 BN128 BK64
                # tile, sm_90 SASS: x back from shared memory, converted, summed).
                n_chunks = tl.cdiv(K, SUM_CHUNK)
                offs_c = k0 // SUM_CHUNK + tl.arange(0, BLOCK_K // SUM_CHUNK)
                sums = tl.load(xsum_ptr + offs_m.to(tl.int64)[:, None] * n_chunks + offs_c[None, :],
                               mask=mask_m[:, None] & (offs_c < n_chunks)[None, :], other=0.0)  # fmt: skip
                part = part - tl.sum(sums, axis=1)[:, None] * zero[None, :]
            if X_GROUP > 0:
                xs_blk = xs_ptr + offs_m.to(tl.int64) * (K // X_GROUP) + k0 // X_GROUP
                part = part * tl.load(xs_blk, mask=mask_m, other=0.0)[:, None]
            acc += part * scale[None, :]
        else:
            acc = dot_acc(x, w, acc)

    # -- 4. epilogue: per-row activation scale; per-column scale, bias, cast, store (or this split's
    #       partial: scaling is linear, so each partial carries its rows' scales) -----------------------
    if X_QUANT == XQ_NVFP4:
        acc = acc * nvfp4_out_scale(xt_ptr, z_ptr)  # both tensor scales, left out of the dot's operands
    elif X_SCALE and X_GROUP == 0:
        acc = acc.to(tl.float32) * tl.load(xs_ptr + offs_m, mask=mask_m, other=0.0)[:, None]
    offs_mn = offs_m.to(tl.int64)[:, None] * N + offs_n[None, :]
    mask = mask_m[:, None] & mask_n[None, :]
    write_result(
        acc, offs_mn, mask, offs_n[None, :], mask_n[None, :], pid_k, pid, MN, out_ptr, ws_ptr, lock_ptr,
        s_ptr, b_ptr, WRITE_MODE, POST_SCALE, HAS_BIAS,
    )  # fmt: skip
