"""Shared device code of every kernel family: @triton.jit functions (load, unpack, dequantize, dot,
epilogue) and the split-K reduction kernel. The host side (arguments, outputs, workspaces, which write
mode a launch uses) is `gemlite.kernels.plan`.

Numerics (all families):
* Accumulation is fp32, always.
* Grouped HQQ weights are dequantized as ``(q - z) * s`` in fp32 from the stored s and z, then cast
  once to the dot dtype (tensor-core families) or kept in fp32 (GEMV families, which use FMA).
* "Post-scaled" layouts (INT8, FP8, TERNARY, channel-wise HQQ with integer/no zeros; see
  `WeightLayout.post_scale`) feed the exact codes (``q`` or ``q - z``) to the dot and multiply the
  fp32 accumulator by the per-column scale in the epilogue.
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

Integer codes become floats without integer-to-float conversions (one quarter of the FP32 rate on
Hopper): an unsigned code ``q < 2**23`` OR-ed into the bits of 2**23 is the float ``2**23 + q``
exactly, and one subtraction gives ``q`` (`codes_to_f32`). The result is the same float a cast would
give, so the numerics do not change.
"""

from __future__ import annotations

import triton
import triton.language as tl

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
ZERO_NONE = tl.constexpr(int(ZeroMode.NONE))
ZERO_INT = tl.constexpr(int(ZeroMode.INT))  # one integer for the whole tensor (runtime argument zero_int)
ZERO_FLOAT = tl.constexpr(int(ZeroMode.FLOAT))  # a float per group, same layout as the scales
# Write modes (see the module docstring).
WRITE_FINAL = tl.constexpr(0)
WRITE_PARTIAL = tl.constexpr(1)
WRITE_ATOMIC = tl.constexpr(2)
WRITE_ATOMIC_FINAL = tl.constexpr(3)
MAGIC_BITS = tl.constexpr(0x4B000000)  # the bits of the float 2**23


# ------------------------------------------------------------------------------------------------
# Device functions
# ------------------------------------------------------------------------------------------------


@triton.jit
def codes_to_f32(codes):
    """Unsigned integer codes (int32, each < 2**23) to the same fp32 values, by the 2**23 trick."""
    return (codes | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def int8_to_f32(codes):
    """int8 codes (loaded as their uint8 bytes b, widened to int32) to fp32: ``b ^ 0x80 = q + 128``."""
    return ((codes ^ 0x80) | MAGIC_BITS).to(tl.float32, bitcast=True) - 8388736.0


@triton.jit
def dot_acc(a, b, acc):
    """acc += a @ b with fp32 accumulation (bf16 operands upcast only under the interpreter)."""
    if INTERPRETED and a.dtype == tl.bfloat16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    else:
        return tl.dot(a, b, acc)


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

    Packed words are loaded once each, ``[BLOCK_K // E, BLOCK_N]``, and their E codes are cut out by
    a broadcast shift into ``[BLOCK_K // E, E, BLOCK_N]``, whose first two axes then merge: row
    ``w * E + j`` is code j of word w, i.e. K index ``k0 + w * E + j``. (Loading word ``k // E`` once
    per code instead, as public GemLite does, makes the pipeliner stage E copies of every word in
    shared memory: 132 KB instead of 74 KB for a 128x128x64 4-bit tile on sm_90.) The mask drops an
    int32 word's sign extension. A tile narrower than a word (BLOCK_K < E) reads word ``k // E`` per
    code instead.
    """
    if W_KIND == KIND_PACKED and BLOCK_K % ELEMS_PER_WORD == 0:
        offs_w = k0 // ELEMS_PER_WORD + tl.arange(0, BLOCK_K // ELEMS_PER_WORD)
        if MASK_K:
            mask = (offs_w < K // ELEMS_PER_WORD)[:, None] & mask_n[None, :]
        else:
            mask = mask_n[None, :]
        words = tl.load(w_ptr + offs_w[:, None] * stride_wk + offs_n[None, :] * stride_wn, mask=mask, other=0)
        shifts = tl.arange(0, ELEMS_PER_WORD) * W_BITS
        codes = (words.to(tl.int32)[:, None, :] >> shifts[None, :, None]) & ((1 << W_BITS) - 1)
        return tl.reshape(codes, (BLOCK_K, BLOCK_N))
    else:
        offs_k = k0 + tl.arange(0, BLOCK_K)
        if MASK_K:
            mask = (offs_k < K)[:, None] & mask_n[None, :]
        else:
            mask = mask_n[None, :]
        if W_KIND == KIND_PACKED:
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
            # The bytes, widened without sign extension (int8_to_f32 decodes them).
            byte_ptr = w_ptr.to(tl.pointer_type(tl.uint8))
            ptrs = byte_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
            return tl.load(ptrs, mask=mask, other=0).to(tl.int32)
        else:
            ptrs = w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn
            return tl.load(ptrs, mask=mask, other=0)


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

    POST_SCALE: return the exact ``q`` / ``q - zero_int`` (the scale comes in the epilogue).
    Otherwise ``(q - z) * s`` in fp32, then one cast to DTYPE (a no-op when DTYPE is fp32).
    """
    if W_KIND == KIND_FLOAT:
        return codes.to(DTYPE)
    elif W_KIND == KIND_PACKED:
        q = codes_to_f32(codes)
        if ZERO_MODE == ZERO_INT:
            q = q - zero_int
        if POST_SCALE:
            return q.to(DTYPE)
        else:
            if ZERO_MODE == ZERO_FLOAT:
                q = q - zero
            return (q * scale).to(DTYPE)
    elif W_KIND == KIND_INT8:
        # Always post-scaled: int8 values are exact in fp16/bf16/fp32.
        return int8_to_f32(codes).to(DTYPE)
    else:
        # FP8: always post-scaled, e4m3 values are exact in fp16/bf16/fp32.
        return codes.to(tl.float32).to(DTYPE)


@triton.jit
def apply_epilogue(acc, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr):
    """fp32 ``acc * scale[n] + bias[n]``; offs_n/mask_n are shaped to broadcast against acc."""
    if POST_SCALE:
        acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    if HAS_BIAS:
        acc = acc + tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
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
    """
    if WRITE_MODE == WRITE_FINAL:
        y = apply_epilogue(acc, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)
        tl.store(out_ptr + offs_mn, y.to(out_ptr.dtype.element_ty), mask=mask)
    elif WRITE_MODE == WRITE_ATOMIC_FINAL:
        # fp32 output: scaling is linear, so each split scales its own partial; only split 0 adds the bias.
        if POST_SCALE:
            acc = acc * tl.load(s_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(b_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
            acc = acc + tl.where(pid_k == 0, bias, 0.0)
        tl.atomic_add(out_ptr + offs_mn, acc, mask=mask, sem="relaxed")
    else:
        if WRITE_MODE == WRITE_PARTIAL:
            tl.store(ws_ptr + pid_k.to(tl.int64) * MN + offs_mn, acc, mask=mask)
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
                    total += tl.load(ws_ptr + s * MN + offs_mn, mask=mask, other=0.0, cache_modifier=".cg")
            else:
                total = tl.load(ws_ptr + offs_mn, mask=mask, other=0.0, cache_modifier=".cg")
            y = apply_epilogue(total, offs_n, mask_n, s_ptr, b_ptr, POST_SCALE, HAS_BIAS)
            tl.store(out_ptr + offs_mn, y.to(out_ptr.dtype.element_ty), mask=mask)
            tl.store(lock_ptr + tile, 0)  # ready for the next launch
