"""Shared device code of every kernel family: @triton.jit functions (load, unpack, dequantize, dot,
epilogue) and the split-K reduction kernel. The host side (arguments, outputs, workspaces, which write
mode a launch uses) is `gemlite.kernels.plan`.

Numerics (all families):
* Accumulation is fp32; an int8 x int8 dot (INT8 activations) accumulates exactly in int32, converted
  to fp32 once after the K loop.
* Dynamic activations (``X_QUANT``, `gemlite.schemes.activation`): x arrives as int8 or e4m3 codes with
  an fp32 scale per row, and the weight side feeds the dot its EXACT codes (int8, e4m3, or HQQ/ternary
  ``q`` / ``q - zero_int``, integers of at most 4 bits, exact in e4m3 and int8). The row scale
  multiplies the fp32 accumulator before the epilogue (linear, so split-K partials carry it too).
  Grouped HQQ scales (and float zeros) are applied per K tile instead: the tile's fp32 product
  ``P = x_q @ q`` becomes ``(P - z * sum_k x_q) * s`` before it joins the accumulator (``gemm.py``).
* 8-bit activation codes given by the caller (``X_SCALE`` off: A8W8_INT8, A8W8_FP8) meet weight codes
  without scales: no scale anywhere. int8 x int8 stays int32 on every family (GEMV too) up to the
  output, where an int32 output takes it exactly (its int32 bias added in int32) and a float output
  converts it once (`write_result`); e4m3 x e4m3 accumulates in fp32.
* Grouped HQQ weights are dequantized as ``(q - z) * s`` in fp32 from the stored s and z, then cast
  once to the dot dtype (tensor-core families) or kept in fp32 (GEMV families, which use FMA).
* "Post-scaled" layouts (INT8, FP8, TERNARY, channel-wise HQQ with integer/no zeros; see
  `WeightLayout.post_scale`) feed the exact codes (``q`` or ``q - z``) to the dot and multiply the
  fp32 accumulator by the per-column scale in the epilogue.
* Microscaled weights (MXFP8, MXFP4, NVFP4; `gemlite.schemes.mx`) have groups of 32 / 16 inputs inside
  a K tile: `dequantize_mx` gives ``value(q) * scale`` per (k, n) in fp32 (exact for the MX kinds: a
  <= 4-bit significand times a power of two, so the cast to fp16/bf16 is exact too in range; NVFP4
  multiplies by ``s_g * (1 / ts)``, two fp32 roundings), then the one cast to the dot dtype.
* Microscaled activations (MXFP8, MXFP4, NVFP4; `gemlite.schemes.mx.MXActQuant`) against those weights:
  dequantize-then-dot. Each K tile of codes is multiplied by its byte scales (`load_act_mx`) into fp32
  and cast to bf16, exactly (e4m3 / e2m1 times a power of two: at most 4 significant bits; NVFP4's
  e2m1 x e4m3 s_g: 6 bits, in [2**-10, 2688]), and meets the weight tile dequantized the same way in a
  bf16 dot (NVFP4 weights as ``e2m1 * s_g``, exact: `mx_scales` without TENSOR_SCALE); every product
  is exact in fp32, the sums are fp32. NVFP4 multiplies the accumulator by ``1 / (ts_x * ts_w)`` once
  (`nvfp4_out_scale`). GEMV dequantizes both in fp32 (exact). The inexact corners lie at the ends of
  bf16's range (bf16 inputs only): an MXFP8 group whose amax is below 2**-116 loses bits to bf16
  subnormals (the tensor-core families), and an input above 1.75 * 2**127 (~3.0e38; MXFP8: 1.875 *
  2**127) may round up to the code value 2**128, which is Inf in fp32 (every family).
  Hopper has no native MX dot (``tl.dot_scaled`` is emulated with a bf16 upcast there), so this is
  what it would do anyway, with the scales applied once per tile rather than inside the MMA.
* The epilogue then adds the bias in fp32 and casts once to the output dtype.

Split-K. Families that split K over programs (GEMV and GEMM tiles with SPLIT_K > 1) finish in
one launch, in one of these write modes (`gemlite.kernels.plan.write_mode` picks one per call):
* ``WRITE_FINAL``: a single K split; the program applies the epilogue and stores the output.
* ``WRITE_PARTIAL`` (deterministic, the default): each split stores its raw fp32 partial sum in a
  workspace ``[splits, M, N]`` and then takes a ticket from the output tile's counter (an atomic
  add, acquire-release); the program that arrives last adds the partials in split order, applies
  the epilogue, stores the tile and resets the counter to 0 for the next launch. Bitwise
  reproducible: the sum order is fixed whichever program is last.
* Only after ``gemlite.settings.set_deterministic(False)``: ``WRITE_ATOMIC`` (fp16/bf16 output): the
  partials are ``tl.atomic_add``-ed into a zeroed fp32 ``[M, N]`` buffer and the last program of the
  tile (same counter) applies the epilogue from it; ``WRITE_ATOMIC_FINAL`` (fp32 output): each
  split scales its partial (and split 0 adds the bias) and atomically adds it straight into the
  zeroed output. Never atomics into fp16/bf16: each would round the running sum.

The counters are a persistent int32 buffer (`gemlite.kernels.plan`), zero between launches: every
launch that takes tickets leaves its counters at 0 again, so CUDA-graph replays need no memset.

Integer codes to floats (sm_90 SASS counted with tools/sass_count.py, suites/perf/NOTES.md): a
packed code cut out of its word converts with one I2FP (``codes.to(tl.float32)``); the GEMV's grouped
sum ORs the bits of 2**23 into the code in place instead (the float ``2**23 + q * 2**shift``, one LOP3
for the mask and the OR), which saves the shift. int8 bytes become fp16 by the same trick in 16 bits
(`int8_to_f16`, two per instruction), fp32 by `int8_to_f32`. Every way gives the same float a cast
would give: the numerics do not depend on it.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gemlite.schemes.activation import ActQuant
from gemlite.schemes.base import KernelKind, ZeroMode


def _interpreting() -> bool:
    """Triton's own interpreter knob (what `@triton.jit` consults when decorating)."""
    try:
        from triton import knobs

        return bool(knobs.runtime.interpret)
    except (ImportError, AttributeError):  # pragma: no cover - older Triton without knobs
        import os

        return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# NOTE: the Triton interpreter (3.6 and 3.9) carries bf16 values as raw uint16 arrays: `tl.dot` on bf16
# multiplies the raw bit patterns, and integer -> bf16 casts reinterpret them. Kernels therefore route
# bf16 through fp32 when INTERPRETED (exact: every bf16 product is exact in fp32); compiled kernels
# keep the native bf16 tensor-core dot.
INTERPRETED = tl.constexpr(_interpreting())

# Weight kinds and zero-point modes as the kernels see them (numbered in gemlite.schemes.base).
KIND_FLOAT = tl.constexpr(int(KernelKind.FLOAT))  # fp16/bf16 weight, used as is
KIND_PACKED = tl.constexpr(int(KernelKind.PACKED))  # unsigned codes packed in words (HQQ, TERNARY)
KIND_INT8 = tl.constexpr(int(KernelKind.INT8))  # int8 codes, one per byte
KIND_FP8 = tl.constexpr(int(KernelKind.FP8))  # float8_e4m3fn codes, one per byte
KIND_MXFP8 = tl.constexpr(int(KernelKind.MXFP8))  # e4m3 codes as bytes [N, K]; e8m0 scale per 32 inputs
KIND_MXFP4 = tl.constexpr(int(KernelKind.MXFP4))  # e2m1 codes packed in words; e8m0 scale per 32 inputs
KIND_NVFP4 = tl.constexpr(int(KernelKind.NVFP4))  # e2m1 codes packed in words; e4m3 per 16, fp32 tensor scale
ZERO_NONE = tl.constexpr(int(ZeroMode.NONE))
ZERO_INT = tl.constexpr(int(ZeroMode.INT))  # one integer for the whole tensor (runtime argument zero_int)
ZERO_FLOAT = tl.constexpr(int(ZeroMode.FLOAT))  # a float per group, same layout as the scales
# Activation operands (``X_QUANT``, numbered in gemlite.schemes.activation.ActQuant).
XQ_NONE = tl.constexpr(int(ActQuant.NONE))  # fp16/bf16 x as given
XQ_INT8 = tl.constexpr(int(ActQuant.INT8))  # int8 codes + fp32 row scales: int8 dot, int32 accumulator
XQ_FP8 = tl.constexpr(int(ActQuant.FP8))  # e4m3 codes (uint8 bytes) + fp32 row scales: fp8 dot
XQ_MXFP8 = tl.constexpr(int(ActQuant.MXFP8))  # e4m3 bytes + e8m0 bytes per 32: dequantized to bf16
XQ_MXFP4 = tl.constexpr(int(ActQuant.MXFP4))  # e2m1 codes two per byte + e8m0 bytes per 32: likewise
XQ_NVFP4 = tl.constexpr(int(ActQuant.NVFP4))  # e2m1 two per byte + e4m3 bytes per 16 + fp32 tensor scale
# Write modes (see the module docstring).
#: K per activation code sum (`act_quant.quantize_rows_kernel`'s SUMS, read by the GEMM's zero-point
#: term of float zeros): divides every BLOCK_K and every HQQ group (multiples of 32).
SUM_CHUNK = tl.constexpr(32)

WRITE_FINAL = tl.constexpr(0)
WRITE_PARTIAL = tl.constexpr(1)
WRITE_ATOMIC = tl.constexpr(2)
WRITE_ATOMIC_FINAL = tl.constexpr(3)
MAGIC_BITS = tl.constexpr(0x4B000000)  # the bits of the float 2**23
E8M0_SUBNORMAL_BITS = tl.constexpr(0x00400000)  # the bits of 2**-127, e8m0's byte 0 (an fp32 subnormal)


@triton.constexpr_function
def is_packed(w_kind) -> bool:
    """Codes bit-packed in words, read through the packed path: HQQ/ternary integers, e2m1 (MX, NVFP4)."""
    return w_kind in (int(KernelKind.PACKED), int(KernelKind.MXFP4), int(KernelKind.NVFP4))


@triton.constexpr_function
def is_mx(w_kind) -> bool:
    """Microscaled weights (MXFP8, MXFP4, NVFP4): scale groups of 32 / 16 inputs inside the K tile."""
    return w_kind in (int(KernelKind.MXFP8), int(KernelKind.MXFP4), int(KernelKind.NVFP4))


@triton.constexpr_function
def mx_group(w_kind) -> int:
    """Inputs per scale of a microscaled kind (gemlite.formats: MX_GROUP 32, NVFP4_GROUP 16)."""
    return 16 if w_kind == int(KernelKind.NVFP4) else 32


@triton.constexpr_function
def is_mx_act(x_quant) -> bool:
    """Microscaled activations (MXFP8, MXFP4, NVFP4): codes and byte scales, dequantized in the K loop."""
    return x_quant in (int(ActQuant.MXFP8), int(ActQuant.MXFP4), int(ActQuant.NVFP4))


@triton.constexpr_function
def mx_act_group(x_quant) -> int:
    """Inputs per activation scale of a microscaled activation kind (32; NVFP4 16)."""
    return 16 if x_quant == int(ActQuant.NVFP4) else 32


# ------------------------------------------------------------------------------------------------
# Device functions
# ------------------------------------------------------------------------------------------------


@triton.jit
def int8_to_f32(codes):
    """int8 codes (loaded as their uint8 bytes b, widened to int32) to fp32: ``b ^ 0x80 = q + 128``."""
    return ((codes ^ 0x80) | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388736.0


@triton.jit
def int8_to_f16(codes):
    """int8 codes as their bytes b (uint8, or widened to int32) to fp16, by the fp16 form of the same
    trick: the 16-bit ``b ^ 0x6480`` is the fp16 ``1024 + (q + 128)`` (b ^ 0x80 = q + 128 < 1024 fills
    the mantissa), and subtracting 1152 gives q exactly. Two fp16 values per LOP3 / HADD2 pair (sm_90:
    2.5 instructions per weight in the GEMM K loop, against 5.5 through fp32)."""
    return (codes.to(tl.int16) ^ 0x6480).to(tl.float16, bitcast=True) - 1152.0


@triton.jit
def dot_acc(a, b, acc):
    """acc += a @ b with fp32 accumulation (bf16 operands upcast only under the interpreter; int8
    operands: int32)."""
    if INTERPRETED and a.dtype == tl.bfloat16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    elif a.dtype == tl.float8e4nv:
        # NOTE: by default Triton lets Hopper's fp8 MMA accumulate over the whole K loop in the tensor
        # core, which keeps only ~14 bits of the running sum (DeepSeek-V3 report, section 3.3.2): each
        # tile's product is promoted to the fp32 accumulator instead (the interpreter computes in fp32).
        return tl.dot(a, b, acc, max_num_imprecise_acc=a.shape[1])
    elif a.dtype == tl.int8:
        return tl.dot(a, b, acc, out_dtype=tl.int32)  # exact (Triton 3.6 takes no int32 acc otherwise)
    else:
        return tl.dot(a, b, acc)


@triton.jit
def act_operand(x, X_QUANT: tl.constexpr):
    """An activation tile as the dot takes it: e4m3 codes reinterpreted from their bytes, else as loaded."""
    if X_QUANT == XQ_FP8:
        return x.to(tl.float8e4nv, bitcast=True)
    else:
        return x


@triton.jit
def load_codes(
    w_ptr,
    k0,
    offs_n,
    mask_n,
    K,
    stride_wk,
    stride_wn,
    W_KIND: tl.constexpr,
    W_BITS: tl.constexpr,
    ELEMS_PER_WORD: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    MASK_K: tl.constexpr,
):
    """Raw weight tile ``[BLOCK_K, BLOCK_N]`` for K indices ``k0 .. k0 + BLOCK_K`` and N indices offs_n.

    Packed codes come back as int32 in [0, 2**W_BITS); INT8 codes as their uint8 bytes in int32
    (`int8_to_f32`); FP8 and FLOAT in their stored dtype. Elements outside K (when MASK_K) or N read
    as 0 (INT8: byte 0, the code 0).

    Packed words are loaded once each, ``[BLOCK_K // E, 1, BLOCK_N]`` (`load_words`), and their E
    codes are cut out by a broadcast shift into ``[BLOCK_K // E, E, BLOCK_N]``, whose first two axes
    then merge: row ``w * E + j`` is code j of word w, i.e. K index ``k0 + w * E + j``. (Loading word
    ``k // E`` once per code instead, as public GemLite does, makes the pipeliner stage E copies of
    every word in shared memory: 132 KB instead of 74 KB for a 128x128x64 4-bit tile on sm_90.) The
    mask drops an int32 word's sign extension. A tile narrower than a word (BLOCK_K < E) reads word
    ``k // E`` per code instead.
    """
    if is_packed(W_KIND) and BLOCK_K % ELEMS_PER_WORD == 0:
        words = load_words(w_ptr, k0, offs_n, mask_n, K, stride_wk, stride_wn,
                           ELEMS_PER_WORD, BLOCK_K, MASK_K)  # fmt: skip
        shifts = tl.arange(0, ELEMS_PER_WORD) * W_BITS
        codes = (words.to(tl.int32) >> shifts[None, :, None]) & ((1 << W_BITS) - 1)
        return tl.reshape(codes, (BLOCK_K, BLOCK_N))
    else:
        offs_k = k0 + tl.arange(0, BLOCK_K)
        if MASK_K:
            mask = (offs_k < K)[:, None] & mask_n[None, :]
        else:
            mask = mask_n[None, :]
        if is_packed(W_KIND):
            ptrs = w_ptr + (offs_k // ELEMS_PER_WORD)[:, None] * stride_wk + offs_n[None, :] * stride_wn
            words = tl.load(ptrs, mask=mask, other=0).to(tl.int32)
            shifts = ((offs_k % ELEMS_PER_WORD) * W_BITS)[:, None]
            return (words >> shifts) & ((1 << W_BITS) - 1)
        elif W_KIND == KIND_FP8:
            # Masked lanes must read +0.0 (x is 0 there, but 0 * NaN is NaN), and Triton cannot cast
            # an integer `other` to fp8: load the bytes and reinterpret them.
            byte_ptr = w_ptr.to(tl.pointer_type(tl.uint8))
            ptrs = byte_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
            return tl.load(ptrs, mask=mask, other=0).to(tl.float8e4nv, bitcast=True)
        elif W_KIND == KIND_INT8:
            # The raw bytes (uint8): `dequantize` decodes them.
            byte_ptr = w_ptr.to(tl.pointer_type(tl.uint8))
            ptrs = byte_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
            return tl.load(ptrs, mask=mask, other=0)
        else:
            ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
            return tl.load(ptrs, mask=mask, other=0)


@triton.jit
def load_words(w_ptr, k0, offs_n, mask_n, K, stride_wk, stride_wn, ELEMS_PER_WORD: tl.constexpr,
               BLOCK_K: tl.constexpr, MASK_K: tl.constexpr):  # fmt: skip
    """The packed words ``[BLOCK_K // E, 1, BLOCK_N]`` holding K indices ``k0 .. k0 + BLOCK_K`` (E divides
    BLOCK_K); words outside K (when MASK_K) or N read as 0.

    Loaded with the middle (code) axis already in place, the load's own layout (several adjacent
    columns per thread, for wide loads) carries through the unpacking, so each thread ends up with
    runs of adjacent columns of every K row of the dequantized tile, which reach shared memory in
    wide stores. Unpacking a ``[R, BLOCK_N]`` load through ``words[:, None, :]`` instead gave each
    thread one column (Triton's default layout of the 3-D tile) and one 16-bit store per weight: sm_90
    SASS of a 4-bit BM16 BN128 BK128 GEMM_SPLITK K loop 771 -> 658 instructions (STS 128 -> 34),
    BM64 BN128 BK64 GEMM 427 -> 386 (`tools/sass_count.py`)."""
    offs_w = k0 // ELEMS_PER_WORD + tl.arange(0, BLOCK_K // ELEMS_PER_WORD)
    if MASK_K:
        mask = (offs_w < K // ELEMS_PER_WORD)[:, None] & mask_n[None, :]
    else:
        mask = mask_n[None, :]
    ptrs = w_ptr + offs_w[:, None] * stride_wk + offs_n[None, :] * stride_wn
    return tl.load(ptrs[:, None, :], mask=mask[:, None, :], other=0)


@triton.jit
def fields_in_place(words, W_BITS: tl.constexpr, ELEMS_PER_WORD: tl.constexpr):
    """The E codes of packed words ``[R, 1, BLOCK_N]`` where they sit: ``(q, inv)`` with q ``[R, E,
    BLOCK_N]`` the fp32 ``q_j * 2**p_j`` (field j masked in place, one LOP3, converted as an unsigned
    integer, one I2FP: exact, at most 8 significant bits) and inv ``[1, E, 1]`` the matching
    ``2**-p_j`` (``p_j = W_BITS * j``), which a factor per field and column (the scale, in
    `dequantize_words`) or per x element (the GEMV's grouped sum against bf16 x; fp16 x reads the
    fields as subnormals instead, `gemv._fields_subnormal`) absorbs exactly."""
    pos = tl.arange(0, ELEMS_PER_WORD)[None, :, None] * W_BITS
    field = ((1 << W_BITS) - 1) << pos  # the top field's mask wraps to a negative int32: the same bits
    q = (words.to(tl.int32) & field).to(tl.uint32).to(tl.float32)
    inv = ((127 - pos) << 23).to(tl.float32, bitcast=True)
    return q, inv


@triton.jit
def dequantize_words(words, scale, zero, zero_int, W_BITS: tl.constexpr, ELEMS_PER_WORD: tl.constexpr,
                     ZERO_MODE: tl.constexpr, DTYPE: tl.constexpr):  # fmt: skip
    """Pre-scaled packed words ``[R, 1, BLOCK_N]`` (`load_words`) to the weight tile ``[R * E, BLOCK_N]``
    in DTYPE: row ``r * E + j`` is code j of word r, ``(q - z) * s`` rounded once to DTYPE.

    Code j sits at bit ``p = W_BITS * j``. Masked in place (one LOP3) and converted as an unsigned
    integer (one I2FP) it gives ``q * 2**p`` exactly (at most 8 significant bits), and one FMA with
    ``s * 2**-p`` (exact: a power of two; per column and j, not per weight) and ``-(z * s)`` gives
    ``q * s - z * s`` with the product exact: 3 instructions per weight, where shifting each code down,
    converting it and ``(q - z) * s`` took 5 (sm_90 SASS of a 4-bit BM16 BN128 BK128 GEMM_SPLITK K
    loop, `tools/sass_count.py`: 771 instructions, 860 with the FMA alone, 988 before). The fp32
    result differs from ``(q - z) * s`` by the rounding of ``z * s``, at most ``u_fp32 |z s|``: the
    error bound charges it through the zero-points' magnitude (`harness.build.zeros_apart`). (Scales
    below 2**-95 in magnitude would lose bits to fp32 subnormals in ``s * 2**-p``.)
    """
    E: tl.constexpr = ELEMS_PER_WORD
    q, inv = fields_in_place(words, W_BITS, E)
    s = scale[None, None, :] * inv  # s * 2**-p
    if ZERO_MODE == ZERO_FLOAT:
        w = tl.fma(q, s, -(zero * scale)[None, None, :])
    elif ZERO_MODE == ZERO_INT:
        w = tl.fma(q, s, -(zero_int * scale)[None, None, :])
    else:
        w = q * s
    return tl.reshape(w.to(DTYPE), (words.shape[0] * E, words.shape[2]))


@triton.jit
def load_group_meta(s_ptr, z_ptr, group, offs_n, mask_n, stride_sg, ZERO_MODE: tl.constexpr):
    """Scale and float zero rows ``[BLOCK_N]`` (fp32) of K-group `group` (zero is 0 unless ZERO_FLOAT)."""
    scale = tl.load(s_ptr + group * stride_sg + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    if ZERO_MODE == ZERO_FLOAT:
        zero = tl.load(z_ptr + group * stride_sg + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    else:
        zero = tl.zeros_like(scale)
    return scale, zero


@triton.jit
def dequantize(
    codes,
    scale,
    zero,
    zero_int,
    W_KIND: tl.constexpr,
    ZERO_MODE: tl.constexpr,
    POST_SCALE: tl.constexpr,
    DTYPE: tl.constexpr,
):
    """Weight tile in DTYPE from raw codes (`load_codes`); scale/zero are fp32 rows broadcast over the
    tile's leading (K) axes.

    POST_SCALE: return the exact ``q`` / ``q - zero_int`` (the scale comes in the epilogue; with dynamic
    activations also the exact operand of the 8-bit dot, DTYPE int8 or e4m3).
    Otherwise ``q * s - z * s`` in fp32 (one FMA; `dequantize_words` says why), then one cast to DTYPE
    (a no-op when DTYPE is fp32).
    """
    if W_KIND == KIND_FLOAT:
        return codes.to(DTYPE)
    elif W_KIND == KIND_PACKED:
        q = codes.to(tl.float32)  # one I2FP on sm_90 (the 2**23 trick would take two instructions here)
        if POST_SCALE:
            if ZERO_MODE == ZERO_INT:
                q = q - zero_int
            return q.to(DTYPE)
        elif ZERO_MODE == ZERO_FLOAT:  # q * s - z * s with one rounding, as `dequantize_words`
            return tl.fma(q, scale, -(zero * scale)).to(DTYPE)
        elif ZERO_MODE == ZERO_INT:
            return tl.fma(q, scale, -(zero_int * scale)).to(DTYPE)
        else:
            return (q * scale).to(DTYPE)
    elif is_mx(W_KIND):
        # MX / NVFP4: `dequantize_mx` (called by the kernel first) made the fp32 values; one cast.
        return codes.to(DTYPE)
    elif W_KIND == KIND_INT8:
        # Post-scaled (channel-wise): int8 values are exact in fp16/bf16/fp32. `codes` are the weight's
        # bytes: uint8 from `load_codes`, or already widened to int32 (GEMV).
        if DTYPE == tl.int8:
            return codes.to(tl.int8, bitcast=True)  # an int8 dot (int8 activations; GEMM, uint8 bytes)
        elif POST_SCALE and DTYPE == tl.float16:
            return int8_to_f16(codes)
        elif POST_SCALE:
            return int8_to_f32(codes.to(tl.int32)).to(DTYPE)
        else:
            return (int8_to_f32(codes.to(tl.int32)) * scale).to(DTYPE)  # 128 x 128 blocks (GEMV: fp32)
    else:
        # FP8, post-scaled (channel-wise): e4m3 values are exact in fp16/bf16/fp32.
        if DTYPE == codes.dtype:
            return codes  # e4m3 activations: an e4m3 dot
        elif POST_SCALE:
            return codes.to(tl.float32).to(DTYPE)
        else:
            return (codes.to(tl.float32) * scale).to(DTYPE)  # 128 x 128 blocks (GEMV: fp32)


# ------------------------------------------------------------------------------------------------
# Microscaled weights (MXFP8, MXFP4, NVFP4; gemlite.schemes.mx): one scale per (k, n) inside the tile
# ------------------------------------------------------------------------------------------------


@triton.jit
def pow2(e: tl.constexpr):
    """The fp32 ``2**e`` (a normal exponent), from its bits."""
    return tl.full((), (127 + e) << 23, tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def e2m1_fields(codes, p=0):
    """e2m1 codes (bit 3 the sign) masked in place at bit p <= 20 of an int32 (each element's other bits
    zero; p = 0: indices 0..15) as fp32 ``value * 2**-126``, exactly, by bit placement: the magnitude's 3
    bits (2 exponent, 1 mantissa) at bits 22-24 of the fp32 word, the sign at bit 31. Exponent field
    e >= 1 reads ``2**(e - 127) * (1 + m / 2)`` and e = 0 the subnormal ``m * 2**-127``: each e2m1 value
    ``2**(e - 1) * (1 + m / 2)`` (e >= 1), ``m / 2`` (e = 0), times ``2**-126``.

    One multiply by ``2**(22 - p) + 2**(28 - p)`` makes two copies of the code, at bits 22-25 (the
    magnitude where wanted, the sign at 25) and 28-31 (the sign at 31): disjoint, so the sum carries
    nothing, and one mask keeps the four bits wanted (two integer instructions, against the compares and
    selects of a value table). p may be a tensor of per-register positions (`gemv._e2m1_fields`)."""
    one = tl.full((), 1, tl.uint32)
    copies = codes.to(tl.uint32, bitcast=True) * ((one << (22 - p)) + (one << (28 - p)))
    return (copies & 0x81C00000).to(tl.float32, bitcast=True)


@triton.jit
def e2m1_to_f32(codes):
    """e2m1 indices (int32 0..15, bit 3 the sign) to their fp32 values: `e2m1_fields` times ``2**126``,
    exact (a 2-bit significand moved from the subnormal range)."""
    return e2m1_fields(codes) * pow2(126)


@triton.jit
def e8m0_to_f32(e):
    """e8m0 bytes (int32 0..254) to ``2**(e - 127)``: the byte is the fp32 exponent field; byte 0, 2**-127,
    is the fp32 subnormal with the mantissa's top bit set. Exact. The larger of the two bit patterns is
    the right one (``e << 23`` >= 2**23 > 0x00400000 for e >= 1, 0 for e = 0): one integer max instead
    of a compare and a select."""
    return tl.maximum(e << 23, E8M0_SUBNORMAL_BITS).to(tl.float32, bitcast=True)


@triton.jit
def mx_scales(
    s_ptr, z_ptr, k, K, offs_n, mask_n, stride_sg, W_KIND: tl.constexpr, TENSOR_SCALE: tl.constexpr = True
):
    """fp32 scale of the group that holds input `k`, for every (k, n) of the broadcast of `k` with
    offs_n / mask_n (0 where k >= K or n is masked): e8m0 ``2**(b - 127)`` (MXFP8, MXFP4), or NVFP4's
    ``e4m3(s_g) * (1 / ts)`` with the tensor scale ts read from z_ptr (one fp32); without TENSOR_SCALE
    (NVFP4 activations: `nvfp4_out_scale` applies ts to the accumulator) just ``e4m3(s_g)``, exact.

    Scales are ``[K // G, N]`` bytes (N contiguous), G = `mx_group`. Scales are read as bytes (a masked
    fp8 load cannot take ``other=0``) and decoded here.
    """
    G: tl.constexpr = mx_group(W_KIND)
    ptrs = s_ptr.to(tl.pointer_type(tl.uint8)) + (k // G) * stride_sg + offs_n
    b = tl.load(ptrs, mask=(k < K) & mask_n, other=0)
    if W_KIND == KIND_NVFP4 and TENSOR_SCALE:
        # NOTE: 1 / ts is rounded once (fp32), then s_g * (1 / ts) once more: the weight is not exact in
        # the dot dtype anyway (ts is no power of two); the harness bound charges these roundings.
        return b.to(tl.float8e4nv, bitcast=True).to(tl.float32) * (1.0 / tl.load(z_ptr))
    elif W_KIND == KIND_NVFP4:
        return b.to(tl.float8e4nv, bitcast=True).to(tl.float32)  # ts after the dot
    else:
        return e8m0_to_f32(b.to(tl.int32))


@triton.jit
def mx_values(codes, W_KIND: tl.constexpr):
    """The element values (fp32, exact) of raw MX codes: e2m1 indices (int32) or e4m3 bytes."""
    if W_KIND == KIND_MXFP8:
        return codes.to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
    else:
        return e2m1_to_f32(codes)


@triton.jit
def dequantize_mx(
    codes,
    s_ptr,
    z_ptr,
    k0,
    K,
    offs_n,
    mask_n,
    stride_sg,
    W_KIND: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
    TENSOR_SCALE: tl.constexpr = True,
):
    """fp32 weight tile ``[BLOCK_K, BLOCK_N]`` of a microscaled layout from its raw codes (`load_codes`)
    for K indices ``k0 .. k0 + BLOCK_K`` and N indices offs_n: ``value(code) * scale(k // G, n)``
    (NVFP4 without TENSOR_SCALE: ts left out, `mx_scales`).

    MXFP8 / MXFP4 values are exact in fp32 (a <= 4-bit significand times a power of two) and stay exact
    when the caller casts them to fp16/bf16 (range permitting). A tile holds BLOCK_K // G groups: their
    ``[BLOCK_K // G, BLOCK_N]`` scales are loaded once and broadcast over each group's G rows; a tile
    narrower than a group reads one scale row.
    """
    G: tl.constexpr = mx_group(W_KIND)
    GROUPS: tl.constexpr = BLOCK_K // G if BLOCK_K > G else 1
    k_groups = k0 + G * tl.arange(0, GROUPS)
    scale = mx_scales(s_ptr, z_ptr, k_groups[:, None], K, offs_n[None, :], mask_n[None, :], stride_sg, W_KIND,
                      TENSOR_SCALE)  # fmt: skip
    if GROUPS > 1:
        scale = tl.reshape(tl.broadcast_to(scale[:, None, :], (GROUPS, G, BLOCK_N)), (BLOCK_K, BLOCK_N))
    return mx_values(codes, W_KIND) * scale


@triton.jit
def dequantize_mx_rows(
    codes, s_ptr, z_ptr, k_rows, K, offs_n, mask_n, stride_sg, W_KIND: tl.constexpr,
    TENSOR_SCALE: tl.constexpr = True,
):  # fmt: skip
    """GEMV's fp32 ``[ROWS, E, BLOCK_N]`` tile of a microscaled layout: `k_rows` ``[ROWS, 1, 1]`` is the K
    index of each row's first code; a word's E codes lie in one group (E divides G), so one scale per
    (row, n), broadcast over the word (NVFP4 without TENSOR_SCALE: ts left out, `mx_scales`). The GEMV
    runs it for MXFP8; its e2m1 words take `gemv._e2m1_step` (codes read in place, a scale per word)."""
    scale = mx_scales(s_ptr, z_ptr, k_rows, K, offs_n, mask_n, stride_sg, W_KIND, TENSOR_SCALE)
    return mx_values(codes, W_KIND) * scale


# ------------------------------------------------------------------------------------------------
# Microscaled activations (MXFP8, MXFP4, NVFP4; gemlite.schemes.mx.MXActQuant): dequantized per K tile
# ------------------------------------------------------------------------------------------------


@triton.jit
def load_act_mx(x_ptr, xs_ptr, rows, k, mask, K, stride_xm, X_QUANT: tl.constexpr):
    """fp32 activations ``value(code) * scale`` at every (row, k) of the broadcast of `rows` (int64 row
    indices) with `k` (K indices), from the quantizer's bytes (`gemlite.kernels.act_quant`); 0 where
    `mask` is false or k >= K (no byte past the codes or the scales is read).

    Codes: e4m3 bytes ``[M, K]`` (MXFP8) or two e2m1 codes per byte ``[M, K // 2]``, code k in the low
    nibble of byte k // 2 when k is even (MXFP4, NVFP4); the row stride is `stride_xm` bytes. Scales:
    bytes ``[M, K // G]``, e8m0 (MX) or e4m3 (NVFP4, whose tensor scale is applied to the accumulator
    by `nvfp4_out_scale`). The values are exact in fp32 and in bf16 (module docstring): an e4m3 / e2m1
    value times a power of two, or e2m1 x e4m3 (6 significant bits). A NaN scale byte (a group that
    held NaN / Inf, codes 0) gives NaN: 0 x Inf for e8m0's 255, 0 x NaN for e4m3's 0x7F.
    """
    G: tl.constexpr = mx_act_group(X_QUANT)
    m = mask & (k < K)
    row_codes = x_ptr + rows * stride_xm
    if X_QUANT == XQ_MXFP8:
        b = tl.load(row_codes + k, mask=m, other=0)
        v = b.to(tl.float8e4nv, bitcast=True).to(tl.float32)
    else:
        b = tl.load(row_codes + k // 2, mask=m, other=0).to(tl.int32)
        v = e2m1_to_f32((b >> ((k % 2) * 4)) & 15)
    s = tl.load(xs_ptr + rows * (K // G) + k // G, mask=m, other=0)
    if X_QUANT == XQ_NVFP4:
        # (the NaN byte decoded explicitly: Triton's interpreter reads e4m3 0x7F as a finite 480)
        scale = tl.where((s & 0x7F) == 0x7F, float("nan"), s.to(tl.float8e4nv, bitcast=True).to(tl.float32))
    else:
        scale = e8m0_to_f32(s.to(tl.int32))
    return v * scale


@triton.jit
def nvfp4_out_scale(xt_ptr, z_ptr):
    """``1 / (ts_x * ts_w)``, fp32: what an NVFP4 x NVFP4 accumulator of ``(e2m1 * s_g)`` products is
    multiplied by (once, before the epilogue; linear, so split-K partials carry it too). ts_x is the
    activation's tensor scale (``xt_ptr[1]``, written by the quantizer), ts_w the weight's (``z_ptr``).
    Two fp32 roundings (the product, the correctly rounded reciprocal), then the one of the multiply."""
    return tl.math.div_rn(1.0, tl.load(xt_ptr + 1) * tl.load(z_ptr))


@triton.jit
def load_bias(b_ptr, offs_n, mask_n):
    """The bias row as the accumulator adds it: fp32, or the int32 bias of an int32 output (int8 codes
    without scales), which joins the int32 sums exactly."""
    if b_ptr.dtype.element_ty == tl.int32:
        return tl.load(b_ptr + offs_n, mask=mask_n, other=0)
    else:
        return tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)


@triton.jit
def to_workspace(acc):
    """A partial sum as the fp32 split-K workspace holds it: int32 partials as their bits (exact)."""
    if acc.dtype == tl.int32:
        return acc.to(tl.float32, bitcast=True)
    else:
        return acc


@triton.jit
def from_workspace(v, acc):
    """A workspace value read back in the dtype of `acc` (the inverse of `to_workspace`)."""
    if acc.dtype == tl.int32:
        return v.to(tl.int32, bitcast=True)
    else:
        return v


@triton.jit
def apply_epilogue(acc, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr):
    """fp32 ``acc * scale[n] + bias[n]``; offs_n/mask_n are shaped to broadcast against acc. An int32
    accumulator (int32 output, no scales) gets its int32 bias in int32, exactly."""
    if POST_SCALE:
        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    if HAS_BIAS:
        acc = acc + load_bias(b_ptr, offs_n, mask_n)
    return acc


@triton.jit
def write_result(
    acc,
    offs_mn,
    mask,
    offs_n,
    mask_n,
    pid_k,
    tile,
    MN,
    out_ptr,
    ws_ptr,
    lock_ptr,
    s_ptr,
    b_ptr,
    WRITE_MODE: tl.constexpr,
    POST_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
):
    """Write an fp32 accumulator tile according to WRITE_MODE (module docstring).

    offs_mn: int64 flat offsets ``m * N + n`` into the contiguous ``[M, N]`` output (and into each
    ``[M, N]`` slice of the workspace); MN = M * N; pid_k: this program's K split (of
    ``tl.num_programs(1)``); tile: the index of this output tile in the lock counters.

    An int32 accumulator (int8 codes given without scales) becomes fp32 here for a float output; for
    an int32 output it stays int32 to the end: partials travel through the workspace as their bits and
    are summed in int32, atomics are int32 (WRITE_ATOMIC_FINAL; `plan.write_mode` never picks
    WRITE_ATOMIC for it), so the result is exact and order-independent.
    """
    if acc.dtype == tl.int32 and out_ptr.dtype.element_ty != tl.int32:
        acc = acc.to(tl.float32)
    if WRITE_MODE == WRITE_FINAL:
        y = apply_epilogue(acc, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)
        tl.store(out_ptr + offs_mn, y.to(out_ptr.dtype.element_ty), mask=mask)
    elif WRITE_MODE == WRITE_ATOMIC_FINAL:
        # fp32 (or int32) output: scaling is linear, so each split scales its own partial; only split 0
        # adds the bias.
        if POST_SCALE:
            acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = load_bias(b_ptr, offs_n, mask_n)
            acc = acc + tl.where(pid_k == 0, bias, 0)
        tl.atomic_add(out_ptr + offs_mn, acc, mask=mask, sem="relaxed")
    else:
        if WRITE_MODE == WRITE_PARTIAL:
            tl.store(ws_ptr + pid_k.to(tl.int64) * MN + offs_mn, to_workspace(acc), mask=mask)
        else:  # WRITE_ATOMIC
            tl.atomic_add(ws_ptr + offs_mn, acc, mask=mask, sem="relaxed")
        # Every thread's partial is stored before the ticket is taken (release), and the last program
        # reads the others' partials after it (acquire), from L2 (.cg).
        tl.debug_barrier()
        splits = tl.num_programs(1)
        ticket = tl.atomic_add(lock_ptr + tile, 1, sem="acq_rel")
        if ticket == splits - 1:
            if WRITE_MODE == WRITE_PARTIAL:
                total = tl.zeros_like(acc)
                for s in range(splits):
                    part = tl.load(ws_ptr + s * MN + offs_mn, mask=mask, other=0.0, cache_modifier=".cg")
                    total += from_workspace(part, acc)
            else:
                total = tl.load(ws_ptr + offs_mn, mask=mask, other=0.0, cache_modifier=".cg")
            y = apply_epilogue(total, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)
            tl.store(out_ptr + offs_mn, y.to(out_ptr.dtype.element_ty), mask=mask)
            tl.store(lock_ptr + tile, 0)  # ready for the next launch
