"""The golden output of a quantized linear layer, in float64."""

from __future__ import annotations

import torch

from gemlite.formats import Format

from ._checks import FLOAT_DTYPES, dtype_names, require_float_tensor, require_ndim, require_shape
from .activations import dequantize_activation, quantize_activation
from .weights import QuantizedWeight, dequantize_weight

__all__ = ["linear", "OUT_DTYPES"]

OUT_DTYPES = FLOAT_DTYPES


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
        operands a kernel multiplies; otherwise x is converted to float64 exactly.
    qw: the quantized weight [N, K]; dequantized exactly with `reference.dequantize_weight`.
    bias: None or a float tensor [N], added in float64.
    out_dtype: None returns float64; fp16, bf16, fp32 or fp64 casts the float64 result once.
    Returns [..., N].
    Raises TypeError for a wrong type or dtype; ValueError when fmt differs from qw.fmt, x's last dim
    is not K, bias is not [N], or values are non-finite.
    """
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt: expected a gemlite.formats.Format, got {type(fmt).__name__}")
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a reference.QuantizedWeight, got {type(qw).__name__}")
    if qw.fmt != fmt:
        raise ValueError(f"qw: was quantized for {qw.fmt.label}, not for fmt {fmt.label}")
    x = require_float_tensor("x", x)
    if x.dim() == 0 or x.shape[-1] != qw.K:
        raise ValueError(
            f"x: expected shape [..., K={qw.K}] to match the weight [N={qw.N}, K={qw.K}], got {list(x.shape)}"
        )
    if out_dtype is not None and (not isinstance(out_dtype, torch.dtype) or out_dtype not in OUT_DTYPES):
        raise TypeError(f"out_dtype: expected None or {dtype_names(OUT_DTYPES)}, got {out_dtype}")
    if bias is not None:
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
    return y if out_dtype is None else y.to(out_dtype)
