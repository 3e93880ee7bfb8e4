"""The support registry: which formats the suite draws, what may be drawn for each, how a layer is built.

`SUPPORT` holds one `FormatSupport` entry per format: the group sizes, zero-point forms, dtypes and
packing words that are legal, and the builder that makes the gemlite layer through the PUBLIC API
(``GemLiteLinear(...).pack(...)``, or the helper a format is normally built with). Adding a format to
the suite is one entry here (plus its builder if it needs a new one). The strategies
(`harness.strategies`), the case record (`harness.case`) and the operand builder (`harness.build`)
all read it; nothing here imports gemlite's kernels at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gemlite.formats import BLOCK_QUANT, FORMATS, MX_GROUP, NVFP4_GROUP, ActKind, WeightKind, Zeros
from gemlite.formats import FAMILIES as MATMUL_TYPES
from gemlite.schemes import weight_scheme

#: The kernel families (the vocabulary's) and "AUTO" for the layer's own dispatch.
AUTO = "AUTO"
FAMILIES = (*MATMUL_TYPES, AUTO)

#: none; "input": of the activation dtype; "float32"; "output": of the output dtype (the codes-in formats
#: A8W8_INT8 / A8W8_FP8, whose int32 output takes an int32 bias).
BIAS_KINDS = ("none", "input", "float32", "output")
#: Value distributions `make_operands` knows; see `_draw_float`.
DISTRIBUTIONS = ("normal", "outliers", "zeros", "positive", "massive", "near_overflow")

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
# The codes-in formats' activation dtypes and the int32 output (A8W8_INT8 / A8W8_FP8).
DTYPES |= {"int8": torch.int8, "float8_e4m3fn": torch.float8_e4m3fn, "int32": torch.int32}
#: The integer dtypes `pack(..., packed=True)` takes as words, by word width (README: "as any integer dtype
#: of the word's width"): the packer's own dtype first, then the same bits viewed as the other one.
PACKED_INPUT_DTYPES = {8: ("uint8", "int8"), 32: ("int32", "uint32")}

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


def _hqq_representable(case, W: torch.Tensor) -> torch.Tensor:
    """The float weight a zero-point form can represent.

    Zeros.NONE means ``W = q * s`` with unsigned codes: only non-negative weights, so draw |W|.
    1-bit codes with an integer zero use z = 1 (``W in {-s, 0}``): draw -|W|. (The reference's
    symmetric integer-zero rule needs >= 2 bits.)
    """
    spec = case.fmt.weight
    if spec.zeros is Zeros.NONE:
        return W.abs()
    if spec.zeros is Zeros.INT and spec.bits == 1:
        return -W.abs()
    return W


def _quantize_unsigned(case, W: torch.Tensor, zero: int):
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


def _quantize_reference(case, W: torch.Tensor):
    """The reference's own quantizer for the case's format, scales stored in the case's scale dtype."""
    import reference as ref

    try:
        # (MX / NVFP4 scale_dtype names the byte type of the format's scales, not a reference scale dtype)
        scale_dtype = DTYPES[case.scale_dtype] if case.scale_dtype in _META else torch.float32
        return ref.quantize_weight(case.fmt, W.to(torch.float32), scale_dtype=scale_dtype)
    except ValueError as e:
        if "not usable" in str(e):
            raise CaseRejected(str(e)) from e
        raise


def _quantize_hqq(case, W: torch.Tensor):
    """The reference's HQQ quantizer, or `_quantize_unsigned` for the forms it has no rule for."""
    spec = case.fmt.weight
    if spec.zeros is Zeros.NONE:
        return _quantize_unsigned(case, W, 0)
    if spec.zeros is Zeros.INT and spec.bits == 1:
        return _quantize_unsigned(case, W, 1)
    return _quantize_reference(case, W)


def _quantize_channel(case, W: torch.Tensor):
    """The reference's INT8/FP8 quantizer; its fp32 channel scales rounded to the case's scale dtype
    (a user may hand gemlite fp16/bf16 ones: the codes stay valid, the golden uses the stored value)."""
    import reference as ref

    qw = _quantize_reference(case, W)
    scale_dtype = DTYPES[case.scale_dtype]
    if qw.scales.dtype != scale_dtype:
        qw = ref.QuantizedWeight(case.fmt, qw.codes, qw.scales.to(scale_dtype), None)
    return qw


#: The magnitude the codes-in formats stretch a drawn tensor to: 128 (int8 codes clamp to [-128, 127], so
#: both ends are reached) and e4m3's largest value.
CODE_TOPS = {ActKind.INT8_CODES: 128.0, ActKind.FP8_CODES: 448.0}


def code_values(kind: ActKind, v: torch.Tensor) -> torch.Tensor:
    """float64 values as int8 codes (round half away from zero, clamped to [-128, 127]) or e4m3 codes
    (to nearest even, saturating), by the reference's rules."""
    import reference as ref

    if kind is ActKind.INT8_CODES:
        return ref.round_half_away_from_zero(v).clamp(-128, 127).to(torch.int8)
    return ref.float_to_e4m3(v)


def _quantize_codes(case, W: torch.Tensor):
    """A8W8_INT8 / A8W8_FP8 (no scales: the codes are the weight): the drawn weight stretched over the
    codes' range (``W * 128 / amax``, ``W * 448 / amax``) and rounded to codes (`code_values`), so the
    int8 weight reaches both -128 and 127."""
    import reference as ref

    amax = float(W.abs().max()) if W.numel() else 0.0
    top = CODE_TOPS[case.fmt.act.kind]
    codes = code_values(case.fmt.act.kind, W * (top / amax if amax > 0 else 1.0))
    return ref.QuantizedWeight(case.fmt, codes, None, None)


def _quantize_dense(case, W: torch.Tensor):
    """A16W16: the weight itself, in the activation dtype."""
    import reference as ref

    return ref.QuantizedWeight(case.fmt, W.to(DTYPES[case.input_dtype]), None, None)


def _as_is(case, W: torch.Tensor) -> torch.Tensor:
    return W


@dataclass(frozen=True)
class FormatSupport:
    """What the suite may draw for one format and how gemlite builds a layer for it.

    name: the FORMATS key.
    build: ``build(case, ops) -> nn.Module`` through gemlite's public API.
    quantize: ``quantize(case, W) -> reference.QuantizedWeight``: the case's codes from the float64
        weight, by the reference's rules.
    representable: ``representable(case, W) -> W``: the drawn weight made one the format can hold
        (e.g. non-negative for HQQ codes without a zero-point).
    group_sizes: group sizes to draw (None = channel-wise).
    zeros: zero-point forms to draw.
    scale_dtypes: dtype names of the stored scales ("none" for formats without scales).
    input_dtypes: activation dtype names.
    output_dtypes: output dtype names; None means "the activation dtype only" (helpers that fix it).
    bias_kinds: which biases to draw (see `BIAS_KINDS`).
    packing_bitwidths: packing words for packed codes; (32,) for formats stored unpacked.
    exact_weights: the dequantized weights are exact in every dtype a kernel rounds them to, within
        its normal range (MXFP8/MXFP4: a <= 4-bit significand times a power of two), so the bound
        charges them no relative rounding, only underflow (`harness.numerics.Precision.deq_exact`).
    """

    name: str
    build: Callable
    quantize: Callable
    group_sizes: tuple[int | None, ...]
    zeros: tuple[Zeros, ...]
    scale_dtypes: tuple[str, ...]
    input_dtypes: tuple[str, ...] = ("float16", "bfloat16")
    output_dtypes: tuple[str, ...] | None = ("float16", "bfloat16", "float32")
    bias_kinds: tuple[str, ...] = BIAS_KINDS
    packing_bitwidths: tuple[int, ...] = (32,)
    representable: Callable = _as_is
    exact_weights: bool = False

    def __post_init__(self) -> None:
        if self.name not in FORMATS:
            raise ValueError(f"name: {self.name!r} is not a format of gemlite.formats.FORMATS")

    @property
    def code_bits(self) -> int:
        return FORMATS[self.name].weight.bits

    @property
    def packed(self) -> bool:
        """Codes are bit-packed into words (HQQ, ternary)."""
        return weight_scheme(FORMATS[self.name].weight.kind).packed

    def output_dtypes_for(self, input_dtype: str) -> tuple[str, ...]:
        """The output dtypes legal with `input_dtype`."""
        return (input_dtype,) if self.output_dtypes is None else self.output_dtypes


def _layer(case, bits: int):
    from gemlite import DType, GemLiteLinear

    return GemLiteLinear(
        bits,
        group_size=case.group_size,
        in_features=case.K,
        out_features=case.N,
        input_dtype=DType.from_torch(DTYPES[case.input_dtype]),
        output_dtype=DType.from_torch(DTYPES[case.output_dtype]),
    )


def _pack_arguments(case, qw) -> tuple[torch.Tensor, dict]:
    """``(W_q, keyword arguments)`` for ``pack``: the uint8 codes (with the case's packing word for
    packed formats), or, with ``case.packed_input``, the codes packed in GemLite's layout
    (``[N, K // e]``, LSB first) as words of that dtype with ``packed=True``. The words come from the
    REFERENCE packer (`reference.pack`), not gemlite's, so gemlite's unpacking is checked against an
    independent writer of the layout. The packer's own dtype (uint8 / int32) leaves
    ``packing_bitwidth`` to ``pack`` (inferred from the words' width); the other view names it."""
    if case.packed_input is None:
        return qw.codes, ({"packing_bitwidth": case.packing_bitwidth} if case.support.packed else {})
    import reference as ref

    words = ref.pack(qw.codes, qw.fmt.weight.bits, case.packing_bitwidth)
    words = words.view(getattr(torch, case.packed_input))
    native = case.packed_input == PACKED_INPUT_DTYPES[case.packing_bitwidth][0]
    return words, {"packed": True, "packing_bitwidth": None if native else case.packing_bitwidth}


def _build_gemlite_linear(case, ops):
    """``GemLiteLinear(W_nbits, ...).pack(codes, scales, zeros, bias)``, the format inferred from the
    codes as GemLite users rely on: A16W16, HQQ, INT8, FP8 (codes packed beforehand with
    ``case.packed_input``)."""
    qw = ops.qw
    W_q, kwargs = _pack_arguments(case, qw)
    return _layer(case, qw.fmt.weight.bits).pack(W_q, qw.scales, qw.zeros, ops.bias, **kwargs)


def _build_ternary(case, ops):
    """``gemlite.helper.A16W158_INT`` / ``A8W158_INT_dynamic(device, dtype).from_weights(weight {-1, 0, 1},
    weight_scale, bias)`` (the helper named by the case);
    for an output dtype the helper does not make (it outputs the activation dtype) or codes handed
    packed, ``GemLiteLinear(2, ...).pack(t + 1, scales, 1, bias, format=A16W158_INT)``."""
    from gemlite import helper

    qw = ops.qw
    scale = qw.scales.reshape(-1)
    if not bool((scale == scale[0]).all()):
        raise AssertionError("a ternary weight must carry one tensor scale (repeated per row)")
    if case.output_dtype != case.input_dtype or case.packed_input is not None:
        W_q, kwargs = _pack_arguments(case, qw)
        return _layer(case, 2).pack(W_q, qw.scales, 1, ops.bias, format=qw.fmt, **kwargs)
    proc = getattr(helper, case.format)(device=qw.codes.device, dtype=DTYPES[case.input_dtype])
    return proc.from_weights(qw.codes.to(torch.int8) - 1, float(scale[0]), ops.bias)


def _build_codes(case, ops):
    """``GemLiteLinear(8, ..., input_dtype=DType.INT8 / DType.FP8, output_dtype=...).pack(codes, None,
    None, bias)``: 8-bit codes x 8-bit codes without scales, as GemLite users build them (x is codes)."""
    from gemlite import DType, GemLiteLinear

    qw = ops.qw
    layer = GemLiteLinear(
        8, group_size=None, in_features=case.K, out_features=case.N,
        input_dtype=DType.from_torch(DTYPES[case.input_dtype]),
        output_dtype=DType.from_torch(DTYPES[case.output_dtype]),
    )  # fmt: skip
    return layer.pack(qw.codes, None, None, ops.bias)


def _build_dynamic8(case, ops):
    """``gemlite.helper.A8W8_INT8_dynamic`` / ``A8W8_FP8_dynamic`` (or their ``_block_dynamic``
    processors) ``(device, dtype).from_weights(codes, bias, scales)`` (pre-quantized 8-bit codes, GemLite's
    argument order); for an output dtype the helper does not make (it outputs the activation dtype),
    GemLite's lower-level spelling ``GemLiteLinear(8, ..., input_dtype=DType.INT8 / DType.FP8,
    scaled_activations=True).pack(codes, scales, None, bias)`` (block formats: ``pack(..., format=...)``,
    which the tensors alone do not name). The activations are quantized by the layer itself, per token
    (or per 1 x 128 block), at run time."""
    from gemlite import DType, GemLiteLinear, helper

    qw = ops.qw
    if case.output_dtype != case.input_dtype:
        if qw.fmt.weight.block_n > 1:
            layer = _layer(case.replace(group_size=None), 8)
            return layer.pack(qw.codes, qw.scales, None, ops.bias, format=qw.fmt)
        layer = GemLiteLinear(
            8, group_size=None, in_features=case.K, out_features=case.N,
            input_dtype=DType.INT8 if qw.fmt.weight.kind is WeightKind.INT8 else DType.FP8,
            output_dtype=DType.from_torch(DTYPES[case.output_dtype]), scaled_activations=True,
        )  # fmt: skip
        return layer.pack(qw.codes, qw.scales, None, ops.bias)
    proc = getattr(helper, case.format)(device=qw.codes.device, dtype=DTYPES[case.input_dtype])
    return proc.from_weights(qw.codes, ops.bias, qw.scales)


def _build_dynamic_hqq(case, ops):
    """``GemLiteLinear(bits, ...).pack(codes, scales, zeros, bias, format=A8W{4,2}_HQQ_INT_dynamic)`` (the
    codes alone do not say that the layer quantizes its activations), codes handed packed with
    ``case.packed_input``; with the activation dtype as output and plain codes, the helper
    ``A8W{4,2}_HQQ_INT_dynamic(device, packing_bitwidth, dtype).from_weights(codes, scales, zeros, bias)``."""
    from gemlite import helper

    qw = ops.qw
    if case.output_dtype != case.input_dtype or case.packed_input is not None:
        W_q, kwargs = _pack_arguments(case, qw)
        layer = _layer(case, qw.fmt.weight.bits)
        return layer.pack(W_q, qw.scales, qw.zeros, ops.bias, format=qw.fmt, **kwargs)
    proc = getattr(helper, case.format)(
        device=qw.codes.device, packing_bitwidth=case.packing_bitwidth, dtype=DTYPES[case.input_dtype]
    )
    return proc.from_weights(qw.codes, qw.scales, qw.zeros, ops.bias)


def _build_mx(case, ops):
    """``gemlite.helper.A16W8_MXFP / A16W4_MXFP(device, dtype).from_weights(codes, scales, bias)`` and
    ``A16W4_NVFP(...).from_weights(codes, bias, scales, meta_scale)``, the scales handed as the case's
    ``scale_dtype``: the scale type itself (float8_e8m0fnu, float8_e4m3fn) or its raw uint8 bytes, which
    gemlite must take bit for bit. The dynamic formats through their processors (GemLite's argument
    order, ``weight, bias, scales[, meta_scale]``): ``A8W{8,4}_MXFP_dynamic(post_scale=True)`` for the
    ``_post_scale_dynamic`` formats, ``post_scale=False`` for MXFP8 activations, ``A4W4_MXFP_dynamic``,
    ``A4W4_NVFP_dynamic``. For an output dtype the helpers do not make, another packing word or
    codes handed packed: ``GemLiteLinear(bits, None, ...).pack(codes, scales, ts or None, bias,
    format=...)``."""
    from gemlite import helper

    qw = ops.qw
    scales = qw.scales.view(getattr(torch, case.scale_dtype))
    nvfp4 = qw.tensor_scale is not None
    if case.output_dtype != case.input_dtype or case.packed_input is not None or case.packing_bitwidth != 32:
        W_q, kwargs = _pack_arguments(case, qw)
        layer = _layer(case.replace(group_size=None), qw.fmt.weight.bits)  # the group is the format's
        return layer.pack(W_q, scales, qw.tensor_scale, ops.bias, format=qw.fmt, **kwargs)
    device, dtype = qw.codes.device, DTYPES[case.input_dtype]
    if case.fmt.act.is_dynamic:
        processor = getattr(helper, case.format.replace("_post_scale", ""))
        if case.format.startswith("A8W"):  # post_scale=True: e4m3 per token; False: MXFP8 per 32
            proc = processor(device=device, dtype=dtype, post_scale="_post_scale" in case.format)
        else:  # A4W4_MXFP_dynamic, A4W4_NVFP_dynamic
            proc = processor(device=device, dtype=dtype)
        if nvfp4:
            return proc.from_weights(qw.codes, ops.bias, scales, qw.tensor_scale)
        return proc.from_weights(qw.codes, ops.bias, scales)
    proc = getattr(helper, case.format)(device=device, dtype=dtype)
    if nvfp4:
        return proc.from_weights(qw.codes, ops.bias, scales, qw.tensor_scale)
    return proc.from_weights(qw.codes, scales, ops.bias)


_HQQ_GROUPS = (32, 64, 128, 256, None)
_HQQ_ZEROS = (Zeros.FLOAT, Zeros.INT, Zeros.NONE)
_META = ("float16", "bfloat16", "float32")
_E8M0 = ("uint8", "float8_e8m0fnu")  # MX scales: raw bytes (GemLite's usual form) or torch's e8m0 type
_CHANNEL_META = ("float32", "float16", "bfloat16")  # INT8/FP8 channel scales: fp32 is the usual form

#: Every format the suite runs, with what may be drawn for it. Later releases add entries here.
SUPPORT: dict[str, FormatSupport] = {
    s.name: s
    for s in (
        FormatSupport("A16W16", _build_gemlite_linear, _quantize_dense, (None,), (Zeros.NONE,), ("none",)),
        *(
            FormatSupport(
                f"A16W{bits}_HQQ_INT",
                _build_gemlite_linear,
                _quantize_hqq,
                _HQQ_GROUPS,
                _HQQ_ZEROS,
                _META,
                packing_bitwidths=(32, 8),
                representable=_hqq_representable,
            )
            for bits in (8, 4, 2, 1)
        ),
        FormatSupport(
            "A16W8_INT8", _build_gemlite_linear, _quantize_channel, (None,), (Zeros.NONE,), _CHANNEL_META
        ),
        FormatSupport(
            "A16W8_FP8", _build_gemlite_linear, _quantize_channel, (None,), (Zeros.NONE,), _CHANNEL_META
        ),
        # The helper stores the scale in fp32.
        FormatSupport(
            "A16W158_INT", _build_ternary, _quantize_reference, (None,), (Zeros.INT,), ("float32",)
        ),
        # Microscaled weights: scales drawn as their own type or as raw uint8 bytes.
        FormatSupport(
            "A16W8_MXFP", _build_mx, _quantize_reference, (MX_GROUP,), (Zeros.NONE,), _E8M0,
            exact_weights=True,
        ),
        FormatSupport(
            "A16W4_MXFP", _build_mx, _quantize_reference, (MX_GROUP,), (Zeros.NONE,), _E8M0,
            packing_bitwidths=(32, 8), exact_weights=True,
        ),
        FormatSupport(
            "A16W4_NVFP", _build_mx, _quantize_reference, (NVFP4_GROUP,), (Zeros.NONE,),
            ("float8_e4m3fn", "uint8"), packing_bitwidths=(32, 8),
        ),
        # MX weights x e4m3 activations quantized per token by the layer (GemLite's post_scale=True).
        *(
            FormatSupport(
                f"A8W{bits}_MXFP_post_scale_dynamic", _build_mx, _quantize_reference, (MX_GROUP,),
                (Zeros.NONE,), _E8M0, packing_bitwidths=(32, 8) if bits == 4 else (32,), exact_weights=True,
            )
            for bits in (8, 4)
        ),
        # Microscaled activations quantized by the layer (MXFP8 / MXFP4: e8m0 per 32; NVFP4: e4m3 per 16
        # and a tensor scale of the call's x): the kernels dequantize both operands exactly into bf16
        # (fp32 on GEMV) and take the dot, so no operand is rounded (exact_weights; NVFP4's weight enters
        # as e2m1 * s_g, exact, and 1 / (ts_x * ts_w) multiplies the fp32 accumulator once, whose three
        # roundings lie inside the (K + 1) * u_acc term, K >= 32).
        FormatSupport(
            "A8W8_MXFP_dynamic", _build_mx, _quantize_reference, (MX_GROUP,), (Zeros.NONE,), _E8M0,
            exact_weights=True,
        ),
        *(
            FormatSupport(
                name, _build_mx, _quantize_reference, (MX_GROUP,), (Zeros.NONE,), _E8M0,
                packing_bitwidths=(32, 8), exact_weights=True,
            )
            for name in ("A8W4_MXFP_dynamic", "A4W4_MXFP_dynamic")
        ),
        FormatSupport(
            "A4W4_NVFP_dynamic", _build_mx, _quantize_reference, (NVFP4_GROUP,), (Zeros.NONE,),
            ("float8_e4m3fn", "uint8"), packing_bitwidths=(32, 8), exact_weights=True,
        ),
        # Dynamic activations: x is drawn in the activation dtype and quantized per token by the layer;
        # the golden multiplies the reference's codes of the same x (harness.build.golden).
        FormatSupport(
            "A8W8_INT8_dynamic", _build_dynamic8, _quantize_channel, (None,), (Zeros.NONE,), _CHANNEL_META
        ),
        FormatSupport(
            "A8W8_FP8_dynamic", _build_dynamic8, _quantize_channel, (None,), (Zeros.NONE,), _CHANNEL_META
        ),
        # 128 x 128 weight blocks, 1 x 128 activation blocks (K a multiple of 128; any N).
        *(
            FormatSupport(
                name, _build_dynamic8, _quantize_channel, (BLOCK_QUANT,), (Zeros.NONE,), _CHANNEL_META
            )
            for name in ("A8W8_INT8_block_dynamic", "A8W8_FP8_block_dynamic")
        ),
        *(
            FormatSupport(
                f"A8W{bits}_HQQ_INT_dynamic",
                _build_dynamic_hqq,
                _quantize_hqq,
                _HQQ_GROUPS,
                _HQQ_ZEROS,
                _META,
                packing_bitwidths=(32, 8),
                representable=_hqq_representable,
            )
            for bits in (4, 2)
        ),
        FormatSupport(
            "A8W158_INT_dynamic", _build_ternary, _quantize_reference, (None,), (Zeros.INT,), ("float32",)
        ),
        # 8-bit codes given by the caller x 8-bit codes, no scales (GemLite's input_dtype INT8 / FP8
        # without scaled_activations): x is drawn as codes (`harness.build`); int8 x int8 may output int32,
        # whose result must be bit-exact, with an int32 bias ("output": a bias of the output dtype).
        FormatSupport(
            "A8W8_INT8", _build_codes, _quantize_codes, (None,), (Zeros.NONE,), ("none",),
            input_dtypes=("int8",), output_dtypes=("int32", "float32", "float16", "bfloat16"),
            bias_kinds=("none", "output"),
        ),
        FormatSupport(
            "A8W8_FP8", _build_codes, _quantize_codes, (None,), (Zeros.NONE,), ("none",),
            input_dtypes=("float8_e4m3fn",), output_dtypes=("float32", "bfloat16", "float16"),
            bias_kinds=("none", "output"),
        ),
    )
}
