"""Scale rules shared by weights and activations: absmax (INT8/FP8), MX (e8m0 per 32), NVFP4.

Each rule works on a float64 matrix ``x[R, K]`` whose rows are weight rows (n) or tokens (m); groups
run along K inside one row, and the INT8/FP8 block variant also spans ``block_rows`` rows.

Order of work, the same in every rule: the scale is computed in fp32 (as a kernel computes it) and
stored in its format; the codes are then computed from the *stored* scale, in float64, with one
rounding into the element format. The float64 quotients decide rounding ties exactly: for fp16, bf16
or fp32 operands, a quotient that is not exactly a tie differs from it by far more than a float64 ulp.
"""

from __future__ import annotations

import torch

from gemlite.formats import (
    E2M1_MAX,
    E8M0_BIAS,
    FP8_E4M3_MAX,
    INT8_MAX,
    INT8_MIN,
    MX_SCALE_FLOOR_EXP,
    NVFP4_GROUP,
    SCALE_FLOOR,
)

from .elements import (
    e2m1_to_float,
    e8m0_to_float,
    float_to_e2m1,
    float_to_e4m3,
    round_half_away_from_zero,
)

NVFP4_TENSOR_NUMERATOR = FP8_E4M3_MAX * E2M1_MAX  # 2688: tensor_scale = 448 * 6 / amax
MX_MAX_EXP = 127


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def block_amax(x: torch.Tensor, block_rows: int, block_cols: int) -> torch.Tensor:
    """Max |x| over each ``block_rows x block_cols`` block of ``x[R, K]``.

    Ragged edges are padded with zeros, which cannot change a max of absolute values.
    Returns float64 [ceil(R / block_rows), ceil(K / block_cols)].
    """
    rows, cols = x.shape
    n_rb, n_cb = cdiv(rows, block_rows), cdiv(cols, block_cols)
    padded = torch.zeros(n_rb * block_rows, n_cb * block_cols, dtype=torch.float64, device=x.device)
    padded[:rows, :cols] = x.abs()
    return padded.reshape(n_rb, block_rows, n_cb, block_cols).amax(dim=(1, 3))


def expand_blocks(s: torch.Tensor, block_rows: int, block_cols: int, shape: tuple[int, int]) -> torch.Tensor:
    """Broadcast per-block values ``s[Rb, Kb]`` to every element of a ``shape`` matrix, as float64."""
    rows, cols = shape
    full = s.double().repeat_interleave(block_rows, dim=0).repeat_interleave(block_cols, dim=1)
    return full[:rows, :cols]


# --------------------------------------------------------------------------------------------
# Absmax scaling: INT8 (amax / 127) and FP8 e4m3 (amax / 448)
# --------------------------------------------------------------------------------------------


def absmax_scale(amax: torch.Tensor, max_code: float) -> torch.Tensor:
    """``max(amax / max_code, 1e-6)`` in fp32 (one rounding of the exact quotient).

    The floor keeps all-zero rows/blocks finite: their codes are then 0 and dequantize exactly.
    """
    return (amax.double() / max_code).to(torch.float32).clamp_min(SCALE_FLOOR)


def int8_codes(x: torch.Tensor, s_full: torch.Tensor) -> torch.Tensor:
    """``clamp(round_half_away(x / s), -128, 127)`` as int8; x and s_full float64 of one shape."""
    return round_half_away_from_zero(x / s_full).clamp(INT8_MIN, INT8_MAX).to(torch.int8)


def fp8_codes(x: torch.Tensor, s_full: torch.Tensor) -> torch.Tensor:
    """``clamp(x / s, -448, 448)`` rounded to e4m3 (RNE); x and s_full float64 of one shape."""
    return float_to_e4m3((x / s_full).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX))


# --------------------------------------------------------------------------------------------
# MX: one e8m0 scale per group of 32 inputs
# --------------------------------------------------------------------------------------------


def mx_exponent(amax: torch.Tensor, max_code: float) -> torch.Tensor:
    """The smallest e with ``amax <= max_code * 2**e``, i.e. ``ceil(log2(amax / max_code))``.

    Computed exactly: for a power of two, frexp gives mantissa 0.5 and log2 is exponent - 1; otherwise
    the ceiling is the frexp exponent. (amax / max_code is a correctly rounded float64 quotient of a
    value with at most 24 significant bits, so it is a power of two only when the exact one is.)
    An all-zero group takes the floor exponent -127 (byte 0); results are clamped to [-127, 127].
    Returns int64 of amax's shape.
    """
    ratio = amax.double() / max_code
    mantissa, exponent = torch.frexp(ratio)
    e = torch.where(mantissa == 0.5, exponent.long() - 1, exponent.long())
    e = torch.where(amax == 0, torch.full_like(e, MX_SCALE_FLOOR_EXP), e)
    return e.clamp(MX_SCALE_FLOOR_EXP, MX_MAX_EXP)


def mx_quantize(x: torch.Tensor, element: str, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MXFP8 (element "e4m3") or MXFP4 (element "e2m1") codes and e8m0 bytes of ``x[R, K]``.

    K must be a multiple of ``group`` (checked by the caller). Returns (codes, scale bytes):
    e4m3 codes float8_e4m3fn [R, K] or e2m1 codes uint8 [R, K]; bytes uint8 [R, K // group].
    """
    max_code = FP8_E4M3_MAX if element == "e4m3" else E2M1_MAX
    rows, cols = x.shape
    e = mx_exponent(x.abs().reshape(rows, cols // group, group).amax(dim=-1), max_code)
    # Dividing by a power of two is exact: the only rounding is into the element format.
    scaled = x / torch.ldexp(torch.ones_like(x), e.repeat_interleave(group, dim=1))
    if element == "e4m3":
        codes = float_to_e4m3(scaled.clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX))
    else:
        codes = float_to_e2m1(scaled)
    return codes, (e + E8M0_BIAS).to(torch.uint8)


def mx_dequantize(codes: torch.Tensor, scale_bytes: torch.Tensor, group: int) -> torch.Tensor:
    """``element(code) * 2**(byte - 127)`` in float64, for e4m3 or e2m1 (uint8) codes."""
    values = codes.double() if codes.dtype == torch.float8_e4m3fn else e2m1_to_float(codes)
    return values * e8m0_to_float(scale_bytes).repeat_interleave(group, dim=1)


# --------------------------------------------------------------------------------------------
# NVFP4: e2m1 codes, one e4m3 scale per 16 inputs, one fp32 tensor scale
# --------------------------------------------------------------------------------------------


def nvfp4_tensor_scale(x: torch.Tensor, name: str = "x") -> float:
    """``448 * 6 / amax(|x|)`` rounded to fp32 (the scale that maps the largest group onto e4m3's top).

    An all-zero (or empty) tensor takes 1.0. Raises ValueError when amax is so small that the fp32
    quotient overflows (amax below about 8e-36), since no finite tensor scale then exists.
    """
    amax = float(x.abs().max()) if x.numel() else 0.0
    if amax == 0.0:
        return 1.0
    scale = torch.tensor(NVFP4_TENSOR_NUMERATOR / amax, dtype=torch.float64).to(torch.float32)
    if not bool(torch.isfinite(scale)):
        raise ValueError(
            f"{name}: amax {amax!r} is too small for a finite fp32 NVFP4 tensor scale (448 * 6 / amax)"
        )
    return float(scale)


def nvfp4_group_scale(amax_g: torch.Tensor, ts32: torch.Tensor) -> torch.Tensor:
    """``min(fp32(fp32(amax_g) / 6) * ts, 448)`` in fp32, before the e4m3 rounding: the quotient correctly
    rounded on every device. (CUDA torch divides an fp32 tensor by a Python scalar as a product with
    the rounded reciprocal, one ulp off the quotient at times: 2.921875 / 6 then lands 1 ulp above,
    and ``* 558.5454`` rounds to 272.00003 instead of the e4m3 tie 272.) The float64 quotient of a
    value with at most 24 significant bits by 6 rounds once more to fp32 without a double-rounding
    error: its binary expansion repeats ``01`` (one third), so it never lies on an fp32 midpoint."""
    q = (amax_g.to(torch.float32).double() / E2M1_MAX).to(torch.float32)
    return (q * ts32).clamp(max=FP8_E4M3_MAX)


def nvfp4_quantize(x: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, torch.Tensor, float]:
    """NVFP4 codes, group scales and tensor scale of ``x[R, K]`` (K a multiple of 16, checked by the caller).

    ``s_g = e4m3(min(amax_g / 6 * tensor_scale, 448))``, computed in fp32 in that order as the
    kernels do (`nvfp4_group_scale`: the quotient correctly rounded on every device); codes
    ``e2m1(x / (s_g / tensor_scale))``, evaluated as ``x * tensor_scale / s_g`` (the product is exact
    in float64, so one rounding remains); a zero group scale gives code 0.
    name: the argument name for error messages. Raises ValueError as `nvfp4_tensor_scale`.
    Returns (codes uint8 [R, K], s_g float8_e4m3fn [R, K // 16], tensor_scale float).
    """
    rows, cols = x.shape
    tensor_scale = nvfp4_tensor_scale(x, name)
    amax_g = x.abs().reshape(rows, cols // NVFP4_GROUP, NVFP4_GROUP).amax(dim=-1)
    ts32 = torch.tensor(tensor_scale, dtype=torch.float32, device=x.device)
    s_g = float_to_e4m3(nvfp4_group_scale(amax_g, ts32))
    s_full = s_g.double().repeat_interleave(NVFP4_GROUP, dim=1)
    safe = torch.where(s_full == 0, torch.ones_like(s_full), s_full)
    codes = float_to_e2m1(x * tensor_scale / safe)
    codes = torch.where(s_full == 0, torch.zeros_like(codes), codes)
    return codes, s_g, tensor_scale


def nvfp4_dequantize(codes: torch.Tensor, s_g: torch.Tensor, tensor_scale: float) -> torch.Tensor:
    """``e2m1(code) * s_g / tensor_scale`` in float64."""
    return e2m1_to_float(codes) * s_g.double().repeat_interleave(NVFP4_GROUP, dim=1) / tensor_scale
