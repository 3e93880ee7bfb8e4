"""GEMV: one or two activation rows per program, CUDA-core FMAs, fp32 dequantization (decode, M of 1-2).

Program (row m, column block, K split) walks its contiguous K range in BLOCK_K steps, two per loop
iteration with both weight tiles loaded before either is used (two tiles of bytes in flight). Each step
loads a ``[BLOCK_K // E, E, BLOCK_N]`` weight tile (``E`` codes per packed word, 1 for unpacked
weights): packed words ``[K // E, N]`` are read along N, unpacked ``[N, K]`` weights along K, both
as wide coalesced loads. It dequantizes the tile in fp32 (no rounding to fp16/bf16 at all: there is
no tensor core to feed), multiplies it by the matching slice of ``x[m]`` and adds the products of a
word's E codes (held by one thread) into a ``[BLOCK_K // E, BLOCK_N]`` fp32 accumulator; one
reduction over its leading axis at the end gives the ``[BLOCK_N]`` result. Pre-scaled packed codes
(HQQ) are summed per word before their scale (`_grouped_partial`); against fp16 x or int8 / e4m3 codes
their fields are read as fp32 subnormals, with no integer-to-float conversion (`_fields_subnormal`);
where an iteration's two steps always share a scale group, their sums are added before the group's
scale and zero, loaded and applied once (`_paired_partial`).
SPLIT_K programs per column block keep enough weight bytes in flight at M = 1; their partials are
combined in the same launch (`common.write_result`: fixed-order, deterministic by default).

BLOCK_M = 2: the program multiplies two rows of x into every weight tile it loads, each into its own
accumulator, so the weight is read once for the pair; the unpacking of a tile (the same operations on
the same raw words) is computed once for both rows by the compiler (sm_90 SASS, A16W4 g128 fp16:
K loop 654 instructions for two rows at BN32 BK128 against 432 for one at BN64 BK128,
`tools/sass_count.py --M 2`). Each row's sums are formed exactly as in a one-row program, so the
output is bitwise the same.

The families GEMV, GEMV_SPLITK and GEMV_REVSPLITK all run this kernel; they differ only in how K is
split (`gemlite.kernels.plan`) and in their config spaces.

Microscaled activations (MXFP8 / MXFP4 / NVFP4, ``X_QUANT``) are dequantized in fp32 from their codes
and byte scales (`common.load_act_mx`, exact), against the weight dequantized in fp32 (NVFP4: without
its tensor scale; both tensor scales multiply the row's sum at the end).

int8 activation codes given without scales (A8W8_INT8, ``X_SCALE`` off) against int8 weight codes
are multiplied and summed in int32 instead (exact: an int32 output is bit for bit the true sum).
"""

from __future__ import annotations

import triton
import triton.language as tl

from gemlite.kernels.common import (
    KIND_FP8,
    KIND_INT8,
    KIND_MXFP4,
    KIND_NVFP4,
    KIND_PACKED,
    XQ_FP8,
    XQ_INT8,
    XQ_NVFP4,
    ZERO_FLOAT,
    ZERO_INT,
    act_operand,
    dequantize,
    dequantize_mx_rows,
    e2m1_fields,
    fields_in_place,
    is_mx,
    is_mx_act,
    is_packed,
    load_act_mx,
    load_group_meta,
    mx_scales,
    nvfp4_out_scale,
    pow2,
    write_result,
)

#: ``2**-SUB_SHIFT``: the scale of the grouped sums formed from subnormal fields (`_fields_subnormal`).
SUB_SHIFT = tl.constexpr(37)


@triton.jit
def _fields_subnormal(words, W_BITS: tl.constexpr, E: tl.constexpr):
    """The E codes of packed words ``[R, 1, BLOCK_N]`` as fp32 subnormals, with no conversion at all:
    ``(v, inv)`` with v ``[R, E, BLOCK_N]`` the bits of field j masked where they sit, read as a
    float, ``q_j * 2**(p_j - 149)``, and inv ``[1, E, 1]`` the x factor ``2**(149 - SUB_SHIFT - p_j)``,
    so that ``(x * inv) * v = x q 2**-SUB_SHIFT`` exactly.

    Bits 0-23 read as a float with the other bits 0 are that integer times 2**-149 (exponent field 0
    or 1: the subnormals and the lowest binade are both spaced 2**-149). Fields above bit 23 are
    taken from the word shifted down by 8 (one shift per word, shared by those fields), so ``p_j`` is
    the field's position after that. Against `common.fields_in_place` this drops the I2FP per weight
    (2 instructions per weight with the FMA, 3 before). sm_90 FFMA and PTX ``fma.rn.f32`` (Triton
    emits no ``.ftz``) take subnormal operands exactly and at full rate.
    """
    pos = tl.arange(0, E)[None, :, None] * W_BITS
    high = pos >= 24
    src = tl.where(high, words.to(tl.int32) >> 8, words.to(tl.int32))  # folds: pos is per register
    pos_in = tl.where(high, pos - 8, pos)
    v = (src & (((1 << W_BITS) - 1) << pos_in)).to(tl.float32, bitcast=True)
    inv = (((127 + 149) - pos_in - SUB_SHIFT) << 23).to(tl.float32, bitcast=True)
    return v, inv


@triton.jit
def _e2m1_fields(words, E: tl.constexpr):
    """The E e2m1 codes of packed words ``[R, 1, BLOCK_N]`` (code j at bits 4j..4j+3) as fp32
    ``value * 2**-126`` (`common.e2m1_fields`), without cutting the codes out first: each is masked in
    place at its bit p (three integer instructions a code: mask, multiply, mask). Codes at bit 24 and up
    are first taken from the word shifted down by 8 (one shift a word, shared by both). Two shifts and
    two masks a code before (ptxas fused no pair of them)."""
    pos = tl.arange(0, E)[None, :, None] * 4
    w = words.to(tl.int32)  # words of 8 or 32 bits (the masks drop a sign extension)
    high = pos >= 24
    src = tl.where(high, w >> 8, w)  # folds: pos is per register
    p = tl.where(high, pos - 8, pos)
    return e2m1_fields(src & (15 << p), p)


@triton.jit
def _e2m1_step(raw, x, k0, offs_r, offs_n, mask_n, K, s_ptr, z_ptr, stride_sg, W_KIND: tl.constexpr,
               E: tl.constexpr, X_QUANT: tl.constexpr, SUBNORMAL: tl.constexpr):  # fmt: skip
    """One K step of MXFP4 / NVFP4 words: ``[ROWS, BLOCK_N]`` sums ``s * sum_j x_j v_j`` over each
    word's E codes (a word lies in one scale group: E divides 32 and 16), the group's scale applied
    once per word instead of once per code. The products ``x_j v_j`` are exact in fp32 (an 11/8-bit
    significand times a 2-bit one); MX scales are powers of two (exact), NVFP4's ``e4m3 / ts`` rounds
    once per word rather than per code.

    SUBNORMAL (fp16 x, or int8 / e4m3 codes without block scales: ``|x| < 2**16``): x is multiplied by
    ``2**(126 - SUB_SHIFT)`` (per x element, exact) against the fields' ``v 2**-126``, so the sums come
    out ``2**-SUB_SHIFT`` times the true ones, all in the normal range (`_row_result` multiplies back);
    otherwise (bf16 x reaches 2**128, MX activations) each field is multiplied by ``2**126`` first.
    """
    v = _e2m1_fields(raw, E)
    if SUBNORMAL:
        p = tl.sum((x * pow2(126 - SUB_SHIFT)) * v, axis=1, keep_dims=True)
    else:
        p = tl.sum(x * (v * pow2(126)), axis=1, keep_dims=True)
    # The scales as [ROWS, 1, BLOCK_N], the layout of the words (no layout conversion in the K loop).
    k_rows = (k0 + offs_r * E)[:, None, None]
    scale = mx_scales(s_ptr, z_ptr, k_rows, K, offs_n[None, None, :], mask_n[None, None, :], stride_sg,
                      W_KIND, X_QUANT != XQ_NVFP4)  # fmt: skip
    return tl.sum(p * scale, axis=1)


@triton.jit
def _group_meta(
    s_ptr, z_ptr, k0, offs_n, mask_n, stride_sg, GROUP_SIZE: tl.constexpr, ZERO_MODE: tl.constexpr
):
    """The fp32 ``[BLOCK_N]`` scales and zeros of the group holding K index k0 (a step, or a pair of
    steps, lies in one group)."""
    return load_group_meta(s_ptr, z_ptr, k0 // GROUP_SIZE, offs_n, mask_n, stride_sg, ZERO_MODE)


@triton.jit
def _grouped_partial(
    words, x, scale, zero, zero_int, W_BITS: tl.constexpr, E: tl.constexpr, ZERO_MODE: tl.constexpr,
    SUBNORMAL: tl.constexpr,
):
    """One K step of a pre-scaled packed weight (HQQ) as a grouped sum: ``[ROWS, BLOCK_N]``
    partials ``s * (sum_j x_j q_j - z * sum_j x_j)`` over each word's E codes (the step lies in one
    scale group), instead of dequantizing every weight.

    Code j of a word sits at bit ``p = W_BITS * j``. Masked in place and converted as an unsigned
    integer (`common.fields_in_place`) it gives ``q * 2**p`` exactly, and x_j is pre-multiplied by
    ``2**-p`` (exact: a power of two, per x element, not per weight) to match: with the FMA with x, 3
    instructions per weight for every field. (Before: OR-ing in the bits of 2**23 and subtracting
    2**23, which only works for fields ending at or below bit 23, so the top fields of a word were
    shifted and sign-extended first: the sm_90 K loop of a 4-bit BN64 BK128 tile was 339 SASS
    instructions, 269 now; 2-bit 330 -> 254, 1-bit 320 -> 242, `tools/sass_count.py`.) Every product
    ``x * q`` is exact in fp32; the sums round, so the error bound charges the fp32 accumulator
    ``sum_k |x_k| (|q_k| + |z|) |s|`` rather than ``sum_k |x_k| |q_k - z| |s|`` (harness/numerics.py).
    (x below 2**-95 in magnitude, bf16 only, would lose bits to fp32 subnormals in the pre-scaling.)

    SUBNORMAL (x is fp16, or int8 / e4m3 codes: ``|x| < 2**16``): the fields are read as subnormals
    instead (`_fields_subnormal`, 2 instructions per weight), and the partial comes out
    ``2**-SUB_SHIFT`` times the one above, bit for bit (every operation scaled by a power of two, all
    of it in the normal range: products ``x q 2**-37 >= 2**-61`` for fp16 x >= 2**-24, and
    ``x * inv < 2**128``); `_row_result` multiplies the row's sum back. SHIFT = 37 is the least that
    keeps ``x * inv`` finite for every fp16 x. (A step's partial below ``2**-89`` in magnitude, true
    units, would lose bits to subnormals: far below anything an fp16/bf16 output resolves.)
    """
    p, sx = _grouped_sums(words, x, W_BITS, E, SUBNORMAL)
    return _apply_group(p, sx, scale, zero, zero_int, ZERO_MODE)


@triton.jit
def _grouped_sums(words, x, W_BITS: tl.constexpr, E: tl.constexpr, SUBNORMAL: tl.constexpr):
    """``(sum_j x_j q_j, sum_j x_j)`` of `_grouped_partial` (``[ROWS, BLOCK_N]``, ``[ROWS, 1]``), before
    the group's scale and zero."""
    sx = tl.sum(x, axis=1)
    if SUBNORMAL:
        v, inv = _fields_subnormal(words, W_BITS, E)
        sx = sx * pow2(-SUB_SHIFT)
    else:
        v, inv = fields_in_place(words, W_BITS, E)  # q * 2**p exactly, and 2**-p
    return tl.sum((x * inv) * v, axis=1), sx


@triton.jit
def _apply_group(p, sx, scale, zero, zero_int, ZERO_MODE: tl.constexpr):
    """``s * (p - z * sx)``: one group's scale and zero applied to its sums."""
    if ZERO_MODE == ZERO_FLOAT:
        p = p - zero[None, :] * sx
    elif ZERO_MODE == ZERO_INT:
        p = p - zero_int * sx
    return scale[None, :] * p


@triton.jit
def _paired_partial(
    raw0, x0, raw1, x1, k0, offs_n, mask_n, s_ptr, z_ptr, stride_sg, scale, zero, zero_int,
    W_BITS: tl.constexpr, E: tl.constexpr, GROUP_SIZE: tl.constexpr, ZERO_MODE: tl.constexpr,
    SUBNORMAL: tl.constexpr,
):  # fmt: skip
    """`_grouped_partial` of two K steps of one scale group at once (k0 and k0 + BLOCK_K): their sums
    added before the group's scale and zero, which are loaded and applied once. A second step past
    the split's end was loaded as zeros (masked): its sums are 0."""
    if GROUP_SIZE > 0:
        scale, zero = _group_meta(s_ptr, z_ptr, k0, offs_n, mask_n, stride_sg, GROUP_SIZE, ZERO_MODE)
    p0, sx0 = _grouped_sums(raw0, x0, W_BITS, E, SUBNORMAL)
    p1, sx1 = _grouped_sums(raw1, x1, W_BITS, E, SUBNORMAL)
    return _apply_group(p0 + p1, sx0 + sx1, scale, zero, zero_int, ZERO_MODE)


@triton.jit
def _load_weight_tile(
    w_cols, k0, live, offs_r, k_in_tile, mask_n, K, stride_wk, W_KIND: tl.constexpr, E: tl.constexpr,
    EVEN_K: tl.constexpr,
):
    """The raw weight tile of the K step at k0 (every lane masked off unless `live`): packed words
    ``[ROWS, 1, BLOCK_N]``, one load per word, or unpacked ``[BLOCK_K, 1, BLOCK_N]`` elements read
    along K. INT8 and FP8 come as their bytes (`_step` widens or reinterprets them: masked lanes must
    read +0.0, and Triton cannot cast `other` to fp8)."""
    if is_packed(W_KIND):
        rows = k0 // E + offs_r[:, None, None]
        ptrs = w_cols + rows * stride_wk
        in_k = rows < K // E
    else:
        k_idx = k0 + k_in_tile
        ptrs = w_cols + k_idx * stride_wk
        if W_KIND == KIND_INT8 or W_KIND == KIND_FP8:
            ptrs = ptrs.to(tl.pointer_type(tl.uint8))
        in_k = k_idx < K
    if EVEN_K:
        return tl.load(ptrs, mask=mask_n[None, None, :] & live, other=0)
    return tl.load(ptrs, mask=in_k & mask_n[None, None, :] & live, other=0)


@triton.jit
def _load_x(x_ptr, xs_ptr, x_row, row, k0, live, k_in_tile, K, stride_xm, X_QUANT: tl.constexpr,
            X_GROUP: tl.constexpr, INT_ACC: tl.constexpr, EVEN_K: tl.constexpr):  # fmt: skip
    """The ``[ROWS, E, 1]`` activations of the K step at k0 (0 unless `live`), as the step multiplies
    them: fp32, or int32 codes (INT_ACC)."""
    k_idx = k0 + k_in_tile
    if is_mx_act(X_QUANT):
        return load_act_mx(x_ptr, xs_ptr, row.to(tl.int64), k_idx, live, K, stride_xm, X_QUANT)
    if EVEN_K:
        x = tl.load(x_row + k_idx, mask=live, other=0.0)
    else:
        x = tl.load(x_row + k_idx, mask=(k_idx < K) & live, other=0.0)
    x = act_operand(x, X_QUANT).to(tl.int32 if INT_ACC else tl.float32)
    if X_GROUP > 0:  # BLOCK_K divides the block (the weight's group): one scale per step
        # (a dead step's k0 may reach K: its x is 0 anyway, the index is kept inside the row)
        x = x * tl.load(xs_ptr + row.to(tl.int64) * (K // X_GROUP) + tl.minimum(k0, K - 1) // X_GROUP)
    return x


@triton.jit
def _step(
    raw, x, k0, offs_r, offs_n, mask_n, shifts, K, s_ptr, z_ptr, stride_sg, scale, zero, zero_int,
    W_KIND: tl.constexpr, W_BITS: tl.constexpr, E: tl.constexpr, GROUP_SIZE: tl.constexpr,
    ZERO_MODE: tl.constexpr, POST_SCALE: tl.constexpr, PRE_SCALE: tl.constexpr, X_QUANT: tl.constexpr,
    INT_ACC: tl.constexpr, SUBNORMAL: tl.constexpr,
):  # fmt: skip
    """The ``[ROWS, BLOCK_N]`` partial sums of the K step at k0 from its raw weight tile and x
    (``2**-SUB_SHIFT`` times them with SUBNORMAL fields)."""
    if W_KIND == KIND_MXFP4 or W_KIND == KIND_NVFP4:
        return _e2m1_step(raw, x, k0, offs_r, offs_n, mask_n, K, s_ptr, z_ptr, stride_sg, W_KIND, E, X_QUANT,
                          SUBNORMAL)  # fmt: skip
    if is_packed(W_KIND):
        words = raw  # its E codes are cut out by a broadcast shift
        codes = (words.to(tl.int32) >> shifts) & ((1 << W_BITS) - 1)
    elif W_KIND == KIND_INT8:
        codes = raw.to(tl.int32)  # the bytes, widened without sign extension (int8_to_f32)
    elif W_KIND == KIND_FP8:
        codes = raw.to(tl.float8e4nv, bitcast=True)
    else:
        codes = raw
    if GROUP_SIZE > 0:
        # BLOCK_K divides GROUP_SIZE and K_PER_SPLIT is a multiple of BLOCK_K: one group per step.
        scale, zero = _group_meta(s_ptr, z_ptr, k0, offs_n, mask_n, stride_sg, GROUP_SIZE, ZERO_MODE)
    if is_mx(W_KIND):
        # MX / NVFP4: scale groups of 32 (16) inputs inside the step; a word's codes share one.
        codes = dequantize_mx_rows(codes, s_ptr, z_ptr, (k0 + offs_r * E)[:, None, None], K,
                                   offs_n[None, None, :], mask_n[None, None, :], stride_sg,
                                   W_KIND, X_QUANT != XQ_NVFP4)  # fmt: skip
    if W_KIND == KIND_PACKED and PRE_SCALE:
        return _grouped_partial(words, x, scale, zero, zero_int, W_BITS, E, ZERO_MODE, SUBNORMAL)
    elif INT_ACC:
        return tl.sum(x * ((codes ^ 0x80) - 128), axis=1)  # the int8 weight bytes, sign-extended
    else:
        w = dequantize(
            codes,
            scale[None, None, :],
            zero[None, None, :],
            zero_int,
            W_KIND,
            ZERO_MODE,
            POST_SCALE or not PRE_SCALE,  # exact codes unless scales multiply each weight
            tl.float32,
        )
        return tl.sum(x * w, axis=1)


@triton.jit
def gemv_kernel(
    # Pointers
    x_ptr,  # [M, K] activations: compute dtype, or int8 / e4m3-byte codes (X_QUANT); MXFP4/NVFP4 [M, K // 2]
    xs_ptr,  # activation scales (X_QUANT only): fp32 [M] or [M, K // X_GROUP]; MX / NVFP4: bytes
    xt_ptr,  # NVFP4 activations: fp32 [amax, ts] of the call's x (unused otherwise)
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
    X_QUANT: tl.constexpr,  # common.XQ_*: how x is stored (the activation scheme's constant)
    X_GROUP: tl.constexpr,  # K per activation scale (128: 1 x 128 blocks); 0: one per row
    X_SCALE: tl.constexpr,  # x's codes come with fp32 scales (False: fp16/bf16 x, MX, codes given as is)
    HAS_BIAS: tl.constexpr,
    EVEN_K: tl.constexpr,  # K % BLOCK_K == 0: no K masks
    EVEN_PAIRS: tl.constexpr,  # K_PER_SPLIT % (2 * BLOCK_K) == 0: every iteration's k0 is 2 * BLOCK_K aligned
    WRITE_MODE: tl.constexpr,  # common.WRITE_*
    # Tile configuration
    BLOCK_M: tl.constexpr,  # rows of x per program: 1, or 2 (both against each weight tile it loads)
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """y[rows, n-block] (or this split's partial of it) over K split program_id(1)."""
    # -- 1. map program ids to (rows, column block, K split) ---------------------------------------
    pid = tl.program_id(0)
    pid_k = tl.program_id(1)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    pid_m = pid % num_pid_m  # the rows of one column block run side by side and share its weight in L2
    pid_n = pid // num_pid_m
    row0 = pid_m * BLOCK_M
    # BLOCK_M = 2: the pair's second row (past the last row: the last row again, its result not written,
    # so every load stays inside x). Its dot with each raw weight tile shares the unpacking with row0's.
    row1 = tl.minimum(row0 + 1, M - 1)

    # -- 2. offsets: the tile is [BLOCK_K // E, E, BLOCK_N] with E = ELEMS_PER_WORD (1 unpacked);
    #       K index = k0 + row * E + j ------------------------------------------------------------
    E = ELEMS_PER_WORD
    offs_r = tl.arange(0, BLOCK_K // ELEMS_PER_WORD)
    offs_j = tl.arange(0, ELEMS_PER_WORD)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    k_in_tile = offs_r[:, None, None] * E + offs_j[None, :, None]  # [ROWS, E, 1]
    x_row = x_ptr + row0.to(tl.int64) * stride_xm
    x_row1 = x_ptr + row1.to(tl.int64) * stride_xm
    w_cols = w_ptr + offs_n[None, None, :] * stride_wn
    shifts = offs_j[None, :, None] * W_BITS

    scale = tl.zeros((BLOCK_N,), dtype=tl.float32)
    zero = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if PRE_SCALE and GROUP_SIZE == 0:
        scale, zero = load_group_meta(s_ptr, z_ptr, 0, offs_n, mask_n, stride_sg, ZERO_MODE)

    # -- 3. walk this split's K range --------------------------------------------------------------
    # int8 codes given without scales (A8W8_INT8) x int8 weight codes: exact int32 products and sums.
    INT_ACC: tl.constexpr = X_QUANT == XQ_INT8 and not X_SCALE
    # Pre-scaled packed codes against x below 2**16 in magnitude (fp16, or int8 / e4m3 codes without
    # block scales): the grouped sums read the fields as subnormals (`_grouped_partial`), scaled by
    # 2**-SUB_SHIFT until `_row_result`. (bf16 x reaches 2**128: the fields are converted instead.)
    # MXFP4 / NVFP4 words against the same x: their fields are read as ``v 2**-126`` (`_e2m1_step`).
    SMALL_X: tl.constexpr = X_GROUP == 0 and (x_ptr.dtype.element_ty == tl.float16 or X_QUANT == XQ_INT8
                                              or X_QUANT == XQ_FP8)  # fmt: skip
    SUBNORMAL: tl.constexpr = SMALL_X and ((W_KIND == KIND_PACKED and PRE_SCALE) or W_KIND == KIND_MXFP4
                                           or W_KIND == KIND_NVFP4)  # fmt: skip
    # Pre-scaled packed codes whose iteration's two steps always share one scale group (channel-wise, or
    # groups of 2 * BLOCK_K or more, aligned): the two steps' sums are added before the group's scale and
    # zero (`_paired_partial`: the meta loaded and applied once per iteration, not per step).
    ONE_GROUP: tl.constexpr = GROUP_SIZE == 0 or (EVEN_PAIRS and GROUP_SIZE % (2 * BLOCK_K) == 0)
    PAIRED: tl.constexpr = W_KIND == KIND_PACKED and PRE_SCALE and ONE_GROUP
    ACC_DTYPE: tl.constexpr = tl.int32 if INT_ACC else tl.float32
    acc = tl.zeros((BLOCK_K // ELEMS_PER_WORD, BLOCK_N), dtype=ACC_DTYPE)
    if BLOCK_M == 2:
        acc1 = tl.zeros((BLOCK_K // ELEMS_PER_WORD, BLOCK_N), dtype=ACC_DTYPE)  # row1's
    k_start = pid_k * K_PER_SPLIT
    k_end = tl.minimum(k_start + K_PER_SPLIT, K)
    # Two K steps per iteration, both weight tiles loaded before either is used: two tiles of weight
    # bytes in flight per program (the loop holds no tl.dot, so Triton's pipeliner leaves its loads
    # alone; a tile carried across iterations instead costs a layout conversion per step). The second
    # step past the split's end loads nothing and is skipped.
    for k0 in range(k_start, k_end, 2 * BLOCK_K):
        k1 = k0 + BLOCK_K
        live1 = k1 < k_end
        # The steps' masks as [1, 1, 1] tensors (uniform; Triton's interpreter takes no scalar mask).
        on0 = tl.full((1, 1, 1), 1, tl.int1)
        on1 = on0 & live1
        x0 = _load_x(x_ptr, xs_ptr, x_row, row0, k0, on0, k_in_tile, K, stride_xm, X_QUANT, X_GROUP,
                     INT_ACC, EVEN_K)  # fmt: skip
        x1 = _load_x(x_ptr, xs_ptr, x_row, row0, k1, on1, k_in_tile, K, stride_xm, X_QUANT, X_GROUP,
                     INT_ACC, EVEN_K)  # fmt: skip
        if BLOCK_M == 2:
            y0 = _load_x(x_ptr, xs_ptr, x_row1, row1, k0, on0, k_in_tile, K, stride_xm, X_QUANT, X_GROUP,
                         INT_ACC, EVEN_K)  # fmt: skip
            y1 = _load_x(x_ptr, xs_ptr, x_row1, row1, k1, on1, k_in_tile, K, stride_xm, X_QUANT, X_GROUP,
                         INT_ACC, EVEN_K)  # fmt: skip
        raw0 = _load_weight_tile(w_cols, k0, on0, offs_r, k_in_tile, mask_n, K, stride_wk, W_KIND,
                                 ELEMS_PER_WORD, EVEN_K)  # fmt: skip
        raw1 = _load_weight_tile(w_cols, k1, on1, offs_r, k_in_tile, mask_n, K, stride_wk, W_KIND,
                                 ELEMS_PER_WORD, EVEN_K)  # fmt: skip
        if PAIRED:
            acc += _paired_partial(raw0, x0, raw1, x1, k0, offs_n, mask_n, s_ptr, z_ptr, stride_sg, scale,
                                   zero, zero_int, W_BITS, ELEMS_PER_WORD, GROUP_SIZE, ZERO_MODE,
                                   SUBNORMAL)  # fmt: skip
            if BLOCK_M == 2:
                acc1 += _paired_partial(raw0, y0, raw1, y1, k0, offs_n, mask_n, s_ptr, z_ptr, stride_sg,
                                        scale, zero, zero_int, W_BITS, ELEMS_PER_WORD, GROUP_SIZE, ZERO_MODE,
                                        SUBNORMAL)  # fmt: skip
        else:
            acc += _step(raw0, x0, k0, offs_r, offs_n, mask_n, shifts, K, s_ptr, z_ptr, stride_sg, scale,
                         zero, zero_int, W_KIND, W_BITS, ELEMS_PER_WORD, GROUP_SIZE, ZERO_MODE, POST_SCALE,
                         PRE_SCALE, X_QUANT, INT_ACC, SUBNORMAL)  # fmt: skip
            if BLOCK_M == 2:
                acc1 += _step(raw0, y0, k0, offs_r, offs_n, mask_n, shifts, K, s_ptr, z_ptr, stride_sg,
                              scale, zero, zero_int, W_KIND, W_BITS, ELEMS_PER_WORD, GROUP_SIZE, ZERO_MODE,
                              POST_SCALE, PRE_SCALE, X_QUANT, INT_ACC, SUBNORMAL)  # fmt: skip
            if live1:
                acc += _step(raw1, x1, k1, offs_r, offs_n, mask_n, shifts, K, s_ptr, z_ptr, stride_sg,
                             scale, zero, zero_int, W_KIND, W_BITS, ELEMS_PER_WORD, GROUP_SIZE, ZERO_MODE,
                             POST_SCALE, PRE_SCALE, X_QUANT, INT_ACC, SUBNORMAL)  # fmt: skip
                if BLOCK_M == 2:
                    acc1 += _step(raw1, y1, k1, offs_r, offs_n, mask_n, shifts, K, s_ptr, z_ptr, stride_sg,
                                  scale, zero, zero_int, W_KIND, W_BITS, ELEMS_PER_WORD, GROUP_SIZE,
                                  ZERO_MODE, POST_SCALE, PRE_SCALE, X_QUANT, INT_ACC, SUBNORMAL)  # fmt: skip
    acc_n = _row_result(acc, row0, xs_ptr, xt_ptr, z_ptr, X_QUANT, X_GROUP, X_SCALE, SUBNORMAL)

    # -- 4. write the rows (final) or this split's partial of them -----------------------------------
    if BLOCK_M == 1:
        offs_mn = row0.to(tl.int64) * N + offs_n
        write_result(
            acc_n, offs_mn, mask_n, offs_n, mask_n, pid_k, pid, MN, out_ptr, ws_ptr, lock_ptr, s_ptr, b_ptr,
            WRITE_MODE, POST_SCALE, HAS_BIAS,
        )  # fmt: skip
    else:
        acc1_n = _row_result(acc1, row1, xs_ptr, xt_ptr, z_ptr, X_QUANT, X_GROUP, X_SCALE, SUBNORMAL)
        rows = row0 + tl.arange(0, 2)[:, None]
        pair = tl.where(rows == row0, acc_n[None, :], acc1_n[None, :])  # [2, BLOCK_N]
        write_result(
            pair, rows.to(tl.int64) * N + offs_n[None, :], (rows < M) & mask_n[None, :], offs_n[None, :],
            mask_n[None, :], pid_k, pid, MN, out_ptr, ws_ptr, lock_ptr, s_ptr, b_ptr, WRITE_MODE, POST_SCALE,
            HAS_BIAS,
        )  # fmt: skip


@triton.jit
def _row_result(acc, row, xs_ptr, xt_ptr, z_ptr, X_QUANT: tl.constexpr, X_GROUP: tl.constexpr,
                X_SCALE: tl.constexpr, SUBNORMAL: tl.constexpr):  # fmt: skip
    """The ``[BLOCK_N]`` sums of one row's accumulator (back from ``2**-SUB_SHIFT`` with SUBNORMAL
    fields: exact), times the row's activation scale (per-row codes) or NVFP4's tensor scales
    (linear: split partials carry them too)."""
    acc_n = tl.sum(acc, axis=0)
    if SUBNORMAL:
        acc_n = acc_n * pow2(SUB_SHIFT)
    if X_QUANT == XQ_NVFP4:
        acc_n = acc_n * nvfp4_out_scale(xt_ptr, z_ptr)  # both tensor scales
    elif X_SCALE and X_GROUP == 0:
        acc_n = acc_n * tl.load(xs_ptr + row)  # the row's activation scale
    return acc_n
