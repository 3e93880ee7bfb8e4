"""Activation schemes: how x is brought to the kernels' input.

``NONE``: fp16/bf16 activations are used as given (the layer checks their dtype).

``INT8`` / ``FP8`` per token (A8W8_INT8_dynamic, A8W8_FP8_dynamic, A8W{4,2}_HQQ_INT_dynamic,
A8W158_INT_dynamic): each row m of ``x[M, K]`` is quantized at run time, before the matmul, by
`gemlite.kernels.act_quant`:

* scale ``s[m] = max(amax_k |x[m, k]| / c, 1e-6)`` in fp32 (c = 127 or 448), one correctly rounded
  division of the exact amax;
* codes ``clamp(round(x / s), -128, 127)`` as int8 (round half away from zero), or
  ``e4m3(clamp(x / s, -448, 448))`` (round to nearest even), each rounded ONCE from the exact quotient
  ``x / s``: bit for bit the codes and scales of ``reference.quantize_activation`` (no tie tolerance is
  needed; `gemlite.kernels.act_quant` says how a fp32 kernel gets the exact quotient's rounding);
* ``_block_dynamic`` formats: the same per 1 x 128 block of a row (scales ``[M, K / 128]``, applied to
  each K tile's product in the K loop with the weight's 128 x 128 block scales; K % 128 == 0);
* a row holding NaN or +-Inf gets the scale NaN and codes 0, so that row of the output is NaN (the
  reference refuses such rows; gemlite defines them): no division by zero anywhere (an all-zero row
  has the scale 1e-6 and codes 0), no finite value saturates to a wrong finite code (amax / s <= c by
  construction, fp16's 65504 included).

The matmul then multiplies the int8 (int32 accumulation) or e4m3 (fp32 accumulation) codes with the
weight's exact codes and applies both scales in the epilogue: ``y = acc * s_x[m] * s_w[n] + b``.

``INT8_CODES`` / ``FP8_CODES`` (A8W8_INT8, A8W8_FP8): x arrives as int8 / e4m3 codes from the caller,
without scales, and meets weight codes without scales: ``y = x_q @ W_q.T + b`` (`GivenCodes`).

Each scheme here is host data only (no Triton): the dtype of the codes, the kernel's ``X_QUANT``
id, the bytes the quantized operand costs. `gemlite.schemes.act_scheme` finds them by kind.
"""

from __future__ import annotations

import enum

import torch

from gemlite.formats import BLOCK_QUANT, FP8_E4M3_MAX, INT8_MAX, ActKind, WeightKind


class ActQuant(enum.IntEnum):
    """How the kernels read x (``X_QUANT``), numbered here once; `gemlite.kernels.common` mirrors it."""

    NONE = 0  # fp16/bf16 activations as given
    INT8 = 1  # int8 codes [M, K] + fp32 scale per row: int8 x int8 dot, int32 accumulation
    FP8 = 2  # e4m3 codes (as their uint8 bytes) [M, K] + fp32 scale per row: fp8 dot, fp32 accumulation
    # Microscaled activations (`gemlite.schemes.mx`): codes + byte scales per 32 / 16 inputs, dequantized
    # to bf16 in the K loop (exact) against MX / NVFP4 weights.
    MXFP8 = 3  # e4m3 bytes [M, K] + e8m0 bytes [M, K // 32]
    MXFP4 = 4  # e2m1 codes two per byte [M, K // 2] (even k low) + e8m0 bytes [M, K // 32]
    NVFP4 = 5  # e2m1 codes two per byte [M, K // 2] + e4m3 bytes [M, K // 16] + an fp32 tensor scale


class NoActivationQuant:
    """Activations used as given, in the layer's compute dtype."""

    kind = ActKind.NONE
    x_quant = ActQuant.NONE
    x_scale = False  # the codes come with fp32 scales at xs_ptr (per row, or per X_GROUP inputs)
    compute_dtypes = (torch.float16, torch.bfloat16)  # what a layout's compute dtype (x's dtype) may be

    def constexprs(self, layout) -> dict[str, int]:
        """``X_QUANT`` (how x is stored), ``X_GROUP`` (K per activation scale; 0: one per row) and
        ``X_SCALE`` (x's codes come with fp32 scales)."""
        return {"X_QUANT": int(self.x_quant), "X_GROUP": layout.act.group_size or 0, "X_SCALE": self.x_scale}

    def check_spec(self, act, weight) -> None:
        """Nothing to check: fp16/bf16 activations fit every weight encoding."""

    def check_layout(self, layout) -> None:
        """Raise ValueError for sizes these activations cannot run (none here)."""

    def act_bytes(self, M: int, K: int, x_bytes: int) -> int:
        """HBM bytes of the activation operand of one call: x read once."""
        return M * K * x_bytes


class PerTokenQuant(NoActivationQuant):
    """INT8 or FP8 (e4m3) codes with one fp32 scale per row of x (module docstring).

    code_dtype: the codes as users and the reference see them (int8 / float8_e4m3fn).
    kernel_dtype: what the kernels read (int8; e4m3 as its uint8 bytes, which Triton can load with a
        masked ``other=0``, then reinterpret).
    max_code: c of ``s = amax / c``.
    """

    x_scale = True

    def __init__(self, kind, x_quant, code_dtype, kernel_dtype, max_code: float, weights: tuple) -> None:
        self.kind = kind
        self.x_quant = x_quant
        self.code_dtype = code_dtype
        self.kernel_dtype = kernel_dtype
        self.max_code = max_code
        self.weights = weights  # the weight kinds whose codes this dot takes exactly

    def check_spec(self, act, weight) -> None:
        """The weight's codes must be exact operands of this dot (int8: int8 and ternary codes; e4m3:
        e4m3 codes and HQQ codes of at most 4 bits, integers <= 15) and carry scales; ValueError naming
        the format otherwise. Activation groups: per token, or 1 x 128 blocks with 128 x 128 weight
        blocks (the ``_block_dynamic`` formats); other groups are a later release (NotImplementedError)."""
        if weight.kind not in self.weights or (weight.kind is WeightKind.HQQ and weight.bits > 4):
            raise ValueError(
                f"format: {self.kind.name} activations multiply {', '.join(k.name for k in self.weights)} "
                f"weights (HQQ: at most 4 bits) exactly; got {weight.bits}-bit {weight.kind.name} weights"
            )
        if not weight.scaled:
            raise ValueError(
                f"format: {self.kind.name} activations quantized per token meet weights with scales; got "
                f"{weight.kind.name} weights without scales"
            )
        blocks = act.group_size == BLOCK_QUANT and weight.block_n == BLOCK_QUANT
        if act.group_size is not None and not blocks:
            raise NotImplementedError(
                f"format: {self.kind.name} activations quantized in groups of {act.group_size} along K "
                f"(with {weight.block_n}-row weight blocks) are planned for a later release of gemlite"
            )

    def act_bytes(self, M: int, K: int, x_bytes: int, group: int | None = None) -> int:
        """HBM bytes of the activation path of one call: x read by the quantizer, the codes written and
        read back by the matmul, the fp32 scales (one per row, or per `group` inputs) written and read."""
        return M * K * x_bytes + 2 * M * K + 2 * M * (K // group if group else 1) * 4


INT8 = PerTokenQuant(
    ActKind.INT8, ActQuant.INT8, torch.int8, torch.int8, float(INT8_MAX),
    (WeightKind.INT8, WeightKind.TERNARY),
)  # fmt: skip
# MXFP8 / MXFP4 weights (A8W{8,4}_MXFP_post_scale_dynamic) are exact in bf16, not in e4m3: against them
# the kernels upcast the e4m3 codes to bf16 (exact) and take a bf16 dot (gemm.py), still post-scaled.
FP8 = PerTokenQuant(
    ActKind.FP8, ActQuant.FP8, torch.float8_e4m3fn, torch.uint8, FP8_E4M3_MAX,
    (WeightKind.FP8, WeightKind.HQQ, WeightKind.MXFP8, WeightKind.MXFP4),
)  # fmt: skip



class GivenCodes(NoActivationQuant):
    """INT8_CODES / FP8_CODES: x is already int8 / e4m3 codes, given by the caller and multiplied as
    they are (GemLite's ``input_dtype=DType.INT8 / DType.FP8`` without ``scaled_activations``): no
    quantizer runs and no activation scale exists. They meet weight codes without scales (A8W8_INT8,
    A8W8_FP8): ``y = x_q @ W_q.T (+ bias)``. int8 x int8 is summed in int32 on every kernel family, split-K
    partials included, so an int32 output (the one integer output dtype) is exact; an fp16/bf16/fp32
    output is that sum converted once to fp32, plus the bias in fp32, then cast. e4m3 x e4m3 products
    are exact and summed in fp32.

    code_dtype: the codes' dtype (the layout's compute dtype: x must have it). kernel_dtype: what the
    kernels read (e4m3 as its uint8 bytes, as for `PerTokenQuant`). weight: the weight kind they pair with.
    """

    def __init__(self, kind, x_quant, code_dtype, kernel_dtype, weight: WeightKind) -> None:
        self.kind = kind
        self.x_quant = x_quant
        self.code_dtype = code_dtype
        self.kernel_dtype = kernel_dtype
        self.weight = weight
        self.compute_dtypes = (code_dtype,)

    def check_spec(self, act, weight) -> None:
        """The weight must be the same 8-bit kind, channel-wise and without scales; ValueError otherwise
        (scaled weights with 8-bit activations: the per-token formats, ``scaled_activations=True``)."""
        if weight.kind is not self.weight or weight.scaled or act.group_size is not None:
            raise ValueError(
                f"format: {self.kind.name} activations (codes without scales) multiply {self.weight.name} "
                f"weights without scales; got {weight.kind.name} weights (scaled={weight.scaled}, "
                f"activation groups {act.group_size})"
            )

    def check_layout(self, layout) -> None:
        """int8 x int8: the int32 sum of K products of up to 2**14 in magnitude must not overflow, so
        K <= 131071 (ValueError naming in_features otherwise)."""
        if self.x_quant is ActQuant.INT8 and layout.in_features * 2**14 > 2**31 - 1:
            raise ValueError(
                f"in_features: int8 x int8 sums of K products (each up to 2**14) overflow gemlite's int32 "
                f"accumulator beyond K = 131071, got K = {layout.in_features}"
            )

    def act_bytes(self, M: int, K: int, x_bytes: int, group: int | None = None) -> int:
        """HBM bytes of the activation operand of one call: the codes, read once."""
        return M * K


INT8_CODES = GivenCodes(ActKind.INT8_CODES, ActQuant.INT8, torch.int8, torch.int8, WeightKind.INT8)
FP8_CODES = GivenCodes(ActKind.FP8_CODES, ActQuant.FP8, torch.float8_e4m3fn, torch.uint8, WeightKind.FP8)

SCHEMES = (NoActivationQuant(), INT8, FP8, INT8_CODES, FP8_CODES)
