"""Dynamic activation quantization: ``x[M, K]`` (fp16/bf16) -> per-row codes and fp32 scales.

Per token (`quantize_rows_kernel`): one program per row of x walks K twice in BLOCK_K steps, first
the row's amax (and whether it holds a NaN or an infinity), then the codes. Per 1 x GROUP block
(`quantize_groups_kernel`, the ``_block_dynamic`` formats): one program per block, one pass. The
matmul reads the codes and the scales afterwards (``gemlite/kernels/plan.py`` puts this launch before
the matmul's; `gemlite.schemes.activation` has the rules and why an all-zero, non-finite or
near-65504 row gets the result it gets).

NOTE (exact codes from fp32 arithmetic). The rules round the EXACT quotient ``x / s`` once, into an
int8 (half away from zero) or an e4m3 value (half to even). A kernel that rounds ``x / s`` to fp32 first
and then to the code rounds twice, and a quotient just below a tie (``n + 0.5`` or an e4m3 midpoint)
whose fp32 rounding lands ON the tie then goes the wrong way: one code off, about once in 10**5 values.
So the quotient is rounded to ODD instead (`_quotient_to_odd`): the correctly rounded fp32 quotient
``r = div_rn(|x|, s)``, its exact remainder ``|x| - r * s`` (one fma: the remainder of a correctly
rounded quotient is representable), and, when the division was inexact and r's last bit is 0, r moved
one ulp toward the true quotient. An inexact round-to-odd result is never a tie of a coarser format,
and rounding it once more to a format with at least 2 bits fewer (int8 or e4m3 from fp32's 24) gives
exactly the rounding of the true quotient (Boldo & Melquiond, "When double rounding is odd", 2005).
The codes therefore equal ``reference.quantize_activation``'s bit for bit, ties included.

The e4m3 byte is built from integer operations (`_e4m3_byte`), not a float-to-fp8 cast: the Triton
interpreter's fp32 -> fp8 cast rounds ties up and carries badly (``triton/runtime/interpreter.py``
``_convert_float``), and the same code then runs on CPU and GPU. The scale is ``div_rn(amax, c)``
(one correct rounding, like the reference's), never the approximate ``/``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from gemlite.kernels.common import XQ_INT8
from gemlite.schemes.activation import FP8, INT8

SCALE_FLOOR = tl.constexpr(1e-6)  # gemlite.formats.SCALE_FLOOR: an all-zero row's scale
INT8_MAX = tl.constexpr(INT8.max_code)
FP8_MAX = tl.constexpr(FP8.max_code)


@triton.jit
def _quotient_to_odd(a, s):
    """``a / s`` rounded to odd in fp32, for a >= 0 and s > 0 finite (module docstring)."""
    r = tl.math.div_rn(a, s)
    remainder = tl.math.fma(-r, s, a)  # exact
    bits = r.to(tl.int32, bitcast=True)
    inexact_even = (remainder != 0.0) & ((bits & 1) == 0)
    bits = tl.where(inexact_even, bits + tl.where(remainder > 0.0, 1, -1), bits)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _int8_magnitude(q):
    """round(q) half up, for q >= 0 rounded to odd, as fp32 in [0, 127]. ``floor(q + 0.5)`` would be
    wrong just below 0.5 (the addition rounds up to 1); ``q - floor(q)`` is exact."""
    whole = tl.floor(q)
    return tl.minimum(whole + tl.where(q - whole >= 0.5, 1.0, 0.0), INT8_MAX)


@triton.jit
def _e4m3_byte(q):
    """The e4m3 byte (without sign) of q >= 0 rounded to odd, rounded to nearest even, clamped to 448.

    Adding and subtracting ``2**(e + 20)`` (e: q's binade, at least e4m3's smallest normal -6) rounds q
    to a multiple of e4m3's spacing there, 2**(e - 3), ties to even (fp32 round to nearest even); the
    result is an e4m3 value, whose byte is then read off its fp32 bits.
    """
    a = tl.minimum(q, FP8_MAX)
    e = ((a.to(tl.int32, bitcast=True) >> 23) & 0xFF) - 127
    magic = ((tl.maximum(e, -6) + 147) << 23).to(tl.float32, bitcast=True)  # 2**(max(e, -6) - 3 + 23)
    v = (a + magic) - magic
    vb = v.to(tl.int32, bitcast=True)
    ev = ((vb >> 23) & 0xFF) - 127
    normal = ((ev + 7) << 3) | ((vb >> 20) & 7)
    subnormal = (v * 512.0).to(tl.int32)  # multiples of 2**-9 below 2**-6: mantissa 0..7, exponent 0
    return tl.where(ev >= -6, normal, subnormal)


@triton.jit
def _scale(amax, nonfinite, X_QUANT: tl.constexpr):
    """``max(amax / c, 1e-6)`` correctly rounded (c = 127 or 448); 1.0 where `nonfinite` (whose codes
    are 0: no arithmetic on NaN or Inf), and the scale to store, NaN there."""
    if X_QUANT == XQ_INT8:
        s = tl.math.div_rn(amax, INT8_MAX)
    else:
        s = tl.math.div_rn(amax, FP8_MAX)
    s = tl.maximum(s, SCALE_FLOOR)
    return tl.where(nonfinite, 1.0, s), tl.where(nonfinite, float("nan"), s)


@triton.jit
def _store_codes(c_ptrs, x, s, nonfinite, mask, X_QUANT: tl.constexpr):
    """The codes of fp32 values x under the scale s, each from the exact quotient x / s (0 where
    `nonfinite`), stored as int8 or as e4m3 bytes."""
    x = tl.where(nonfinite, 0.0, x)
    q = _quotient_to_odd(tl.abs(x), s)
    negative = (x.to(tl.int32, bitcast=True) >> 31) != 0  # the sign bit (-0.0 included)
    if X_QUANT == XQ_INT8:
        mag = _int8_magnitude(q)
        code = tl.where(negative, -mag, mag).to(tl.int32)
        tl.store(c_ptrs, code.to(tl.int8), mask=mask)
    else:
        code = _e4m3_byte(q) | tl.where(negative, 0x80, 0)
        tl.store(c_ptrs, code.to(tl.uint8), mask=mask)


@triton.jit
def quantize_rows_kernel(
    # Pointers
    x_ptr,  # [M, K] activations, fp16/bf16
    codes_ptr,  # [M, K] codes: int8, or uint8 (the e4m3 bytes)
    scales_ptr,  # [M] fp32 scales
    # Sizes and strides
    K,
    stride_xm,
    # Meta-parameters
    X_QUANT: tl.constexpr,  # common.XQ_INT8 or common.XQ_FP8
    BLOCK_K: tl.constexpr,
):
    """codes[m, :], scales[m] of row m = program_id(0) (one scale per token)."""
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_xm
    c_row = codes_ptr + row * K
    offs = tl.arange(0, BLOCK_K)

    # -- 1. the row's amax, and whether it holds a NaN or an infinity ------------------------------
    amax = tl.zeros((BLOCK_K,), dtype=tl.float32)
    bad = tl.zeros((BLOCK_K,), dtype=tl.int32)
    for k0 in range(0, K, BLOCK_K):
        x = tl.load(x_row + k0 + offs, mask=k0 + offs < K, other=0.0).to(tl.float32)
        ax = tl.abs(x)
        amax = tl.maximum(amax, ax)
        bad = bad | ((x != x) | (ax == float("inf"))).to(tl.int32)
    nonfinite = tl.max(bad, axis=0) > 0
    s, stored = _scale(tl.max(amax, axis=0), nonfinite, X_QUANT)
    tl.store(scales_ptr + row, stored)

    # -- 2. the codes --------------------------------------------------------------------------------
    for k0 in range(0, K, BLOCK_K):
        mask = k0 + offs < K
        x = tl.load(x_row + k0 + offs, mask=mask, other=0.0).to(tl.float32)
        _store_codes(c_row + k0 + offs, x, s, nonfinite, mask, X_QUANT)


@triton.jit
def quantize_groups_kernel(
    # Pointers
    x_ptr,  # [M, K] activations, fp16/bf16
    codes_ptr,  # [M, K] codes: int8, or uint8 (the e4m3 bytes)
    scales_ptr,  # [M, K // GROUP] fp32 scales
    # Sizes and strides
    K,
    stride_xm,
    # Meta-parameters
    X_QUANT: tl.constexpr,  # common.XQ_INT8 or common.XQ_FP8
    GROUP: tl.constexpr,  # inputs per scale along K (128: the 1 x 128 blocks); divides K
):
    """codes[m, g*GROUP:(g+1)*GROUP] and scales[m, g] for (m, g) = program ids: one pass, one group."""
    row = tl.program_id(0).to(tl.int64)
    group = tl.program_id(1)
    offs = group * GROUP + tl.arange(0, GROUP)
    x = tl.load(x_ptr + row * stride_xm + offs).to(tl.float32)
    ax = tl.abs(x)
    nonfinite = tl.max(((x != x) | (ax == float("inf"))).to(tl.int32), axis=0) > 0
    s, stored = _scale(tl.max(ax, axis=0), nonfinite, X_QUANT)
    tl.store(scales_ptr + row * (K // GROUP) + group, stored)
    _store_codes(codes_ptr + row * K + offs, x, s, nonfinite, offs < K, X_QUANT)
