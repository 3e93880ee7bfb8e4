"""Quantized weights: the canonical operands of every weight kind, their quantizers and dequantization.

A `QuantizedWeight` holds *unpacked* codes ``[N, K]`` (one code per element, whatever the bit width)
plus scales, zeros and, for NVFP4, a tensor scale. Per ``fmt.weight.kind``:

==========  ======================================  ==================================  ==================
kind        codes [N, K]                            scales                              value W[n, k]
==========  ======================================  ==================================  ==================
FLOAT       fp16/bf16 weight                        None                                codes
HQQ         uint8 in [0, 2**bits - 1]               fp16/bf16/fp32 [N, K // g]          (q - z) * s
INT8        int8                                    fp32 [ceil(N/bn), ceil(K/g)]        q * s
FP8         float8_e4m3fn                           as INT8                             q * s
TERNARY     uint8 in {0, 1, 2} (= W + 1)            fp32 [N, K // g]                    (q - 1) * s
MXFP8       float8_e4m3fn                           uint8 e8m0 bytes [N, K // 32]       q * 2**(b - 127)
MXFP4       uint8 e2m1 indices 0..15 (unpacked)     uint8 e8m0 bytes [N, K // 32]       e2m1(q) * 2**(b-127)
NVFP4       uint8 e2m1 indices 0..15 (unpacked)     float8_e4m3fn [N, K // 16]          e2m1(q) * s / ts
==========  ======================================  ==================================  ==================

INT8 / FP8 weights with ``fmt.weight.scaled`` False (A8W8_INT8, A8W8_FP8) have no scales: W = q.

``g`` is ``fmt.weight.group_size`` (None: channel-wise, g = K) and ``bn`` is ``fmt.weight.block_n``
(128 for the 128x128 block-scaled INT8/FP8 variant, else 1). HQQ zeros ``z`` follow
``fmt.weight.zeros``: FLOAT, a float tensor shaped like the scales; INT, one Python int; NONE, absent.
TERNARY's zero is the Python int 1. Scales and zeros are read exactly from their stored dtypes and all
arithmetic is float64, so `dequantize_weight` is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gemlite.formats import (
    FP8_E4M3_MAX,
    INT8_MAX,
    MX_GROUP,
    SCALE_FLOOR,
    Format,
    WeightKind,
    Zeros,
)

from ._checks import (
    SCALE_DTYPES,
    dtype_names,
    require_code_range,
    require_dtype,
    require_finite,
    require_float_tensor,
    require_int,
    require_ndim,
    require_same_device,
    require_shape,
    require_tensor,
)
from .elements import round_half_to_even
from .scaling import (
    absmax_scale,
    block_amax,
    cdiv,
    expand_blocks,
    fp8_codes,
    int8_codes,
    mx_dequantize,
    mx_quantize,
    nvfp4_dequantize,
    nvfp4_quantize,
)

__all__ = ["QuantizedWeight", "quantize_weight", "dequantize_weight", "weight_scale_shape"]

_CODE_DTYPES = {
    WeightKind.FLOAT: (torch.float16, torch.bfloat16),
    WeightKind.HQQ: (torch.uint8,),
    WeightKind.INT8: (torch.int8,),
    WeightKind.FP8: (torch.float8_e4m3fn,),
    WeightKind.TERNARY: (torch.uint8,),
    WeightKind.MXFP8: (torch.float8_e4m3fn,),
    WeightKind.MXFP4: (torch.uint8,),
    WeightKind.NVFP4: (torch.uint8,),
}
_SCALE_DTYPES = {
    WeightKind.HQQ: SCALE_DTYPES,
    WeightKind.INT8: SCALE_DTYPES,
    WeightKind.FP8: SCALE_DTYPES,
    WeightKind.TERNARY: SCALE_DTYPES,
    WeightKind.MXFP8: (torch.uint8, torch.float8_e8m0fnu),
    WeightKind.MXFP4: (torch.uint8, torch.float8_e8m0fnu),
    WeightKind.NVFP4: (torch.float8_e4m3fn,),
}
_INT_CODE_MAX = {WeightKind.TERNARY: 2, WeightKind.MXFP4: 15, WeightKind.NVFP4: 15}
_BLOCKED_KINDS = (WeightKind.INT8, WeightKind.FP8)  # ragged blocks allowed: scales use ceil division
_GROUPED_KINDS = (WeightKind.HQQ, WeightKind.TERNARY, WeightKind.MXFP8, WeightKind.MXFP4, WeightKind.NVFP4)
TERNARY_ZERO = 1


def _resolved_group(fmt: Format, k: int) -> int:
    return k if fmt.weight.group_size is None else fmt.weight.group_size


def weight_scale_shape(fmt: Format, n: int, k: int) -> tuple[int, int] | None:
    """The canonical scale shape of an ``[n, k]`` weight of format ``fmt`` (None for FLOAT weights).

    Raises TypeError for a non-Format ``fmt``; ValueError when the group size does not fit K (grouped
    kinds need g to divide K; INT8/FP8 blocks may be ragged and use ceil division).
    """
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt: expected a gemlite.formats.Format, got {type(fmt).__name__}")
    spec = fmt.weight
    if spec.kind is WeightKind.FLOAT or not spec.scaled:
        return None
    g = _resolved_group(fmt, k)
    if spec.kind in _BLOCKED_KINDS:
        return (cdiv(n, spec.block_n), cdiv(k, g))
    if k % g:
        raise ValueError(
            f"group_size: {fmt.name} groups of {g} must divide in_features K={k} (K % {g} = {k % g})"
        )
    return (n, k // g)


@dataclass(frozen=True, eq=False)
class QuantizedWeight:
    """The canonical quantized operands of one weight (see the module docstring for each kind).

    fmt: the format; its weight spec decides what the other fields must be.
    codes: unpacked codes [N, K] (dtype per kind).
    scales: per-group scales, shape from `weight_scale_shape`; None for FLOAT weights.
    zeros: HQQ FLOAT zeros: tensor shaped like scales; HQQ INT zeros: Python int in [0, 2**bits - 1];
        TERNARY: the Python int 1; otherwise None.
    tensor_scale: NVFP4 only (required there): the positive finite fp32 tensor scale, as a Python float.

    Construction validates everything and raises TypeError (wrong type or dtype) or ValueError (shape,
    count, range, non-finite values), the message naming the field at fault.
    """

    fmt: Format
    codes: torch.Tensor
    scales: torch.Tensor | None
    zeros: torch.Tensor | int | None
    tensor_scale: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fmt, Format):
            raise TypeError(f"fmt: expected a gemlite.formats.Format, got {type(self.fmt).__name__}")
        spec = self.fmt.weight
        kind = spec.kind
        codes = require_tensor("codes", self.codes)
        require_ndim("codes", codes, 2, "[N, K]")
        n, k = codes.shape
        if n == 0 or k == 0:
            raise ValueError(f"codes: expected a non-empty [N, K] weight, got shape {list(codes.shape)}")
        require_dtype("codes", codes, _CODE_DTYPES[kind])
        if kind is WeightKind.HQQ:
            require_code_range("codes", codes, 0, spec.max_code)
        elif kind in _INT_CODE_MAX:
            require_code_range("codes", codes, 0, _INT_CODE_MAX[kind])
        elif codes.is_floating_point() and bool(torch.isnan(codes.double()).any()):
            raise ValueError(f"codes: {kind.name} codes contain NaN")

        expected = weight_scale_shape(self.fmt, n, k)
        self._check_scales(expected)
        self._check_zeros(expected)
        self._check_tensor_scale()

    def _check_scales(self, expected: tuple[int, int] | None) -> None:
        kind = self.fmt.weight.kind
        if expected is None:
            if self.scales is not None:
                raise ValueError(f"scales: {self.fmt.name} weights take no scales, got a tensor")
            return
        scales = require_tensor("scales", self.scales)
        require_dtype("scales", scales, _SCALE_DTYPES[kind])
        require_shape("scales", scales, expected, self._scale_layout())
        require_same_device({"codes": self.codes, "scales": scales})
        if kind in (WeightKind.MXFP8, WeightKind.MXFP4):
            if bool((scales.view(torch.uint8) == 255).any()):
                raise ValueError("scales: e8m0 byte 255 is NaN, not a scale")
        else:
            require_finite("scales", scales)

    def _scale_layout(self) -> str:
        spec = self.fmt.weight
        g = self.group_size
        if spec.kind in _BLOCKED_KINDS:
            return f"one scale per {spec.block_n} x {g} block of the [{self.N}, {self.K}] weight"
        return f"one scale per group of {g} along K={self.K}"

    def _check_zeros(self, expected: tuple[int, int] | None) -> None:
        spec = self.fmt.weight
        zeros = self.zeros
        if spec.kind is WeightKind.TERNARY:
            if require_int("zeros", zeros) != TERNARY_ZERO:
                raise ValueError(f"zeros: TERNARY weights use the integer zero {TERNARY_ZERO}, got {zeros}")
            return
        if spec.kind is not WeightKind.HQQ or spec.zeros is Zeros.NONE:
            if zeros is not None:
                raise ValueError(f"zeros: {self.fmt.name} has no zero-points (zeros must be None)")
            return
        if spec.zeros is Zeros.INT:
            z = require_int("zeros", zeros)
            if not 0 <= z <= spec.max_code:
                raise ValueError(f"zeros: the integer zero must lie in [0, {spec.max_code}], got {z}")
            return
        z = require_tensor("zeros", zeros)
        require_dtype("zeros", z, SCALE_DTYPES)
        require_shape("zeros", z, expected, "float zeros are shaped like the scales")
        require_same_device({"codes": self.codes, "zeros": z})
        require_finite("zeros", z)

    def _check_tensor_scale(self) -> None:
        ts = self.tensor_scale
        if self.fmt.weight.kind is not WeightKind.NVFP4:
            if ts is not None:
                raise ValueError(f"tensor_scale: only NVFP4 weights have one, not {self.fmt.name}")
            return
        if isinstance(ts, bool) or not isinstance(ts, (float, int)):
            raise TypeError(f"tensor_scale: expected a Python float for NVFP4, got {type(ts).__name__}")
        if not (ts > 0 and ts < float("inf")):
            raise ValueError(f"tensor_scale: expected a positive finite float, got {ts!r}")

    @property
    def N(self) -> int:
        """out_features (rows of the weight)."""
        return self.codes.shape[0]

    @property
    def K(self) -> int:
        """in_features (columns of the weight)."""
        return self.codes.shape[1]

    @property
    def group_size(self) -> int:
        """Inputs per scale along K, resolved: K for channel-wise formats."""
        return _resolved_group(self.fmt, self.K)


# --------------------------------------------------------------------------------------------
# Dequantization
# --------------------------------------------------------------------------------------------


def dequantize_weight(qw: QuantizedWeight) -> torch.Tensor:
    """The weight a `QuantizedWeight` stands for: float64 [N, K], computed exactly.

    Raises TypeError when ``qw`` is not a QuantizedWeight.
    """
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a reference.QuantizedWeight, got {type(qw).__name__}")
    spec = qw.fmt.weight
    kind = spec.kind
    shape = (qw.N, qw.K)
    g = qw.group_size
    if kind is WeightKind.FLOAT:
        return qw.codes.double()
    if kind is WeightKind.HQQ:
        s = expand_blocks(qw.scales, 1, g, shape)
        z = expand_blocks(qw.zeros, 1, g, shape) if isinstance(qw.zeros, torch.Tensor) else (qw.zeros or 0)
        return (qw.codes.double() - z) * s
    if kind is WeightKind.TERNARY:
        return (qw.codes.double() - TERNARY_ZERO) * expand_blocks(qw.scales, 1, g, shape)
    if kind in _BLOCKED_KINDS:
        if not spec.scaled:
            return qw.codes.double()
        return qw.codes.double() * expand_blocks(qw.scales, spec.block_n, g, shape)
    if kind in (WeightKind.MXFP8, WeightKind.MXFP4):
        return mx_dequantize(qw.codes, qw.scales, MX_GROUP)
    if kind is WeightKind.NVFP4:
        return nvfp4_dequantize(qw.codes, qw.scales, qw.tensor_scale)
    raise AssertionError(f"unhandled weight kind {kind}")


# --------------------------------------------------------------------------------------------
# Quantization from a float weight
# --------------------------------------------------------------------------------------------


def quantize_weight(
    fmt: Format, W: torch.Tensor, *, scale_dtype: torch.dtype = torch.float16
) -> QuantizedWeight:
    """Quantize a float weight into the canonical operands of ``fmt``.

    fmt: the target format. W: float [N, K] (fp16, bf16, fp32 or fp64), finite.
    scale_dtype: dtype of HQQ scales and float zeros (fp16, bf16 or fp32). Other kinds have fixed
        scale dtypes: fp32 (INT8, FP8, TERNARY), e8m0 bytes (MX), e4m3 (NVFP4).

    Rules (scales computed in fp32 and stored; codes then computed in float64 from the stored scale and
    zero, so every unclamped element lands within half a step of the stored grid):

    * FLOAT: fp16/bf16 W kept as is; fp32/fp64 W rounded to fp16.
    * HQQ, FLOAT zeros (min-max per group of g): ``s = (max - min) / (2**bits - 1)``,
      ``z = -min / s``, both stored in scale_dtype; ``q = clamp(round(W / s + z), 0, 2**bits - 1)``.
      A constant group (max == min) takes s = 1, z = -min: it dequantizes to min rounded to
      scale_dtype (exact when min is representable there) instead of dividing by zero.
    * HQQ, INT zeros (symmetric, the INT8 rule on b bits): ``z = 2**(bits-1)``,
      ``s = max(amax / (2**(bits-1) - 1), 1e-6)``, ``q = clamp(round(W / s) + z, 0, 2**bits - 1)``.
      +-amax map exactly to z +- (2**(bits-1) - 1); code 0 stays unused, as -128 does in INT8.
      Needs bits >= 2 (1-bit codes have no symmetric grid around an integer zero).
    * HQQ rounding is torch.round, half to even, as in the HQQ library.
    * HQQ, NONE zeros: not quantizable from a float weight (the codes must already be centred);
      raises ValueError. Build a QuantizedWeight directly instead.
    * INT8: ``s = max(amax / 127, 1e-6)`` per row (or per block_n x g block, zero-padded),
      ``q = clamp(round_half_away_from_zero(W / s), -128, 127)``.
    * FP8: ``s = max(amax / 448, 1e-6)``, ``q = e4m3(clamp(W / s, -448, 448))`` (RNE).
    * TERNARY (BitNet b1.58 absmean): ``s = max(mean|W|, 1e-6)`` over the whole tensor (mean in
      float64, rounded once to fp32), ``q = clamp(round(W / s), -1, 1) + 1``; scales = s repeated [N, 1].
    * MXFP8 / MXFP4: per 32 along K, ``e = ceil(log2(amax / m))`` (m = 448 or 6) clamped to
      [-127, 127], all-zero groups e = -127; byte = e + 127; codes = element(W / 2**e).
    * NVFP4: ``ts = 448 * 6 / amax(W)`` (fp32; 1.0 for an all-zero W),
      ``s_g = e4m3(min(amax_g / 6 * ts, 448))``, codes ``e2m1(W / (s_g / ts))`` (0 where s_g = 0).
    * INT8 / FP8 without scales (A8W8_INT8, A8W8_FP8): the weight is its own codes, so W must hold
      them exactly (integers in [-128, 127]; e4m3 values); anything else raises ValueError.

    Raises TypeError for a wrong ``fmt``/``W``/``scale_dtype`` type; ValueError for a non-2-D or empty
    W, non-finite values, a group size that does not fit K, HQQ NONE zeros, 1-bit INT zeros, or a
    group whose scale or zero is not representable (zero or infinite) in ``scale_dtype``.
    """
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt: expected a gemlite.formats.Format, got {type(fmt).__name__}")
    W = require_float_tensor("W", W)
    require_ndim("W", W, 2, "[N, K]")
    n, k = W.shape
    if n == 0 or k == 0:
        raise ValueError(f"W: expected a non-empty [N, K] weight, got shape {list(W.shape)}")
    if not isinstance(scale_dtype, torch.dtype) or scale_dtype not in SCALE_DTYPES:
        raise TypeError(f"scale_dtype: expected {dtype_names(SCALE_DTYPES)}, got {scale_dtype}")
    scale_shape = weight_scale_shape(fmt, n, k)  # validates the group size against K
    kind = fmt.weight.kind
    w64 = W.double()

    if kind is WeightKind.FLOAT:
        codes = W if W.dtype in (torch.float16, torch.bfloat16) else W.to(torch.float16)
        return QuantizedWeight(fmt, codes, None, None)
    if kind is WeightKind.HQQ:
        return _quantize_hqq(fmt, w64, scale_dtype)
    if kind in _BLOCKED_KINDS and not fmt.weight.scaled:
        return _codes_as_is(fmt, w64)
    if kind in _BLOCKED_KINDS:
        bn, g = fmt.weight.block_n, _resolved_group(fmt, k)
        max_code = INT8_MAX if kind is WeightKind.INT8 else FP8_E4M3_MAX
        s = absmax_scale(block_amax(w64, bn, g), max_code)
        s_full = expand_blocks(s, bn, g, (n, k))
        codes = int8_codes(w64, s_full) if kind is WeightKind.INT8 else fp8_codes(w64, s_full)
        return QuantizedWeight(fmt, codes, s, None)
    if kind is WeightKind.TERNARY:
        return _quantize_ternary(fmt, w64, scale_shape)
    if kind in (WeightKind.MXFP8, WeightKind.MXFP4):
        codes, scale_bytes = mx_quantize(w64, "e4m3" if kind is WeightKind.MXFP8 else "e2m1", MX_GROUP)
        return QuantizedWeight(fmt, codes, scale_bytes, None)
    if kind is WeightKind.NVFP4:
        codes, s_g, tensor_scale = nvfp4_quantize(w64, "W")
        return QuantizedWeight(fmt, codes, s_g, None, tensor_scale)
    raise AssertionError(f"unhandled weight kind {kind}")


def _quantize_hqq(fmt: Format, w64: torch.Tensor, scale_dtype: torch.dtype) -> QuantizedWeight:
    spec = fmt.weight
    n, k = w64.shape
    g = _resolved_group(fmt, k)
    groups = w64.reshape(n, k // g, g)
    max_code = spec.max_code

    if spec.zeros is Zeros.NONE:
        raise ValueError(
            f"fmt: {fmt.name} has Zeros.NONE, whose codes must already be centred; quantize_weight "
            "cannot produce them from a float weight (build a QuantizedWeight from your codes instead)"
        )
    if spec.zeros is Zeros.FLOAT:
        wmin = groups.amin(dim=-1).to(torch.float32)
        wmax = groups.amax(dim=-1).to(torch.float32)
        constant = wmax == wmin
        s = torch.where(constant, torch.ones_like(wmin), (wmax - wmin) / max_code).to(scale_dtype)
        z = torch.where(constant, -wmin, -wmin / s.float()).to(scale_dtype)
        _require_representable(fmt, s, z, scale_dtype)
        s_full = expand_blocks(s, 1, g, (n, k))
        z_full = expand_blocks(z, 1, g, (n, k))
        codes = round_half_to_even(w64 / s_full + z_full).clamp(0, max_code)
        return QuantizedWeight(fmt, codes.to(torch.uint8), s, z)

    # Zeros.INT: symmetric around the midpoint code.
    if spec.bits < 2:
        raise ValueError(
            f"fmt: {fmt.name} is 1-bit with an integer zero; codes {{0, 1}} have no symmetric grid "
            "around an integer zero, so quantize_weight cannot produce them (use Zeros.FLOAT)"
        )
    zero = 1 << (spec.bits - 1)
    half_range = zero - 1
    amax = groups.abs().amax(dim=-1)
    s = absmax_scale(amax, half_range).to(scale_dtype)
    _require_representable(fmt, s, None, scale_dtype)
    s_full = expand_blocks(s, 1, g, (n, k))
    codes = (round_half_to_even(w64 / s_full) + zero).clamp(0, max_code)
    return QuantizedWeight(fmt, codes.to(torch.uint8), s, zero)


def _require_representable(
    fmt: Format, s: torch.Tensor, z: torch.Tensor | None, scale_dtype: torch.dtype
) -> None:
    """Refuse groups whose stored scale is 0/inf or whose zero overflowed, rather than emit NaN codes.

    This happens in fp16 when a group's spread is tiny next to its offset (z = -min / s > 65504) or
    below fp16's range; fp32 (or bf16) scales, or larger groups, avoid it.
    """
    bad = (s == 0) | ~torch.isfinite(s.float())
    if z is not None:
        bad |= ~torch.isfinite(z.float())
    if bool(bad.any()):
        row, group = bad.nonzero()[0].tolist()
        zero_text = "" if z is None else f", zero {z[row, group].item()!r}"
        raise ValueError(
            f"W: group {group} of row {row} gets scale {s[row, group].item()!r}{zero_text} in {scale_dtype}, "
            f"which is not usable for {fmt.label}; its values span too little for this dtype's range "
            "(use scale_dtype=torch.float32 or a larger group size)"
        )


def _codes_as_is(fmt: Format, w64: torch.Tensor) -> QuantizedWeight:
    """An unscaled INT8 / FP8 weight: W itself as codes, which it must represent exactly."""
    if fmt.weight.kind is WeightKind.INT8:
        codes = w64.clamp(-128, 127).to(torch.int8)
        what = "integers in [-128, 127]"
    else:
        codes = w64.to(torch.float8_e4m3fn)
        what = "float8_e4m3fn values"
    bad = codes.double() != w64
    if bool(bad.any()):
        where = bad.nonzero()[0].tolist()
        raise ValueError(
            f"W: {fmt.name} has no scales, so W must hold its codes exactly ({what}); found "
            f"{w64[tuple(where)].item()!r} at index {where}"
        )
    return QuantizedWeight(fmt, codes, None, None)


def _quantize_ternary(fmt: Format, w64: torch.Tensor, scale_shape: tuple[int, int]) -> QuantizedWeight:
    # One absmean scale for the whole tensor (BitNet b1.58), repeated per group as the canonical form.
    s32 = w64.abs().mean().to(torch.float32).clamp_min(SCALE_FLOOR)
    ternary = round_half_to_even(w64 / s32.double()).clamp(-1, 1)
    scales = s32.expand(scale_shape).contiguous()
    return QuantizedWeight(fmt, (ternary + TERNARY_ZERO).to(torch.uint8), scales, TERNARY_ZERO)
