"""From a drawn case to the two things the suite compares: a gemlite layer and the float64 golden.

Three steps, each a function:

1. `make_operands(case)`: draw x, the float weight W and the bias from ``case.seed`` (a
   ``torch.Generator``; the value distribution is ``case.dist``), quantize W with the REFERENCE
   (``reference.quantize_weight``) into a `reference.QuantizedWeight` (codes, scales, zeros).
2. `build_layer(case, ops)`: hand exactly those codes, scales and zeros to gemlite through its PUBLIC
   API (``GemLiteLinear(...).pack(...)``, or the helper a format is normally built with), so the suite
   tests what users call.
3. `golden(case, ops)`: the float64 golden ``reference.linear`` and the magnitudes the error bound
   needs (`harness.numerics.Golden`).

`SUPPORT` is the registry of what gemlite supports and the suite draws: one `FormatSupport` entry per
format, saying which group sizes, zero-point forms, dtypes and packing words are legal and how the
layer is built. Adding a format (dynamic INT8/FP8 activations, MXFP, NVFP4) to the suite is one entry
here (plus its builder if it needs a new one).

Nothing in this module imports gemlite's kernels at import time: callers (the suite's conftest, the
reproducer) first decide whether the Triton interpreter runs, which must happen before that import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from gemlite.formats import FORMATS, WeightKind, Zeros
from harness.numerics import Golden, Precision, golden_from_dequantized

if TYPE_CHECKING:
    from torch import nn

    from harness.strategies import Case

#: The kernel families, as in ``gemlite.kernels.MATMUL_TYPES`` (a unit test checks they agree; kept
#: here so drawing cases does not import the kernels), and "AUTO" for the layer's own dispatch.
MATMUL_TYPES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM")
AUTO = "AUTO"
FAMILIES = (*MATMUL_TYPES, AUTO)

BIAS_KINDS = ("none", "input", "float32")
#: Value distributions `make_operands` knows; see `_draw_float`.
DISTRIBUTIONS = ("normal", "outliers", "zeros", "positive", "massive", "near_overflow")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}

# near_overflow: the largest |x| or |W| drawn, and the most any sum_k |x_k W_k| + |b| may reach.
# 2**15 is half of fp16's largest finite value (65504): the golden stays finite in every output dtype
# while a kernel that accumulates, dequantizes or multiplies in fp16 gets close to the edge.
NEAR_OVERFLOW = 2.0**15
# massive: the value of the leading input channel (exact in fp16 and bf16).
MASSIVE = 2.0**15


class CaseRejected(Exception):
    """The reference refused to quantize a drawn weight (e.g. an fp16 zero-point overflows): the case
    is not a test of the kernels, and the suite draws another one."""


# --------------------------------------------------------------------------------------------
# The support registry
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatSupport:
    """What the suite may draw for one format and how gemlite builds a layer for it.

    name: the FORMATS key.
    build: ``build(case, ops) -> nn.Module`` through gemlite's public API.
    group_sizes: group sizes to draw (None = channel-wise).
    zeros: zero-point forms to draw.
    scale_dtypes: dtype names of the stored scales ("none" for formats without scales).
    input_dtypes: activation dtype names.
    output_dtypes: output dtype names; None means "the activation dtype only" (helpers that fix it).
    bias_kinds: which biases to draw (see `BIAS_KINDS`).
    packing_bitwidths: packing words for packed codes; (32,) for formats stored unpacked.
    """

    name: str
    build: Callable[[Case, Operands], nn.Module]
    group_sizes: tuple[int | None, ...]
    zeros: tuple[Zeros, ...]
    scale_dtypes: tuple[str, ...]
    input_dtypes: tuple[str, ...] = ("float16", "bfloat16")
    output_dtypes: tuple[str, ...] | None = ("float16", "bfloat16", "float32")
    bias_kinds: tuple[str, ...] = BIAS_KINDS
    packing_bitwidths: tuple[int, ...] = (32,)

    def __post_init__(self) -> None:
        if self.name not in FORMATS:
            raise ValueError(f"name: {self.name!r} is not a format of gemlite.formats.FORMATS")

    @property
    def code_bits(self) -> int:
        return FORMATS[self.name].weight.bits

    @property
    def packed(self) -> bool:
        """Codes are bit-packed into words (HQQ, ternary)."""
        return FORMATS[self.name].weight.kind in (WeightKind.HQQ, WeightKind.TERNARY)

    def output_dtypes_for(self, input_dtype: str) -> tuple[str, ...]:
        """The output dtypes legal with `input_dtype`."""
        return (input_dtype,) if self.output_dtypes is None else self.output_dtypes


def _build_gemlite_linear(case: Case, ops: Operands) -> nn.Module:
    """``GemLiteLinear(W_nbits, ...).pack(codes, scales, zeros, bias)``: A16W16, HQQ, INT8, FP8."""
    from gemlite import DType, GemLiteLinear

    qw = ops.qw
    kind = qw.fmt.weight.kind
    w_nbits = 16 if kind is WeightKind.FLOAT else qw.fmt.weight.bits
    layer = GemLiteLinear(
        w_nbits,
        group_size=case.group_size,
        in_features=case.K,
        out_features=case.N,
        input_dtype=DType.from_torch(DTYPES[case.input_dtype]),
        output_dtype=DType.from_torch(DTYPES[case.output_dtype]),
    )
    kwargs = {"packing_bitwidth": case.packing_bitwidth} if kind is WeightKind.HQQ else {}
    return layer.pack(qw.codes, qw.scales, qw.zeros, ops.bias, **kwargs)


def _build_ternary(case: Case, ops: Operands) -> nn.Module:
    """``gemlite.helper.A16W158_INT(device, dtype).from_weights(weight {-1, 0, 1}, weight_scale, bias)``."""
    from gemlite.helper import A16W158_INT

    qw = ops.qw
    weight = qw.codes.to(torch.int8) - 1
    scale = qw.scales.reshape(-1)
    if not bool((scale == scale[0]).all()):
        raise AssertionError("a ternary weight must carry one tensor scale (repeated per row)")
    proc = A16W158_INT(device=qw.codes.device, dtype=DTYPES[case.input_dtype])
    return proc.from_weights(weight, float(scale[0]), ops.bias)


_HQQ_GROUPS = (32, 64, 128, 256, None)
_HQQ_ZEROS = (Zeros.FLOAT, Zeros.INT, Zeros.NONE)
_META = ("float16", "bfloat16", "float32")
_CHANNEL_META = ("float32", "float16", "bfloat16")  # INT8/FP8 channel scales: fp32 is the usual form

#: Every format the suite runs, with what may be drawn for it. Later releases add entries here.
SUPPORT: dict[str, FormatSupport] = {
    s.name: s
    for s in (
        FormatSupport("A16W16", _build_gemlite_linear, (None,), (Zeros.NONE,), ("none",)),
        *(
            FormatSupport(
                f"A16W{bits}_HQQ_INT",
                _build_gemlite_linear,
                _HQQ_GROUPS,
                _HQQ_ZEROS,
                _META,
                packing_bitwidths=(32, 8),
            )
            for bits in (8, 4, 2, 1)
        ),
        FormatSupport("A16W8_INT8", _build_gemlite_linear, (None,), (Zeros.NONE,), _CHANNEL_META),
        FormatSupport("A16W8_FP8", _build_gemlite_linear, (None,), (Zeros.NONE,), _CHANNEL_META),
        # The helper fixes the output dtype to the activation dtype and the scale to fp32.
        FormatSupport("A16W158_INT", _build_ternary, (None,), (Zeros.INT,), ("float32",), output_dtypes=None),
    )
}


# --------------------------------------------------------------------------------------------
# Operands
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operands:
    """The tensors of one case, shared by gemlite and the reference.

    x: [M, K] activations in the case's input dtype.
    qw: the `reference.QuantizedWeight` (codes, scales, zeros) both sides use.
    bias: [N] in the case's bias dtype, or None.
    W_float: [N, K] float64, the weight before quantization (for the SQNR against the float product).
    """

    x: torch.Tensor
    qw: object
    bias: torch.Tensor | None
    W_float: torch.Tensor


def _randn(shape, g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _rand(shape, g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float64)


def _draw_float(case: Case, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """x [M, K], W [N, K], bias [N] in float64 following ``case.dist``; and, for near_overflow, whether
    x (True) or W (False) is the large side.

    normal: x ~ N(0, 1), W ~ N(0, 1/K) (so |y| ~ |x|), bias ~ N(0, 1/4).
    outliers: normal, with ~3% of the input channels of x scaled by 64 (LLM activation outliers) and
        ~1% of the weights scaled by 16 (groups with one large value quantize coarsely).
    zeros: normal, with ~30% of the rows of x, ~20% of the rows of W and ~20% of W's groups all zero.
    positive: |normal| + an offset, for x and W: no cancellation, so the partial sums grow like K and
        any accumulation or rounding error shows in full.
    massive: positive, with input channel 0 of x at 2**15 (a "massive activation", as LLMs have in a
        few channels) and the other channels scaled so that their products add up to about 1/48 of
        channel 0's. The worst case for a low-precision accumulator: once the leading term is in the
        running sum, each later 32-wide K tile (at K = 2048) adds less than half an fp16 ulp of it and
        is lost: an fp16 accumulator drops the whole remainder, ~9x what the bound allows, while an
        fp32 one keeps it.
    near_overflow: one side scaled so its largest magnitude is 2**15, the other (after quantization,
        see `_fit_near_overflow`) so the largest sum_k |x_k W_k| + |b| is about 2**15.
    """
    M, K, N = case.M, case.K, case.N
    x = _randn((M, K), g)
    W = _randn((N, K), g) / math.sqrt(K)
    bias = _randn((N,), g) * 0.5
    big_x = False
    if case.dist == "outliers":
        x[:, _rand((K,), g) < 0.03] *= 64.0
        W[_rand((N, K), g) < 0.01] *= 16.0
    elif case.dist == "zeros":
        x[_rand((M,), g) < 0.3] = 0.0
        W[_rand((N,), g) < 0.2] = 0.0
        gs = case.resolved_group_size
        grouped = W.view(N, K // gs, gs)
        grouped[_rand((N, K // gs), g) < 0.2] = 0.0
    elif case.dist == "positive":
        x = x.abs() + 0.25
        W = W.abs() + 0.25 / math.sqrt(K)
    elif case.dist == "massive":
        x = x.abs()
        W = W.abs() + 0.25 / math.sqrt(K)
        if K > 1:
            x[:, 0] = MASSIVE
            lead = x[:, :1] @ W[:, :1].T
            rest = x[:, 1:] @ W[:, 1:].T
            x[:, 1:] *= float((lead / (48.0 * rest)).median())
    elif case.dist == "near_overflow":
        big_x = bool(_rand((1,), g) < 0.5)
        bias = bias * 2.0**10
        if big_x:
            x = x * (NEAR_OVERFLOW / x.abs().max())
            reach = (x.abs() @ W.abs().T).max()
            W = W * ((NEAR_OVERFLOW - bias.abs().max()) / reach)
        else:
            W = W * (NEAR_OVERFLOW / W.abs().max())
    elif case.dist != "normal":
        raise ValueError(f"dist: unknown value distribution {case.dist!r}; known: {DISTRIBUTIONS}")
    return x, W, bias, big_x


def _weight_for_zeros(case: Case, W: torch.Tensor) -> torch.Tensor:
    """The float weight a zero-point form can represent.

    Zeros.NONE means ``W = q * s`` with unsigned codes: only non-negative weights, so draw |W|.
    1-bit codes with an integer zero use z = 1 (``W in {-s, 0}``): draw -|W|. (The reference's
    symmetric integer-zero rule needs >= 2 bits.)
    """
    spec = case.fmt.weight
    if spec.kind is not WeightKind.HQQ:
        return W
    if spec.zeros is Zeros.NONE:
        return W.abs()
    if spec.zeros is Zeros.INT and spec.bits == 1:
        return -W.abs()
    return W


def _quantize_unsigned(case: Case, W: torch.Tensor, zero: int) -> object:
    """HQQ codes for the forms the reference does not quantize (NONE zeros; 1-bit INT zero).

    Per group: ``s = max(amax / max_code, 1e-6)`` stored in the scale dtype, ``q = clamp(round(W / s) + zero,
    0, max_code)``, computed from the STORED scale like the reference's own quantizers.
    """
    import reference as ref

    fmt = case.fmt
    N, K = W.shape
    gs = case.resolved_group_size
    max_code = fmt.weight.max_code
    span = max_code if zero == 0 else zero  # the codes on the side of the zero the weights lie on
    amax = W.abs().reshape(N, K // gs, gs).amax(dim=-1)
    s = torch.clamp(amax.to(torch.float32) / span, min=1e-6).to(DTYPES[case.scale_dtype])
    s_full = s.double().repeat_interleave(gs, dim=1)
    codes = torch.clamp(torch.round(W / s_full) + zero, 0, max_code).to(torch.uint8)
    return ref.QuantizedWeight(fmt, codes, s, None if fmt.weight.zeros is Zeros.NONE else zero)


def _quantize(case: Case, W: torch.Tensor) -> object:
    """Quantize the float64 weight with the reference into the case's format."""
    import reference as ref

    fmt = case.fmt
    kind = fmt.weight.kind
    if kind is WeightKind.FLOAT:
        return ref.QuantizedWeight(fmt, W.to(DTYPES[case.input_dtype]), None, None)
    if kind is WeightKind.HQQ and fmt.weight.zeros is Zeros.NONE:
        return _quantize_unsigned(case, W, 0)
    if kind is WeightKind.HQQ and fmt.weight.zeros is Zeros.INT and fmt.weight.bits == 1:
        return _quantize_unsigned(case, W, 1)
    scale_dtype = DTYPES.get(case.scale_dtype, torch.float32)
    try:
        qw = ref.quantize_weight(fmt, W.to(torch.float32), scale_dtype=scale_dtype)
    except ValueError as e:
        if "not usable" in str(e):
            raise CaseRejected(str(e)) from e
        raise
    if kind in (WeightKind.INT8, WeightKind.FP8) and qw.scales.dtype != scale_dtype:
        # The reference stores fp32 channel scales; a user may hand gemlite fp16/bf16 ones. Round the
        # scale (the codes stay valid, the golden uses the stored value).
        qw = ref.QuantizedWeight(fmt, qw.codes, qw.scales.to(scale_dtype), None)
    return qw


def _fit_near_overflow(x: torch.Tensor, qw, bias, big_x: bool) -> torch.Tensor:
    """Scale x so the largest ``sum_k |x_k W_k| + |b|`` is about 2**15 (W as quantized): when x is the
    large side only shrink it if needed, otherwise scale it to reach the target."""
    import reference as ref

    W = ref.dequantize_weight(qw).to(x.device)
    bmax = 0.0 if bias is None else float(bias.abs().max())
    reach = float((x.abs() @ W.abs().T).max()) if x.numel() else 0.0
    if reach == 0:
        return x
    factor = (NEAR_OVERFLOW - bmax) / reach
    if big_x:
        factor = min(factor, 1.0)
    return x * factor


def make_operands(case: Case, device: str | torch.device = "cpu") -> Operands:
    """Draw and quantize the tensors of `case` (deterministic in ``case.seed``), on `device`.

    Raises CaseRejected when the reference refuses the drawn weight, ValueError for an illegal case.
    """
    g = torch.Generator().manual_seed(case.seed)
    x, W, bias, big_x = _draw_float(case, g)
    W = _weight_for_zeros(case, W)
    x, W, bias = x.to(device), W.to(device), bias.to(device)
    qw = _quantize(case, W)
    bias_t = None if case.bias == "none" else bias
    if case.dist == "near_overflow":
        x = _fit_near_overflow(x, qw, bias_t, big_x)
    if bias_t is not None:
        bias_t = bias_t.to(DTYPES[case.input_dtype] if case.bias == "input" else torch.float32)
    return Operands(x=x.to(DTYPES[case.input_dtype]), qw=qw, bias=bias_t, W_float=W)


def build_layer(case: Case, ops: Operands) -> nn.Module:
    """The gemlite layer of `case`, built from `ops` through the public API (the registry's builder)."""
    return SUPPORT[case.format].build(case, ops)


def run_layer(layer, x: torch.Tensor, family: str) -> torch.Tensor:
    """``layer(x)`` for "AUTO", else ``layer.forward_manual(x, matmul_type=family)``."""
    if family == AUTO:
        return layer(x)
    if family not in MATMUL_TYPES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    return layer.forward_manual(x, matmul_type=family)


def precision(case: Case) -> Precision:
    """The dtypes a run of `case` rounds in: output, compute (the activation dtype), fp32 accumulator."""
    return Precision(out_dtype=DTYPES[case.output_dtype], compute_dtype=DTYPES[case.input_dtype])


def golden(case: Case, ops: Operands) -> Golden:
    """The float64 golden (``reference.linear``) and the magnitudes of the bound, on x's device."""
    import reference as ref

    y = ref.linear(case.fmt, ops.x, ops.qw, bias=ops.bias)
    W = ref.dequantize_weight(ops.qw)
    return golden_from_dequantized(ops.x, W, ops.bias, y=y.to(torch.float64), W_float=ops.W_float)
