"""Processors that turn a float ``nn.Linear`` (or pre-quantized tensors) into a `GemLiteLinear`.

One class per format, named after it, with public GemLite's constructors and methods::

    layer = A16W4_HQQ_INT(device="cuda").from_linear(linear, group_size=64)
    layer = A16W4_HQQ_INT(device="cuda").from_hqqlinear(hqq_layer)        # an hqq HQQLinear
    layer = A16W8_INT8(device="cuda").from_weights(weight_int8, bias, scales)
    layer = A16Wn(device="cuda").from_weights(W_q, scales, zeros, W_nbits=4, group_size=64)
    patch_model(model, "cuda", A16W8_INT8)      # every nn.Linear of a model, in place
    warmup(A16W4_HQQ_INT, shapes=[(4096, 4096)], batch_sizes=[1, 16, 64])   # autotune ahead of time

A processor's ``dtype`` is the activation dtype (fp16 or bf16), also the layer's output dtype.
``dtype=None`` (GemLite's default) infers it from the tensors: the scales' dtype for pre-quantized
tensors (an hqq layer's compute dtype), the float weight's dtype for ``from_linear``, when that is
float16 or bfloat16; otherwise float16 (GemLite would compute in fp32, which gemlite's kernels do not).

``device`` (default ``"cuda:0"``) is where the layer's tensors go; it is checked when a layer is built
(a ``device:`` ValueError on a machine without that device). ``from_hqqlinear`` keeps the hqq layer's
own device, as GemLite does.

Dynamic INT8/FP8 activations (``A8W8_*_dynamic``, ``block_quant=True``, ``A8W{4,2}_HQQ_INT_dynamic``,
``A8W158_INT_dynamic``) quantize x per token (or per 1 x 128 block) in the layer's forward
(`gemlite.schemes.activation`); microscaled ones (``A8W{8,4}_MXFP_dynamic(post_scale=False)``: MXFP8,
``A4W4_MXFP_dynamic``: MXFP4, ``A4W4_NVFP_dynamic``: NVFP4) per group of 32 / 16 inputs
(`gemlite.schemes.mx.MXActQuant`).

Quantization rules are in `gemlite.quantize` (MXFP8/MXFP4/NVFP4: `gemlite.schemes.mx`).
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from gemlite.formats import FORMATS, M_BUCKETS, DType, Format, WeightKind
from gemlite.linear import GemLiteLinear
from gemlite.quantize import (
    hqq_optimizer_available,
    quantize_8bit_blocks,
    quantize_fp8,
    quantize_hqq,
    quantize_hqq_optimized,
    quantize_int8,
    quantize_ternary,
)
from gemlite.schemes.mx import quantize_mx, quantize_nvfp4

__all__ = [
    "A16W16",
    "A16W8",
    "A16W8_INT8",
    "A16W8_FP8",
    "A16Wn",
    "A16Wn_HQQ_INT",
    "A16W8_HQQ_INT",
    "A16W4_HQQ_INT",
    "A16W2_HQQ_INT",
    "A16W1_HQQ_INT",
    "A16W158_INT",
    "cleanup_linear",
    "patch_model",
    "warmup",
    "DEFAULT_BATCH_SIZES",
    # dynamic activations (quantized per token in the forward)
    "A8W8_dynamic",
    "A8W8_int8_dynamic",
    "A8W8_INT8_dynamic",
    "A8W8_fp8_dynamic",
    "A8W8_FP8_dynamic",
    "A8W8_INT8_block_dynamic",
    "A8W8_FP8_block_dynamic",
    "A8Wn_HQQ_INT_dynamic",
    "A8W4_HQQ_INT_dynamic",
    "A8W2_HQQ_INT_dynamic",
    "A8W158_INT_dynamic",
    # microscaled weights (OCP MX, NVFP4), weight-only and with dynamic activations
    "A16Wn_MXFP",
    "A16W8_MXFP",
    "A16W4_MXFP",
    "A16W4_NVFP",
    "A8Wn_MXFP_dynamic",
    "A8W8_MXFP_dynamic",
    "A8W4_MXFP_dynamic",
    "A4W4_MXFP_dynamic",
    "A4W4_NVFP_dynamic",
]

# Every autotune M bucket, largest first so a warm-up tunes the slow large-M configs first.
DEFAULT_BATCH_SIZES = tuple(reversed(M_BUCKETS))
DEFAULT_SKIP_MODULES = ("lm_head", "vision", "visual")
#: Group size of `patch_model` and `warmup` for HQQ processors (public GemLite's default).
DEFAULT_GROUP_SIZE = 64
_ACT_DTYPES = (torch.float16, torch.bfloat16)
_FLOAT_WEIGHTS = (torch.float16, torch.bfloat16, torch.float32)


def _check_linear(linear) -> None:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
    w = linear.weight
    if w is None:
        raise ValueError("linear: its weight is None (was it already converted with del_orig=True?)")
    if w.device.type == "meta":
        raise ValueError("linear: its weight is on the meta device; load real weights before converting")
    if w.dtype not in _FLOAT_WEIGHTS:
        raise TypeError(f"linear: expected a float16, bfloat16 or float32 weight, got {w.dtype}")


def _data(t):
    """A Parameter's data (GemLite's helpers accept both); anything else as is."""
    return t.detach() if isinstance(t, torch.Tensor) else t


def cleanup_linear(linear_layer, del_orig: bool = True) -> None:
    """Public GemLite's ``cleanup_linear``: with ``del_orig``, set the layer's ``weight``, ``bias``,
    ``weight_scale``, ``W_q`` and ``meta`` (those present and non-empty) to None so their memory can be
    reclaimed; then release cached CUDA memory."""
    if not isinstance(del_orig, bool):
        raise TypeError(f"del_orig: expected a bool, got {type(del_orig).__name__}")
    if del_orig:
        for attr in ("weight", "bias", "weight_scale", "W_q", "meta"):
            value = getattr(linear_layer, attr, None)
            size = (
                value.numel()
                if isinstance(value, torch.Tensor)
                else len(value)
                if hasattr(value, "__len__")
                else 0
            )
            if size > 0:
                setattr(linear_layer, attr, None)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _usable_device(device: torch.device) -> torch.device:
    """`device` if this machine has it, else a ``device:`` ValueError (not torch's assertion)."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device: the processor's device is {device}, but this machine has no CUDA GPU "
                "(torch.cuda.is_available() is False); pass device='cpu' to run the kernels on the CPU "
                "(TRITON_INTERPRET=1 set before importing gemlite)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device: {device} does not exist; this machine has {count} CUDA device(s)")
    elif device.type == "meta":
        raise ValueError("device: a gemlite layer needs real tensors, got the meta device")
    return device


class _Processor:
    """Common part of the processors: the target device and activation dtype.

    Args:
        device: where the layer's tensors go (a torch.device or a string such as ``"cuda:0"``).
            Nothing is allocated by the constructor; a device this machine lacks is refused when a
            layer is built.
        dtype: activation dtype, torch.float16 or torch.bfloat16 (also the output dtype), or None:
            inferred from the tensors (module docstring).

    Raises:
        ValueError: a device torch cannot parse, a dtype other than None/fp16/bf16.
    """

    def __init__(self, device: str | torch.device = "cuda:0", dtype: torch.dtype | None = None) -> None:
        try:
            self.device = torch.device(device)
        except (TypeError, RuntimeError) as e:
            raise ValueError(
                f"device: expected a torch device such as 'cuda:0' or 'cpu', got {device!r} ({e})"
            ) from None
        if dtype is not None and dtype not in _ACT_DTYPES:
            raise ValueError(
                "dtype: expected torch.float16 or torch.bfloat16 (the activation dtype), or None (inferred "
                f"from the tensors), got {dtype!r}"
            )
        self.dtype = dtype

    #: The format this processor's layers hold (its name is the class name).
    format: Format

    @property
    def W_nbits(self) -> int:
        """Bits per stored weight code (GemLite's processors carry it too)."""
        return self.format.weight.bits

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={str(self.device)!r}, dtype={self.dtype})"

    def _act_dtype(self, like: torch.dtype | None) -> torch.dtype:
        """The activation dtype: the processor's, else `like` when it is fp16/bf16, else fp16."""
        if self.dtype is not None:
            return self.dtype
        return like if like in _ACT_DTYPES else torch.float16

    def _layer(self, group_size: int | None, n: int, k: int, dtype: torch.dtype) -> GemLiteLinear:
        act = DType.from_torch(dtype)
        return GemLiteLinear(
            self.format.weight.bits, group_size=group_size, in_features=k, out_features=n,
            input_dtype=act, output_dtype=act,
        )  # fmt: skip

    def _pack(self, group_size, n: int, k: int, W_q, scales, zeros, bias, dtype, **pack_kw) -> GemLiteLinear:
        return self._layer(group_size, n, k, dtype).pack(
            W_q, scales, zeros, bias, format=self.format, **pack_kw
        )

    def _to_device(self, t, device: torch.device | None = None):
        if t is None or not isinstance(t, torch.Tensor):
            return t
        return t.detach().to(_usable_device(self.device if device is None else device))

    def _bias_of(self, linear: nn.Linear) -> torch.Tensor | None:
        if linear.bias is None:
            return None
        return linear.bias.detach().to(_usable_device(self.device), copy=True)


def _free_linear(linear: nn.Linear) -> None:
    """Drop the float layer's tensors (``del_orig=True``) so their memory can be reclaimed."""
    linear.weight = None
    linear.bias = None


class A16W16(_Processor):
    """Unquantized fp16/bf16 weight through gemlite's kernels (a baseline; no memory saved)."""

    format = FORMATS["A16W16"]

    def from_linear(self, linear: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """A W_nbits=16 layer with the linear's weight cast to the activation dtype (bias kept)."""
        _check_linear(linear)
        n, k = linear.weight.shape
        dtype = self._act_dtype(linear.weight.dtype)
        weight = linear.weight.detach().to(_usable_device(self.device), dtype, copy=True)
        layer = self._pack(None, n, k, weight, None, None, self._bias_of(linear), dtype)
        layer.quantizer = "rtn"  # one rounding to the activation dtype
        if del_orig:
            _free_linear(linear)
        return layer

    def from_weights(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> GemLiteLinear:
        """A W_nbits=16 layer from a ``[N, K]`` fp16/bf16 weight (of the processor's dtype, if set)."""
        weight = _data(weight)
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(
                f"weight: expected a 2-D tensor [N, K], got {getattr(weight, 'shape', weight)!r}"
            )
        n, k = weight.shape
        dtype = self._act_dtype(weight.dtype)
        weight, bias = self._to_device(weight), self._to_device(_data(bias))
        return self._pack(None, n, k, weight, None, None, bias, dtype)


# --------------------------------------------------------------------------------------------
# 8-bit channel-wise weights: INT8 / FP8
# --------------------------------------------------------------------------------------------


class A16W8(_Processor):
    """fp16/bf16 activations x 8-bit channel-wise weights, ``W = W_q * scales[n]`` (public GemLite's
    ``A16W8``): INT8 codes, or FP8 e4m3 codes with ``fp8=torch.float8_e4m3fn``.

    Args:
        device, dtype: as for every processor (module docstring).
        fp8: None (INT8) or torch.float8_e4m3fn (FP8). Other FP8 types are a later release.
        fp32_scale, post_scale: GemLite's storage/kernel choices; gemlite always keeps fp32 scales and
            applies them to the fp32 accumulator (exact codes in the dot), so both are accepted and
            change nothing.
    """

    format = FORMATS["A16W8_INT8"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp8: torch.dtype | None = None,
        fp32_scale: bool = True,
        post_scale: bool = False,
    ) -> None:
        super().__init__(device, dtype)
        for name, flag in (("fp32_scale", fp32_scale), ("post_scale", post_scale)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}: expected a bool, got {type(flag).__name__} {flag!r}")
        if fp8 is None or fp8 is False:
            self.format = FORMATS["A16W8_INT8"]
        elif fp8 == torch.float8_e4m3fn:
            self.format = FORMATS["A16W8_FP8"]
        elif isinstance(fp8, torch.dtype) and fp8.is_floating_point and fp8.itemsize == 1:
            raise NotImplementedError(
                f"fp8: {fp8} weights are planned for a later release; use float8_e4m3fn"
            )
        else:
            raise TypeError(f"fp8: expected None or torch.float8_e4m3fn, got {fp8!r}")
        self.fp8, self.fp32_scale, self.post_scale = fp8 or None, fp32_scale, post_scale

    @property
    def _codes_dtype(self) -> torch.dtype:
        return torch.int8 if self.format.weight.kind is WeightKind.INT8 else torch.float8_e4m3fn

    def from_linear(self, linear_layer: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` (see `gemlite.quantize`) and pack it; the bias is kept.

        Args:
            linear_layer: the float layer (fp16/bf16/fp32 weight; quantized from its own precision).
            del_orig: drop the linear's weight and bias afterwards (set to None) to free memory.

        Raises:
            TypeError / ValueError: not an nn.Linear, a non-float or non-finite weight, sizes the
                kernels cannot run (in_features must be a multiple of 32), a missing device.
        """
        _check_linear(linear_layer)
        layer = self.from_weights(linear_layer.weight, self._bias_of(linear_layer))
        layer.quantizer = "rtn"
        if del_orig:
            _free_linear(linear_layer)
        return layer

    def from_weights(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, scales: torch.Tensor | None = None
    ) -> GemLiteLinear:
        """Pack 8-bit weights: GemLite's ``from_weights(weight, bias=None, scales=None)``.

        Args:
            weight: ``[N, K]``. With ``scales``: pre-quantized codes (int8 for INT8, float8_e4m3fn for
                FP8). Without: a float weight (fp16/bf16/fp32), quantized per output channel
                (`gemlite.quantize`: scale ``amax / 127`` or ``amax / 448``, in fp32).
            bias: ``[N]`` float, or None.
            scales: N per-channel scales (``[N]`` or ``[N, 1]``, fp16/bf16/fp32, stored as fp32), or None.

        Raises:
            TypeError / ValueError: as `GemLiteLinear.pack`; codes without scales.
        """
        weight, bias, scales = _data(weight), _data(bias), _data(scales)
        name = type(self).__name__ if type(self) is not A16W8 else self.format.name
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
        if type(self) is A16W8 and scales is not None and weight.dtype != self._codes_dtype:
            # GemLite's A16W8 takes any pre-quantized 8-bit weight: the codes' dtype names the format.
            if weight.dtype in (torch.int8, torch.float8_e4m3fn):
                fp8 = torch.float8_e4m3fn if weight.dtype == torch.float8_e4m3fn else None
                return A16W8(self.device, self.dtype, fp8, self.fp32_scale, self.post_scale).from_weights(
                    weight, bias, scales
                )
        if weight.dim() != 2:
            raise ValueError(f"weight: expected a 2-D tensor [N, K], got shape {tuple(weight.shape)}")
        if scales is None:
            if not weight.dtype.is_floating_point or weight.dtype.itemsize == 1:
                if weight.dtype == self._codes_dtype:
                    raise TypeError(
                        f"scales: pre-quantized {weight.dtype} codes need their scales; GemLite's order is "
                        "from_weights(weight, bias=None, scales=None): pass scales=... (by keyword, or third)"
                    )
                raise TypeError(
                    f"weight: {name} takes {self._codes_dtype} codes, got {weight.dtype} (or a float weight "
                    "to quantize, with scales=None)"
                )
            if weight.dtype not in _FLOAT_WEIGHTS:
                raise TypeError(f"weight: expected a float16, bfloat16 or float32 weight, got {weight.dtype}")
            dtype = self._act_dtype(weight.dtype)
            spec, weight = self.format.weight, weight.to(_usable_device(self.device))
            if spec.block_n > 1:  # the _block_dynamic formats: one scale per block_n x group_size block
                weight, scales = quantize_8bit_blocks(weight, spec.kind is WeightKind.FP8, spec.block_n)
            else:
                weight, scales = (quantize_int8 if spec.kind is WeightKind.INT8 else quantize_fp8)(weight)
        else:
            if weight.dtype != self._codes_dtype:
                raise TypeError(f"weight: {name} takes {self._codes_dtype} codes, got {weight.dtype}")
            dtype = self._act_dtype(scales.dtype if isinstance(scales, torch.Tensor) else None)
        n, k = weight.shape
        weight, scales, bias = self._to_device(weight), self._to_device(scales), self._to_device(bias)
        return self._pack(None, n, k, weight, scales, None, bias, dtype)


class A16W8_INT8(A16W8):
    """fp16/bf16 activations x INT8 channel-wise weights (symmetric, round half away from zero)."""

    format = FORMATS["A16W8_INT8"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp32_scale: bool = True,
        post_scale: bool = False,
    ) -> None:
        super().__init__(device, dtype, None, fp32_scale, post_scale)


class A16W8_FP8(A16W8):
    """fp16/bf16 activations x FP8 e4m3 channel-wise weights."""

    format = FORMATS["A16W8_FP8"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp8: torch.dtype = torch.float8_e4m3fn,
        fp32_scale: bool = True,
        post_scale: bool = False,
    ) -> None:
        super().__init__(device, dtype, fp8, fp32_scale, post_scale)
        if self.format.name != "A16W8_FP8":
            raise TypeError(f"fp8: A16W8_FP8 needs an FP8 dtype (torch.float8_e4m3fn), got {fp8!r}")


# --------------------------------------------------------------------------------------------
# Dynamic 8-bit activations x 8-bit channel-wise weights
# --------------------------------------------------------------------------------------------


class A8W8_dynamic(A16W8):
    """Activations quantized per token at run time x 8-bit channel-wise weights (public GemLite's
    ``A8W8_dynamic``): INT8 x INT8 (``fp8=False``, int32 accumulation) or e4m3 x e4m3
    (``fp8=torch.float8_e4m3fn``, fp32 accumulation), ``y = (x_q @ W_q.T) * s_x[m] * s_w[n] + b``.

    The weights are quantized (or taken) exactly as `A16W8`'s (``s_w = amax / 127`` or ``/ 448`` per
    output channel, fp32); each row of x gets ``s_x = max(amax / 127, 1e-6)`` (or ``/ 448``) and its codes
    in the layer's forward (`gemlite.schemes.activation`). x stays fp16/bf16 for the caller: the layer
    quantizes fp16 or bf16 x and returns ``dtype`` outputs. (GemLite's lower-level spelling of the same
    layer: ``GemLiteLinear(8, ..., input_dtype=DType.INT8 / DType.FP8, scaled_activations=True)`` then
    ``pack(W_q, scales, None, bias)``.)

    Args:
        device, dtype: as for every processor (module docstring).
        fp8: False or None (INT8), or torch.float8_e4m3fn (FP8).
        fp32_scale: GemLite's storage choice; gemlite keeps fp32 scales. A bool; no effect.
        block_quant: 128x128 weight blocks with 1x128 activation blocks, DeepSeek-style (the
            ``A8W8_INT8_block_dynamic`` / ``A8W8_FP8_block_dynamic`` formats): weight scales per block
            (``from_weights`` takes them as ``[ceil(N / 128), K / 128]``), activation scales per 128 inputs
            of a row, both applied to each K tile's product inside the K loop. in_features must be a
            multiple of 128 (ValueError at pack time); out_features may end in a partial block.
    """

    format = FORMATS["A8W8_INT8_dynamic"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp8: torch.dtype | bool | None = False,
        fp32_scale: bool = True,
        block_quant: bool = False,
    ) -> None:
        super().__init__(device, dtype, fp8 or None, fp32_scale, False)
        if not isinstance(block_quant, bool):
            raise TypeError(f"block_quant: expected a bool, got {type(block_quant).__name__} {block_quant!r}")
        self.block_quant = block_quant
        kind = "INT8" if self.format.weight.kind is WeightKind.INT8 else "FP8"
        self.format = FORMATS[f"A8W8_{kind}_block_dynamic" if block_quant else f"A8W8_{kind}_dynamic"]


class A8W8_int8_dynamic(A8W8_dynamic):
    """Per-token INT8 activations x INT8 channel-wise weights (`A8W8_dynamic` with ``fp8=False``)."""

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp32_scale: bool = True,
        block_quant: bool = False,
    ) -> None:
        super().__init__(device, dtype, False, fp32_scale, block_quant)


class A8W8_fp8_dynamic(A8W8_dynamic):
    """Per-token e4m3 activations x e4m3 channel-wise weights (`A8W8_dynamic` with an FP8 ``fp8``)."""

    format = FORMATS["A8W8_FP8_dynamic"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp8: torch.dtype = torch.float8_e4m3fn,
        fp32_scale: bool = True,
        block_quant: bool = False,
    ) -> None:
        if not fp8:
            raise TypeError(f"fp8: A8W8_fp8_dynamic needs an FP8 dtype (torch.float8_e4m3fn), got {fp8!r}")
        super().__init__(device, dtype, fp8, fp32_scale, block_quant)


A8W8_INT8_dynamic = A8W8_int8_dynamic
A8W8_FP8_dynamic = A8W8_fp8_dynamic


class A8W8_INT8_block_dynamic(A8W8_int8_dynamic):
    """`A8W8_INT8_dynamic` with ``block_quant=True``: the processor named after its format (gemlite's
    name; public GemLite spells it ``A8W8_INT8_dynamic(block_quant=True)``, which works too)."""

    def __init__(
        self, device: str | torch.device = "cuda:0", dtype: torch.dtype | None = None, fp32_scale: bool = True
    ) -> None:
        super().__init__(device, dtype, fp32_scale, block_quant=True)


class A8W8_FP8_block_dynamic(A8W8_fp8_dynamic):
    """`A8W8_FP8_dynamic` with ``block_quant=True`` (see `A8W8_INT8_block_dynamic`)."""

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        fp8: torch.dtype = torch.float8_e4m3fn,
        fp32_scale: bool = True,
    ) -> None:
        super().__init__(device, dtype, fp8, fp32_scale, block_quant=True)


# --------------------------------------------------------------------------------------------
# HQQ integer weights
# --------------------------------------------------------------------------------------------


def _hqq_device(hqq_layer, fallback: torch.device) -> torch.device:
    w = getattr(hqq_layer, "W_q", None)
    return w.device if isinstance(w, torch.Tensor) else fallback


class _HQQ(_Processor):
    """HQQ-style integer weights: uint8 codes, ``W = (W_q - zeros) * scales`` per group along K."""

    _packing_bitwidth: int | None = None  # A16Wn's packing_bitwidth; None: GemLiteLinear.PACKING_BITWIDTH

    def _pack_hqq(self, group_size, n, k, W_q, scales, zeros, bias, dtype, packed=False) -> GemLiteLinear:
        return self._pack(
            group_size, n, k, W_q, scales, zeros, bias, dtype,
            packed=packed, packing_bitwidth=self._packing_bitwidth,
        )  # fmt: skip

    def from_linear(
        self,
        linear: nn.Linear,
        del_orig: bool = True,
        group_size: int | None = 128,
        optimize: bool | None = None,
    ) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` per group along K and pack it: with hqq's half-quadratic
        optimizer when the `hqq` package is installed (as public GemLite does, through ``HQQLinear``),
        else by min-max round-to-nearest (`gemlite.quantize`). The layer's ``quantizer`` attribute says
        which ran: ``"hqq"`` or ``"rtn"``.

        Scales and zeros are stored in the activation dtype; the bias is kept.

        Args:
            linear: the float layer.
            del_orig: drop the linear's weight and bias afterwards (set to None).
            group_size: inputs per group (must divide in_features); None = channel-wise.
            optimize: None: hqq's optimizer if installed (`gemlite.quantize.hqq_optimizer_available`),
                else round-to-nearest; True: hqq's optimizer (ImportError without hqq); False:
                round-to-nearest (the rule `reference/` checks bit for bit).

        Raises:
            TypeError / ValueError: not an nn.Linear, a non-finite weight, a group size the kernels
                cannot run or that does not divide in_features, a missing device, optimize not a bool.
            ImportError: ``optimize=True`` without the `hqq` package.
        """
        _check_linear(linear)
        if optimize is not None and not isinstance(optimize, bool):
            raise TypeError(f"optimize: expected None or a bool, got {type(optimize).__name__} {optimize!r}")
        n, k = linear.weight.shape
        dtype = self._act_dtype(linear.weight.dtype)
        layer = self._layer(group_size, n, k, dtype)  # validates group_size before quantizing
        use_hqq = hqq_optimizer_available() if optimize is None else optimize
        quantize = quantize_hqq_optimized if use_hqq else quantize_hqq
        codes, scales, zeros = quantize(
            linear.weight.detach().to(_usable_device(self.device)),
            self.format.weight.bits,
            group_size,
            scale_dtype=dtype,
        )
        layer.quantizer = "hqq" if use_hqq else "rtn"
        layer.pack(
            codes,
            scales,
            zeros,
            self._bias_of(linear),
            packing_bitwidth=self._packing_bitwidth,
            format=self.format,
        )
        if del_orig:
            _free_linear(linear)
        return layer

    def _group_of(self, W_q_numel: int, k: int, scales) -> int:
        if not isinstance(scales, torch.Tensor):
            raise TypeError(f"scales: expected a torch.Tensor, got {type(scales).__name__}")
        s = scales.numel()
        if s == 0 or W_q_numel % s != 0 or k % (W_q_numel // s) != 0:
            raise ValueError(
                f"scales: the group size is W_q.numel() / scales.numel() and must divide K={k}; got "
                f"{W_q_numel} / {s} values"
            )
        return W_q_numel // s

    def from_weights(
        self,
        W_q: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | int | None,
        bias: torch.Tensor | None = None,
    ) -> GemLiteLinear:
        """Pack pre-quantized HQQ codes; the group size is ``W_q.numel() // scales.numel()``.

        Args:
            W_q: uint8 codes ``[N, K]`` in ``[0, 2**W_nbits - 1]``.
            scales: ``N * K / g`` values in any shape (row-major group order), fp16/bf16/fp32.
            zeros: like scales, or a Python int, or None.
            bias: ``[N]`` float, or None.

        Raises:
            TypeError / ValueError: as `GemLiteLinear.pack`, plus a scales count that does not divide
                W_q's.
        """
        W_q, scales, zeros, bias = (_data(t) for t in (W_q, scales, zeros, bias))
        if not isinstance(W_q, torch.Tensor):
            raise TypeError(f"W_q: expected a torch.Tensor, got {type(W_q).__name__}")
        if W_q.dim() != 2:
            raise ValueError(f"W_q: expected a 2-D tensor [N, K], got shape {tuple(W_q.shape)}")
        n, k = W_q.shape
        group_size = self._group_of(W_q.numel(), k, scales)
        dtype = self._act_dtype(scales.dtype)
        W_q, scales, zeros, bias = (self._to_device(t) for t in (W_q, scales, zeros, bias))
        return self._pack_hqq(group_size, n, k, W_q, scales, zeros, bias, dtype)

    def from_packed_weights(
        self,
        W_q_packed: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | int | None,
        bias: torch.Tensor | None = None,
    ) -> GemLiteLinear:
        """Pack HQQ codes already packed in GemLite's layout (``[N, K / e]`` words along K, least
        significant bits first; `gemlite.packing.pack_codes`): uint8/int8 words hold ``8 / W_nbits``
        codes, int32/uint32 words ``32 / W_nbits``. The group size is ``N * K / scales.numel()``.

        Raises:
            TypeError / ValueError: words of another dtype or shape, as `GemLiteLinear.pack`.
        """
        W_q, scales, zeros, bias = (_data(t) for t in (W_q_packed, scales, zeros, bias))
        if not isinstance(W_q, torch.Tensor):
            raise TypeError(f"W_q_packed: expected a torch.Tensor, got {type(W_q).__name__}")
        widths = {torch.uint8: 8, torch.int8: 8, torch.int32: 32, torch.uint32: 32}
        if W_q.dtype not in widths or W_q.dim() != 2:
            raise TypeError(
                "W_q_packed: expected 2-D uint8/int8 (8-bit words) or int32/uint32 (32-bit words), got "
                f"{W_q.dtype} of shape {tuple(W_q.shape)}"
            )
        bits = self.format.weight.bits
        n, k = W_q.shape[0], W_q.shape[1] * (widths[W_q.dtype] // bits)
        group_size = self._group_of(n * k, k, scales)
        dtype = self._act_dtype(scales.dtype)
        W_q, scales, zeros, bias = (self._to_device(t) for t in (W_q, scales, zeros, bias))
        return self._pack_hqq(group_size, n, k, W_q, scales, zeros, bias, dtype, packed=True)

    def from_hqqlinear(self, hqq_layer, del_orig: bool = True) -> GemLiteLinear:
        """Convert an ``hqq.core.quantize.HQQLinear`` (the `hqq` package) to a GemLiteLinear.

        Takes its unpacked uint8 codes, scales and zeros (quantized along axis 1, i.e. groups along K,
        with this processor's bit width) and its bias, on the hqq layer's own device (as GemLite does;
        the processor's device is not used). With ``del_orig`` the hqq layer's tensors are released
        (`cleanup_linear`).

        Raises:
            ImportError: the `hqq` package is not installed.
            ValueError: the layer is quantized along axis 0, or with another bit width.
        """
        try:
            import hqq  # noqa: F401
        except ImportError:
            raise ImportError(
                "from_hqqlinear: needs the `hqq` package (pip install hqq, or gemlite[hqq])"
            ) from None
        layer = self._from_hqq_parts(hqq_layer)
        layer.quantizer = "hqq"
        cleanup_linear(hqq_layer, del_orig)
        return layer

    def _from_hqq_parts(self, hqq_layer) -> GemLiteLinear:
        meta = hqq_layer.meta
        if meta.get("axis", 1) != 1:
            raise ValueError(f"hqq_layer: gemlite takes groups along K (axis=1), got axis={meta['axis']}")
        bits = self.format.weight.bits
        if meta["nbits"] != bits:
            raise ValueError(
                f"hqq_layer: {type(self).__name__} takes {bits}-bit weights, got {meta['nbits']}-bit"
            )
        n, k = meta["shape"]
        device = _hqq_device(hqq_layer, self.device)
        W_q = hqq_layer.unpack(dtype=torch.uint8).reshape(n, k)
        group_size = meta["group_size"] if meta["group_size"] is not None else k
        scales, zeros = meta["scale"], meta["zero"]
        bias = getattr(hqq_layer, "bias", None)
        W_q, scales, zeros, bias = (self._to_device(t, device) for t in (W_q, scales, zeros, bias))
        dtype = self._act_dtype(scales.dtype if isinstance(scales, torch.Tensor) else None)
        if isinstance(scales, torch.Tensor) and scales.dtype not in _FLOAT_WEIGHTS:
            scales = scales.to(dtype)
        if isinstance(zeros, torch.Tensor) and zeros.dtype not in _FLOAT_WEIGHTS:
            zeros = zeros.to(dtype)  # e.g. quantized zeros, dequantized by unpack beforehand
        return self._pack_hqq(group_size, n, k, W_q, scales, zeros, bias, dtype)


class A16Wn_HQQ_INT(_HQQ):
    """fp16/bf16 activations x ``W_nbits``-bit HQQ codes (public GemLite's base of the four below).

    Args:
        device, dtype: as for every processor (module docstring).
        W_nbits: 8, 4, 2 or 1.
    """

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        W_nbits: int | None = None,
    ) -> None:
        super().__init__(device, dtype)
        if isinstance(W_nbits, bool) or W_nbits not in (8, 4, 2, 1):
            raise ValueError(f"W_nbits: expected 8, 4, 2 or 1, got {W_nbits!r}")
        self.format = FORMATS[f"A16W{W_nbits}_HQQ_INT"]


class _FixedHQQ(_HQQ):
    def __init__(self, device: str | torch.device = "cuda:0", dtype: torch.dtype | None = None) -> None:
        super().__init__(device, dtype)


class A16W8_HQQ_INT(_FixedHQQ):
    """fp16/bf16 activations x 8-bit HQQ codes."""

    format = FORMATS["A16W8_HQQ_INT"]


class A16W4_HQQ_INT(_FixedHQQ):
    """fp16/bf16 activations x 4-bit HQQ codes."""

    format = FORMATS["A16W4_HQQ_INT"]


class A16W2_HQQ_INT(_FixedHQQ):
    """fp16/bf16 activations x 2-bit HQQ codes."""

    format = FORMATS["A16W2_HQQ_INT"]


class A16W1_HQQ_INT(_FixedHQQ):
    """fp16/bf16 activations x 1-bit HQQ codes."""

    format = FORMATS["A16W1_HQQ_INT"]


class A8Wn_HQQ_INT_dynamic(_HQQ):
    """Activations quantized per token to e4m3 at run time x ``W_nbits``-bit HQQ codes (public GemLite's
    ``A8Wn_HQQ_INT_dynamic``; the weights, their quantizer and every ``from_*`` method as `A16W4_HQQ_INT`'s).

    NOTE (design). Casting each dequantized weight ``(q - z) * s`` to e4m3 for an fp8 dot, as public
    GemLite does, puts typical LLM weights (~1e-2) in e4m3's subnormal range (below 2**-6, spacing 2**-9):
    a relative error of ~5-20% per weight on top of the 4-bit quantization. gemlite feeds the dot the
    codes themselves instead: ``q`` (0..15) and ``q - z`` for an integer zero are exact e4m3 values, the
    e4m3 x e4m3 products are exact, and each K tile's fp32 product ``P`` gets its group's scale and float
    zero as ``(P - z * sum_k x_q) * s`` in fp32 (``gemlite/kernels/gemm.py``): no weight is ever rounded,
    and the only error beyond the reference's is fp32 accumulation (``harness/numerics.py``,
    "zero-points accumulated apart"). The activations' own e4m3 rounding is the format's (the golden's).

    Args:
        device, dtype: as for every processor (module docstring).
        packing_bitwidth: word of the packed codes, 8 or 32, or None (`GemLiteLinear.PACKING_BITWIDTH`).
        post_scale, fp32_scale: GemLite's kernel and storage choices; gemlite keeps the scales as given
            (fp16/bf16/fp32) and picks where they apply. Bools; no effect.
        fp8: the activation codes' dtype: torch.float8_e4m3fn (others: a later release).
        W_nbits: 4 or 2 (8-bit codes are not exact in e4m3).
    """

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        packing_bitwidth: int | None = None,
        dtype: torch.dtype | None = None,
        post_scale: bool = False,
        fp8: torch.dtype = torch.float8_e4m3fn,
        fp32_scale: bool = False,
        W_nbits: int | None = None,
    ) -> None:
        super().__init__(device, dtype)
        if isinstance(W_nbits, bool) or W_nbits not in (4, 2):
            raise ValueError(
                f"W_nbits: expected 4 or 2 (e4m3 holds integer codes up to 16 exactly), got {W_nbits!r}"
            )
        if packing_bitwidth is not None and (
            isinstance(packing_bitwidth, bool) or packing_bitwidth not in (8, 32)
        ):
            raise ValueError(f"packing_bitwidth: expected 8, 32 or None, got {packing_bitwidth!r}")
        for name, flag in (("post_scale", post_scale), ("fp32_scale", fp32_scale)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name}: expected a bool, got {type(flag).__name__} {flag!r}")
        if fp8 != torch.float8_e4m3fn:
            if isinstance(fp8, torch.dtype) and fp8.is_floating_point and fp8.itemsize == 1:
                raise NotImplementedError(f"fp8: {fp8} activations are planned for a later release")
            raise TypeError(f"fp8: expected torch.float8_e4m3fn, got {fp8!r}")
        self._packing_bitwidth = packing_bitwidth
        self.packing_bitwidth, self.post_scale = packing_bitwidth, post_scale
        self.fp8, self.fp32_scale = fp8, fp32_scale
        self.format = FORMATS[f"A8W{W_nbits}_HQQ_INT_dynamic"]


class A8W4_HQQ_INT_dynamic(A8Wn_HQQ_INT_dynamic):
    """Per-token e4m3 activations x 4-bit HQQ codes (`A8Wn_HQQ_INT_dynamic` with ``W_nbits=4``)."""

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        packing_bitwidth: int | None = None,
        dtype: torch.dtype | None = None,
        post_scale: bool = False,
        fp8: torch.dtype = torch.float8_e4m3fn,
        fp32_scale: bool = False,
    ) -> None:
        super().__init__(device, packing_bitwidth, dtype, post_scale, fp8, fp32_scale, W_nbits=4)


class A8W2_HQQ_INT_dynamic(A8Wn_HQQ_INT_dynamic):
    """Per-token e4m3 activations x 2-bit HQQ codes (`A8Wn_HQQ_INT_dynamic` with ``W_nbits=2``)."""

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        packing_bitwidth: int | None = None,
        dtype: torch.dtype | None = None,
        post_scale: bool = False,
        fp8: torch.dtype = torch.float8_e4m3fn,
        fp32_scale: bool = False,
    ) -> None:
        super().__init__(device, packing_bitwidth, dtype, post_scale, fp8, fp32_scale, W_nbits=2)


class A16Wn(_Processor):
    """Public GemLite's ``A16Wn``: fp16/bf16 activations x ``W_nbits``-bit grouped integer weights, the
    bit width given per call (what torchao's ``UIntxWeightOnlyConfig`` and hqq's gemlite backend use).

    Args:
        device, dtype: as for every processor (module docstring).
        packing_bitwidth: word of the packed codes, 8 or 32; None: ``GemLiteLinear.PACKING_BITWIDTH``
            (32 unless `gemlite.set_packing_bitwidth` changed it).
        post_scale: GemLite's choice of where channel-wise scales apply; gemlite picks the exact form per
            layout, so it is accepted and changes nothing.
    """

    format = FORMATS["A16W4_HQQ_INT"]  # the format of the default W_nbits; each call names its own

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        packing_bitwidth: int | None = None,
        post_scale: bool = False,
    ) -> None:
        super().__init__(device, dtype)
        if packing_bitwidth is not None and (
            isinstance(packing_bitwidth, bool) or packing_bitwidth not in (8, 16, 32, 64)
        ):
            raise ValueError(f"packing_bitwidth: expected 8, 32 or None, got {packing_bitwidth!r}")
        if packing_bitwidth in (16, 64):
            raise ValueError(
                f"packing_bitwidth: gemlite's kernels read 8- or 32-bit words, got {packing_bitwidth} "
                "(use 8 or 32: the same codes, the same results)"
            )
        if not isinstance(post_scale, bool):
            raise TypeError(f"post_scale: expected a bool, got {type(post_scale).__name__}")
        self.packing_bitwidth, self.post_scale = packing_bitwidth, post_scale

    def _hqq(self, W_nbits) -> A16Wn_HQQ_INT:
        proc = A16Wn_HQQ_INT(self.device, self.dtype, W_nbits)
        proc._packing_bitwidth = self.packing_bitwidth
        return proc

    def _mx(self, W_nbits, group_size, zeros) -> A16Wn_MXFP:
        """GemLite's ``quant_type="MXFP"``: the codes and e8m0 scales of `A16Wn_MXFP` (groups of 32)."""
        if group_size != 32:
            raise ValueError(f"group_size: MXFP weights have groups of 32, got {group_size!r}")
        if zeros is not None:
            raise ValueError(f"zeros: MXFP weights take no zeros, got {type(zeros).__name__}")
        return A16Wn_MXFP(self.device, self.dtype, W_nbits)

    def _check_args(self, group_size, quant_type) -> None:
        if quant_type != "INT":
            raise ValueError(f"quant_type: expected 'INT' or 'MXFP', got {quant_type!r}")
        if group_size is not None and (
            isinstance(group_size, bool) or not isinstance(group_size, int) or group_size <= 0
        ):
            raise ValueError(
                f"group_size: expected a positive int (or None: channel-wise), got {group_size!r}"
            )

    def from_weights(
        self,
        W_q: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | int | None,
        W_nbits: int,
        group_size: int,
        bias: torch.Tensor | None = None,
        quant_type: str = "INT",
    ) -> GemLiteLinear:
        """Pack uint8 codes ``[N, K]`` with ``W = (W_q - zeros) * scales`` per group of `group_size`
        (= in_features: channel-wise). scales/zeros: ``N * K / group_size`` values in any shape; zeros
        may also be a Python int or None. ``quant_type="MXFP"``: MX codes and e8m0 scales
        (`A16Wn_MXFP.from_weights`; group_size 32, zeros None). Raises as `GemLiteLinear.pack`."""
        if quant_type == "MXFP":
            return self._mx(W_nbits, group_size, zeros).from_weights(W_q, scales, bias)
        self._check_args(group_size, quant_type)
        layer = self._hqq(W_nbits).from_weights(W_q, scales, zeros, bias)
        if group_size is not None and layer.group_size != group_size:
            raise ValueError(
                f"group_size: {group_size} does not match the scales ({_data(scales).numel()} values give "
                f"groups of {layer.group_size})"
            )
        return layer

    def from_packed_weights(
        self,
        W_q: torch.Tensor,
        scales: torch.Tensor,
        zeros: torch.Tensor | int | None,
        W_nbits: int,
        group_size: int,
        bias: torch.Tensor | None = None,
        quant_type: str = "INT",
    ) -> GemLiteLinear:
        """As `from_weights` for codes already packed in GemLite's layout (``[N, K / e]`` uint8 or
        int32 words; see `A16W4_HQQ_INT.from_packed_weights`; MXFP4: ``[N, K / 2]`` uint8)."""
        if quant_type == "MXFP":
            return self._mx(W_nbits, group_size, zeros).from_packed_weights(W_q, scales, bias)
        self._check_args(group_size, quant_type)
        layer = self._hqq(W_nbits).from_packed_weights(W_q, scales, zeros, bias)
        if group_size is not None and layer.group_size != group_size:
            raise ValueError(
                f"group_size: {group_size} does not match the scales ({_data(scales).numel()} values give "
                f"groups of {layer.group_size})"
            )
        return layer

    def from_hqqlinear(self, hqq_layer, del_orig: bool = True) -> GemLiteLinear:
        """Convert an ``hqq`` ``HQQLinear`` of any supported bit width (as
        `A16W4_HQQ_INT.from_hqqlinear` does)."""
        meta = getattr(hqq_layer, "meta", None)
        if not isinstance(meta, dict) or "nbits" not in meta:
            raise TypeError(
                f"hqq_layer: expected an hqq HQQLinear (with .meta), got {type(hqq_layer).__name__}"
            )
        return self._hqq(meta["nbits"]).from_hqqlinear(hqq_layer, del_orig)


# --------------------------------------------------------------------------------------------
# Ternary
# --------------------------------------------------------------------------------------------


class A16W158_INT(_Processor):
    """fp16/bf16 activations x BitNet b1.58 ternary weights (stored as 2-bit codes ``t + 1``).

    ``fp32_scale`` (GemLite's) is accepted; the scale is always kept in fp32.
    """

    format = FORMATS["A16W158_INT"]

    def __init__(
        self, device: str | torch.device = "cuda:0", dtype: torch.dtype | None = None, fp32_scale: bool = True
    ) -> None:
        super().__init__(device, dtype)
        if not isinstance(fp32_scale, bool):
            raise TypeError(f"fp32_scale: expected a bool, got {type(fp32_scale).__name__}")
        self.fp32_scale = fp32_scale

    def from_linear(self, linear: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` with absmean ternarization (one scale) and pack it."""
        _check_linear(linear)
        dtype = self._act_dtype(linear.weight.dtype)
        weight_t, scale = quantize_ternary(linear.weight.detach().to(_usable_device(self.device)))
        layer = self._from_ternary(weight_t, scale, self._bias_of(linear), dtype)
        layer.quantizer = "rtn"  # absmean scale, W / s rounded to {-1, 0, 1}
        if del_orig:
            _free_linear(linear)
        return layer

    def from_bitlinear(self, linear_layer, del_orig: bool = True) -> GemLiteLinear:
        """Convert a BitNet ``BitLinear``-style layer: its ``weight`` (values in {-1, 0, 1}),
        ``weight_scale`` (one number, multiplied as GemLite does) and ``bias``."""
        for attr in ("weight", "weight_scale"):
            if getattr(linear_layer, attr, None) is None:
                raise ValueError(
                    f"linear_layer: expected a BitLinear with .{attr}, got {type(linear_layer).__name__}"
                )
        layer = self.from_weights(
            linear_layer.weight, linear_layer.weight_scale, getattr(linear_layer, "bias", None)
        )
        cleanup_linear(linear_layer, del_orig)
        return layer

    def from_weights(
        self, weight: torch.Tensor, weight_scale, bias: torch.Tensor | None = None
    ) -> GemLiteLinear:
        """Pack a ternary weight: ``W = weight * weight_scale``.

        Args:
            weight: ``[N, K]`` with values in {-1, 0, 1} (int8, or any real dtype holding exactly those).
            weight_scale: one number: a Python float or a 1-element tensor.
            bias: ``[N]`` float, or None.

        Raises:
            TypeError / ValueError: values outside {-1, 0, 1}, a non-finite scale, as `GemLiteLinear.pack`.
        """
        weight, bias = _data(weight), _data(bias)
        dtype = self._act_dtype(weight.dtype if isinstance(weight, torch.Tensor) else None)
        return self._from_ternary(weight, _data(weight_scale), bias, dtype)

    def _from_ternary(self, weight, weight_scale, bias, dtype) -> GemLiteLinear:
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
        if weight.dim() != 2:
            raise ValueError(f"weight: expected a 2-D tensor [N, K], got shape {tuple(weight.shape)}")
        if weight.dtype.is_complex or weight.dtype == torch.bool:
            raise TypeError(f"weight: expected a real tensor with values in {{-1, 0, 1}}, got {weight.dtype}")
        ternary = (weight == -1) | (weight == 0) | (weight == 1)
        if not bool(ternary.all()):
            bad = weight[~ternary].flatten()[0].item()
            raise ValueError(f"weight: ternary weights take values in {{-1, 0, 1}}, got {bad}")
        scale = _one_number("weight_scale", weight_scale)
        n, k = weight.shape
        weight, bias = self._to_device(weight), self._to_device(bias)
        codes = (weight.to(torch.int16) + 1).to(torch.uint8)  # t + 1 in {0, 1, 2}
        scales = torch.full((n,), scale, dtype=torch.float32, device=codes.device)
        return self._pack(None, n, k, codes, scales, 1, bias, dtype)


class A8W158_INT_dynamic(A16W158_INT):
    """Activations quantized per token to int8 at run time x BitNet b1.58 ternary weights: an int8 x
    int8 dot of the codes and ``t = q - 1``, exact in int32, then ``* s_x[m] * weight_scale`` in fp32.
    Constructor and methods as `A16W158_INT`'s."""

    format = FORMATS["A8W158_INT_dynamic"]


def _one_number(name: str, value) -> float:
    """A finite Python float from a float/int or a 1-element real tensor (TypeError/ValueError)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.dtype.is_complex:
            raise ValueError(f"{name}: expected one real number, got a tensor of shape {tuple(value.shape)}")
        value = float(value.item())
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float or a 1-element tensor, got {type(value).__name__}")
    if not torch.isfinite(torch.tensor(float(value))):
        raise ValueError(f"{name}: expected a finite number, got {value}")
    return float(value)


# --------------------------------------------------------------------------------------------
# Microscaled weights: MXFP8 / MXFP4 (e8m0 scale per 32), NVFP4 (e4m3 per 16 + a tensor scale)
# --------------------------------------------------------------------------------------------


class _MX(_Processor):
    """What the microscaled processors share; the formats' rules are `gemlite.schemes.mx`'s.

    ``from_linear`` quantizes a float weight by the reference's rules (`gemlite.schemes.mx.quantize_mx`,
    `quantize_nvfp4`: scales from each group's amax, codes rounded to nearest, ties to even).
    Pre-quantized codes come with their scales; the scale BYTES are taken bit for bit (e8m0 as
    ``torch.float8_e8m0fnu`` or ``uint8``, NVFP4's e4m3 as ``torch.float8_e4m3fn`` or ``uint8``).
    ``dtype=None`` means float16 for pre-quantized codes (GemLite's default), the float weight's dtype
    (fp16/bf16) for ``from_linear``.
    """

    def _quantize(self, weight: torch.Tensor):
        kind = self.format.weight.kind
        if kind is WeightKind.NVFP4:
            return quantize_nvfp4(weight, "linear")
        codes, scale_bytes = quantize_mx(weight, "e4m3" if kind is WeightKind.MXFP8 else "e2m1")
        return codes, scale_bytes, None

    def from_linear(self, linear_layer: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` (fp16/bf16/fp32 weight, in_features a multiple of 32) and pack
        it; the bias is kept. Raises TypeError/ValueError for a non-float, non-finite or misshapen weight."""
        _check_linear(linear_layer)
        weight = linear_layer.weight.detach().to(_usable_device(self.device))
        n, k = weight.shape
        dtype = self._act_dtype(weight.dtype)
        codes, scales, tensor_scale = self._quantize(weight)
        layer = self._pack(None, n, k, codes, scales, tensor_scale, self._bias_of(linear_layer), dtype)
        layer.quantizer = "rtn"
        if del_orig:
            _free_linear(linear_layer)
        return layer

    def _from_codes(self, W_q, scales, tensor_scale, bias, packed: bool) -> GemLiteLinear:
        W_q, scales, bias, tensor_scale = _data(W_q), _data(scales), _data(bias), _data(tensor_scale)
        if not isinstance(W_q, torch.Tensor):
            raise TypeError(f"W_q: expected a torch.Tensor, got {type(W_q).__name__}")
        if W_q.dim() != 2:
            raise ValueError(
                f"W_q: expected a 2-D tensor [N, K] (packed: [N, K // 2]), got shape {tuple(W_q.shape)}"
            )
        if not isinstance(packed, bool):
            raise TypeError(f"packed: expected a bool, got {type(packed).__name__}")
        n, k = W_q.shape
        W_q, scales, bias, tensor_scale = (self._to_device(t) for t in (W_q, scales, bias, tensor_scale))
        pack_kw = {}
        if packed:
            if self.format.weight.kind is WeightKind.MXFP8:
                raise ValueError("packed: MXFP8 codes are one e4m3 byte each, never packed; use packed=False")
            if W_q.dtype != torch.uint8:
                raise TypeError(
                    "W_q: packed e2m1 codes are uint8 bytes [N, K // 2] (two per byte, the even k in the low "
                    f"nibble), got {W_q.dtype}"
                )
            k *= 2
            W_q = W_q.contiguous()
            if GemLiteLinear.PACKING_BITWIDTH == 32 and sys.byteorder == "little" and W_q.shape[1] % 4 == 0:
                W_q = W_q.view(torch.int32)  # the same bits as 32-bit words: code k at bit 4 * (k % 8)
            pack_kw["packed"] = True
        return self._pack(None, n, k, W_q, scales, tensor_scale, bias, self._act_dtype(None), **pack_kw)


class A16Wn_MXFP(_MX):
    """fp16/bf16 activations x OCP MX weights, one e8m0 scale per 32 inputs (public GemLite's
    ``A16Wn_MXFP``): ``W_nbits=8`` MXFP8 (e4m3 codes, `A16W8_MXFP`), ``4`` MXFP4 (e2m1, `A16W4_MXFP`).

    Args:
        device, dtype: as for every processor (module docstring; ``dtype=None``: see `_MX`).
        W_nbits: 8 or 4.
    """

    format = FORMATS["A16W4_MXFP"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        W_nbits: int | None = None,
    ) -> None:
        super().__init__(device, dtype)
        if isinstance(W_nbits, bool) or W_nbits not in (8, 4):
            raise ValueError(f"W_nbits: MXFP weights are 8-bit (MXFP8) or 4-bit (MXFP4), got {W_nbits!r}")
        self.format = FORMATS["A16W8_MXFP" if W_nbits == 8 else "A16W4_MXFP"]

    def from_weights(
        self, W_q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None, packed: bool = False
    ) -> GemLiteLinear:
        """Pack pre-quantized MX codes.

        Args:
            W_q: ``[N, K]`` codes: float8_e4m3fn (MXFP8) or uint8 e2m1 indices 0..15 (MXFP4); with
                ``packed=True`` (MXFP4) uint8 bytes ``[N, K // 2]``, the even k in the low nibble.
            scales: ``N * K / 32`` e8m0 scales in row-major group order, any shape: torch.float8_e8m0fnu or
                uint8 bytes, reinterpreted bit for bit (byte 127 is 2**0).
            bias: ``[N]`` float, or None.
            packed: see W_q.

        Raises:
            TypeError / ValueError: as `GemLiteLinear.pack` (the message names the argument).
        """
        return self._from_codes(W_q, scales, None, bias, packed)

    def from_packed_weights(
        self, W_q_packed: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None
    ) -> GemLiteLinear:
        """`from_weights` with ``packed=True``: MXFP4 codes as checkpoints store them, ``[N, K // 2]``
        uint8."""
        return self._from_codes(W_q_packed, scales, None, bias, True)


class A16W8_MXFP(A16Wn_MXFP):
    """fp16/bf16 activations x MXFP8 weights (e4m3 codes, e8m0 scale per 32 inputs)."""

    def __init__(self, device: str | torch.device = "cuda:0", dtype: torch.dtype | None = None) -> None:
        super().__init__(device, dtype, 8)


class A16W4_MXFP(A16Wn_MXFP):
    """fp16/bf16 activations x MXFP4 weights (e2m1 codes, e8m0 scale per 32 inputs)."""

    def __init__(self, device: str | torch.device = "cuda:0", dtype: torch.dtype | None = None) -> None:
        super().__init__(device, dtype, 4)


class _NVFP(_MX):
    """What the NVFP4-weight processors share: `from_weights` in public GemLite's argument order."""

    def from_weights(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
        meta_scale=None,
        packed: bool = False,
    ) -> GemLiteLinear:
        """Pack pre-quantized NVFP4 codes (public GemLite's argument order).

        Args:
            weight: ``[N, K]`` uint8 e2m1 indices 0..15, or with ``packed=True`` uint8 bytes ``[N, K // 2]``
                (the even k in the low nibble).
            bias: ``[N]`` float, or None.
            scales: ``N * K / 16`` e4m3 group scales, any shape: torch.float8_e4m3fn or uint8 bytes
                (reinterpreted bit for bit).
            meta_scale: the tensor scale (a positive float or 1-element tensor, stored as fp32).
            packed: see weight.

        Raises:
            TypeError / ValueError: as `GemLiteLinear.pack` (the message names the argument).
        """
        if meta_scale is None:
            raise ValueError(
                "meta_scale: NVFP4 weights need their tensor scale (W = e2m1(q) * s_g / meta_scale), got None"
            )
        return self._from_codes(weight, scales, meta_scale, bias, packed)

    def from_packed_weights(
        self, weight_packed: torch.Tensor, bias: torch.Tensor | None = None, scales=None, meta_scale=None
    ) -> GemLiteLinear:
        """`from_weights` with ``packed=True``: codes as checkpoints store them, ``[N, K // 2]`` uint8."""
        return self.from_weights(weight_packed, bias, scales, meta_scale, packed=True)


class A16W4_NVFP(_NVFP):
    """fp16/bf16 activations x NVFP4 weights: e2m1 codes, one e4m3 scale per 16 inputs and an fp32 tensor
    scale, ``W = e2m1(q) * s_g / meta_scale`` (``meta_scale = 448 * 6 / amax(W)`` for weights quantized
    by `from_linear`; ModelOpt checkpoints store its reciprocal as ``weight_scale_2``)."""

    format = FORMATS["A16W4_NVFP"]


class A4W4_NVFP_dynamic(_NVFP):
    """NVFP4 activations quantized at run time x NVFP4 weights (public GemLite's ``A4W4_NVFP_dynamic``).

    The layer takes fp16/bf16 x and quantizes it in its forward: e2m1 codes, one e4m3 scale per 16
    inputs and one fp32 tensor scale ``448 * 6 / amax(|x|)`` over the whole x of the call, computed at run
    time so that no group scale saturates and no code is corrupted however large x is
    (`gemlite.schemes.mx.MXActQuant`). The weights are as for `A16W4_NVFP` (``from_weights(weight, bias,
    scales, meta_scale)``; ``from_linear`` quantizes by the reference's rules). The kernels multiply
    ``e2m1 * s_g`` of both sides in a bf16 dot (exact operands) and apply both tensor scales to the fp32
    accumulator once. ``dtype``: the activation (and output) dtype, fp16 or bf16 (default fp16; the
    float weight's for ``from_linear``).
    """

    format = FORMATS["A4W4_NVFP_dynamic"]

    def from_weights(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        scales: torch.Tensor | None = None,
        meta_scale=None,
        input_scale=None,
        packed: bool = False,
    ) -> GemLiteLinear:
        """Pack pre-quantized NVFP4 weights (public GemLite 0.6's argument order): ``weight``, ``bias``,
        ``scales``, ``meta_scale`` and ``packed`` as in `A16W4_NVFP.from_weights`.

        input_scale: GemLite's STATIC activation scale (ModelOpt's ``amax(x) / 2688``), which would skip
            the run-time amax: not supported (gemlite computes ts from each call's x); None only.

        Raises:
            NotImplementedError: an input_scale. TypeError / ValueError: as `GemLiteLinear.pack`.
        """
        if input_scale is not None:
            raise NotImplementedError(
                "input_scale: a static NVFP4 activation scale is not supported; gemlite computes the tensor "
                "scale 448 * 6 / amax(|x|) from each call's x (pass input_scale=None)"
            )
        return super().from_weights(weight, bias, scales, meta_scale, packed)

    def from_packed_weights(
        self, weight_packed: torch.Tensor, bias=None, scales=None, meta_scale=None, input_scale=None
    ) -> GemLiteLinear:
        """`from_weights` with ``packed=True``: codes as checkpoints store them, ``[N, K // 2]`` uint8."""
        return self.from_weights(weight_packed, bias, scales, meta_scale, input_scale, packed=True)


class _DynamicMX(_MX):
    """MX weights whose layer quantizes its activations (`A8Wn_MXFP_dynamic`, `A4W4_MXFP_dynamic`):
    `from_weights` in public GemLite's argument order."""

    def from_weights(
        self, weight: torch.Tensor, bias: torch.Tensor | None = None, scales=None, packed: bool = False
    ) -> GemLiteLinear:
        """Pack pre-quantized MX weights (public GemLite's argument order): ``weight`` and ``scales`` as in
        `A16Wn_MXFP.from_weights` (MXFP8 float8_e4m3fn codes or MXFP4 e2m1 indices ``[N, K]`` / packed
        bytes ``[N, K // 2]``; ``N * K / 32`` e8m0 scales as float8_e8m0fnu or uint8, taken bit for bit),
        ``bias`` ``[N]`` or None. Use `from_linear` to quantize a float layer. Raises as
        `GemLiteLinear.pack`; ValueError without scales."""
        if scales is None:
            raise ValueError(
                "scales: pre-quantized MX weights need their e8m0 scales (use from_linear to quantize)"
            )
        return self._from_codes(weight, scales, None, bias, packed)

    def from_packed_weights(
        self, weight_packed: torch.Tensor, bias: torch.Tensor | None = None, scales=None
    ) -> GemLiteLinear:
        """`from_weights` with ``packed=True`` (MXFP4 codes ``[N, K // 2]`` uint8)."""
        return self.from_weights(weight_packed, bias, scales, packed=True)


class A8Wn_MXFP_dynamic(_DynamicMX):
    """Activations quantized at run time x MX weights (public GemLite's ``A8Wn_MXFP_dynamic``).

    ``post_scale=True`` (GemLite's default): each row of x becomes e4m3 codes with one fp32 scale
    (``amax / 448``, `gemlite.schemes.activation`), multiplied by the MX weight in a bf16 dot (both
    operands exact in bf16) and scaled after it: the formats A8W8_MXFP_post_scale_dynamic /
    A8W4_MXFP_post_scale_dynamic. ``post_scale=False``: MXFP8 activations, e4m3 codes with one e8m0
    scale per 32 inputs of a row (``2**ceil(log2(amax / 448))``), dequantized per K tile into bf16
    (exact) against the MX weight in a bf16 dot: the formats A8W8_MXFP_dynamic / A8W4_MXFP_dynamic
    (`gemlite.schemes.mx.MXActQuant`).

    Args:
        device, dtype: as for every processor (``dtype=None``: see `_MX`); x stays fp16/bf16 for the
            caller, the layer quantizes it.
        post_scale: see above.
        fp8: the activation codes' dtype: torch.float8_e4m3fn.
        W_nbits: 8 (MXFP8 weights) or 4 (MXFP4).
    """

    format = FORMATS["A8W4_MXFP_post_scale_dynamic"]

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        post_scale: bool = True,
        fp8: torch.dtype = torch.float8_e4m3fn,
        W_nbits: int | None = None,
    ) -> None:
        super().__init__(device, dtype)
        if isinstance(W_nbits, bool) or W_nbits not in (8, 4):
            raise ValueError(f"W_nbits: MXFP weights are 8-bit (MXFP8) or 4-bit (MXFP4), got {W_nbits!r}")
        if not isinstance(post_scale, bool):
            raise TypeError(f"post_scale: expected a bool, got {type(post_scale).__name__} {post_scale!r}")
        if fp8 != torch.float8_e4m3fn:
            raise TypeError(f"fp8: the activation codes are torch.float8_e4m3fn, got {fp8!r}")
        self.post_scale, self.fp8 = post_scale, fp8
        suffix = "_post_scale_dynamic" if post_scale else "_dynamic"
        self.format = FORMATS[f"A8W{W_nbits}_MXFP{suffix}"]


class A8W8_MXFP_dynamic(A8Wn_MXFP_dynamic):
    """Dynamic activations x MXFP8 weights (`A8Wn_MXFP_dynamic` with ``W_nbits=8``)."""

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        post_scale: bool = True,
        fp8: torch.dtype = torch.float8_e4m3fn,
    ) -> None:
        super().__init__(device, dtype, post_scale, fp8, 8)


class A8W4_MXFP_dynamic(A8Wn_MXFP_dynamic):
    """Dynamic activations x MXFP4 weights (`A8Wn_MXFP_dynamic` with ``W_nbits=4``)."""

    def __init__(
        self,
        device: str | torch.device = "cuda:0",
        dtype: torch.dtype | None = None,
        post_scale: bool = True,
        fp8: torch.dtype = torch.float8_e4m3fn,
    ) -> None:
        super().__init__(device, dtype, post_scale, fp8, 4)


class A4W4_MXFP_dynamic(_DynamicMX):
    """MXFP4 activations quantized at run time x MXFP4 weights (public GemLite's ``A4W4_MXFP_dynamic``).

    The layer takes fp16/bf16 x and quantizes it in its forward: e2m1 codes (to nearest, ties to even),
    one e8m0 scale ``2**ceil(log2(amax / 6))`` per 32 inputs of a row (`gemlite.schemes.mx.MXActQuant`);
    the kernels dequantize each K tile into bf16 (exact) against the MXFP4 weight in a bf16 dot. The
    weights: ``from_weights(weight, bias, scales)`` (e2m1 indices ``[N, K]`` or, ``packed=True``, bytes
    ``[N, K // 2]``; e8m0 scales as float8_e8m0fnu or uint8), or ``from_linear``. ``dtype``: the
    activation (and output) dtype, fp16 or bf16 (default fp16; the float weight's for ``from_linear``).
    """

    format = FORMATS["A4W4_MXFP_dynamic"]


# --------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------


def _processor_for(processor, device, dtype) -> _Processor:
    """An instance from a processor class (with `device`, `dtype`) or an instance (used as is)."""
    if isinstance(processor, type) and issubclass(processor, _Processor):
        if processor in (A16Wn, A16Wn_HQQ_INT):
            raise TypeError(
                f"processor: {processor.__name__} takes its bit width per call; pass a fixed-width processor "
                "(e.g. A16W4_HQQ_INT) or an instance"
            )
        return processor(device=device, dtype=dtype)
    if isinstance(processor, _Processor):
        return processor
    raise TypeError(
        "processor: expected a gemlite.helper processor class or instance (e.g. A16W4_HQQ_INT), "
        f"got {processor!r}"
    )


def _convert(
    proc: _Processor, linear: nn.Module, group_size: int | None, optimize: bool | None = None
) -> GemLiteLinear:
    if not isinstance(linear, nn.Linear):  # an hqq HQQLinear (patch_model)
        if not isinstance(proc, (_HQQ, A16Wn)):
            raise TypeError(f"processor: {type(proc).__name__} cannot convert an hqq HQQLinear")
        return proc.from_hqqlinear(linear)
    if isinstance(proc, _HQQ):
        return proc.from_linear(linear, del_orig=True, group_size=group_size, optimize=optimize)
    if isinstance(proc, A16Wn):
        raise TypeError(
            "processor: A16Wn takes pre-quantized tensors; pass e.g. A16W4_HQQ_INT to quantize a model"
        )
    return proc.from_linear(linear, del_orig=True)


def _empty_layer(proc: _Processor, linear: nn.Module, group_size: int | None) -> GemLiteLinear:
    """An unpacked layer with the constructor arguments `proc` would give `linear`'s weight: what
    ``load_state_dict`` fills with a saved layer (`patch_model` with ``quantize=False``)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(
            f"quantize: False builds layers for nn.Linear modules only, got {type(linear).__name__}"
        )
    if isinstance(proc, A16Wn):
        raise TypeError("processor: A16Wn takes its bit width per call; pass e.g. A16W4_HQQ_INT")
    n, k = linear.weight.shape
    dtype = proc._act_dtype(linear.weight.dtype)
    _usable_device(proc.device)
    layer = proc._layer(group_size if isinstance(proc, _HQQ) else None, n, k, dtype)
    return layer.to(proc.device)


def _hqq_linear_type():
    try:
        from hqq.core.quantize import HQQLinear
    except ImportError:  # the hqq package is optional
        return None
    return HQQLinear


def patch_model(
    model: nn.Module,
    device: str | torch.device,
    processor,
    skip_modules: Sequence[str] = DEFAULT_SKIP_MODULES,
    group_size: int | None = DEFAULT_GROUP_SIZE,
    *,
    optimize: bool | None = None,
    quantize: bool = True,
) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of `model` (and every hqq ``HQQLinear``, for HQQ
    processors, when hqq is installed) whose name contains none of `skip_modules`.

    To reload a patched model saved with ``model.state_dict()`` (e.g. ``safetensors.torch.save_file``):
    build the same model skeleton on a real device, ``patch_model(skeleton, device, processor,
    skip_modules, group_size, quantize=False)`` (empty layers, nothing quantized), then
    ``skeleton.load_state_dict(saved)``; the layers come back bit for bit.

    Args:
        model: any module; its nn.Linear children (at any depth) are swapped for GemLiteLinear layers.
        device: where the new layers live.
        processor: a processor class (built with `device` and the linear's own dtype, which must then
            be fp16/bf16) or instance (used as is), e.g. ``A16W4_HQQ_INT``.
        skip_modules: substrings of qualified module names (``"model.layers.0.mlp.up_proj"``) to leave alone.
        group_size: for HQQ processors: inputs per group, None = channel-wise (GemLite's default 64).
        optimize: for HQQ processors (`A16W4_HQQ_INT.from_linear`): None quantizes with hqq's
            optimizer when the hqq package is installed (as GemLite's patch_model does), else by
            round-to-nearest; True / False force one. Each layer's ``quantizer`` says which ran.
        quantize: False swaps in empty layers with the constructor arguments the processor would
            use (no weight is read or quantized; only nn.Linear shapes and dtypes), to load a saved
            state_dict into.

    Returns:
        `model` (patched in place). The float layers' tensors are freed as they are converted.

    Raises:
        TypeError: `processor` is not a processor; a float32 layer met with a processor class;
            optimize or quantize not a bool.
        ValueError: a layer the kernels cannot run (its name is in the message; add it to skip_modules).
    """
    if optimize is not None and not isinstance(optimize, bool):
        raise TypeError(f"optimize: expected None or a bool, got {type(optimize).__name__}")
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize: expected a bool, got {type(quantize).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(skip_modules, str):
        raise TypeError("skip_modules: expected a list of name substrings, got a single str")
    skip = tuple(skip_modules)
    hqq_linear = _hqq_linear_type()
    kinds = (nn.Linear,) if hqq_linear is None else (nn.Linear, hqq_linear)
    # Collect first: replacing children while iterating named_modules would walk the new layers.
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, kinds) and name and not any(s in name for s in skip)
    ]
    if isinstance(model, kinds):
        raise TypeError("model: a bare nn.Linear cannot be patched in place; use a processor's from_linear")
    for name, linear in targets:
        if isinstance(processor, type):
            dtype = linear.weight.dtype if isinstance(linear, nn.Linear) else linear.meta["scale"].dtype
            if dtype not in _ACT_DTYPES:
                raise TypeError(
                    f"processor: {name} has a {dtype} weight; with a processor class the activation dtype "
                    "is the layer's own, which must be float16 or bfloat16: convert the model "
                    "(model.half()) or pass an instance, e.g. A16W8_INT8(device, torch.float16)"
                )
            proc = _processor_for(processor, device, dtype)
        else:
            proc = _processor_for(processor, device, None)
        try:
            if quantize:
                layer = _convert(proc, linear, group_size, optimize)
            else:
                layer = _empty_layer(proc, linear, group_size)
        except (ValueError, NotImplementedError) as e:
            raise type(e)(
                f"patch_model: cannot convert {name!r} ({e}); add it to skip_modules to keep it as is"
            ) from e
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
    return model


class _Progress:
    """warmup's progress bar on stderr (tqdm); prints nothing when not `enabled`."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = tqdm(total=total, desc="gemlite warmup", file=sys.stderr, disable=not enabled)

    def step(self, what: str) -> None:
        self._bar.set_postfix_str(what, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def warmup(
    processor,
    shapes: Iterable[tuple[int, int]],
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    group_size: int | None = DEFAULT_GROUP_SIZE,
    dtype: torch.dtype | None = None,
    *,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> int:
    """Build one layer per ``(N, K)`` shape from a random float weight and run it at every batch size,
    so the autotuner picks (and caches) its configs before real traffic. Save them afterwards with
    `gemlite.cache_config(path)`. Public GemLite's signature, plus `device` and `progress`.

    Args:
        processor: a processor class or instance (as in `patch_model`).
        shapes: ``(out_features, in_features)`` pairs.
        batch_sizes: M values to run (default: every autotune M bucket, 4096 down to 1).
        group_size: for HQQ processors; None = channel-wise (GemLite's default 64).
        dtype: the activation dtype (default: the instance's, else torch.float16).
        device: for a processor class (default ``"cuda:0"``). With an instance, `device` and `dtype` must be
            None or equal to the instance's own.
        progress: show a progress bar on stderr (tqdm).

    Returns:
        The number of forward calls run.

    Raises:
        TypeError / ValueError: a bad processor, shape or batch size; device/dtype contradicting an instance.
    """
    if isinstance(processor, _Processor):
        for name, given, own in (("device", device, processor.device), ("dtype", dtype, processor.dtype)):
            if (
                given is not None
                and own is not None
                and (torch.device(given) if name == "device" else given) != own
            ):
                raise ValueError(
                    f"{name}: the processor instance uses {own}, got {given}; pass one or the other"
                )
        if dtype is None:
            dtype = processor.dtype
    proc = _processor_for(processor, "cuda:0" if device is None else device, dtype)
    act = dtype or proc.dtype or torch.float16
    shape_list = []
    for shape in shapes:
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
            raise ValueError(f"shapes: expected (out_features, in_features) pairs, got {shape!r}")
        shape_list.append(tuple(_positive(f"shapes {shape!r}", v) for v in shape))
    batches = [_positive("batch_sizes", m) for m in batch_sizes]
    target = _usable_device(proc.device)
    bar = _Progress(len(shape_list) * len(batches), progress)
    calls = 0
    try:
        with torch.no_grad():
            for n, k in shape_list:
                linear = nn.Linear(k, n, bias=False, device=target, dtype=act)
                layer = _convert(proc, linear, group_size, optimize=False)  # timing needs no optimizer
                for m in batches:
                    x = torch.randn(m, k, device=target, dtype=layer.input_dtype.torch_dtype)
                    layer(x)
                    calls += 1
                    bar.step(f"N={n} K={k} M={m}")
    finally:
        bar.close()
    return calls


def _positive(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected positive ints, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected positive ints, got {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: expected positive ints, got {value}")
    return value
