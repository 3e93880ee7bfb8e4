"""The registry of schemes: one module per weight scheme, one for the activation schemes.

Everything that depends on how a weight is encoded asks `weight_scheme(kind)`; everything that
depends on how activations are quantized asks `act_scheme(kind)`. Nothing else branches on a kind.

=================  ====================================  ==================================
module             weight kinds                          formats
=================  ====================================  ==================================
``dense``          FLOAT                                 A16W16
``hqq``            HQQ                                   A16W{8,4,2,1}_HQQ_INT
``channelwise``    INT8, FP8                             A16W8_INT8, A16W8_FP8
``ternary``        TERNARY                               A16W158_INT
``mx``             MXFP8, MXFP4, NVFP4                   A16W8_MXFP, A16W4_MXFP, A16W4_NVFP
``activation``     (activations) NONE                    every weight-only format
``activation``     (activations) INT8, FP8 per token     A8W8_INT8_dynamic, A8W8_FP8_dynamic,
                                                         A8W{4,2}_HQQ_INT_dynamic, A8W158_INT_dynamic
``mx``             (activations) MXFP8, MXFP4, NVFP4     A8W{8,4}_MXFP_dynamic, A4W4_MXFP_dynamic,
                                                         A4W4_NVFP_dynamic
``activation``     (activations) INT8 / FP8 codes        A8W8_INT8, A8W8_FP8 (x given as codes,
                   given as they are                     weights without scales)
=================  ====================================  ==================================

Kinds of the vocabulary without a scheme here are refused with NotImplementedError naming the kind.
"""

from __future__ import annotations

import torch

from gemlite.formats import FORMATS, ActKind, Format, WeightKind
from gemlite.schemes import activation, channelwise, dense, hqq, mx, ternary
from gemlite.schemes.base import WeightScheme

_WEIGHT: dict[WeightKind, WeightScheme] = {}
_SCHEMES = (
    dense.SCHEME, hqq.SCHEME, channelwise.INT8, channelwise.FP8, ternary.SCHEME, mx.MXFP8, mx.MXFP4, mx.NVFP4,
)
for _scheme in _SCHEMES:
    for _kind in _scheme.kinds:
        _WEIGHT[_kind] = _scheme
_ACT = {s.kind: s for s in (*activation.SCHEMES, *mx.ACT_SCHEMES)}


def weight_scheme(kind: WeightKind) -> WeightScheme:
    """The scheme of a weight kind; NotImplementedError for kinds without kernels in this release."""
    try:
        return _WEIGHT[kind]
    except KeyError:
        raise NotImplementedError(
            f"spec: {kind.name} weights are not supported by the kernels yet; supported: "
            f"{', '.join(k.name for k in _WEIGHT)}"
        ) from None


def act_scheme(kind: ActKind):
    """The scheme of an activation kind; NotImplementedError for kinds without kernels in this release."""
    try:
        return _ACT[kind]
    except KeyError:
        raise NotImplementedError(
            f"act: {kind.name} activations (dynamic quantization) are planned for a later release of "
            f"gemlite; supported: {', '.join(k.name for k in _ACT)}"
        ) from None


def check_format(fmt: Format) -> WeightScheme:
    """The weight scheme of `fmt`, after checking this release runs it (its weight kind and variant and
    its activation scheme); NotImplementedError naming what is missing otherwise, ValueError for
    activations whose dot would not multiply the weight's codes exactly (`gemlite.schemes.activation`)."""
    scheme = weight_scheme(fmt.weight.kind)
    scheme.check_spec(fmt.weight)
    act_scheme(fmt.act.kind).check_spec(fmt.act, fmt.weight)
    return scheme


# --------------------------------------------------------------------------------------------
# GemLite-style pack(W_q, scales, zeros, bias): which format do the tensors mean?
# --------------------------------------------------------------------------------------------

# (W_nbits, W_q dtype) -> format name. uint8 codes of any width are HQQ; the 8-bit channel-wise
# formats are told apart by their code dtype. Ternary weights come through their helper, which
# names its format.
_PACK_FORMATS = {
    (8, torch.int8): "A16W8_INT8",
    (8, torch.float8_e4m3fn): "A16W8_FP8",
    **{(bits, torch.uint8): f"A16W{bits}_HQQ_INT" for bits in (8, 4, 2, 1)},
}


# The same for layers with 8-bit activations, by the activation kind the layer takes (GemLite's
# input_dtype INT8 / FP8: codes as given, or with scaled_activations=True quantized per token).
_PACK_FORMATS_8BIT_ACT = {
    ActKind.INT8_CODES: {(8, torch.int8): "A8W8_INT8"},
    ActKind.FP8_CODES: {(8, torch.float8_e4m3fn): "A8W8_FP8"},
    ActKind.INT8: {(8, torch.int8): "A8W8_INT8_dynamic"},
    ActKind.FP8: {
        (8, torch.float8_e4m3fn): "A8W8_FP8_dynamic",
        (4, torch.uint8): "A8W4_HQQ_INT_dynamic",
        (2, torch.uint8): "A8W2_HQQ_INT_dynamic",
    },
}


def infer_format(
    W_nbits: int, W_q_dtype: torch.dtype, compute_dtype: torch.dtype, *, act: ActKind = ActKind.NONE
) -> Format:
    """The format `GemLiteLinear.pack` gives tensors it was not told the format of.

    With fp16/bf16 activations (``act`` NONE): W_nbits 16 -> A16W16 (the weight must then have the
    compute dtype: its scheme checks it); uint8 codes -> A16W{W_nbits}_HQQ_INT; W_nbits 8 with int8 /
    float8_e4m3fn codes -> A16W8_INT8 / A16W8_FP8.
    With 8-bit activations (``act``: the kind the layer takes): INT8_CODES / FP8_CODES (codes given by
    the caller) with int8 / e4m3 codes -> A8W8_INT8 / A8W8_FP8; INT8 / FP8 per token with int8 / e4m3
    codes -> A8W8_INT8_dynamic / A8W8_FP8_dynamic, FP8 per token with 4- or 2-bit uint8 codes ->
    A8W{4,2}_HQQ_INT_dynamic.
    Raises TypeError for any other W_q dtype, naming what the layer takes; NotImplementedError for a
    W_nbits no format pairs with those activations.
    """
    if act is not ActKind.NONE:
        table = _PACK_FORMATS_8BIT_ACT.get(act)
        if table is None:
            raise NotImplementedError(f"act: a layer with {act.name} activations has no pack() format")
        name = table.get((W_nbits, W_q_dtype))
        if name is None:
            options = [f"W_nbits={b} with {d} codes" for (b, d) in table]
            if all(b != W_nbits for b, _ in table):
                raise NotImplementedError(
                    f"W_nbits: {act.name} activations run with {' or '.join(options)}, not W_nbits={W_nbits}"
                )
            raise TypeError(f"W_q: {act.name} activations take {' or '.join(options)}, got {W_q_dtype}")
        return FORMATS[name]
    if W_nbits == 16:
        return FORMATS["A16W16"]
    name = _PACK_FORMATS.get((W_nbits, W_q_dtype))
    if name is None:
        expected = "uint8 (HQQ codes)"
        if W_nbits == 8:
            expected += ", int8 (INT8) or float8_e4m3fn (FP8)"
        raise TypeError(f"W_q: a W_nbits={W_nbits} layer takes {expected}, got {W_q_dtype}")
    return FORMATS[name]


__all__ = ["act_scheme", "check_format", "infer_format", "weight_scheme"]
