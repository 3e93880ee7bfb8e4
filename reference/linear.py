"""The golden output of a quantized linear layer, in float64."""

from __future__ import annotations

import torch

from gemlite.formats import ActKind, Format

from ._checks import (
    FLOAT_DTYPES,
    dtype_names,
    require_dtype,
    require_finite,
    require_float_tensor,
    require_ndim,
    require_shape,
    require_tensor,
)
from .activations import dequantize_activation, quantize_activation
from .weights import QuantizedWeight, dequantize_weight

__all__ = ["linear", "OUT_DTYPES"]

OUT_DTYPES = (*FLOAT_DTYPES, torch.int32)
# Activation codes given by the caller (no quantization, no scale): their dtype per kind.
_CODE_DTYPES = {ActKind.INT8_CODES: torch.int8, ActKind.FP8_CODES: torch.float8_e4m3fn}
_INT_BIAS_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64)


def linear(
    fmt: Format,
    x: torch.Tensor,
    qw: QuantizedWeight,
    bias: torch.Tensor | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``y = x @ W.T + bias`` for a quantized weight, every step in float64.

    fmt: the layer's format; must be ``qw.fmt``.
    x: float activations [..., K] (fp16, bf16, fp32 or fp64), finite. If ``fmt.act`` is dynamic, the
        rows of x (all leading dims flattened into M) are first quantized with
        `reference.quantize_activation` and dequantized, so y is the product of the same quantized
        operands a kernel multiplies; otherwise x is converted to float64 exactly. For the activation
        kinds INT8_CODES / FP8_CODES (A8W8_INT8, A8W8_FP8) x IS the codes: int8 / float8_e4m3fn (no NaN),
        taken as they are (no scale).
    qw: the quantized weight [N, K]; dequantized exactly with `reference.dequantize_weight`.
    bias: None or a float tensor [N], added in float64; an integer tensor [N] too (exact).
    out_dtype: None returns float64; fp16, bf16, fp32 or fp64 casts the float64 result once; int32
        (an integer-valued result only, e.g. int8 codes with an integer bias) converts it exactly.
    Returns [..., N].
    Raises TypeError for a wrong type or dtype; ValueError when fmt differs from qw.fmt, x's last dim
    is not K, bias is not [N], values are non-finite, or an int32 out_dtype meets a result that is not
    an integer within int32's range.
    """
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt: expected a gemlite.formats.Format, got {type(fmt).__name__}")
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a reference.QuantizedWeight, got {type(qw).__name__}")
    if qw.fmt != fmt:
        raise ValueError(f"qw: was quantized for {qw.fmt.label}, not for fmt {fmt.label}")
    if fmt.act.kind in _CODE_DTYPES:
        x = require_tensor("x", x)
        require_dtype("x", x, (_CODE_DTYPES[fmt.act.kind],))
        require_finite("x", x)
    else:
        x = require_float_tensor("x", x)
    if x.dim() == 0 or x.shape[-1] != qw.K:
        raise ValueError(
            f"x: expected shape [..., K={qw.K}] to match the weight [N={qw.N}, K={qw.K}], got {list(x.shape)}"
        )
    if out_dtype is not None and (not isinstance(out_dtype, torch.dtype) or out_dtype not in OUT_DTYPES):
        raise TypeError(f"out_dtype: expected None or {dtype_names(OUT_DTYPES)}, got {out_dtype}")
    if bias is not None:
        if isinstance(bias, torch.Tensor) and bias.dtype in _INT_BIAS_DTYPES:
            require_tensor("bias", bias)
        else:
            bias = require_float_tensor("bias", bias)
        require_ndim("bias", bias, 1, f"[N={qw.N}]")
        require_shape("bias", bias, (qw.N,), "one value per output feature")

    rows = x.reshape(-1, qw.K)
    if fmt.act.is_dynamic:
        x64 = dequantize_activation(quantize_activation(fmt.act, rows))
    else:
        x64 = rows.double()
    w64 = dequantize_weight(qw).to(x64.device)
    y = x64 @ w64.T
    if bias is not None:
        y = y + bias.double().to(y.device)
    y = y.reshape(*x.shape[:-1], qw.N)
    if out_dtype == torch.int32:
        integral = torch.isfinite(y) & (y == y.round()) & (y.abs() <= 2**31 - 1)
        if not bool(integral.all()):
            bad = (~integral).nonzero()[0].tolist()
            raise ValueError(
                f"out_dtype: int32 holds integer results only, got {y[tuple(bad)].item()!r} at index {bad}"
            )
    return y if out_dtype is None else y.to(out_dtype)
