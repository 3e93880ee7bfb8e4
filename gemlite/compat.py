"""Public GemLite's surface, translated to and from this gemlite's single format vocabulary.

Clients written against public GemLite 0.6 (torchao's ``UIntxWeightOnlyConfig``, hqq's
``prepare_for_inference(backend="gemlite")``, GemLite's README) describe a layer with integer codes:
``meta_args``, a list of 12 ints, and ``tensor_args``, the layer's tensors in GemLite's physical
layout. This module is the one place that speaks that dialect. It maps it onto a `WeightLayout`
(which names a `gemlite.formats.Format`) and back; nothing else in gemlite reads a mode integer.

``meta_args`` (GemLite's order)::

    [scaled_activations, W_nbits, group_size, unpack_mask, elements_per_sample, input_dtype,
     output_dtype, acc_dtype, meta_dtype, channel_scale_mode, W_group_mode, data_contiguous]

``W_group_mode`` (how a weight tile is dequantized) and ``channel_scale_mode`` (how the accumulator is
scaled) of the weight-only formats gemlite runs, and its ``tensor_args``:

* A16W16: modes (0, 0); the weight as a ``[K, N]`` view, empty scales and zeros.
* A16W8_INT8 / A16W8_FP8: (0, 1), the fp32 accumulator post-scaled per channel; codes as a ``[K, N]``
  view, scales ``[1, N]``, empty zeros.
* HQQ grouped, or channel-wise with float zeros, ``(q - z) * s``: (3, 0) with zeros, (2, 0) without;
  words ``[K/e, N]``, scales and zeros ``[K/g, N]`` (an integer zero: an int32 scalar).
* HQQ channel-wise with an integer or no zero, and ternary, ``(q - z)`` post-scaled: (1, 1) or (0, 1);
  words ``[K/e, N]``, scales ``[1, N]``, an int32 scalar zero or empty.

8-bit activations (``input_dtype`` INT8 / FP8):

* codes given as they are, no scales (A8W8_INT8, A8W8_FP8): ``scaled_activations=0``, modes (0, 0),
  empty scales; x is the int8 / e4m3 codes; an INT32 output (INT8 only) holds the exact sums.
* quantized per token by the layer (the ``_dynamic`` formats): ``scaled_activations=1`` and GemLite's
  channel_scale_mode of the weight plus 2 (its per-row activation scale): A8W8 (0, 3), A8W158 (1, 3),
  A8W{4,2}_HQQ grouped (3, 2) / (2, 2); 1 x 128 blocks (0, 5), their scales ``[K/128, ceil(N/128)]``
  as GemLite's. x is fp16 / bf16 and `forward_functional` quantizes it as the layer does.

GemLite's own ``pack`` stores grouped float zeros in "FMA" form, ``z' = -z * s`` (W_group_mode 4);
gemlite keeps ``z`` and says 3, which is what GemLite's ``fma_mode=False`` gives and what torchao's
``dequantize()`` reads correctly. `forward_functional` and checkpoint loading accept mode 4 and turn
``z'`` back into ``z = -z' / s`` in fp32 (so ``(q - z) * s`` equals ``q * s + z'`` to fp32 rounding).

``get_tensor_args()`` returns three tensors, ``[W_q, scales, zeros]``, as GemLite up to 0.5 did and as
torchao 0.18 unpacks them; GemLite 0.6 appends ``meta_scale`` (used only by NVFP4, which gemlite does
not run yet), and `forward_functional` accepts either length.

Also here: GemLite's process-wide settings (`set_acc_dtype`, `set_kernel_caching`, `enable_tma`, ...).
Those that tune GPU paths gemlite does not have change nothing; asked for something gemlite does not
do, each says so once (a `GemLiteCompatWarning`); `settings()` reads back what was asked. And
`set_autotune`, GemLite's superset of `gemlite.autotune.set_autotune`.
"""

from __future__ import annotations

import operator
import threading
import types
import warnings
from collections.abc import Callable, Mapping, Sequence

import torch

from gemlite import autotune
from gemlite import matmul as _matmul
from gemlite.formats import (
    BLOCK_QUANT,
    FAMILIES,
    FORMATS,
    ActKind,
    ActSpec,
    DType,
    Format,
    WeightKind,
    WeightSpec,
    Zeros,
    format_of,
)
from gemlite.layout import WeightLayout

__all__ = [
    "DTYPE_TO_TORCH",
    "GEMLITE_ACC_DTYPE",
    "GEMLITE_MATMUL_TYPES",
    "GEMLITE_MATMUL_TYPES_MAPPING",
    "GemLiteCompatWarning",
    "TORCH_TO_DTYPE",
    "auto_detect_ptx_fp4_pack",
    "checkpoint_pack_args",
    "enable_activation_scaling",
    "enable_cudagraph_autotune",
    "enable_tma",
    "enable_warp_specialize",
    "forward_functional",
    "group_modes",
    "is_gemlite_checkpoint",
    "layer_meta_args",
    "layer_tensor_args",
    "set_acc_dtype",
    "set_autotune",
    "set_autotune_setting",
    "set_fast_gemv_acc",
    "set_fast_nvfp4",
    "set_kernel_caching",
    "set_native_atomic_bfp16",
    "set_ptx_fp4_pack",
    "settings",
]


class GemLiteCompatWarning(UserWarning):
    """A public-GemLite setting that gemlite accepts but that changes nothing here (shown once per
    setter). Unusable config cache files warn with `gemlite.autotune.ConfigCacheWarning`."""


# --------------------------------------------------------------------------------------------
# Data: dtype tables, kernel family numbering, accumulator dtypes (GemLite's names)
# --------------------------------------------------------------------------------------------

#: GemLite's ``DTYPE_TO_TORCH``: DType value -> torch dtype (12 and 13 are AMD's fnuz FP8 types).
DTYPE_TO_TORCH: Mapping[int, torch.dtype] = types.MappingProxyType(
    {
        **{member.value: member.torch_dtype for member in DType},
        12: torch.float8_e4m3fnuz,
        13: torch.float8_e5m2fnuz,
    }
)
#: GemLite's ``TORCH_TO_DTYPE``: torch dtype -> DType (no entry for the fnuz types: see DTYPE_TO_TORCH).
TORCH_TO_DTYPE: Mapping[torch.dtype, DType] = types.MappingProxyType(
    {
        dtype: DType.from_torch(dtype)
        for dtype in (
            torch.float32,
            torch.float16,
            torch.bfloat16,
            torch.int8,
            torch.uint8,
            torch.int32,
            torch.uint32,
            torch.int16,
            torch.uint16,
            torch.int64,
            torch.float8_e4m3fn,
            torch.float8_e5m2,
            torch.float8_e8m0fnu,
        )
    }
)
#: GemLite's ``matmul_type`` numbering: index i of this tuple is ``forward_functional(matmul_type=i)``.
GEMLITE_MATMUL_TYPES: tuple[str, ...] = FAMILIES
GEMLITE_MATMUL_TYPES_MAPPING: Mapping[str, int] = types.MappingProxyType(
    {name: i for i, name in enumerate(FAMILIES)}
)
#: The accumulator of each activation dtype: fp32, int32 for INT8 activations (int8 x int8 dots);
#: read-only: see `set_acc_dtype`.
GEMLITE_ACC_DTYPE: Mapping[DType, DType] = types.MappingProxyType(
    {
        **{d: DType.FP32 for d in (DType.FP16, DType.BF16, DType.FP32, DType.FP8, DType.FP8e5)},
        DType.INT8: DType.INT32,
        **{d: DType.FP32 for d in (DType.MXFP16, DType.MXBF16, DType.MXFP8, DType.MXFP4, DType.NVFP4)},
    }
)

# meta_args positions
_SCALED, _NBITS, _GROUP, _MASK, _EPS, _IN, _OUT, _ACC, _META, _CSM, _WGM, _CONTIG = range(12)
_PACKED_WORD_DTYPES = {torch.uint8: 8, torch.int8: 8, torch.int32: 32, torch.uint32: 32}
_UNSUPPORTED_WORDS = {torch.int16: 16, torch.uint16: 16, torch.int64: 64}
_ACT_DTYPES = (DType.FP16, DType.BF16, DType.INT8, DType.FP8)
_OUT_DTYPES = (DType.FP16, DType.BF16, DType.FP32)
# 8-bit input dtypes: codes given as they are (scaled_activations=0), or per-token quantization of
# fp16/bf16 x (scaled_activations=1).
_CODE_KINDS = {DType.INT8: ActKind.INT8_CODES, DType.FP8: ActKind.FP8_CODES}
_ACT_KIND_DTYPES = {ActKind.INT8: DType.INT8, ActKind.FP8: DType.FP8}
_LATER = "planned for a later release of gemlite"


# --------------------------------------------------------------------------------------------
# Our layer -> GemLite's description
# --------------------------------------------------------------------------------------------


def group_modes(layout: WeightLayout) -> tuple[int, int]:
    """GemLite's ``(W_group_mode, channel_scale_mode)`` for a layout (module docstring table)."""
    if not layout.has_scales:
        return 0, 0
    if layout.act.is_dynamic and layout.spec.block_n > 1:
        return 0, 5  # 128 x 128 weight blocks, 1 x 128 activation blocks
    has_zero = layout.zero_mode is not Zeros.NONE
    per_token = 2 if layout.act.is_dynamic else 0  # GemLite's per-row activation scale adds 2
    if layout.post_scale:
        return (1 if has_zero else 0), 1 + per_token
    return (3 if has_zero else 2), per_token


def layer_meta_args(layout: WeightLayout, output_dtype: DType, scales: torch.Tensor) -> list[int]:
    """The 12 ``meta_args`` of a packed layer (`GemLiteLinear.get_meta_args`).

    Layers that quantize their activations per token (INT8 / FP8, per token or in 1 x 128 blocks) say
    ``scaled_activations=1`` with their 8-bit activation dtype, as GemLite's do; 8-bit codes given as
    they are say 0 with it. Raises NotImplementedError for microscaled weights or activations (MXFP8,
    MXFP4, NVFP4), whose functional path is planned for a later release of gemlite."""
    act = layout.act
    if layout.spec.kind in (WeightKind.MXFP8, WeightKind.MXFP4, WeightKind.NVFP4):
        # GemLite describes these with its MX input dtypes (MXFP16, MXFP8, ...), which forward_functional
        # does not read yet: a weight-only description would run the scale bytes as HQQ scales.
        raise NotImplementedError(
            f"get_meta_args: {layout.format.name} has microscaled weights; GemLite's functional path "
            f"(gemlite.core.forward_functional) for them is {_LATER} (call the layer itself)"
        )
    if act.is_dynamic and act.kind not in _ACT_KIND_DTYPES:
        raise NotImplementedError(
            f"get_meta_args: {layout.format.name} quantizes its activations at run time as "
            f"{act.kind.name}; GemLite's functional path (gemlite.core.forward_functional) for them is "
            f"{_LATER} (call the layer itself)"
        )
    w_group_mode, channel_scale_mode = group_modes(layout)
    meta_dtype = DType.from_torch(scales.dtype) if layout.has_scales else DType.INT32
    bits = layout.spec.bits
    blocks = layout.spec.block_n > 1
    if act.is_dynamic:
        input_dtype = _ACT_KIND_DTYPES[act.kind]
    else:
        input_dtype = DType.from_torch(layout.compute_dtype)
    int8_dot = input_dtype is DType.INT8 and not blocks  # GemLite's block quant accumulates in fp32
    return [
        int(act.is_dynamic),
        bits,
        layout.in_features if blocks else layout.group_size,  # GemLite's block helper: in_features
        (1 << bits) - 1,
        layout.elems_per_word,
        input_dtype.value,
        output_dtype.value,
        (DType.INT32 if int8_dot else DType.FP32).value,
        meta_dtype.value,
        channel_scale_mode,
        w_group_mode,
        int(layout.is_packed),
    ]


def layer_tensor_args(
    layout: WeightLayout, W_q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor
) -> list[torch.Tensor]:
    """``[W_q, scales, zeros]`` in GemLite's layout (`GemLiteLinear.get_tensor_args`): views of the
    layer's own tensors (unpacked weights as ``[K, N]``), an integer zero-point as an int32 scalar."""
    w = W_q if layout.is_packed else W_q.t()
    if layout.zero_mode is Zeros.INT:
        zeros = torch.tensor(layout.zero_int, dtype=torch.int32, device=W_q.device)
    if layout.spec.block_n > 1:
        # 128 x 128 blocks: GemLite's [K / 128, ceil(N / 128)] (gemlite keeps a row of N per 128 inputs).
        scales = scales[:, :: layout.spec.block_n].contiguous()
    return [w, scales, zeros]


# --------------------------------------------------------------------------------------------
# GemLite's description -> a layout (shared by forward_functional and checkpoint loading)
# --------------------------------------------------------------------------------------------


def _meta_list(meta_args) -> tuple[int, ...]:
    if isinstance(meta_args, torch.Tensor):
        meta_args = meta_args.tolist()
    if not isinstance(meta_args, (list, tuple)) or len(meta_args) != 12:
        got = len(meta_args) if isinstance(meta_args, (list, tuple)) else type(meta_args).__name__
        raise ValueError(f"meta_args: expected GemLite's 12 ints (get_meta_args()), got {got}")
    out = []
    for i, v in enumerate(meta_args):
        if isinstance(v, bool):
            v = int(v)
        try:
            out.append(operator.index(v))
        except TypeError:
            raise TypeError(f"meta_args[{i}]: expected an int, got {type(v).__name__} {v!r}") from None
    return tuple(out)


def _act_dtype(where: str, value: int) -> DType:
    """The activation DType of ``meta_args[5]``: FP16, BF16, INT8 or FP8 (e4m3) in this release."""
    name = f"{where}[{_IN}]"
    if value in (12, 13):
        raise NotImplementedError(f"{name}: AMD fnuz FP8 activations (DType {value}) are {_LATER}")
    try:
        d = DType(value)
    except ValueError:
        raise ValueError(f"{name}: {value} is not a GemLite DType value") from None
    if d not in _ACT_DTYPES:
        if d is DType.FP32:
            raise ValueError(
                f"{name}: expected FP16, BF16, INT8 or FP8 activations, got FP32 (gemlite's kernels are "
                "16-bit)"
            )
        raise NotImplementedError(
            f"{name}: {d.name} activations (FP8 e5m2, MXFP/NVFP4) are {_LATER}; this release runs "
            "FP16, BF16, INT8 or FP8 (e4m3) activations"
        )
    return d


def _out_dtype(where: str, value: int, act: ActKind = ActKind.NONE) -> DType:
    """The output DType of ``meta_args[6]``: FP16, BF16 or FP32; INT32 too for INT8 codes given as they
    are (exact int32 sums)."""
    name = f"{where}[{_OUT}]"
    try:
        d = DType(value)
    except ValueError:
        raise ValueError(f"{name}: {value} is not a GemLite DType value") from None
    if d is DType.INT32 and act is ActKind.INT8_CODES:
        return d
    if d not in _OUT_DTYPES:
        raise ValueError(
            f"{name}: expected an FP16, BF16 or FP32 output (INT32: INT8 activations with "
            f"scaled_activations=0 only), got {d.name}"
        )
    return d


def _activations(meta: tuple[int, ...], where: str, x_dtype: torch.dtype | None):
    """``(ActSpec, compute dtype, channel_scale_mode of the weight alone)`` of GemLite's activation
    arguments: meta_args[0] (scaled_activations), [5] (input_dtype), [9] (channel_scale_mode).

    fp16/bf16 input: channel_scale_mode 0 or 1. INT8 / FP8 input with scaled_activations=0: codes
    given as they are (``x`` of that dtype), mode 0. With scaled_activations=1: x (fp16/bf16, `x_dtype`)
    quantized per token (modes 2, 3: the weight's 0, 1 plus GemLite's per-row scale) or in 1 x 128
    blocks (mode 5). Raises ValueError / TypeError / NotImplementedError naming the argument."""
    d = _act_dtype(where, meta[_IN])
    csm = meta[_CSM]
    if csm == 4:
        raise NotImplementedError(
            f"{where}[9]: channel_scale_mode=4 (MX-scaled activations) in the functional path is {_LATER}"
        )
    if d not in _CODE_KINDS:
        if meta[_SCALED]:
            raise ValueError(
                f"{where}[0]: scaled_activations=1 quantizes INT8 or FP8 activations, but "
                f"{where}[{_IN}] says {d.name}"
            )
        if csm not in (0, 1):
            raise ValueError(
                f"{where}[9]: channel_scale_mode={csm} scales activations (2, 3: per token; 5: 128x128 "
                f"blocks), which needs INT8 or FP8 activations with scaled_activations=1; got {d.name}"
            )
        return ActSpec(), d.torch_dtype, csm
    if not meta[_SCALED]:
        if csm != 0:
            raise NotImplementedError(
                f"{where}[9]: {d.name} codes given as they are (scaled_activations=0) meet weight codes "
                f"without scales in gemlite (channel_scale_mode 0), got channel_scale_mode={csm}; for "
                "channel scales use scaled_activations=1 (per-token activation scales too)"
            )
        return ActSpec(_CODE_KINDS[d]), d.torch_dtype, 0
    if csm not in (2, 3, 5):
        raise ValueError(
            f"{where}[9]: scaled_activations=1 takes channel_scale_mode 2 or 3 (per token) or 5 (128x128 "
            f"blocks), got {csm}"
        )
    if x_dtype is not None and x_dtype not in (torch.float16, torch.bfloat16):
        raise TypeError(
            f"x: scaled_activations=1 ({where}[0]) quantizes fp16 or bf16 x per token, got {x_dtype}"
        )
    kind = ActKind.INT8 if d is DType.INT8 else ActKind.FP8
    act = ActSpec(kind, BLOCK_QUANT if csm == 5 else None)
    return act, x_dtype or torch.float16, {2: 0, 3: 1, 5: 5}[csm]


def _weight_kind(meta, w_dtype: torch.dtype, where: str) -> tuple[str, int]:
    """("float" | "int8" | "fp8" | "packed", word bits) from W_nbits and W_q's dtype."""
    bits = meta[_NBITS]
    if bits == 16:
        if w_dtype not in (torch.float16, torch.bfloat16):
            raise TypeError(f"W_q: a W_nbits=16 weight is fp16 or bf16, got {w_dtype}")
        return "float", 16
    if bits not in (8, 4, 2, 1):
        raise ValueError(f"{where}[1]: W_nbits must be one of 16, 8, 4, 2, 1, got {bits}")
    if w_dtype == torch.int8 and bits == 8:
        return "int8", 8
    if w_dtype == torch.float8_e4m3fn and bits == 8:
        return "fp8", 8
    if w_dtype in (torch.float8_e5m2, torch.float8_e4m3fnuz, torch.float8_e5m2fnuz):
        raise NotImplementedError(f"W_q: {w_dtype} weights are {_LATER}; FP8 weights are float8_e4m3fn")
    if w_dtype in _UNSUPPORTED_WORDS:
        raise NotImplementedError(
            f"W_q: {_UNSUPPORTED_WORDS[w_dtype]}-bit packing words ({w_dtype}) are not run by gemlite's "
            "kernels; pack with packing_bitwidth=8 or 32 (gemlite.bitpack repacks existing words)"
        )
    if w_dtype not in _PACKED_WORD_DTYPES:
        raise TypeError(
            f"W_q: a W_nbits={bits} weight takes packed integer words (uint8 or int32), or int8 / "
            f"float8_e4m3fn codes for W_nbits=8; got {w_dtype}"
        )
    word = _PACKED_WORD_DTYPES[w_dtype]
    if word < bits:
        raise TypeError(f"W_q: {word}-bit words cannot hold {bits}-bit codes ({w_dtype})")
    return "packed", word


def _zero_kind(meta, zeros: torch.Tensor, where: str) -> str:
    """ "none" | "int" | "float" | "fma" for the tensor GemLite calls zeros and the W_group_mode."""
    mode = meta[_WGM]
    if zeros.numel() == 0:
        if mode in (1, 3, 4):
            raise ValueError(f"zeros: W_group_mode={mode} needs zero-points, got an empty tensor")
        return "none"
    if mode not in (1, 3, 4):
        raise ValueError(
            f"{where}[10]: W_group_mode={mode} takes no zero-points, got a zeros tensor of shape "
            f"{tuple(zeros.shape)}"
        )
    if not zeros.is_floating_point():
        if zeros.numel() != 1:
            raise ValueError(
                f"zeros: an integer zero-point is one value (an int32 scalar), got shape {tuple(zeros.shape)}"
            )
        if mode == 4:
            raise ValueError(f"{where}[10]: W_group_mode=4 stores -z*s per group, not an integer zero")
        return "int"
    return "fma" if mode == 4 else "float"


def describe_layout(
    meta: tuple[int, ...],
    K: int,
    N: int,
    w_dtype: torch.dtype,
    n_scales: int,
    zero_kind: str,
    zero_int: int | None,
    where: str = "meta_args",
    x_dtype: torch.dtype | None = None,
) -> WeightLayout:
    """The `WeightLayout` that GemLite's ``meta_args`` and tensors describe (K, N from the tensors).

    x_dtype: with ``scaled_activations=1``, the dtype of the fp16/bf16 x to quantize (the layout's
    compute dtype; None: fp16).
    Raises ValueError / TypeError naming the meta_args index or tensor at fault, NotImplementedError
    for GemLite formats this release does not run (MX, NVFP4, 16/64-bit words, ...).
    """
    act, compute, csm = _activations(meta, where, x_dtype)
    _out_dtype(where, meta[_OUT], act.kind)
    kind, word = _weight_kind(meta, w_dtype, where)
    bits, mode = meta[_NBITS], meta[_WGM]
    act_name = DType(meta[_IN]).name
    if kind == "float":
        if act.is_quantized:
            raise ValueError(
                f"{where}[{_IN}]: a W_nbits=16 weight meets fp16/bf16 activations, got {act_name}"
            )
        if (mode, csm) != (0, 0) or n_scales or zero_kind != "none":
            raise ValueError(
                f"{where}[10]: a W_nbits=16 weight is used as is (W_group_mode 0, channel_scale_mode 0, no "
                f"scales or zeros), got W_group_mode={mode}, channel_scale_mode={csm}"
            )
        if w_dtype != compute:
            raise TypeError(
                f"W_q: a W_nbits=16 weight must have the activation dtype {compute} "
                f"(meta_args[{_IN}]={act_name}), got {w_dtype}"
            )
        return WeightLayout(FORMATS["A16W16"], K, N, K, 16, compute)
    if act.kind in (ActKind.INT8_CODES, ActKind.FP8_CODES):
        want = "int8" if act.kind is ActKind.INT8_CODES else "fp8"
        if kind != want or n_scales or zero_kind != "none" or mode != 0:
            raise ValueError(
                f"{where}[10]: {act_name} codes given as they are (scaled_activations=0) multiply {want} "
                f"weight codes without scales or zeros (W_group_mode 0, channel_scale_mode 0); got W_q "
                f"{w_dtype}, {n_scales} scales, zeros {zero_kind}, W_group_mode={mode}"
            )
        return WeightLayout(FORMATS[f"A8W8_{want.upper()}"], K, N, K, 8, compute)
    if n_scales == 0:
        raise NotImplementedError(
            f"scales: {bits}-bit weights without scales (W_group_mode={mode}) with {act_name} activations "
            "are not run by gemlite; it needs scales (ones, for none)"
        )
    if csm == 5:  # 128 x 128 weight blocks with 1 x 128 activation blocks
        blocks = -(-N // BLOCK_QUANT) * (K // BLOCK_QUANT)
        if kind not in ("int8", "fp8") or K % BLOCK_QUANT or n_scales != blocks or mode != 0:
            raise ValueError(
                f"{where}[9]: channel_scale_mode=5 takes int8 / e4m3 codes with one scale per 128x128 block "
                f"([K/128, ceil(N/128)] = {blocks} values, K a multiple of 128, W_group_mode 0); got W_q "
                f"{w_dtype}, {n_scales} scales, K={K}, W_group_mode={mode}"
            )
        layout = WeightLayout(_dynamic_format(FORMATS[f"A16W8_{kind.upper()}"], act, where), K, N,
                              BLOCK_QUANT, 8, compute)  # fmt: skip
        return layout
    if kind in ("int8", "fp8"):
        if zero_kind != "none" or (mode, csm) not in ((0, 1), (2, 0)):
            raise ValueError(
                f"{where}[10]: {kind.upper()} weights are symmetric per channel (W_group_mode 2 with "
                f"channel_scale_mode 0, or 0 with 1; with scaled activations 0 with 3), got "
                f"W_group_mode={mode}, channel_scale_mode={meta[_CSM]}"
            )
        if n_scales != N:
            raise ValueError(
                f"scales: {kind.upper()} weights take one scale per output (N = {N}), got {n_scales}"
            )
        fmt = FORMATS[f"A16W8_{kind.upper()}"]
        return WeightLayout(_dynamic_format(fmt, act, where), K, N, K, 8, compute)
    # packed HQQ-style codes
    e = word // bits
    if meta[_EPS] != e:
        raise ValueError(
            f"{where}[4]: elements_per_sample={meta[_EPS]} does not fit {bits}-bit codes in {word}-bit "
            f"words (W_q is {w_dtype}: {e} per word)"
        )
    if (mode, csm) not in ((2, 0), (3, 0), (4, 0), (0, 1), (1, 1)):
        raise ValueError(
            f"{where}[10]: W_group_mode={mode} with channel_scale_mode={meta[_CSM]} is not a GemLite mode "
            "(2/3/4 with 0, or 0/1 with 1; with scaled activations 2 more)"
        )
    if n_scales == N:
        g = K
    elif n_scales == 0 or (K * N) % n_scales or K % ((K * N) // n_scales):
        raise ValueError(
            f"scales: {n_scales} values do not make whole groups of a [{N}, {K}] weight (expected "
            f"N * K / group_size)"
        )
    else:
        g = (K * N) // n_scales
    if g != K and csm == 1:
        raise ValueError(
            f"{where}[9]: channel_scale_mode={meta[_CSM]} post-scales per output, but the scales are grouped"
        )
    zeros = {"none": Zeros.NONE, "int": Zeros.INT, "float": Zeros.FLOAT, "fma": Zeros.FLOAT}[zero_kind]
    fmt: Format = FORMATS[f"A16W{bits}_HQQ_INT"].with_group_size(None if g == K else g).with_zeros(zeros)
    if act.kind is ActKind.INT8 and (bits, zeros, zero_int, g, csm) == (2, Zeros.INT, 1, K, 1):
        fmt = FORMATS["A8W158_INT_dynamic"]  # GemLite's A8W158: 2-bit codes t + 1, zero 1, INT8 per token
    elif act.is_dynamic:
        fmt = _dynamic_format(fmt, act, where)
    layout = WeightLayout(fmt, K, N, g, word, compute, zero_int if zeros is Zeros.INT else None)
    autotune.check_layout(layout)  # every kernel family has a legal tile for it
    return layout


def _dynamic_format(weight_only: Format, act: ActSpec, where: str) -> Format:
    """The format holding `weight_only`'s weight with activations `act` (ValueError naming meta_args[5]
    when gemlite has none: e.g. INT8 activations against FP8 or 4-bit weights)."""
    if not act.is_dynamic:
        return weight_only
    spec = weight_only.weight
    if act.group_size is not None:
        spec = WeightSpec(spec.kind, spec.bits, group_size=act.group_size, block_n=act.group_size)
    try:
        return format_of(spec, act)
    except ValueError:
        raise ValueError(
            f"{where}[{_IN}]: {act.kind.name} activations quantized per token do not meet "
            f"{spec.bits}-bit {spec.kind.name} weights in gemlite"
        ) from None


def _fma_to_zeros(zeros_fma: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """GemLite's FMA zeros ``z' = -z * s`` back to ``z`` (fp32; a zero scale gives z = 0)."""
    s = scales.float()
    return torch.where(s == 0, torch.zeros_like(s), -zeros_fma.float() / torch.where(s == 0, 1.0, s))


# --------------------------------------------------------------------------------------------
# forward_functional
# --------------------------------------------------------------------------------------------


_FACTS: dict[tuple, tuple[str, torch.dtype, bool, bool]] = {}
_FACTS_LOCK = threading.Lock()


@torch.compiler.assume_constant_result
def _layout_facts(
    meta, K, N, w_dtype, n_scales, zero_kind, zero_int, x_dtype
) -> tuple[str, torch.dtype, bool, bool, int]:
    """``(WeightLayout.key(), compute dtype, packed, has scales, block_n)`` of what GemLite's arguments
    describe (x_dtype: the dtype of x to quantize when meta_args[0] = 1, else None), memoized (the
    eager hot path pays one dict lookup); a constant for torch.compile, so the traced graph holds these
    values, not the Python work that finds them."""
    args = (meta, K, N, w_dtype, n_scales, zero_kind, zero_int, x_dtype)
    facts = _FACTS.get(args)
    if facts is None:
        layout = describe_layout(*args[:7], x_dtype=x_dtype)
        facts = (layout.key(), layout.compute_dtype, layout.is_packed, layout.has_scales, layout.spec.block_n)
        with _FACTS_LOCK:
            if len(_FACTS) >= 4096:
                _FACTS.clear()
            _FACTS[args] = facts
    return facts


def _tensor_args(tensor_args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if not isinstance(tensor_args, (list, tuple)) or len(tensor_args) not in (3, 4):
        got = len(tensor_args) if isinstance(tensor_args, (list, tuple)) else type(tensor_args).__name__
        raise ValueError(
            "tensor_args: expected [W_q, scales, zeros] (or GemLite 0.6's [W_q, scales, zeros, "
            f"meta_scale]), got {got}"
        )
    for i, name in enumerate(("W_q", "scales", "zeros")):
        if not isinstance(tensor_args[i], torch.Tensor):
            raise TypeError(
                f"tensor_args[{i}] ({name}): expected a tensor, got {type(tensor_args[i]).__name__}"
            )
    return tensor_args[0], tensor_args[1], tensor_args[2]


def forward_functional(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    tensor_args: Sequence[torch.Tensor],
    meta_args: Sequence[int],
    matmul_type: int = -1,
) -> torch.Tensor:
    """GemLite's functional matmul: ``y = x @ W.T + bias`` for a weight given as GemLite's
    ``(tensor_args, meta_args)`` (a layer's `get_tensor_args()` / `get_meta_args()`, or torchao's
    ``UIntxBitPackedTensor``), through gemlite's custom op ``torch.ops.gemlite.matmul``.

    The sizes come from the tensors (``N = W_q.shape[1]``; ``K = W_q.shape[0] * elements_per_sample``),
    so sliced tensors (tensor parallelism) work; non-contiguous slices are copied.

    Args:
        x: ``[..., K]`` on W_q's device: of the activation dtype ``meta_args[5]`` (FP16, BF16, or INT8 /
            FP8 codes multiplied as they are); with ``meta_args[0] = 1`` (scaled_activations) fp16 or
            bf16, quantized per token (or per 1 x 128 block, channel_scale_mode 5) as the layer does.
        bias: ``[N]`` float, or None; an integer tensor for an INT32 output.
        tensor_args: ``[W_q, scales, zeros]`` or ``[W_q, scales, zeros, meta_scale]`` (meta_scale is
            ignored: it belongs to NVFP4, a later release).
        meta_args: GemLite's 12 ints (module docstring).
        matmul_type: -1 (choose by M), or the index of a kernel family in `GEMLITE_MATMUL_TYPES`.

    Returns:
        ``[..., N]`` of the output dtype ``meta_args[6]``.

    Raises:
        TypeError / ValueError: a bad argument (the message names it and what was expected).
        NotImplementedError: a GemLite format this release does not run (MX, NVFP4, ...).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    W_q, scales, zeros = _tensor_args(tensor_args)
    meta = _meta_list(meta_args)
    if (
        isinstance(matmul_type, bool)
        or not isinstance(matmul_type, int)
        or not -1 <= matmul_type < len(FAMILIES)
    ):
        raise ValueError(
            f"matmul_type: expected -1 (auto) or 0..{len(FAMILIES) - 1} ({', '.join(FAMILIES)}), "
            f"got {matmul_type!r}"
        )
    if W_q.dim() != 2:
        raise ValueError(f"tensor_args[0] (W_q): expected a 2-D tensor, got shape {tuple(W_q.shape)}")
    packed = meta[_NBITS] < 16 and W_q.dtype not in (torch.int8, torch.float8_e4m3fn)
    N = W_q.shape[1]
    K = W_q.shape[0] * (meta[_EPS] if packed else 1)
    zero_kind = _zero_kind(meta, zeros, "meta_args")
    zero_int = int(zeros.reshape(-1)[0].item()) if zero_kind == "int" else None
    key, compute_dtype, is_packed, has_scales, block_n = _layout_facts(
        meta, K, N, W_q.dtype, scales.numel(), zero_kind, zero_int, x.dtype if meta[_SCALED] else None
    )
    if x.dtype != compute_dtype:
        raise TypeError(
            f"x: expected dtype {compute_dtype} (meta_args[{_IN}]={DType(meta[_IN]).name}), got {x.dtype}"
        )
    if x.dim() == 0 or x.shape[-1] != K:
        raise ValueError(f"x: expected shape [..., {K}] (K of W_q), got {tuple(x.shape)}")
    for name, t in (("W_q", W_q), ("scales", scales), ("zeros", zeros)):
        if t.device != x.device:
            raise ValueError(f"{name}: expected a tensor on x's device {x.device}, got one on {t.device}")
    _matmul.require_runnable(x)
    if bias is not None and (not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (N,)):
        got = tuple(bias.shape) if isinstance(bias, torch.Tensor) else type(bias).__name__
        raise ValueError(f"bias: expected a float tensor of shape ({N},) or None, got {got}")
    out_dtype = DType(meta[_OUT]).torch_dtype
    if bias is not None and (bias.is_floating_point() or bias.is_complex()) == (out_dtype == torch.int32):
        if out_dtype == torch.int32:
            raise TypeError(
                f"bias: an INT32 output (meta_args[{_OUT}]) adds an integer bias exactly, got {bias.dtype}"
            )
        bias = bias.float()  # GemLite's ``out += bias`` takes an integer bias too
    elif bias is not None and out_dtype == torch.int32 and bias.dtype != torch.int32:
        bias = bias.to(torch.int32)

    if is_packed:
        w = W_q.contiguous()
        if w.dtype == torch.int8:
            w = w.view(torch.uint8)
        elif w.dtype == torch.uint32:
            w = w.view(torch.int32)
    else:
        w = W_q.t().contiguous()  # GemLite's [K, N] view of the [N, K] weight
    if block_n > 1:
        # GemLite's 128 x 128 block scales [K / 128, ceil(N / 128)]: gemlite's row of N per 128 inputs.
        s = scales.reshape(K // block_n, -1).float().repeat_interleave(block_n, dim=1)[:, :N].contiguous()
    elif has_scales:
        s = scales.reshape(-1, N).contiguous()
    else:
        s = torch.empty(0, dtype=torch.float32, device=x.device)
    if zero_kind == "float":
        z = zeros.reshape(-1, N).contiguous()
    elif zero_kind == "fma":
        z = _fma_to_zeros(zeros.reshape(-1, N), s)
    else:
        z = torch.empty(0, dtype=torch.float32, device=x.device)
    family = FAMILIES[matmul_type] if matmul_type >= 0 else None
    # Traced by torch.compile, run() calls torch.ops.gemlite.matmul with the key alone.
    layout = None if torch.compiler.is_compiling() else WeightLayout.from_key(key)
    y = _matmul.run(x.reshape(-1, K), w, s, z, bias, layout, key, out_dtype, family)
    return y.view(*x.shape[:-1], N)


# --------------------------------------------------------------------------------------------
# Checkpoints saved by public GemLite (0.6: W_q, scales, zeros, metadata[12], orig_shape, meta_scale)
# --------------------------------------------------------------------------------------------

GEMLITE_CHECKPOINT_KEYS = ("W_q", "scales", "zeros", "metadata", "orig_shape", "meta_scale", "bias")


def is_gemlite_checkpoint(state_dict: Mapping, prefix: str = "") -> bool:
    """Whether the entries under `prefix` were saved by public GemLite rather than by gemlite.

    GemLite saves an ``orig_shape`` and a 12-int ``metadata`` starting with scaled_activations (0/1);
    gemlite's metadata starts with a magic number and has 14 (v1) or more (v2) ints.
    """
    if isinstance(state_dict.get(prefix + "orig_shape"), torch.Tensor):
        return True
    meta = state_dict.get(prefix + "metadata")
    return (
        isinstance(meta, torch.Tensor) and meta.dim() == 1 and meta.numel() == 12 and int(meta[0]) in (0, 1)
    )


def _unpack_rows(words: torch.Tensor, bits: int, K: int) -> torch.Tensor:
    """GemLite's ``[K / e, N]`` words (any integer width) -> uint8 codes ``[N, K]``."""
    e = words.element_size() * 8 // bits
    # Sign extension to int64 leaves the low word bits as they were; each field is masked after the shift.
    shifts = torch.arange(e, dtype=torch.int64, device=words.device) * bits
    codes = (words.to(torch.int64).unsqueeze(1) >> shifts.view(1, e, 1)) & ((1 << bits) - 1)  # [K/e, e, N]
    return codes.reshape(K, -1).t().contiguous().to(torch.uint8)


def checkpoint_pack_args(
    entries: Mapping[str, torch.Tensor],
    *,
    in_features: int,
    out_features: int,
    W_nbits: int,
    group_size: int,
    input_dtype: DType,
    output_dtype: DType,
    scaled_activations: bool = False,
) -> dict:
    """Arguments for `GemLiteLinear.pack` that rebuild a layer saved by public GemLite.

    entries: the GemLite checkpoint's tensors without prefix (`GEMLITE_CHECKPOINT_KEYS`).
    in_features ... scaled_activations: the loading layer's constructor arguments (group_size
        resolved: in_features for channel-wise), which the checkpoint must match.

    Returns ``{"W_q", "scales", "zeros", "bias", "packing_bitwidth"}`` for ``pack(**args)``: codes
    ``[N, K]`` (uint8 HQQ codes, int8, float8_e4m3fn or the fp16/bf16 weight), canonical scales and
    zeros (GemLite's FMA zeros turned back into ``z``). Raises ValueError saying what differs from the
    layer, NotImplementedError for GemLite formats this release does not run.
    """
    for name in ("W_q", "metadata", "orig_shape"):
        if not isinstance(entries.get(name), torch.Tensor):
            raise ValueError(
                f"{name}: a public-GemLite checkpoint has W_q, scales, zeros, metadata and orig_shape; "
                f"{name} is missing"
            )
    meta = _meta_list(entries["metadata"])
    shape = [int(v) for v in entries["orig_shape"].reshape(-1).tolist()]
    if len(shape) != 2:
        raise ValueError(f"orig_shape: expected [out_features, in_features], got {shape}")
    N, K = shape
    found = {
        "out_features": N,
        "in_features": K,
        "W_nbits": meta[_NBITS],
        "input_dtype": _dtype_name(meta[_IN]),
        "output_dtype": _dtype_name(meta[_OUT]),
        "scaled_activations": meta[_SCALED],
    }
    expected = {
        "out_features": out_features,
        "in_features": in_features,
        "W_nbits": W_nbits,
        "input_dtype": input_dtype.name,
        "output_dtype": output_dtype.name,
        "scaled_activations": int(scaled_activations),
    }
    w = entries["W_q"]
    if meta[_NBITS] < 16 and w.dtype not in (torch.int8, torch.float8_e4m3fn):  # grouped codes
        saved_group = meta[_GROUP]
        found["group_size"] = K if saved_group in (0, 1) or saved_group >= K else saved_group
        expected["group_size"] = group_size
    diff = [f"{k}={found[k]} (layer: {expected[k]})" for k in expected if found[k] != expected[k]]
    if diff:
        raise ValueError(
            f"metadata: the public-GemLite checkpoint does not fit this layer: {', '.join(diff)}; build the "
            "layer with the constructor arguments of the saved one"
        )
    meta_scale = entries.get("meta_scale")
    if isinstance(meta_scale, torch.Tensor) and meta_scale.numel() == 1 and float(meta_scale) != 0.0:
        raise NotImplementedError(f"meta_scale: {float(meta_scale)} belongs to an NVFP4 layer, {_LATER}")
    W_q = entries["W_q"]
    scales = entries.get("scales")
    zeros = entries.get("zeros")
    scales = scales if isinstance(scales, torch.Tensor) and scales.is_floating_point() else None
    zeros = zeros if isinstance(zeros, torch.Tensor) else torch.empty(0, dtype=torch.int32)
    if W_q.dim() != 2:
        raise ValueError(f"W_q: expected a 2-D tensor, got shape {tuple(W_q.shape)}")
    bits, w_dtype = meta[_NBITS], W_q.dtype
    if w_dtype in _UNSUPPORTED_WORDS and bits < 16:
        # GemLite's 16- and 64-bit words hold the same codes; pack() repacks them into 32-bit words.
        words = _UNSUPPORTED_WORDS[w_dtype]
        if meta[_EPS] != words // bits:
            raise ValueError(
                f"metadata[4]: elements_per_sample={meta[_EPS]} does not fit {bits}-bit codes in {w_dtype}"
            )
        meta = (*meta[:_EPS], 32 // bits, *meta[_EPS + 1 :])
        stored = (K // (words // bits), N)
        w_dtype = torch.int32
    kind, _ = _weight_kind(meta, w_dtype, "metadata")
    zero_kind = _zero_kind(meta, zeros, "metadata")
    zero_int = int(zeros.reshape(-1)[0]) if zero_kind == "int" else None
    n_scales = 0 if scales is None else scales.numel()
    # The layout must be one this release runs (the checks of forward_functional).
    x_dtype = torch.bfloat16 if output_dtype is DType.BF16 else torch.float16  # for scaled activations
    layout = describe_layout(
        meta, K, N, w_dtype, n_scales, zero_kind, zero_int, where="metadata",
        x_dtype=x_dtype if meta[_SCALED] else None,
    )  # fmt: skip
    if W_q.dtype not in _UNSUPPORTED_WORDS:
        stored = (K // layout.elems_per_word, N) if kind == "packed" else (K, N)
    if tuple(W_q.shape) != stored:
        raise ValueError(
            f"W_q: GemLite stores this weight as [{stored[0]}, {stored[1]}], got {tuple(W_q.shape)}"
        )
    codes = _unpack_rows(W_q, bits, K) if kind == "packed" else W_q.t().contiguous()
    canon_scales = None
    if scales is not None and layout.spec.block_n > 1:
        canon_scales = scales.reshape(K // layout.spec.block_n, -1).t().contiguous()  # [ceil(N/128), K/128]
    elif scales is not None:
        canon_scales = scales.reshape(-1, N).t().contiguous()
    if zero_kind == "float":
        canon_zeros = zeros.reshape(-1, N).t().contiguous()
    elif zero_kind == "fma":
        canon_zeros = _fma_to_zeros(zeros.reshape(-1, N), scales.reshape(-1, N)).t().contiguous()
    elif zero_kind == "int":
        canon_zeros = zero_int
    else:
        canon_zeros = None
    bias = entries.get("bias")
    args = {
        "W_q": codes,
        "scales": canon_scales,
        "zeros": canon_zeros,
        "bias": bias if isinstance(bias, torch.Tensor) else None,
        "packing_bitwidth": layout.word_bits if layout.is_packed else None,
    }
    if layout.spec.block_n > 1 or layout.spec.kind is WeightKind.TERNARY:
        args["format"] = layout.format  # what pack() cannot infer from the tensors alone
    return args


def _dtype_name(value: int) -> str:
    try:
        return DType(value).name
    except ValueError:
        return f"DType({value})"


# --------------------------------------------------------------------------------------------
# GemLite's process-wide settings
# --------------------------------------------------------------------------------------------

_SETTINGS: dict[str, object] = {}
_WARNED: set[str] = set()


def settings() -> dict[str, object]:
    """What the GemLite-compatibility setters below were last asked (a copy; empty until one is called)."""
    return dict(_SETTINGS)


def _no_effect(name: str, value: object, why: str, differs: bool = True) -> None:
    """Record a setting; warn once per setter when it asks for something gemlite does not do (`differs`)."""
    _SETTINGS[name] = value
    if differs and name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(
            f"gemlite.{name}({value!r}): {why}; it changes nothing here", GemLiteCompatWarning, stacklevel=3
        )


def _bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__} {value!r}")
    return value


def set_acc_dtype(dtype: DType) -> None:
    """GemLite's ``set_acc_dtype(DType.FP16 | DType.FP32)``. gemlite always accumulates in fp32 (at least
    as accurate); FP32 is a no-op, FP16 is accepted with a one-time `GemLiteCompatWarning`."""
    if dtype not in (DType.FP16, DType.FP32):
        raise ValueError(f"dtype: expected DType.FP16 or DType.FP32, got {dtype!r}")
    if dtype is DType.FP16:
        _no_effect("set_acc_dtype", dtype, "gemlite's kernels accumulate in fp32 (never less accurate)")
    else:
        _SETTINGS["set_acc_dtype"] = dtype


def set_kernel_caching(enable: bool) -> None:
    """GemLite's per-shape output-buffer ring for M=1 GEMV; gemlite has none (no effect, warns once)."""
    _no_effect("set_kernel_caching", _bool("enable", enable), "gemlite keeps no output-buffer ring", enable)


def enable_tma(enabled: bool = True) -> None:
    """GemLite's TMA loads for MXFP4/NVFP4 weights ({later}); no effect, warns once."""
    _no_effect("enable_tma", _bool("enabled", enabled), f"MXFP4/NVFP4 kernels are {_LATER}", enabled)


def enable_warp_specialize(enabled: bool = True) -> None:
    """GemLite's Triton warp specialization switch; no effect in gemlite, warns once."""
    _no_effect(
        "enable_warp_specialize",
        _bool("enabled", enabled),
        "gemlite's kernels do not warp-specialize",
        enabled,
    )


def set_native_atomic_bfp16(enabled: bool = True) -> None:
    """GemLite's bf16 atomics switch. gemlite never adds atomically into a bf16 output (see
    `gemlite.set_deterministic`); no effect, warns once."""
    _no_effect(
        "set_native_atomic_bfp16",
        _bool("enabled", enabled),
        "gemlite never adds atomically into a bf16 output",
        enabled,
    )


def set_ptx_fp4_pack(enabled: bool = True) -> None:
    """GemLite's hardware FP4 packing of activations (MXFP4/NVFP4, {later}); no effect, warns once."""
    _no_effect("set_ptx_fp4_pack", _bool("enabled", enabled), f"FP4 activations are {_LATER}", enabled)


def set_fast_nvfp4(enabled: bool = True, default_value: float = 448.0) -> None:
    """GemLite's static NVFP4 activation scale (NVFP4 is {later}); no effect, warns once."""
    _bool("enabled", enabled)
    if isinstance(default_value, bool) or not isinstance(default_value, (int, float)):
        raise TypeError(f"default_value: expected a float, got {type(default_value).__name__}")
    _no_effect("set_fast_nvfp4", enabled, f"NVFP4 activations are {_LATER}", enabled)


def set_fast_gemv_acc(enabled: bool = True) -> None:
    """GemLite's fp16 GEMV accumulator (``gemlite.core``); gemlite accumulates in fp32: no effect."""
    _no_effect("set_fast_gemv_acc", _bool("enabled", enabled), "gemlite's GEMV accumulates in fp32", enabled)


def enable_cudagraph_autotune(enabled: bool = True) -> None:
    """GemLite's CUDA-graph timing of autotune candidates. gemlite times candidates with
    ``triton.testing.do_bench``; no effect, warns once. (GemLite's version also resets the autotune
    mode to "fast"; gemlite leaves the mode as it is.)"""
    _no_effect(
        "enable_cudagraph_autotune", _bool("enabled", enabled), "gemlite times configs with do_bench", enabled
    )


def set_autotune_setting(fct: Callable[[int], int]) -> None:
    """GemLite's M-bucketing function for autotune keys. gemlite's buckets are fixed
    (`gemlite.formats.M_BUCKETS`); no effect, warns once."""
    if not callable(fct):
        raise TypeError(f"fct: expected a callable M -> bucket, got {type(fct).__name__}")
    _no_effect("set_autotune_setting", fct, "gemlite's M buckets are fixed (gemlite.formats.M_BUCKETS)")


def auto_detect_ptx_fp4_pack() -> bool:
    """GemLite enables PTX FP4 packing when ptxas >= 13.0 is found; gemlite has no FP4 activation
    kernels yet, so this returns False."""
    return False


def enable_activation_scaling(batch_size: int) -> bool:
    """GemLite's predicate "quantize activations at this batch size": True for every batch size, as
    there (gemlite's dynamic formats quantize x whatever M is)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size: expected a non-negative int, got {batch_size!r}")
    return True


for _f in (enable_tma, set_ptx_fp4_pack, set_fast_nvfp4):
    _f.__doc__ = _f.__doc__.replace("{later}", _LATER)


def set_autotune(config: str | bool | Mapping[str, str | bool], **kwargs) -> None:
    """GemLite's ``set_autotune``: ``"fast"``, ``"max"``, ``"default"`` (= False: no timing), True
    (= "max"), False, or a dict ``{family: mode}``.

    gemlite keeps one process-wide mode (`gemlite.autotune.get_autotune`), so a dict must give every
    family it names the same mode. ``use_cuda_graph=`` is accepted (see `enable_cudagraph_autotune`).

    Raises ValueError for an unknown mode or family, or a dict with different modes;
    TypeError for an unknown keyword.
    """
    unknown = set(kwargs) - {"use_cuda_graph"}
    if unknown:
        raise TypeError(f"set_autotune: unexpected keyword argument(s) {sorted(unknown)}")
    if isinstance(config, Mapping):
        bad = [k for k in config if k not in FAMILIES]
        if bad:
            raise ValueError(f"config: unknown kernel famil(ies) {bad}; expected some of {FAMILIES}")
        modes = {_mode(v) for v in config.values()}
        if len(modes) > 1:
            raise ValueError(
                f"config: gemlite has one autotune mode for every kernel family, got different modes "
                f"{dict(config)}"
            )
        if modes:
            autotune.set_autotune(modes.pop())
    else:
        autotune.set_autotune(_mode(config))
    if "use_cuda_graph" in kwargs:
        enable_cudagraph_autotune(bool(kwargs["use_cuda_graph"]))


def _mode(value) -> str | bool:
    if isinstance(value, str):
        lowered = value.lower()
        if lowered == "default":
            return False
        if lowered in ("fast", "max"):
            return lowered
    if isinstance(value, bool):
        return value
    raise ValueError(f"config: expected 'fast', 'max', 'default', True or False, got {value!r}")
