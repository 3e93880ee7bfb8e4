"""Processors that turn a float ``nn.Linear`` (or pre-quantized tensors) into a `GemLiteLinear`.

One class per format, named after it::

    layer = A16W4_HQQ_INT(device="cuda", dtype=torch.float16).from_linear(linear, group_size=64)
    layer = A16W8_INT8(device="cuda").from_weights(weight_int8, scales, bias)
    patch_model(model, "cuda", A16W8_INT8)      # every nn.Linear of a model, in place
    warmup(A16W4_HQQ_INT, shapes=[(4096, 4096)], batch_sizes=[1, 16, 64])   # autotune ahead of time

A processor's ``dtype`` is the activation dtype (fp16 or bf16) and also the layer's output dtype.
Quantization rules are in `gemlite.quantize`.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from gemlite.formats import FORMATS, M_BUCKETS, DType, Format
from gemlite.linear import GemLiteLinear
from gemlite.quantize import quantize_fp8, quantize_hqq, quantize_int8, quantize_ternary

__all__ = [
    "A16W16",
    "A16W8_INT8",
    "A16W8_FP8",
    "A16W8_HQQ_INT",
    "A16W4_HQQ_INT",
    "A16W2_HQQ_INT",
    "A16W1_HQQ_INT",
    "A16W158_INT",
    "patch_model",
    "warmup",
    "DEFAULT_BATCH_SIZES",
]

# Every autotune M bucket, largest first so a warm-up tunes the slow large-M configs first.
DEFAULT_BATCH_SIZES = tuple(reversed(M_BUCKETS))
DEFAULT_SKIP_MODULES = ("lm_head", "vision", "visual")
_ACT_DTYPES = (torch.float16, torch.bfloat16)


def _check_linear(linear) -> None:
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear: expected a torch.nn.Linear, got {type(linear).__name__}")
    w = linear.weight
    if w is None:
        raise ValueError("linear: its weight is None (was it already converted with del_orig=True?)")
    if w.device.type == "meta":
        raise ValueError("linear: its weight is on the meta device; load real weights before converting")
    if w.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"linear: expected a float16, bfloat16 or float32 weight, got {w.dtype}")


def _free_linear(linear: nn.Linear) -> None:
    """Drop the float layer's tensors (``del_orig=True``) so their memory can be reclaimed."""
    linear.weight = None
    linear.bias = None


class _Processor:
    """Common part of the processors: the target device and activation dtype.

    Args:
        device: where the layer's tensors go (a torch.device or a string such as ``"cuda:0"``).
            Nothing is allocated by the constructor.
        dtype: activation dtype, torch.float16 or torch.bfloat16; also the output dtype.

    Raises:
        TypeError / ValueError: a device torch cannot parse, a dtype other than fp16/bf16.
    """

    def __init__(self, device: str | torch.device = "cuda:0", dtype: torch.dtype = torch.float16) -> None:
        try:
            self.device = torch.device(device)
        except (TypeError, RuntimeError) as e:
            raise ValueError(
                f"device: expected a torch device such as 'cuda:0' or 'cpu', got {device!r} ({e})"
            ) from None
        if dtype not in _ACT_DTYPES:
            raise ValueError(
                f"dtype: expected torch.float16 or torch.bfloat16 (the activation dtype), got {dtype!r}"
            )
        self.dtype = dtype

    #: The format this processor's layers hold (its name is the class name).
    format: Format

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={str(self.device)!r}, dtype={self.dtype})"

    def _layer(self, group_size: int | None, n: int, k: int) -> GemLiteLinear:
        act = DType.from_torch(self.dtype)
        return GemLiteLinear(
            self.format.weight.bits, group_size=group_size, in_features=k, out_features=n,
            input_dtype=act, output_dtype=act,
        )  # fmt: skip

    def _pack(self, group_size, n: int, k: int, W_q, scales, zeros, bias) -> GemLiteLinear:
        return self._layer(group_size, n, k).pack(W_q, scales, zeros, bias, format=self.format)

    def _bias_of(self, linear: nn.Linear) -> torch.Tensor | None:
        if linear.bias is None:
            return None
        return linear.bias.detach().to(self.device, copy=True)

    def _to_device(self, name: str, t):
        if t is None or not isinstance(t, torch.Tensor):
            return t
        return t.detach().to(self.device)


class A16W16(_Processor):
    """Unquantized fp16/bf16 weight through gemlite's kernels (a baseline; no memory saved)."""

    format = FORMATS["A16W16"]

    def from_linear(self, linear: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """A W_nbits=16 layer with the linear's weight cast to `dtype` (bias kept)."""
        _check_linear(linear)
        n, k = linear.weight.shape
        weight = linear.weight.detach().to(self.device, self.dtype, copy=True)
        layer = self._pack(None, n, k, weight, None, None, self._bias_of(linear))
        if del_orig:
            _free_linear(linear)
        return layer

    def from_weights(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> GemLiteLinear:
        """A W_nbits=16 layer from a ``[N, K]`` weight of `dtype` (not converted: TypeError otherwise)."""
        if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            raise ValueError(
                f"weight: expected a 2-D tensor [N, K], got {getattr(weight, 'shape', weight)!r}"
            )
        n, k = weight.shape
        weight, bias = self._to_device("weight", weight), self._to_device("bias", bias)
        return self._pack(None, n, k, weight, None, None, bias)


class _ChannelWise8(_Processor):
    """8-bit channel-wise weights (INT8 or FP8): ``W = W_q * scales[n]``, fp32 scales."""

    _codes_dtype: torch.dtype
    _quantize = staticmethod(quantize_int8)

    def from_linear(self, linear: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` (see `gemlite.quantize`) and pack it; the bias is kept.

        Args:
            linear: the float layer (fp16/bf16/fp32 weight; quantized from its own precision).
            del_orig: drop the linear's weight and bias afterwards (set to None) to free memory.

        Raises:
            TypeError / ValueError: not an nn.Linear, a non-float or non-finite weight, sizes the
                kernels cannot run (in_features must be a multiple of 32).
        """
        _check_linear(linear)
        codes, scales = type(self)._quantize(linear.weight.detach().to(self.device))
        layer = self.from_weights(codes, scales, self._bias_of(linear))
        if del_orig:
            _free_linear(linear)
        return layer

    def from_weights(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        """Pack a pre-quantized weight.

        Args:
            weight: ``[N, K]`` codes (int8 for A16W8_INT8, float8_e4m3fn for A16W8_FP8).
            scales: N per-channel scales, ``[N]`` or ``[N, 1]``, fp16/bf16/fp32 (stored as fp32).
            bias: ``[N]`` float, or None.

        Raises:
            TypeError / ValueError: as `GemLiteLinear.pack`.
        """
        if not isinstance(weight, torch.Tensor):
            raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
        if weight.dtype != self._codes_dtype:
            raise TypeError(
                f"weight: {type(self).__name__} takes {self._codes_dtype} codes, got {weight.dtype}"
            )
        if weight.dim() != 2:
            raise ValueError(f"weight: expected a 2-D tensor [N, K], got shape {tuple(weight.shape)}")
        n, k = weight.shape
        weight, scales, bias = (
            self._to_device(name, t) for name, t in (("weight", weight), ("scales", scales), ("bias", bias))
        )
        return self._pack(None, n, k, weight, scales, None, bias)


class A16W8_INT8(_ChannelWise8):
    """fp16/bf16 activations x INT8 channel-wise weights (symmetric, round half away from zero)."""

    format = FORMATS["A16W8_INT8"]
    _codes_dtype = torch.int8
    _quantize = staticmethod(quantize_int8)


class A16W8_FP8(_ChannelWise8):
    """fp16/bf16 activations x FP8 e4m3 channel-wise weights."""

    format = FORMATS["A16W8_FP8"]
    _codes_dtype = torch.float8_e4m3fn
    _quantize = staticmethod(quantize_fp8)


class _HQQ(_Processor):
    """HQQ-style integer weights: uint8 codes, ``W = (W_q - zeros) * scales`` per group along K."""

    def from_linear(
        self, linear: nn.Linear, del_orig: bool = True, group_size: int | None = 128
    ) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` with min-max round-to-nearest per group and pack it.

        Scales and zeros are stored in the processor's `dtype`; the bias is kept.

        Args:
            linear: the float layer.
            del_orig: drop the linear's weight and bias afterwards (set to None).
            group_size: inputs per group (must divide in_features); None = channel-wise.

        Raises:
            TypeError / ValueError: not an nn.Linear, a non-finite weight, a group size the kernels
                cannot run or that does not divide in_features.
        """
        _check_linear(linear)
        n, k = linear.weight.shape
        layer = self._layer(group_size, n, k)  # validates group_size before quantizing
        codes, scales, zeros = quantize_hqq(
            linear.weight.detach().to(self.device),
            self.format.weight.bits,
            group_size,
            scale_dtype=self.dtype,
        )
        layer.pack(codes, scales, zeros, self._bias_of(linear), format=self.format)
        if del_orig:
            _free_linear(linear)
        return layer

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
        if not isinstance(W_q, torch.Tensor):
            raise TypeError(f"W_q: expected a torch.Tensor, got {type(W_q).__name__}")
        if W_q.dim() != 2:
            raise ValueError(f"W_q: expected a 2-D tensor [N, K], got shape {tuple(W_q.shape)}")
        if not isinstance(scales, torch.Tensor):
            raise TypeError(f"scales: expected a torch.Tensor, got {type(scales).__name__}")
        n, k = W_q.shape
        if (
            scales.numel() == 0
            or W_q.numel() % scales.numel() != 0
            or k % (W_q.numel() // scales.numel()) != 0
        ):
            raise ValueError(
                f"scales: the group size is W_q.numel() / scales.numel() and must divide K={k}; got "
                f"{W_q.numel()} / {scales.numel()} values"
            )
        group_size = W_q.numel() // scales.numel()
        W_q, scales, zeros, bias = (
            self._to_device(name, t)
            for name, t in (("W_q", W_q), ("scales", scales), ("zeros", zeros), ("bias", bias))
        )
        return self._pack(group_size, n, k, W_q, scales, zeros, bias)

    def from_hqqlinear(self, hqq_layer) -> GemLiteLinear:
        """Convert an ``hqq.core.quantize.HQQLinear`` (the `hqq` package) to a GemLiteLinear.

        Takes its unpacked uint8 codes, scales and zeros (quantized along axis 1, i.e. groups along K,
        with this processor's bit width) and its bias.

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
        return self._from_hqq_parts(hqq_layer)

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
        W_q = hqq_layer.unpack(dtype=torch.uint8).reshape(n, k)
        group_size = meta["group_size"] if meta["group_size"] is not None else k
        scales, zeros = meta["scale"], meta["zero"]
        bias = getattr(hqq_layer, "bias", None)
        W_q, scales, zeros, bias = (
            self._to_device(name, t)
            for name, t in (("W_q", W_q), ("scales", scales), ("zeros", zeros), ("bias", bias))
        )
        if isinstance(scales, torch.Tensor) and scales.dtype not in (
            torch.float16,
            torch.bfloat16,
            torch.float32,
        ):
            scales = scales.to(self.dtype)
        if isinstance(zeros, torch.Tensor) and zeros.dtype not in (
            torch.float16,
            torch.bfloat16,
            torch.float32,
        ):
            zeros = zeros.to(self.dtype)  # e.g. quantized zeros, dequantized by unpack beforehand
        return self._pack(group_size, n, k, W_q, scales, zeros, bias)


class A16W8_HQQ_INT(_HQQ):
    """fp16/bf16 activations x 8-bit HQQ codes."""

    format = FORMATS["A16W8_HQQ_INT"]


class A16W4_HQQ_INT(_HQQ):
    """fp16/bf16 activations x 4-bit HQQ codes."""

    format = FORMATS["A16W4_HQQ_INT"]


class A16W2_HQQ_INT(_HQQ):
    """fp16/bf16 activations x 2-bit HQQ codes."""

    format = FORMATS["A16W2_HQQ_INT"]


class A16W1_HQQ_INT(_HQQ):
    """fp16/bf16 activations x 1-bit HQQ codes."""

    format = FORMATS["A16W1_HQQ_INT"]


class A16W158_INT(_Processor):
    """fp16/bf16 activations x BitNet b1.58 ternary weights (stored as 2-bit codes ``t + 1``)."""

    format = FORMATS["A16W158_INT"]

    def from_linear(self, linear: nn.Linear, del_orig: bool = True) -> GemLiteLinear:
        """Quantize a float ``nn.Linear`` with absmean ternarization (one scale) and pack it."""
        _check_linear(linear)
        weight_t, scale = quantize_ternary(linear.weight.detach().to(self.device))
        layer = self.from_weights(weight_t, scale, self._bias_of(linear))
        if del_orig:
            _free_linear(linear)
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
        weight, bias = self._to_device("weight", weight), self._to_device("bias", bias)
        codes = (weight.to(torch.int16) + 1).to(torch.uint8)  # t + 1 in {0, 1, 2}
        scales = torch.full((n,), scale, dtype=torch.float32, device=codes.device)
        return self._pack(None, n, k, codes, scales, 1, bias)


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
# Whole models
# --------------------------------------------------------------------------------------------


def _processor_for(processor, device, dtype) -> _Processor:
    """An instance from a processor class (with `device`, `dtype`) or an instance (used as is)."""
    if isinstance(processor, type) and issubclass(processor, _Processor):
        return processor(device=device, dtype=dtype)
    if isinstance(processor, _Processor):
        return processor
    raise TypeError(
        "processor: expected a gemlite.helper processor class or instance (e.g. A16W4_HQQ_INT), "
        f"got {processor!r}"
    )


def _convert(proc: _Processor, linear: nn.Linear, group_size: int | None) -> GemLiteLinear:
    if isinstance(proc, _HQQ):
        return proc.from_linear(linear, del_orig=True, group_size=group_size)
    return proc.from_linear(linear, del_orig=True)


def patch_model(
    model: nn.Module,
    device: str | torch.device,
    processor,
    skip_modules: Sequence[str] = DEFAULT_SKIP_MODULES,
    group_size: int | None = 128,
) -> nn.Module:
    """Replace, in place, every ``nn.Linear`` of `model` whose name contains none of `skip_modules`.

    Args:
        model: any module; its nn.Linear children (at any depth) are swapped for GemLiteLinear layers.
        device: where the new layers live.
        processor: a processor class (built with `device` and the linear's own dtype, which must then
            be fp16/bf16) or instance (used as is), e.g. ``A16W4_HQQ_INT``.
        skip_modules: substrings of qualified module names (``"model.layers.0.mlp.up_proj"``) to leave alone.
        group_size: for HQQ processors: inputs per group, None = channel-wise.

    Returns:
        `model` (patched in place). The float layers' tensors are freed as they are converted.

    Raises:
        TypeError: `processor` is not a processor; a float32 layer met with a processor class.
        ValueError: a layer the kernels cannot run (its name is in the message; add it to skip_modules).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if isinstance(skip_modules, str):
        raise TypeError("skip_modules: expected a list of name substrings, got a single str")
    skip = tuple(skip_modules)
    # Collect first: replacing children while iterating named_modules would walk the new layers.
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name and not any(s in name for s in skip)
    ]
    if isinstance(model, nn.Linear):
        raise TypeError("model: a bare nn.Linear cannot be patched in place; use a processor's from_linear")
    for name, linear in targets:
        if isinstance(processor, type):
            if linear.weight.dtype not in _ACT_DTYPES:
                raise TypeError(
                    f"processor: {name} has a {linear.weight.dtype} weight; with a processor class the "
                    "activation "
                    "dtype is the layer's own, which must be float16 or bfloat16: convert the model "
                    "(model.half()) or pass an instance, e.g. A16W8_INT8(device, torch.float16)"
                )
            proc = _processor_for(processor, device, linear.weight.dtype)
        else:
            proc = _processor_for(processor, device, None)
        try:
            layer = _convert(proc, linear, group_size)
        except (ValueError, NotImplementedError) as e:
            raise type(e)(
                f"patch_model: cannot convert {name!r} ({e}); add it to skip_modules to keep it as is"
            ) from e
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
    return model


class _Progress:
    """A progress bar: tqdm when installed, else one rewritten line on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled
        self._bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc="gemlite warmup", file=sys.stderr)

    def step(self, what: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(what)
            self._bar.update(1)
        else:
            sys.stderr.write(f"\rgemlite warmup: {self.done}/{self.total} {what}    ")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def warmup(
    processor,
    shapes: Iterable[tuple[int, int]],
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    group_size: int | None = 128,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = True,
) -> int:
    """Build one layer per ``(N, K)`` shape from a random float weight and run it at every batch size,
    so the autotuner picks (and caches) its configs before real traffic. Save them afterwards with
    `gemlite.cache_config(path)`.

    Args:
        processor: a processor class or instance (as in `patch_model`).
        shapes: ``(out_features, in_features)`` pairs.
        batch_sizes: M values to run (default: every autotune M bucket, 4096 down to 1).
        group_size: for HQQ processors; None = channel-wise.
        device, dtype: for a processor class (default ``"cuda:0"``, torch.float16). With an instance
            they must be None or equal to the instance's.
        progress: show a progress bar on stderr (tqdm if installed).

    Returns:
        The number of forward calls run.

    Raises:
        TypeError / ValueError: a bad processor, shape or batch size; device/dtype contradicting an instance.
    """
    if isinstance(processor, _Processor):
        for name, given, own in (("device", device, processor.device), ("dtype", dtype, processor.dtype)):
            if given is not None and (torch.device(given) if name == "device" else given) != own:
                raise ValueError(
                    f"{name}: the processor instance uses {own}, got {given}; pass one or the other"
                )
    proc = _processor_for(
        processor, "cuda:0" if device is None else device, torch.float16 if dtype is None else dtype
    )
    shape_list = []
    for shape in shapes:
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2):
            raise ValueError(f"shapes: expected (out_features, in_features) pairs, got {shape!r}")
        shape_list.append(tuple(_positive(f"shapes {shape!r}", v) for v in shape))
    batches = [_positive("batch_sizes", m) for m in batch_sizes]
    bar = _Progress(len(shape_list) * len(batches), progress)
    calls = 0
    try:
        with torch.no_grad():
            for n, k in shape_list:
                linear = nn.Linear(k, n, bias=False, device=proc.device, dtype=proc.dtype)
                layer = _convert(proc, linear, group_size)
                for m in batches:
                    x = torch.randn(m, k, device=proc.device, dtype=proc.dtype)
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
