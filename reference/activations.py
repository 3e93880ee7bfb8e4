"""Dynamic activation quantization: the codes and scales a kernel must produce from ``x[M, K]``.

Per ``act.kind`` (groups run along K inside one token row):

=======  ==========================  =========================================  =========================
kind     codes [M, K]                scales                                     value x[m, k]
=======  ==========================  =========================================  =========================
INT8     int8                        fp32 [M, 1] per token, [M, K // g] grouped  q * s
FP8      float8_e4m3fn               as INT8                                    q * s
MXFP8    float8_e4m3fn               uint8 e8m0 bytes [M, K // 32]              q * 2**(b - 127)
MXFP4    uint8 e2m1 indices 0..15    uint8 e8m0 bytes [M, K // 32]              e2m1(q) * 2**(b - 127)
NVFP4    uint8 e2m1 indices 0..15    float8_e4m3fn [M, K // 16] + tensor_scale  e2m1(q) * s / ts
=======  ==========================  =========================================  =========================

The rules are the weight rules of `reference.weights` applied per token: INT8 ``s = max(amax / 127,
1e-6)`` with round half away from zero, FP8 ``s = max(amax / 448, 1e-6)``, MX exponents
``ceil(log2(amax / max_code))`` per 32, NVFP4 with one tensor scale over all of x.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gemlite.formats import (
    FP8_E4M3_MAX,
    INT8_MAX,
    MX_GROUP,
    NVFP4_GROUP,
    ActKind,
    ActSpec,
)

from ._checks import (
    require_code_range,
    require_dtype,
    require_finite,
    require_float_tensor,
    require_ndim,
    require_same_device,
    require_shape,
    require_tensor,
)
from .scaling import (
    absmax_scale,
    block_amax,
    expand_blocks,
    fp8_codes,
    int8_codes,
    mx_dequantize,
    mx_quantize,
    nvfp4_dequantize,
    nvfp4_quantize,
)

__all__ = ["QuantizedActivation", "quantize_activation", "dequantize_activation", "activation_group_size"]

_CODE_DTYPES = {
    ActKind.INT8: torch.int8,
    ActKind.FP8: torch.float8_e4m3fn,
    ActKind.MXFP8: torch.float8_e4m3fn,
    ActKind.MXFP4: torch.uint8,
    ActKind.NVFP4: torch.uint8,
}
_SCALE_DTYPES = {
    ActKind.INT8: (torch.float32,),
    ActKind.FP8: (torch.float32,),
    ActKind.MXFP8: (torch.uint8, torch.float8_e8m0fnu),
    ActKind.MXFP4: (torch.uint8, torch.float8_e8m0fnu),
    ActKind.NVFP4: (torch.float8_e4m3fn,),
}
_FIXED_GROUP = {ActKind.MXFP8: MX_GROUP, ActKind.MXFP4: MX_GROUP, ActKind.NVFP4: NVFP4_GROUP}


def _check_act(act: object) -> ActSpec:
    if not isinstance(act, ActSpec):
        raise TypeError(f"act: expected a gemlite.formats.ActSpec, got {type(act).__name__}")
    if act.kind is ActKind.NONE:
        raise ValueError("act: ActKind.NONE does not quantize activations; there is nothing to compute")
    if not act.is_dynamic:
        raise ValueError(
            f"act: {act.kind.name} activations are given as codes (no scale); there is nothing to quantize"
        )
    if act.kind in _FIXED_GROUP and act.group_size != _FIXED_GROUP[act.kind]:
        raise ValueError(
            f"act.group_size: {act.kind.name} activations use groups of {_FIXED_GROUP[act.kind]}, "
            f"got {act.group_size}"
        )
    if act.group_size is not None and act.group_size <= 0:
        raise ValueError(f"act.group_size: must be positive or None (per token), got {act.group_size}")
    return act


def activation_group_size(act: ActSpec, k: int) -> int:
    """Inputs per activation scale for K = ``k`` (K itself per token).

    Raises ValueError unless the group divides K, or for a malformed ``act`` (see QuantizedActivation).
    """
    act = _check_act(act)
    g = k if act.group_size is None else act.group_size
    if k % g:
        raise ValueError(
            f"act.group_size: {act.kind.name} activation groups of {g} must divide K={k} (K % {g} = {k % g})"
        )
    return g


@dataclass(frozen=True, eq=False)
class QuantizedActivation:
    """The quantized operands of one activation matrix (see the module docstring for each kind).

    act: the activation spec (kind must not be NONE).
    codes: [M, K] (int8, float8_e4m3fn or uint8 e2m1 indices, per kind).
    scales: [M, K // g] (fp32, uint8 e8m0 bytes or float8_e4m3fn, per kind); g = K per token.
    tensor_scale: NVFP4 only (required there): positive finite Python float.

    Construction validates everything and raises TypeError/ValueError naming the field at fault.
    """

    act: ActSpec
    codes: torch.Tensor
    scales: torch.Tensor
    tensor_scale: float | None = None

    def __post_init__(self) -> None:
        kind = _check_act(self.act).kind
        codes = require_tensor("codes", self.codes)
        require_ndim("codes", codes, 2, "[M, K]")
        m, k = codes.shape
        if k == 0:
            raise ValueError(f"codes: K must be at least 1, got shape {list(codes.shape)}")
        require_dtype("codes", codes, (_CODE_DTYPES[kind],))
        if kind in (ActKind.MXFP4, ActKind.NVFP4):
            require_code_range("codes", codes, 0, 15)
        elif codes.is_floating_point() and bool(torch.isnan(codes.double()).any()):
            raise ValueError(f"codes: {kind.name} codes contain NaN")

        g = activation_group_size(self.act, k)
        scales = require_tensor("scales", self.scales)
        require_dtype("scales", scales, _SCALE_DTYPES[kind])
        require_shape("scales", scales, (m, k // g), f"one scale per group of {g} along K={k}")
        require_same_device({"codes": codes, "scales": scales})
        if kind in (ActKind.MXFP8, ActKind.MXFP4):
            if bool((scales.view(torch.uint8) == 255).any()):
                raise ValueError("scales: e8m0 byte 255 is NaN, not a scale")
        else:
            require_finite("scales", scales)

        ts = self.tensor_scale
        if kind is not ActKind.NVFP4:
            if ts is not None:
                raise ValueError(f"tensor_scale: only NVFP4 activations have one, not {kind.name}")
        elif isinstance(ts, bool) or not isinstance(ts, (float, int)):
            raise TypeError(f"tensor_scale: expected a Python float for NVFP4, got {type(ts).__name__}")
        elif not (0 < ts < float("inf")):
            raise ValueError(f"tensor_scale: expected a positive finite float, got {ts!r}")

    @property
    def M(self) -> int:
        """Rows (tokens)."""
        return self.codes.shape[0]

    @property
    def K(self) -> int:
        """in_features."""
        return self.codes.shape[1]

    @property
    def group_size(self) -> int:
        """Inputs per scale along K, resolved: K per token."""
        return activation_group_size(self.act, self.K)


def quantize_activation(act: ActSpec, x: torch.Tensor) -> QuantizedActivation:
    """Quantize activations ``x[M, K]`` as a kernel's dynamic quantizer must.

    act: the activation spec (not NONE). x: float [M, K] (fp16, bf16, fp32 or fp64), finite; M may be 0.
    Scales are computed in fp32 and stored; codes are computed in float64 from the stored scales.
    Raises TypeError for a wrong ``act``/``x`` type; ValueError for NONE, a non-2-D x, non-finite values,
    or a group size that does not divide K (block INT8/FP8 needs K % 128 == 0, MX K % 32, NVFP4 K % 16).
    """
    _check_act(act)
    x = require_float_tensor("x", x)
    require_ndim("x", x, 2, "[M, K]")
    m, k = x.shape
    if k == 0:
        raise ValueError(f"x: K must be at least 1, got shape {list(x.shape)}")
    g = activation_group_size(act, k)
    x64 = x.double()
    kind = act.kind
    if kind in (ActKind.INT8, ActKind.FP8):
        max_code = INT8_MAX if kind is ActKind.INT8 else FP8_E4M3_MAX
        s = absmax_scale(block_amax(x64, 1, g), max_code)
        s_full = expand_blocks(s, 1, g, (m, k))
        codes = int8_codes(x64, s_full) if kind is ActKind.INT8 else fp8_codes(x64, s_full)
        return QuantizedActivation(act, codes, s)
    if kind in (ActKind.MXFP8, ActKind.MXFP4):
        codes, scale_bytes = mx_quantize(x64, "e4m3" if kind is ActKind.MXFP8 else "e2m1", g)
        return QuantizedActivation(act, codes, scale_bytes)
    if kind is ActKind.NVFP4:
        codes, s_g, tensor_scale = nvfp4_quantize(x64, "x")
        return QuantizedActivation(act, codes, s_g, tensor_scale)
    raise AssertionError(f"unhandled activation kind {kind}")


def dequantize_activation(qa: QuantizedActivation) -> torch.Tensor:
    """The activations a `QuantizedActivation` stands for: float64 [M, K], computed exactly.

    Raises TypeError when ``qa`` is not a QuantizedActivation.
    """
    if not isinstance(qa, QuantizedActivation):
        raise TypeError(f"qa: expected a reference.QuantizedActivation, got {type(qa).__name__}")
    kind = qa.act.kind
    g = qa.group_size
    if kind in (ActKind.INT8, ActKind.FP8):
        return qa.codes.double() * expand_blocks(qa.scales, 1, g, (qa.M, qa.K))
    if kind in (ActKind.MXFP8, ActKind.MXFP4):
        return mx_dequantize(qa.codes, qa.scales, g)
    if kind is ActKind.NVFP4:
        return nvfp4_dequantize(qa.codes, qa.scales, qa.tensor_scale)
    raise AssertionError(f"unhandled activation kind {kind}")
