"""Element encodings: e2m1 (FP4), e4m3 (FP8) and e8m0 (power-of-two scales), plus integer rounding.

Decoding returns float64, which holds every value of these encodings exactly. Encoding rounds to nearest
with ties to even (the IEEE and OCP rule, and what the hardware ``cvt.rn`` conversions do), computed in
float64 from the exact input, so one rounding happens and no double rounding can move a tie.
"""

from __future__ import annotations

import torch

from gemlite.formats import E2M1_MAX, E2M1_VALUES, E8M0_BIAS, FP8_E4M3_MAX

from ._checks import require_code_range, require_dtype, require_tensor

__all__ = [
    "e2m1_to_float",
    "float_to_e2m1",
    "e4m3_to_float",
    "float_to_e4m3",
    "e8m0_to_float",
    "float_to_e8m0",
    "round_half_away_from_zero",
    "round_half_to_even",
]

E2M1_SIGN = 8  # bit 3 of an e2m1 code
E8M0_NAN = 255
E8M0_MIN_EXP = -E8M0_BIAS  # byte 0 -> 2**-127
E8M0_MAX_EXP = 254 - E8M0_BIAS  # byte 254 -> 2**127
E4M3_MANTISSA_BITS = 3
E4M3_MIN_NORMAL_EXP = -6  # below 2**-6 the e4m3fn grid keeps the subnormal spacing 2**-9

# The eight e2m1 magnitudes in code order 0..7 (codes 8..15 are their negatives).
_E2M1_MAGNITUDES = tuple(abs(v) for v in E2M1_VALUES[:E2M1_SIGN])


def _as_float64(name: str, x: object) -> torch.Tensor:
    t = require_tensor(name, x)
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {t.dtype}")
    x64 = t.double()
    if bool(torch.isnan(x64).any()):
        raise ValueError(f"{name}: contains NaN, which has no code in this format")
    return x64


# --------------------------------------------------------------------------------------------
# Integer rounding
# --------------------------------------------------------------------------------------------


def round_half_away_from_zero(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties away from zero (C ``round``; what INT8 quantization uses).

    torch.round rounds ties to even, so this is spelled out. ``floor(|x| + 0.5)`` would be wrong for
    the largest float below 0.5 (the addition rounds up to 1.0); splitting off the integer part with
    trunc is exact, so the tie test sees the true fraction.

    x: a floating-point tensor of any shape. Returns a tensor of the same dtype and shape.
    """
    whole = torch.trunc(x)
    frac = x - whole  # exact: x and trunc(x) share the binade or frac is x itself
    return whole + torch.sign(x) * (frac.abs() >= 0.5).to(x.dtype)


def round_half_to_even(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties to even (torch.round; what HQQ and BitNet quantizers use)."""
    return torch.round(x)


# --------------------------------------------------------------------------------------------
# e2m1 (FP4): 1 sign bit, 2 exponent bits, 1 mantissa bit; codes 0..15, bit 3 the sign
# --------------------------------------------------------------------------------------------


def e2m1_to_float(codes: torch.Tensor) -> torch.Tensor:
    """Decode unpacked e2m1 codes.

    codes: uint8 tensor of any shape with values 0..15 (bit 3 the sign, bits 0..2 index
        gemlite.formats.E2M1_VALUES). Raises TypeError for another dtype, ValueError for a code > 15.
    Returns float64 of the same shape. Code 8 (-0) decodes to -0.0, which compares equal to 0.
    """
    require_tensor("codes", codes)
    require_dtype("codes", codes, (torch.uint8,))
    require_code_range("codes", codes, 0, 15)
    table = torch.tensor(E2M1_VALUES, dtype=torch.float64, device=codes.device)
    return table[codes.long()]


def float_to_e2m1(x: torch.Tensor) -> torch.Tensor:
    """Encode numbers as e2m1 codes: round to nearest, ties to the even mantissa, saturating at +-6.

    The magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 have codes 0..7 and the even codes are the even
    mantissas, so a tie goes to the even code: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2,
    3.5 -> 4, 5 -> 4. NOTE: public GemLite's threshold path sends every tie to the smaller magnitude
    (0.75 -> 0.5, 1.75 -> 1.5, 3.5 -> 3), the PTX ``cvt.rn`` path agrees with this function.
    Magnitudes above 6 (infinities included) saturate to 6, as ``cvt.rn.satfinite`` does.
    A result of magnitude zero is always code 0 (+0): -0.0 and small negatives that round to zero
    never produce code 8, so equal values always have equal codes.

    x: floating-point tensor of any shape. Raises TypeError for a non-float tensor, ValueError for NaN.
    Returns uint8 codes of the same shape.
    """
    x64 = _as_float64("x", x)
    magnitudes = torch.tensor(_E2M1_MAGNITUDES, dtype=torch.float64, device=x64.device)
    a = x64.abs().clamp(max=E2M1_MAX)
    # Bracket |x| between two neighbouring magnitudes: hi is the first one >= |x|.
    hi = torch.searchsorted(magnitudes, a.contiguous())
    lo = (hi - 1).clamp(min=0)
    d_lo = a - magnitudes[lo]
    d_hi = magnitudes[hi] - a
    take_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0))
    mag = torch.where(take_hi, hi, lo)
    negative = (x64 < 0) & (mag != 0)
    return (mag + E2M1_SIGN * negative.long()).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# e4m3fn (FP8): finite only, largest 448, subnormal spacing 2**-9
# --------------------------------------------------------------------------------------------


def e4m3_to_float(x: torch.Tensor) -> torch.Tensor:
    """Decode float8_e4m3fn values to float64 (exact). x: float8_e4m3fn tensor of any shape."""
    require_tensor("x", x)
    require_dtype("x", x, (torch.float8_e4m3fn,))
    return x.double()


def float_to_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Encode numbers as float8_e4m3fn: round to nearest, ties to even, saturating at +-448.

    Computed from the float64 value in one rounding step (torch's own cast goes through fp32 for
    float64 inputs, which can round twice); for fp16/bf16/fp32 inputs the result is bit-identical
    to ``x.clamp(-448, 448).to(torch.float8_e4m3fn)``. Magnitudes above 448 (infinities included)
    saturate. The sign of zero is kept (-0.0 and negatives that round to zero give e4m3 -0), as in
    torch's cast.

    x: floating-point tensor of any shape. Raises TypeError for a non-float tensor, ValueError for NaN.
    Returns a float8_e4m3fn tensor of the same shape.
    """
    x64 = _as_float64("x", x)
    a = x64.abs().clamp(max=FP8_E4M3_MAX)
    _, exponent = torch.frexp(a)  # a = m * 2**exponent with m in [0.5, 1): the binade is exponent - 1
    binade = (exponent.long() - 1).clamp(min=E4M3_MIN_NORMAL_EXP)
    quantum = torch.ldexp(torch.ones_like(a), binade - E4M3_MANTISSA_BITS)
    # a / quantum is exact (power-of-two divisor); torch.round ties to even on the significand.
    # 448 is on the grid and is the largest point, so rounding a <= 448 never leaves the range.
    rounded = torch.round(a / quantum) * quantum
    return torch.copysign(rounded, x64).to(torch.float8_e4m3fn)


# --------------------------------------------------------------------------------------------
# e8m0: a biased power-of-two exponent in one byte
# --------------------------------------------------------------------------------------------


def _e8m0_bytes(name: str, t: object) -> torch.Tensor:
    require_tensor(name, t)
    require_dtype(name, t, (torch.uint8, torch.float8_e8m0fnu))
    # float8_e8m0fnu stores the biased exponent as its bit pattern: reinterpret, never convert.
    return t.view(torch.uint8) if t.dtype == torch.float8_e8m0fnu else t


def e8m0_to_float(scales: torch.Tensor) -> torch.Tensor:
    """Decode e8m0 scale bytes: byte e means 2 ** (e - 127); byte 255 is NaN.

    scales: uint8 tensor of any shape (float8_e8m0fnu is accepted and read as its bit pattern).
    Returns float64 of the same shape: 127 -> 1.0, 0 -> 2**-127, 254 -> 2**127, 255 -> NaN.
    """
    b = _e8m0_bytes("scales", scales).long()
    value = torch.ldexp(torch.ones(b.shape, dtype=torch.float64, device=b.device), b - E8M0_BIAS)
    return torch.where(b == E8M0_NAN, torch.full_like(value, float("nan")), value)


def float_to_e8m0(power_of_two: torch.Tensor) -> torch.Tensor:
    """Encode exact powers of two as e8m0 bytes (2**e -> e + 127); NaN -> 255.

    power_of_two: floating-point tensor of any shape whose entries are 2**e with e in [-127, 127],
        or NaN. Raises ValueError for anything else (zero, negatives, non-powers of two, out of range):
        e8m0 cannot round, so a value that is not on its grid is a caller's bug.
    Returns uint8 of the same shape.
    """
    t = require_tensor("power_of_two", power_of_two)
    if not t.is_floating_point():
        raise TypeError(f"power_of_two: expected a floating-point tensor, got {t.dtype}")
    p = t.double()
    nan = torch.isnan(p)
    mantissa, exponent = torch.frexp(torch.where(nan, torch.ones_like(p), p))
    e = exponent.long() - 1
    ok = nan | ((mantissa == 0.5) & (e >= E8M0_MIN_EXP) & (e <= E8M0_MAX_EXP))
    if not bool(ok.all()):
        where = (~ok).nonzero()[0].tolist()
        raise ValueError(
            f"power_of_two: expected powers of two 2**e with e in [{E8M0_MIN_EXP}, {E8M0_MAX_EXP}] "
            f"(or NaN), got {p[tuple(where)].item()!r} at index {where}"
        )
    return torch.where(nan, torch.full_like(e, E8M0_NAN), e + E8M0_BIAS).to(torch.uint8)
