"""`GemLiteLinear`: a drop-in linear layer whose weight is stored in a low-bit gemlite format.

Life of a layer::

    layer = GemLiteLinear(4, group_size=64, in_features=K, out_features=N)   # what it will hold
    layer.pack(W_q, scales, zeros, bias)    # validate user tensors -> canonical form -> kernel layout
    y = layer(x)                            # validate x -> flatten to [M, K] -> gemlite.kernels.matmul

Everything the user hands in is validated here, at the boundary, before any kernel runs; errors name
the argument and show what was expected and what was given. The layer's behaviour follows from one
frozen `WeightLayout` (its format spec, sizes, group size, packing word, compute dtype), which is also
saved as the ``metadata`` buffer, so ``state_dict()`` / ``load_state_dict()`` rebuild the same layer.
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch
from torch import nn

from gemlite import autotune, compat
from gemlite import matmul as _matmul
from gemlite.formats import FAMILIES, FORMATS, ActKind, DType, Format, WeightKind
from gemlite.kernels.plan import lock_count
from gemlite.layout import WeightLayout
from gemlite.packing import unpack_codes
from gemlite.schemes import check_format, infer_format
from gemlite.schemes.base import check_bias, check_int_bias

__all__ = ["GemLiteLinear", "GemLiteLinearTriton"]

W_NBITS = (8, 4, 2, 1, 16)
PACKING_BITWIDTHS = (8, 32)
INPUT_DTYPES = (DType.FP16, DType.BF16, DType.INT8, DType.FP8)
OUTPUT_DTYPES = (DType.FP16, DType.BF16, DType.FP32, DType.INT32)
# 8-bit input dtypes: x holds codes as given (ActKind *_CODES), or with scaled_activations=True fp16/bf16
# values the layer quantizes per token (ActKind INT8 / FP8).
_CODE_ACTS = {DType.INT8: ActKind.INT8_CODES, DType.FP8: ActKind.FP8_CODES}
_SCALED_ACTS = {DType.INT8: ActKind.INT8, DType.FP8: ActKind.FP8}
# W_nbits the 8-bit activations pair with (pack's W_q: int8 / e4m3 codes for 8, uint8 HQQ codes below).
_ACT_W_NBITS = {
    ActKind.INT8_CODES: (8,), ActKind.FP8_CODES: (8,), ActKind.INT8: (8,), ActKind.FP8: (8, 4, 2),
}  # fmt: skip
# Activation dtypes of formats that are planned but not in this release (FP8 e5m2, MX, NVFP4).
_LATER_INPUT_DTYPES = (
    DType.FP8e5,
    DType.MXFP16,
    DType.MXBF16,
    DType.MXFP8,
    DType.MXFP4,
    DType.NVFP4,
)
_BUFFERS = ("W_q", "scales", "zeros", "metadata", "bias")


# --------------------------------------------------------------------------------------------
# Argument checks (constructor)
# --------------------------------------------------------------------------------------------


def _positive_int(name: str, value, hint: str = "") -> int:
    if value is None:
        raise ValueError(f"{name}: required, got None{hint}")
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected a positive int, got {type(value).__name__} {value!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return value


def _as_dtype(name: str, value, allowed: tuple[DType, ...]) -> DType:
    """`value` as a DType (a torch.dtype is accepted too); ValueError when it is not in `allowed`."""
    if isinstance(value, torch.dtype):
        try:
            value = DType.from_torch(value)
        except TypeError:
            raise TypeError(f"{name}: gemlite has no DType for torch dtype {value}") from None
    if not isinstance(value, DType):
        raise TypeError(
            f"{name}: expected a gemlite DType (or torch.dtype), got {type(value).__name__} {value!r}"
        )
    if name == "input_dtype" and value in _LATER_INPUT_DTYPES:
        raise NotImplementedError(
            f"input_dtype: {value.name} activations (FP8 e5m2, MXFP/NVFP4) are planned for a later "
            f"release of gemlite; this release takes {' or '.join(d.name for d in allowed)} activations"
        )
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(d.name for d in allowed)}, got {value.name}")
    return value


# --------------------------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------------------------


class GemLiteLinear(nn.Module):
    """A linear layer ``y = x @ W.T + bias`` with W stored in a gemlite weight format.

    The constructor says what the layer will hold; `pack` gives it the weight. Which format that is
    follows from ``W_nbits``, the dtype of the ``W_q`` given to `pack`, and what x is (``input_dtype``,
    ``scaled_activations``):

    ==============  ========  ==============  ===================================================
    input_dtype     W_nbits   W_q dtype       format
    ==============  ========  ==============  ===================================================
    FP16 / BF16     16        fp16 / bf16     A16W16: the weight as is (its dtype must be `input_dtype`)
    FP16 / BF16     8/4/2/1   uint8           A16W{n}_HQQ_INT: unsigned codes, ``W = (W_q - zeros) * scales``
    FP16 / BF16     8         int8            A16W8_INT8: channel-wise symmetric, ``W = W_q * scales``
    FP16 / BF16     8         float8_e4m3fn   A16W8_FP8: channel-wise, ``W = W_q * scales``
    INT8 / FP8      8         int8 / e4m3     A8W8_INT8 / A8W8_FP8: x is int8 / e4m3 codes, W_q the
                                              weight, no scales: ``y = x @ W_q.T + bias``
    INT8 / FP8 +    8         int8 / e4m3     A8W8_INT8_dynamic / A8W8_FP8_dynamic: x fp16/bf16,
    scaled_act.                               quantized per token; channel scales (N values)
    FP8 + scaled    4 / 2     uint8           A8W{4,2}_HQQ_INT_dynamic: e4m3 x HQQ codes
    ==============  ========  ==============  ===================================================

    Args:
        W_nbits: bits per weight code: 8, 4, 2, 1, or 16 for an unquantized fp16/bf16 weight.
        group_size: inputs (along K, inside one output row) sharing one scale/zero; must divide
            in_features. None means channel-wise (one group per row, = in_features). Ignored for
            W_nbits=16; INT8/FP8 weights are always channel-wise.
        in_features: K, the size of the last dim of x. Required.
        out_features: N, the size of the last dim of y. Required.
        input_dtype: activation dtype (a torch dtype is accepted too): DType.FP16 or DType.BF16; or
            DType.INT8 / DType.FP8 (e4m3): without `scaled_activations` x is int8 / e4m3 codes,
            multiplied as they are (W_nbits=8 codes without scales); with it, x is fp16/bf16.
        output_dtype: DType.FP16, DType.BF16 or DType.FP32; DType.INT32 for INT8 codes without
            `scaled_activations` (the exact int32 sums, plus an integer bias).
        acc_dtype: the accumulator, public GemLite's argument: None or DType.FP32 (kernels accumulate in
            fp32); DType.INT32 too with INT8 input (int8 x int8 is summed in int32).
        scaled_activations: INT8 / FP8 input only (as in GemLite, ignored for fp16/bf16): the layer
            quantizes fp16/bf16 x per token (``s = max(amax / 127, 1e-6)`` or ``/ 448``) before the 8-bit
            dot, and pack takes channel scales: the A8W8_*_dynamic formats.

    Raises:
        ValueError: a missing or non-positive size, W_nbits not in (8, 4, 2, 1, 16), group_size not
            dividing in_features, an unsupported dtype, INT32 output without INT8 codes, K > 131071 for
            int8 x int8 (its int32 sums could overflow).
        TypeError: an argument of the wrong type.
        NotImplementedError: FP8 e5m2 / MX activations (a later release), a W_nbits that 8-bit
            activations do not pair with (INT8 / FP8 codes: 8; scaled: INT8 8, FP8 8, 4 or 2).

    Buffers (the state_dict schema, the same before and after `pack`): ``W_q``, ``scales``,
    ``zeros``, ``metadata`` (the layout as int32) and, when the layer has one, ``bias``. A
    ``state_dict`` saved by public GemLite (0.6: with ``orig_shape``, ``meta_scale`` and a 12-int
    ``metadata``) loads too, for the formats this release runs (`gemlite.compat`); anything else is
    refused with an error saying what differs.

    Public GemLite's view of a packed layer (`gemlite.compat`): `get_meta_args`, `get_tensor_args`,
    `W_group_mode`, `channel_scale_mode`, `data_contiguous`, `elements_per_sample`, `meta_dtype`, ...
    (read-only: a layer's behaviour follows from its format, not from mode integers).
    """

    #: The packing word `pack` uses when not told (`gemlite.set_packing_bitwidth` sets it): 8 or 32.
    PACKING_BITWIDTH = 32
    #: How a helper's ``from_linear`` quantized the weight: "hqq" (the hqq package's optimizer, or an
    #: hqq layer), "rtn" (gemlite's round-to-nearest rules), None (codes given by the caller). Not saved.
    quantizer: str | None = None

    def __init__(
        self,
        W_nbits: int = 4,
        group_size: int | None = 64,
        in_features: int | None = None,
        out_features: int | None = None,
        input_dtype: DType = DType.FP16,
        output_dtype: DType = DType.FP16,
        acc_dtype: DType | None = None,
        scaled_activations: bool = False,
    ) -> None:
        super().__init__()
        if isinstance(W_nbits, bool) or W_nbits not in W_NBITS:
            raise ValueError(f"W_nbits: expected one of {W_NBITS} (16 = unquantized weight), got {W_nbits!r}")
        self.W_nbits = int(W_nbits)
        self.in_features = _positive_int("in_features", in_features, " (the layer's K)")
        self.out_features = _positive_int("out_features", out_features, " (the layer's N)")
        if self.W_nbits == 16 or group_size is None:
            self.group_size = self.in_features
        else:
            g = _positive_int("group_size", group_size)
            if self.in_features % g != 0:
                raise ValueError(
                    f"group_size: must divide in_features={self.in_features} (or be None for channel-wise), "
                    f"got {g}"
                )
            self.group_size = g
        self.input_dtype = _as_dtype("input_dtype", input_dtype, INPUT_DTYPES)
        self.output_dtype = _as_dtype("output_dtype", output_dtype, OUTPUT_DTYPES)
        if not isinstance(scaled_activations, bool):
            raise TypeError(f"scaled_activations: expected a bool, got {type(scaled_activations).__name__}")
        # As in public GemLite, activation scaling applies to 8-bit input dtypes only (forced off for
        # fp16/bf16 activations).
        self.scaled_activations = scaled_activations and self.input_dtype in _SCALED_ACTS
        self._act = self._act_kind()
        if self.output_dtype is DType.INT32 and self._act is not ActKind.INT8_CODES:
            raise ValueError(
                "output_dtype: INT32 holds the exact int32 sums of int8 codes x int8 codes, so it needs "
                "input_dtype=INT8 without scaled_activations; got input_dtype="
                f"{self.input_dtype.name}, scaled_activations={self.scaled_activations}"
            )
        # The compute dtype of the layout: x's dtype (codes: int8 / e4m3). A layer that quantizes its
        # activations takes fp16 or bf16 x; its layout names the output dtype, or fp16 for an fp32 output.
        if self._act in (ActKind.INT8, ActKind.FP8):
            self._compute_dtype = torch.bfloat16 if self.output_dtype is DType.BF16 else torch.float16
        else:
            self._compute_dtype = self.input_dtype.torch_dtype
        # Let the kernels refuse sizes they cannot run (K not a multiple of 32, a group size that is
        # not a multiple of 32) now rather than at pack time: a trial layout of the default format.
        # A group size only a fixed-group format has (NVFP4's 16) is tried with that format instead.
        g = None if self.group_size == self.in_features else self.group_size
        if self._act is not ActKind.NONE:
            trials = [self._trial_8bit_act(g)]
        elif self.W_nbits == 16:
            trials = [infer_format(16, None, None)]
        else:
            trials = [infer_format(self.W_nbits, torch.uint8, None).with_group_size(g)]
            trials += [
                f for f in FORMATS.values()
                if f.weight.bits == self.W_nbits and f.weight.group_size == g and not f.act.is_quantized
                and f.weight.kind is not trials[0].weight.kind
            ]  # fmt: skip
        errors: list[Exception] = []
        for trial in trials:
            try:
                WeightLayout(
                    trial,
                    self.in_features,
                    self.out_features,
                    *self._trial_geometry(trial),
                    self._compute_dtype,
                )
                break
            except (ValueError, NotImplementedError) as exc:
                errors.append(exc)
        else:
            raise errors[0]  # the default format's reason
        int8_acts = self._act in (ActKind.INT8_CODES, ActKind.INT8)
        accepted = (DType.FP32, torch.float32) + ((DType.INT32, torch.int32) if int8_acts else ())
        names = "None or DType.FP32" + (" or DType.INT32" if int8_acts else "")
        if acc_dtype is not None and acc_dtype not in accepted:
            if acc_dtype in (DType.FP16, torch.float16, DType.INT32, torch.int32):
                raise NotImplementedError(
                    "acc_dtype: gemlite's kernels accumulate in fp32 only (int8 x int8 in int32, for INT8 "
                    f"activations); use {names}, got {acc_dtype}"
                )
            raise ValueError(f"acc_dtype: expected {names}, got {acc_dtype!r}")

        # Placeholders, so a fresh layer has the same state_dict keys as a packed one (generic
        # loaders such as meta-device initialisation rely on it). `pack` / `load_state_dict` replace them.
        self.register_buffer("W_q", torch.empty(0, dtype=torch.uint8))
        self.register_buffer("scales", torch.empty(0, dtype=torch.float32))
        self.register_buffer("zeros", torch.empty(0, dtype=torch.float32))
        self.register_buffer("metadata", torch.empty(0, dtype=torch.int32))
        self.register_buffer("bias", None)
        # Split-K lock counters (gemlite.kernels.plan), zero between calls; not part of the state_dict.
        self.register_buffer("_locks", None, persistent=False)
        # The decoded `metadata` buffer; a Python object (no tensors), so it survives .to(device).
        self._layout: WeightLayout | None = None
        self._layout_key = ""  # WeightLayout.key(): the custom op's layout argument
        # The dtypes forward takes (`gemlite.matmul.x_dtypes_of` once packed): fp16 or bf16 for a layer
        # that quantizes its activations, else the compute dtype.
        self._x_dtypes = (
            (torch.float16, torch.bfloat16) if self.scaled_activations else (self._compute_dtype,)
        )
        self._out_dtype = self.output_dtype.torch_dtype
        # Eager launches kept per (M, family) by gemlite.matmul.run (its `Replay`s); they hold the
        # layer's tensors, so they are dropped whenever those change (pack, load, device moves).
        self._replays = _matmul.ReplayCache()

    def _act_kind(self) -> ActKind:
        """The activations this layer takes, from GemLite's (input_dtype, scaled_activations)."""
        if self.input_dtype in _CODE_ACTS:
            return (_SCALED_ACTS if self.scaled_activations else _CODE_ACTS)[self.input_dtype]
        return ActKind.NONE

    def _trial_8bit_act(self, group: int | None) -> Format:
        """The format a layer with 8-bit activations will hold (`infer_format` with the codes `pack`
        expects); NotImplementedError for a W_nbits those activations do not pair with."""
        act = self._act
        if self.W_nbits not in _ACT_W_NBITS[act]:
            how = "with scaled_activations=True" if self.scaled_activations else "without scaled_activations"
            raise NotImplementedError(
                f"W_nbits: {self.input_dtype.name} activations {how} multiply "
                f"{' or '.join(map(str, _ACT_W_NBITS[act]))}-bit weights in gemlite, "
                f"got W_nbits={self.W_nbits}"
                + ("" if self.scaled_activations else " (8-bit codes given as is meet int8 / e4m3 codes)")
            )
        if self.W_nbits < 8:
            return infer_format(self.W_nbits, torch.uint8, None, act=act).with_group_size(group)
        code = torch.int8 if self.input_dtype is DType.INT8 else torch.float8_e4m3fn
        return infer_format(8, code, None, act=act)

    def _trial_geometry(self, trial: Format) -> tuple[int, int]:
        """(resolved group size, word bits) of a trial layout of the constructor."""
        if trial.weight.kind in (WeightKind.INT8, WeightKind.FP8):
            return self.in_features, 8  # channel-wise, unpacked: the constructor's group_size is ignored
        return self.group_size, 32 if self.W_nbits < 16 else 16

    # ----------------------------------------------------------------------------------------
    # Properties
    # ----------------------------------------------------------------------------------------

    @property
    def is_packed(self) -> bool:
        """Whether the layer holds a weight (from `pack` or `load_state_dict`)."""
        return self._get_layout() is not None

    @property
    def layout(self) -> WeightLayout:
        """The `WeightLayout` of the packed weight; RuntimeError before `pack`."""
        layout = self._get_layout()
        if layout is None:
            raise RuntimeError(
                "GemLiteLinear: the layer holds no weight yet; call pack() or load_state_dict() first"
            )
        return layout

    @property
    def format(self) -> Format:
        """The `gemlite.formats.Format` of the packed weight (e.g. ``A16W4_HQQ_INT`` with its group size).

        Raises RuntimeError before `pack`: for W_nbits=8 the format follows from W_q's dtype.
        """
        return self.layout.format

    # ----------------------------------------------------------------------------------------
    # pack
    # ----------------------------------------------------------------------------------------

    def pack(
        self,
        W_q: torch.Tensor,
        scales: torch.Tensor | None,
        zeros: torch.Tensor | int | None,
        bias: torch.Tensor | None = None,
        fma_mode: bool = True,
        contiguous: bool | None = None,
        packing_bitwidth: int | None = None,
        packed: bool = False,
        *,
        format: Format | None = None,
    ) -> GemLiteLinear:
        """Give the layer its weight; returns self. Calling it again replaces the weight.

        Public GemLite's signature (``fma_mode`` and ``contiguous`` are accepted and change nothing:
        gemlite keeps ``z`` and picks the physical layout from the format; see `gemlite.compat`).

        Args:
            W_q: the weight, ``[N, K]`` (N = out_features, K = in_features):
                uint8 HQQ codes in ``[0, 2**W_nbits - 1]`` (W_nbits 8/4/2/1); int8 (INT8) or
                float8_e4m3fn (FP8) for a channel-wise 8-bit weight (W_nbits 8); fp16/bf16 of the
                activation dtype for W_nbits 16. With ``packed=True``: HQQ codes already packed in
                GemLite's layout (`gemlite.packing.pack_codes`), ``[N, K // e]`` with
                ``e = packing_bitwidth // W_nbits`` codes per word along K, least significant bits first,
                as any integer dtype of the word's width (uint8/int8 for 8-bit words, int32/uint32 for 32).
            scales: HQQ: ``N * K / group_size`` values in any shape (e.g. HQQ's ``[N*K/g, 1]``), in
                row-major group order (group ``n * (K // g) + k // g``), fp16/bf16/fp32 (kept).
                INT8/FP8: N values (fp16/bf16/fp32, stored as fp32); None for INT8 / FP8 input without
                scaled_activations (the codes are the weight). W_nbits 16: None.
            zeros: HQQ only: a tensor like scales, a Python int in ``[0, 2**W_nbits - 1]`` shared by the
                whole weight, or None (no zero-point: ``W = W_q * scales``). Otherwise None.
            bias: ``[N]`` fp16/bf16/fp32, or None; for an INT32 output integers of any integer dtype
                within int32's range (stored as int32, added exactly).
            fma_mode: GemLite stores grouped zeros as ``-z * s`` when True; gemlite always keeps ``z``
                (its `get_meta_args` says W_group_mode 3). A bool; no effect.
            contiguous: GemLite's choice of W_q memory layout; gemlite's follows the format. None or a
                bool; no effect (`data_contiguous` reads the real one).
            packing_bitwidth: word for packed HQQ codes, 8 or 32. None: `PACKING_BITWIDTH` (32 unless
                `gemlite.set_packing_bitwidth` changed it), or with ``packed=True`` the width of W_q's
                dtype. Weights stored unpacked (INT8, FP8, 16-bit) ignore it.
            packed: W_q is already packed (see above).
            format: the `gemlite.formats.Format` the tensors are in, when the caller knows it (the
                helpers pass theirs; ``A16W158_INT`` takes its codes ``t + 1`` this way). None: inferred
                from W_nbits and W_q's dtype as the class docstring's table says
                (`gemlite.schemes.infer_format`).

        Raises:
            TypeError: a tensor of the wrong dtype (or not a tensor).
            ValueError: wrong shapes or counts, codes or integer zeros out of range, non-finite scales,
                zeros or bias, tensors on different devices, a group size or shape the kernels cannot run.
        """
        n, k = self.out_features, self.in_features
        if not isinstance(W_q, torch.Tensor):
            raise TypeError(f"W_q: expected a torch.Tensor, got {type(W_q).__name__}")
        if not isinstance(packed, bool):
            raise TypeError(f"packed: expected a bool, got {type(packed).__name__}")
        if not isinstance(fma_mode, bool):
            raise TypeError(f"fma_mode: expected a bool, got {type(fma_mode).__name__}")
        if contiguous is not None and not isinstance(contiguous, (bool, int)):
            raise TypeError(f"contiguous: expected None or a bool, got {type(contiguous).__name__}")
        if W_q.device.type == "meta":
            raise ValueError("W_q: expected a tensor with data, got one on the meta device")
        W_q = W_q.detach()  # the layer holds inference tensors; an nn.Parameter must not become one
        word_bits = self._word_bits(W_q, packed, packing_bitwidth)
        if packed:
            W_q = self._unpack(W_q, word_bits)
        if W_q.dim() != 2 or tuple(W_q.shape) != (n, k):
            raise ValueError(
                f"W_q: expected shape [out_features, in_features] = [{n}, {k}], got {tuple(W_q.shape)}"
            )
        fmt = self._format_for(W_q, format)
        scheme = check_format(fmt)
        compute_dtype = self._compute_dtype
        canonical = scheme.canonicalize(
            fmt, W_q, scales, zeros, n=n, k=k, group_size=self.group_size, compute_dtype=compute_dtype
        )
        if self.output_dtype is DType.INT32:
            bias = check_int_bias(bias, n, W_q.device)
        else:
            bias = check_bias(bias, n, W_q.device)
        fmt = replace(fmt, weight=canonical.spec)
        zero_int = canonical.zeros if isinstance(canonical.zeros, int) else None
        layout = WeightLayout(
            fmt, k, n, k if canonical.spec.group_size is None else canonical.spec.group_size,
            scheme.word_bits(canonical.spec, word_bits), compute_dtype, zero_int,
        )  # fmt: skip
        autotune.check_layout(layout)  # every kernel family has a legal tile for it
        tensors = scheme.prepare(layout, canonical)
        self.W_q = tensors["W_q"]
        self.scales = tensors["scales"]
        self.zeros = tensors["zeros"]
        self.metadata = layout.to_metadata().to(W_q.device)
        self.bias = bias
        self._set_layout(layout)
        return self

    def _format_for(self, W_q: torch.Tensor, fmt: Format | None) -> Format:
        """The format of `pack`'s tensors: the one given (checked against the layer), else inferred."""
        act = self._act
        if fmt is None:
            if act is ActKind.NONE:
                return infer_format(self.W_nbits, W_q.dtype, self._compute_dtype)
            try:
                return infer_format(self.W_nbits, W_q.dtype, self._compute_dtype, act=act)
            except TypeError:
                code = {DType.INT8: torch.int8, DType.FP8: torch.float8_e4m3fn}[self.input_dtype]
                expected = code if self.W_nbits == 8 else torch.uint8
                raise TypeError(
                    f"W_q: a W_nbits={self.W_nbits} layer with input_dtype={self.input_dtype.name} takes "
                    f"{expected} codes, got {W_q.dtype}"
                ) from None
        if not isinstance(fmt, Format):
            raise TypeError(f"format: expected a gemlite.formats.Format or None, got {type(fmt).__name__}")
        if fmt.weight.bits != self.W_nbits:
            raise ValueError(
                f"format: {fmt.name} stores {fmt.weight.bits}-bit weights, the layer was built with "
                f"W_nbits={self.W_nbits}"
            )
        if act is ActKind.NONE:  # fp16/bf16 x: used as is, or quantized by the format (helpers)
            fits = not fmt.act.is_quantized or fmt.act.is_dynamic
        else:
            fits = fmt.act.kind is act
        if not fits:
            raise ValueError(
                f"format: {fmt.name} takes {fmt.act.kind.name} activations, the layer was built for "
                f"input_dtype={self.input_dtype.name}, scaled_activations={self.scaled_activations}"
            )
        return fmt

    def _word_bits(self, W_q: torch.Tensor, packed: bool, packing_bitwidth) -> int:
        if packing_bitwidth is not None and (
            isinstance(packing_bitwidth, bool) or packing_bitwidth not in PACKING_BITWIDTHS
        ):
            raise ValueError(
                f"packing_bitwidth: expected one of {PACKING_BITWIDTHS} or None, got {packing_bitwidth!r}"
            )
        if not packed:
            if packing_bitwidth is None:
                packing_bitwidth = type(self).PACKING_BITWIDTH
                if packing_bitwidth not in PACKING_BITWIDTHS:
                    raise ValueError(
                        "packing_bitwidth: GemLiteLinear.PACKING_BITWIDTH must be one of "
                        f"{PACKING_BITWIDTHS}, got {packing_bitwidth!r}"
                    )
            return int(packing_bitwidth)
        if self.W_nbits == 16:
            raise ValueError("packed: a W_nbits=16 weight is never packed; use packed=False")
        if W_q.dtype.is_floating_point or W_q.dtype.is_complex or W_q.dtype == torch.bool:
            raise TypeError(f"W_q: packed words must have an integer dtype, got {W_q.dtype}")
        width = W_q.element_size() * 8
        if width not in PACKING_BITWIDTHS:
            raise TypeError(f"W_q: packed words must be 8- or 32-bit integers, got {W_q.dtype} ({width}-bit)")
        if packing_bitwidth is not None and width != packing_bitwidth:
            raise TypeError(
                f"W_q: packing_bitwidth={packing_bitwidth} needs {packing_bitwidth}-bit integer words, "
                f"got {W_q.dtype} ({width}-bit)"
            )
        return width

    def _unpack(self, W_q: torch.Tensor, word_bits: int) -> torch.Tensor:
        """Packed words ``[N, K // e]`` -> uint8 codes ``[N, K]`` (checked against the layer's sizes)."""
        n, k, bits = self.out_features, self.in_features, self.W_nbits
        per_word = word_bits // bits
        if k % per_word != 0:
            raise ValueError(
                f"packing_bitwidth: {word_bits}-bit words hold {per_word} {bits}-bit codes, which does not "
                f"divide in_features={k}"
            )
        if W_q.dim() != 2 or tuple(W_q.shape) != (n, k // per_word):
            raise ValueError(
                f"W_q: packed {bits}-bit codes in {word_bits}-bit words must have shape "
                f"[out_features, in_features // {per_word}] = [{n}, {k // per_word}], got {tuple(W_q.shape)}"
            )
        words = W_q.contiguous().view(torch.uint8 if word_bits == 8 else torch.int32)
        return unpack_codes(words, bits, k)

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = x @ W.T + bias``, the kernel family chosen from M (see `gemlite.dispatch`).

        Args:
            x: ``[..., in_features]`` of `input_dtype` (INT8 / FP8: int8 / float8_e4m3fn codes), on the
                weight's device; fp16 or bf16 when the layer quantizes its activations
                (`scaled_activations`, the dynamic formats). Any leading dims (flattened to M rows and
                restored); non-contiguous input is copied.

        Returns:
            ``[..., out_features]`` of `output_dtype` (empty when x has no rows).

        Raises:
            RuntimeError: the layer has no weight yet, or the tensors are on the CPU and the Triton
                interpreter is off (the kernels need a CUDA GPU, or TRITON_INTERPRET=1 set before
                importing gemlite).
            TypeError: x is not a tensor of the dtype the layer takes (the message says which).
            ValueError: x's last dim is not in_features, or x is on another device than the weight.
        """
        return self._forward(x, None)

    def forward_manual(self, x: torch.Tensor, matmul_type: str = "GEMM") -> torch.Tensor:
        """`forward` through one kernel family, e.g. to test or time it.

        Args:
            x: as in `forward`.
            matmul_type: one of ``"GEMV"``, ``"GEMV_REVSPLITK"``, ``"GEMV_SPLITK"``, ``"GEMM_SPLITK"``,
                ``"GEMM"`` (`gemlite.formats.FAMILIES`; default "GEMM", as in public GemLite).

        Raises:
            ValueError: an unknown matmul_type; otherwise as `forward`.
        """
        if not isinstance(matmul_type, str) or matmul_type not in FAMILIES:
            raise ValueError(f"matmul_type: expected one of {', '.join(FAMILIES)}, got {matmul_type!r}")
        return self._forward(x, matmul_type)

    def _forward(self, x: torch.Tensor, matmul_type: str | None) -> torch.Tensor:
        # The hot path: x is checked once, here (the weight was checked at pack); the launch choice is
        # kept per layout and M bucket by gemlite.matmul.
        layout = self._layout
        if layout is None:
            layout = self._get_layout()
            if layout is None:
                raise RuntimeError(
                    "GemLiteLinear: forward() called before the layer holds a weight; call pack() or "
                    "load_state_dict() first"
                )
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in self._x_dtypes:
            raise self._x_dtype_error(x)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x: expected shape [..., {self.in_features}] (in_features), got {tuple(x.shape)}"
            )
        buffers = self._buffers
        try:
            W_q, scales, zeros = buffers["W_q"], buffers["scales"], buffers["zeros"]
            bias, locks = buffers["bias"], buffers["_locks"]
        except KeyError:  # a tensor re-registered as a parameter by a caller
            W_q, scales, zeros, bias, locks = self.W_q, self.scales, self.zeros, self.bias, self._locks
        if x.device != W_q.device:
            raise ValueError(
                f"x: expected a tensor on {W_q.device} (the layer's device), got one on {x.device}"
            )
        _matmul.require_runnable(x)
        two_d = x.dim() == 2
        y = _matmul.run(
            x if two_d else x.reshape(-1, self.in_features), W_q, scales, zeros, bias, layout,
            self._layout_key, self._out_dtype, matmul_type, locks, self._replays,
        )  # fmt: skip
        return y if two_d else y.view(*x.shape[:-1], self.out_features)

    def _x_dtype_error(self, x: torch.Tensor) -> TypeError:
        expected = " or ".join(map(str, self._x_dtypes))
        if self.input_dtype in _CODE_ACTS and not self.scaled_activations:
            why = f"input_dtype={self.input_dtype.name}: {self._compute_dtype} codes, multiplied as they are"
        elif self._layout is not None and self._layout.act.is_dynamic:
            why = f"{self._layout.format.name}: the layer quantizes them per token"
        elif self.scaled_activations:
            why = f"input_dtype={self.input_dtype.name} with scaled_activations=True: quantized per token"
        else:
            why = f"input_dtype={self.input_dtype.name}"
        return TypeError(f"x: expected dtype {expected} ({why}), got {x.dtype}")

    def forward_auto_no_warmup(self, x: torch.Tensor) -> torch.Tensor:
        """Public GemLite's name of `forward`."""
        return self._forward(x, None)

    # ----------------------------------------------------------------------------------------
    # Public GemLite's view of the layer (gemlite.compat): read-only, derived from the layout
    # ----------------------------------------------------------------------------------------

    def get_meta_args(self) -> list[int]:
        """GemLite's 12 ``meta_args`` of this layer (`gemlite.compat` lists them); RuntimeError before
        `pack`. With `get_tensor_args`, what ``gemlite.core.forward_functional`` takes."""
        return compat.layer_meta_args(self.layout, self.output_dtype, self.scales)

    def get_tensor_args(self) -> list[torch.Tensor]:
        """``[W_q, scales, zeros]`` in GemLite's layout (packed words ``[K/e, N]``; unpacked weights as
        a ``[K, N]`` view; an integer zero-point as an int32 scalar). Three tensors, as torchao 0.18
        unpacks them (GemLite 0.6 appends NVFP4's meta_scale; `forward_functional` takes either)."""
        return compat.layer_tensor_args(self.layout, self.W_q, self.scales, self.zeros)

    @property
    def W_group_mode(self) -> int:
        """GemLite's weight dequantization mode (0 none, 1 shift, 2 scale, 3 ``(q - z) * s``)."""
        return compat.group_modes(self.layout)[0]

    @property
    def channel_scale_mode(self) -> int:
        """GemLite's accumulator scaling mode (0 none, 1 per output channel)."""
        return compat.group_modes(self.layout)[1]

    @property
    def data_contiguous(self) -> bool:
        """GemLite's flag: W_q is stored ``[K/e, N]`` with N contiguous (packed codes); False for the
        unpacked weights, whose ``[K, N]`` view in `get_tensor_args` has K contiguous."""
        return self.layout.is_packed

    @property
    def elements_per_sample(self) -> int:
        """Codes per stored word (``packing_bitwidth // W_nbits``; 1 for unpacked weights)."""
        return self.layout.elems_per_word

    @property
    def unpack_mask(self) -> int:
        """``2**W_nbits - 1``."""
        return (1 << self.W_nbits) - 1

    @property
    def acc_dtype(self) -> DType:
        """The accumulator dtype: DType.INT32 for int8 activation codes meeting int8 weight codes over
        all of K (GemLite's INT8 default), else DType.FP32 (128 x 128 blocks sum int32 tile products in
        fp32)."""
        layout = self._get_layout()
        act = self._act if layout is None else layout.act.kind
        blocks = layout is not None and layout.spec.block_n > 1
        return DType.INT32 if act in (ActKind.INT8, ActKind.INT8_CODES) and not blocks else DType.FP32

    @property
    def compute_dtype(self) -> torch.dtype:
        """The activation dtype as a torch dtype."""
        return self.input_dtype.torch_dtype

    @property
    def meta_dtype(self) -> DType:
        """The dtype of the stored scales (DType.INT32 when there are none, as in GemLite)."""
        layout = self.layout
        return DType.from_torch(self.scales.dtype) if layout.has_scales else DType.INT32

    @property
    def meta_is_channelwise(self) -> bool:
        """One scale per output channel."""
        layout = self.layout
        return layout.has_scales and not layout.is_grouped

    @property
    def orig_shape(self) -> torch.Tensor:
        """``[out_features, in_features]`` as int32 (GemLite saves it; gemlite's metadata holds it)."""
        return torch.tensor([self.out_features, self.in_features], dtype=torch.int32, device=self.W_q.device)

    @property
    def meta_scale(self) -> torch.Tensor:
        """GemLite's NVFP4 tensor scale: 0.0 for every format of this release."""
        return torch.tensor(0.0, dtype=torch.float32, device=self.W_q.device)

    @property
    def device(self) -> torch.device:
        """Where the layer's tensors are."""
        return self.W_q.device

    @property
    def signature(self) -> tuple[int, int, int, int]:
        """``(in_features, out_features, W_nbits, group_size)``."""
        return (self.in_features, self.out_features, self.W_nbits, self.group_size)

    cache_config = staticmethod(autotune.cache_config)
    load_config = staticmethod(autotune.load_config)
    reset_config = staticmethod(autotune.reset_config)

    # ----------------------------------------------------------------------------------------
    # nn.Module hygiene: layout cache, state_dict loading, dtype-preserving .to()
    # ----------------------------------------------------------------------------------------

    def _get_layout(self) -> WeightLayout | None:
        """The layout, decoded once from the metadata buffer if it was loaded without being decoded
        (e.g. a meta-device module materialised after load). None before pack."""
        if self._layout is None and self.metadata.numel() > 0 and self.metadata.device.type != "meta":
            self._set_layout(self._decode_layout(self.metadata))
        return self._layout

    def _set_layout(self, layout: WeightLayout | None) -> None:
        self._layout = layout
        self._replays.clear()
        self._layout_key = "" if layout is None else layout.key()
        if layout is not None:
            self._x_dtypes = _matmul.x_dtypes_of(layout)
            device = self.metadata.device
            count = lock_count(layout.out_features)
            if self._locks is None or self._locks.numel() != count or self._locks.device != device:
                self._locks = torch.zeros(count, dtype=torch.int32, device=device)

    def _decode_layout(self, metadata: torch.Tensor) -> WeightLayout:
        """Decode a metadata buffer and check it fits this layer's constructor arguments (ValueError)."""
        layout = WeightLayout.from_metadata(metadata.cpu())
        spec = layout.spec
        input_dtype = DType.from_torch(layout.compute_dtype)
        if self.scaled_activations and layout.act.kind in (ActKind.INT8, ActKind.FP8):
            input_dtype = DType.INT8 if layout.act.kind is ActKind.INT8 else DType.FP8  # GemLite's view
        found = {
            "in_features": layout.in_features,
            "out_features": layout.out_features,
            "W_nbits": spec.bits,
            "input_dtype": input_dtype,
        }
        expected = {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "W_nbits": self.W_nbits,
            "input_dtype": self.input_dtype,
        }
        if layout.scheme.takes_group_size:  # the other schemes ignore the constructor's group_size
            found["group_size"] = layout.group_size
            expected["group_size"] = self.group_size
        diff = [
            f"{key}={found[key]} (layer: {expected[key]})" for key in expected if found[key] != expected[key]
        ]
        if diff:
            raise ValueError(
                f"metadata: the saved weight does not fit this layer: {', '.join(diff)}; build the layer "
                "with the constructor arguments of the saved one"
            )
        return layout

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        where = f"While loading {prefix.rstrip('.') or 'the GemLiteLinear'}"
        if compat.is_gemlite_checkpoint(state_dict, prefix):
            # Saved by public GemLite: rebuilt through pack (every check applies) into our own entries.
            try:
                self._translate_gemlite_checkpoint(state_dict, prefix)
            except (ValueError, TypeError, NotImplementedError) as e:
                error_msgs.append(f"{where}: a public-GemLite checkpoint that this gemlite cannot load: {e}")
                return
        # The saved tensors' shapes and dtypes depend on the format, so our placeholders cannot hold
        # them: re-create each buffer with the saved shape/dtype (on our device) and let nn.Module copy
        # (or assign) into it, which keeps strict / assign / missing-key handling standard.
        loading_weight = isinstance(state_dict.get(prefix + "metadata"), torch.Tensor)
        device = self.metadata.device
        for name in _BUFFERS:
            saved = state_dict.get(prefix + name)
            if isinstance(saved, torch.Tensor):
                self._buffers[name] = torch.empty_like(saved, device=device)
            elif name == "bias" and loading_weight:
                self._buffers["bias"] = None  # the saved layer had no bias
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        weight_keys = ("W_q", "scales", "zeros", "metadata")
        present = [name for name in weight_keys if isinstance(state_dict.get(prefix + name), torch.Tensor)]
        if present and len(present) != len(weight_keys):
            # Even with strict=False: tensors without the layout that describes them (or the reverse)
            # would reach the kernels inconsistent.
            missing = [name for name in weight_keys if name not in present]
            error_msgs.append(
                f"{where}: a gemlite weight loads as a whole ({', '.join(weight_keys)}); "
                f"missing {', '.join(missing)}"
            )
        if loading_weight:
            self._set_layout(None)
            try:
                layout = self._get_layout()
            except (ValueError, TypeError, KeyError) as e:
                error_msgs.append(f"{where}: {e}")
            else:
                if layout is not None:  # an older metadata version is saved back as the current one
                    self.metadata = layout.to_metadata().to(self.metadata.device)

    def _translate_gemlite_checkpoint(self, state_dict, prefix: str) -> None:
        """Replace public GemLite's entries under `prefix` by this layer's own (see `gemlite.compat`)."""
        entries = {k: state_dict.get(prefix + k) for k in compat.GEMLITE_CHECKPOINT_KEYS}
        args = compat.checkpoint_pack_args(
            {k: v for k, v in entries.items() if isinstance(v, torch.Tensor)},
            in_features=self.in_features, out_features=self.out_features, W_nbits=self.W_nbits,
            group_size=self.group_size, input_dtype=self.input_dtype, output_dtype=self.output_dtype,
            scaled_activations=self.scaled_activations,
        )  # fmt: skip
        group = None if self.group_size == self.in_features else self.group_size
        rebuilt = GemLiteLinear(
            self.W_nbits, group, self.in_features, self.out_features, self.input_dtype, self.output_dtype,
            scaled_activations=self.scaled_activations,
        ).pack(**args)
        for k in (*compat.GEMLITE_CHECKPOINT_KEYS, "scales_5d"):
            state_dict.pop(prefix + k, None)
        for k, v in rebuilt.state_dict().items():
            state_dict[prefix + k] = v

    def _apply(self, fn, recurse: bool = True):
        # .half() / .to(torch.bfloat16) would convert the float buffers (fp32 INT8 scales, the 16-bit
        # weight, ...) to a dtype the layout does not describe. A gemlite layer keeps its storage
        # dtypes: only device moves apply.
        def keep_dtype(t: torch.Tensor) -> torch.Tensor:
            out = fn(t)
            if isinstance(out, torch.Tensor) and out.dtype != t.dtype:
                out = t.to(device=out.device)
            return out

        self._replays.clear()
        return super()._apply(keep_dtype, recurse)

    def extra_repr(self) -> str:
        try:
            layout = self._get_layout()
        except (ValueError, TypeError):
            return "metadata unreadable (not a gemlite layout)"
        what = (
            f"format={layout.format.label}"
            if layout is not None
            else f"W_nbits={self.W_nbits}, group_size={self.group_size}, not packed"
        )
        scaled = ", scaled_activations=True" if self.scaled_activations else ""
        return (
            f"{what}, in_features={self.in_features}, out_features={self.out_features}, "
            f"input_dtype={self.input_dtype.name}, output_dtype={self.output_dtype.name}{scaled}, "
            f"bias={self.bias is not None}"
        )


#: Public GemLite's class name (``GemLiteLinear`` is its alias there).
GemLiteLinearTriton = GemLiteLinear
