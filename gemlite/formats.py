"""The vocabulary: every format gemlite knows, described as data and nowhere else.

A *format* says how a linear layer's weight is stored (`WeightSpec`) and how its activations are
quantized at run time, if at all (`ActSpec`). Kernels, packing, the reference and the harness all
read the same `Format` objects; nothing here computes anything beyond trivial derived properties.

Conventions (shared by every module):

* A layer maps ``x[M, K] -> y[M, N]``; the weight is ``W[N, K]`` (PyTorch's ``nn.Linear`` layout),
  ``K = in_features``, ``N = out_features``.
* Scale groups always run along K inside one output row: ``group = n * (K // g) + k // g``.
  Canonical scale/zero tensors are therefore ``[N, K // g]``.
* Integer weight codes follow HQQ: ``W ~= (W_q - zeros) * scales`` with unsigned ``W_q``.
* Packed codes: ``32 // bits`` (or ``8 // bits``) codes per word along K, least significant bits
  first: code ``k`` of a row sits in word ``k // e`` at bit offset ``(k % e) * bits``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import torch

# --------------------------------------------------------------------------------------------
# Element dtypes
# --------------------------------------------------------------------------------------------


class DType(enum.Enum):
    """Element types, numbered as in the public GemLite library so user code and configs carry over."""

    FP32 = 0
    FP16 = 1
    BF16 = 2
    FP8 = 3  # e4m3fn
    FP8e4 = 3  # alias of FP8
    INT8 = 4
    UINT8 = 5
    INT32 = 6
    UINT32 = 7
    FP8e5 = 8  # e5m2
    INT16 = 9
    UINT16 = 10
    INT64 = 11
    FP8e4nuz = 12  # e4m3fnuz (AMD)
    FP8e5nuz = 13  # e5m2fnuz (AMD)
    MXFP16 = 14  # fp16 activations against MX weights
    MXBF16 = 15  # bf16 activations against MX weights
    MXFP8 = 16  # e4m3 elements with e8m0 scales per 32
    MXFP4 = 17  # e2m1 elements, two per byte, with e8m0 scales per 32
    NVFP4 = 18  # e2m1 elements, two per byte, with e4m3 scales per 16 and an fp32 tensor scale
    E8M0 = 19  # power-of-two scale, stored as a biased exponent byte

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype that stores one element (packed FP4 formats: the uint8 byte)."""
        return _TORCH_DTYPES[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.FP32, DType.FP16, DType.BF16, DType.MXFP16, DType.MXBF16)

    @classmethod
    def from_torch(cls, dtype: torch.dtype) -> DType:
        """The DType of a torch dtype; raises TypeError for dtypes gemlite has no name for."""
        for member, td in _TORCH_DTYPES.items():
            aliases = (DType.MXFP16, DType.MXBF16, DType.MXFP8, DType.MXFP4, DType.NVFP4)
            if td == dtype and member not in aliases:
                return member
        raise TypeError(f"dtype: gemlite has no DType for torch dtype {dtype}")


_TORCH_DTYPES = {
    DType.FP32: torch.float32,
    DType.FP16: torch.float16,
    DType.BF16: torch.bfloat16,
    DType.FP8: torch.float8_e4m3fn,
    DType.INT8: torch.int8,
    DType.UINT8: torch.uint8,
    DType.INT32: torch.int32,
    DType.UINT32: torch.uint32,
    DType.FP8e5: torch.float8_e5m2,
    DType.INT16: torch.int16,
    DType.UINT16: torch.uint16,
    DType.INT64: torch.int64,
    DType.FP8e4nuz: torch.float8_e4m3fnuz,
    DType.FP8e5nuz: torch.float8_e5m2fnuz,
    DType.MXFP16: torch.float16,
    DType.MXBF16: torch.bfloat16,
    DType.MXFP8: torch.float8_e4m3fn,
    DType.MXFP4: torch.uint8,
    DType.NVFP4: torch.uint8,
    DType.E8M0: torch.float8_e8m0fnu,
}

# --------------------------------------------------------------------------------------------
# Numeric constants of the formats
# --------------------------------------------------------------------------------------------

INT8_MAX = 127  # symmetric int8: scale = amax / 127, codes clamped to [-128, 127]
INT8_MIN = -128
FP8_E4M3_MAX = 448.0  # largest finite e4m3fn value: scale = amax / 448
E2M1_MAX = 6.0  # largest e2m1 magnitude
# e2m1 code -> value. Bit 3 is the sign, bits 0..2 index the magnitudes.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
E8M0_BIAS = 127  # e8m0 byte e means 2 ** (e - 127); 255 is NaN
MX_GROUP = 32  # inputs per e8m0 scale (MXFP8, MXFP4)
NVFP4_GROUP = 16  # inputs per e4m3 scale (NVFP4)
BLOCK_QUANT = 128  # DeepSeek-style block scaling: 128x128 weight blocks, 1x128 activation blocks
SCALE_FLOOR = 1e-6  # per-token / per-channel / per-block scales are clamped to at least this
MX_SCALE_FLOOR_EXP = -127  # the smallest e8m0 scale, 2**-127 (byte 0)


# --------------------------------------------------------------------------------------------
# Weight and activation specs
# --------------------------------------------------------------------------------------------


class WeightKind(enum.Enum):
    """How a weight element is stored and turned back into a number."""

    FLOAT = "float"  # fp16/bf16 weight used as is (A16W16)
    HQQ = "hqq"  # unsigned b-bit codes; W = (q - zero) * scale per group along K
    INT8 = "int8"  # signed int8 codes, symmetric; W = q * scale
    FP8 = "fp8"  # e4m3 codes; W = q * scale
    TERNARY = "ternary"  # W in {-1, 0, 1} stored as q = W + 1 in 2 bits; W = (q - 1) * scale
    MXFP8 = "mxfp8"  # e4m3 codes, one e8m0 scale per 32 inputs
    MXFP4 = "mxfp4"  # e2m1 codes (two per byte, even k in the low nibble), one e8m0 scale per 32
    NVFP4 = "nvfp4"  # e2m1 codes, one e4m3 scale per 16, one fp32 tensor scale


class ActKind(enum.Enum):
    """How activations reach the kernels: quantized at run time, or as the caller gives them (NONE:
    fp16/bf16 values; INT8_CODES / FP8_CODES: int8 / e4m3 codes without scales)."""

    NONE = "none"
    INT8 = "int8"  # symmetric, scale = amax / 127, round half away from zero
    FP8 = "fp8"  # e4m3, scale = amax / 448
    MXFP8 = "mxfp8"
    MXFP4 = "mxfp4"
    NVFP4 = "nvfp4"
    # x already holds 8-bit codes, multiplied as they are (GemLite's INT8 / FP8 input_dtype without
    # scaled_activations): no quantization, no activation scale.
    INT8_CODES = "int8_codes"
    FP8_CODES = "fp8_codes"


#: The activation kinds whose x the caller gives as 8-bit codes (no run-time quantization, no scale).
CODE_ACT_KINDS = (ActKind.INT8_CODES, ActKind.FP8_CODES)


class Zeros(enum.Enum):
    """The zero-point of HQQ codes: absent, one integer for the whole tensor, or a float per group."""

    NONE = "none"
    INT = "int"
    FLOAT = "float"


_WEIGHT_BITS = {
    WeightKind.FLOAT: 16,
    WeightKind.INT8: 8,
    WeightKind.FP8: 8,
    WeightKind.TERNARY: 2,
    WeightKind.MXFP8: 8,
    WeightKind.MXFP4: 4,
    WeightKind.NVFP4: 4,
}
_FIXED_GROUP = {WeightKind.MXFP8: MX_GROUP, WeightKind.MXFP4: MX_GROUP, WeightKind.NVFP4: NVFP4_GROUP}
HQQ_BITS = (8, 4, 2, 1)


@dataclass(frozen=True)
class WeightSpec:
    """How a weight is stored.

    kind: the element encoding.
    bits: bits per stored code (16 FLOAT; 8/4/2/1 HQQ; 8 INT8/FP8/MXFP8; 2 TERNARY; 4 MXFP4/NVFP4).
    group_size: inputs (along K) sharing one scale; ``None`` means channel-wise, one scale per output
        row (a layer resolves it to K). Fixed at 32 for MX and 16 for NVFP4.
    block_n: outputs sharing one scale; 128 for the 128x128 block-scaled INT8/FP8 variant, else 1.
    zeros: the zero-point form (HQQ only; TERNARY always uses the integer zero 1).
    scaled: the codes carry scales. False (channel-wise INT8 / FP8 only): the codes ARE the weight,
        multiplied as they are (``A8W8_INT8`` / ``A8W8_FP8``: GemLite's ``pack(W_q, None, None)``).
    """

    kind: WeightKind
    bits: int
    group_size: int | None = None
    block_n: int = 1
    zeros: Zeros = Zeros.NONE
    scaled: bool = True

    def __post_init__(self) -> None:
        if self.kind is WeightKind.HQQ:
            if self.bits not in HQQ_BITS:
                raise ValueError(f"bits: HQQ weights take one of {HQQ_BITS}, got {self.bits}")
        elif self.bits != _WEIGHT_BITS[self.kind]:
            expected = _WEIGHT_BITS[self.kind]
            raise ValueError(f"bits: {self.kind.name} weights are {expected}-bit, got {self.bits}")
        if self.kind in _FIXED_GROUP and self.group_size != _FIXED_GROUP[self.kind]:
            expected = _FIXED_GROUP[self.kind]
            raise ValueError(f"group_size: {self.kind.name} uses groups of {expected}, got {self.group_size}")
        if self.group_size is not None and self.group_size <= 0:
            raise ValueError(f"group_size: must be positive or None (channel-wise), got {self.group_size}")
        if self.zeros is not Zeros.NONE and self.kind not in (WeightKind.HQQ, WeightKind.TERNARY):
            raise ValueError(f"zeros: only HQQ and TERNARY weights have zero-points, not {self.kind.name}")
        channelwise_8bit = self.kind in (WeightKind.INT8, WeightKind.FP8) and self.group_size is None
        if not self.scaled and not (channelwise_8bit and self.block_n == 1):
            raise ValueError(
                f"scaled: only channel-wise INT8 / FP8 weights can go without scales, not {self.kind.name} "
                f"(group_size={self.group_size}, block_n={self.block_n})"
            )

    @property
    def is_channelwise(self) -> bool:
        return self.group_size is None

    @property
    def max_code(self) -> int:
        """Largest unsigned code of an HQQ/TERNARY weight."""
        return (1 << self.bits) - 1


@dataclass(frozen=True)
class ActSpec:
    """How activations are quantized at run time.

    kind: NONE keeps the fp16/bf16 activations.
    group_size: inputs sharing one activation scale: ``None`` per token (one scale per row of x),
        128 for block scaling, 32 for MX, 16 for NVFP4.
    """

    kind: ActKind = ActKind.NONE
    group_size: int | None = None

    @property
    def is_dynamic(self) -> bool:
        """x is quantized at run time (codes and scales made by a quantizer before the matmul)."""
        return self.kind is not ActKind.NONE and self.kind not in CODE_ACT_KINDS

    @property
    def is_quantized(self) -> bool:
        """The kernels multiply activation CODES (quantized at run time, or given by the caller), not
        fp16/bf16 values: no DEQUANT path, 8-bit dot tiles."""
        return self.kind is not ActKind.NONE


@dataclass(frozen=True)
class Format:
    """A named pair of weight and activation specs, e.g. ``A16W4_HQQ_INT`` with groups of 128."""

    name: str
    weight: WeightSpec
    act: ActSpec = ActSpec()

    def with_group_size(self, group_size: int | None) -> Format:
        """The same format with another weight group size (HQQ only; None = channel-wise)."""
        if self.weight.kind is not WeightKind.HQQ:
            raise ValueError(f"group_size: {self.name} has a fixed group size ({self.weight.group_size})")
        return replace(self, weight=replace(self.weight, group_size=group_size))

    def with_zeros(self, zeros: Zeros) -> Format:
        """The same format with another zero-point form (HQQ only)."""
        if self.weight.kind is not WeightKind.HQQ:
            raise ValueError(f"zeros: {self.name} has no configurable zero-point")
        return replace(self, weight=replace(self.weight, zeros=zeros))

    @property
    def label(self) -> str:
        """Report label: the name, plus the group size where it varies (``A16W4_HQQ_INT/g128``)."""
        if self.weight.kind is WeightKind.HQQ:
            g = "chan" if self.weight.group_size is None else f"g{self.weight.group_size}"
            return f"{self.name}/{g}"
        return self.name


def _hqq(bits: int) -> WeightSpec:
    return WeightSpec(WeightKind.HQQ, bits, group_size=128, zeros=Zeros.FLOAT)


_PER_TOKEN_INT8 = ActSpec(ActKind.INT8)
_PER_TOKEN_FP8 = ActSpec(ActKind.FP8)

#: Every format, by helper name. HQQ entries carry a default group size of 128 and float zeros;
#: use `Format.with_group_size` / `Format.with_zeros` for the others.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        # weight-only
        Format("A16W16", WeightSpec(WeightKind.FLOAT, 16)),
        Format("A16W8_HQQ_INT", _hqq(8)),
        Format("A16W4_HQQ_INT", _hqq(4)),
        Format("A16W2_HQQ_INT", _hqq(2)),
        Format("A16W1_HQQ_INT", _hqq(1)),
        Format("A16W8_INT8", WeightSpec(WeightKind.INT8, 8)),
        Format("A16W8_FP8", WeightSpec(WeightKind.FP8, 8)),
        Format("A16W158_INT", WeightSpec(WeightKind.TERNARY, 2, zeros=Zeros.INT)),
        Format("A16W8_MXFP", WeightSpec(WeightKind.MXFP8, 8, group_size=MX_GROUP)),
        Format("A16W4_MXFP", WeightSpec(WeightKind.MXFP4, 4, group_size=MX_GROUP)),
        Format("A16W4_NVFP", WeightSpec(WeightKind.NVFP4, 4, group_size=NVFP4_GROUP)),
        # dynamic activations
        Format("A8W8_INT8_dynamic", WeightSpec(WeightKind.INT8, 8), _PER_TOKEN_INT8),
        Format("A8W8_FP8_dynamic", WeightSpec(WeightKind.FP8, 8), _PER_TOKEN_FP8),
        Format(
            "A8W8_INT8_block_dynamic",
            WeightSpec(WeightKind.INT8, 8, group_size=BLOCK_QUANT, block_n=BLOCK_QUANT),
            ActSpec(ActKind.INT8, BLOCK_QUANT),
        ),
        Format(
            "A8W8_FP8_block_dynamic",
            WeightSpec(WeightKind.FP8, 8, group_size=BLOCK_QUANT, block_n=BLOCK_QUANT),
            ActSpec(ActKind.FP8, BLOCK_QUANT),
        ),
        Format("A8W4_HQQ_INT_dynamic", _hqq(4), _PER_TOKEN_FP8),
        Format("A8W2_HQQ_INT_dynamic", _hqq(2), _PER_TOKEN_FP8),
        Format("A8W158_INT_dynamic", WeightSpec(WeightKind.TERNARY, 2, zeros=Zeros.INT), _PER_TOKEN_INT8),
        # 8-bit codes given by the caller x 8-bit codes, no scales at all (GemLite's GemLiteLinear with
        # input_dtype INT8 / FP8 and pack(W_q, None, None)): y = x_q @ W_q.T (+ bias), int8 x int8 summed
        # exactly in int32 (an int32 output is bit-exact), e4m3 x e4m3 in fp32.
        Format("A8W8_INT8", WeightSpec(WeightKind.INT8, 8, scaled=False), ActSpec(ActKind.INT8_CODES)),
        Format("A8W8_FP8", WeightSpec(WeightKind.FP8, 8, scaled=False), ActSpec(ActKind.FP8_CODES)),
        Format(
            "A8W8_MXFP_dynamic",
            WeightSpec(WeightKind.MXFP8, 8, group_size=MX_GROUP),
            ActSpec(ActKind.MXFP8, MX_GROUP),
        ),
        Format(
            "A8W4_MXFP_dynamic",
            WeightSpec(WeightKind.MXFP4, 4, group_size=MX_GROUP),
            ActSpec(ActKind.MXFP8, MX_GROUP),
        ),
        # GemLite's A8W8_MXFP_dynamic / A8W4_MXFP_dynamic with post_scale=True (its default): the MX
        # weights meet e4m3 activations with one fp32 scale per token, applied after the dot.
        Format(
            "A8W8_MXFP_post_scale_dynamic",
            WeightSpec(WeightKind.MXFP8, 8, group_size=MX_GROUP),
            _PER_TOKEN_FP8,
        ),
        Format(
            "A8W4_MXFP_post_scale_dynamic",
            WeightSpec(WeightKind.MXFP4, 4, group_size=MX_GROUP),
            _PER_TOKEN_FP8,
        ),
        Format(
            "A4W4_MXFP_dynamic",
            WeightSpec(WeightKind.MXFP4, 4, group_size=MX_GROUP),
            ActSpec(ActKind.MXFP4, MX_GROUP),
        ),
        Format(
            "A4W4_NVFP_dynamic",
            WeightSpec(WeightKind.NVFP4, 4, group_size=NVFP4_GROUP),
            ActSpec(ActKind.NVFP4, NVFP4_GROUP),
        ),
    )
}


def get_format(name: str) -> Format:
    """The format called `name` (a key of FORMATS); raises ValueError listing the known names."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"format: unknown format {name!r}; known: {', '.join(FORMATS)}") from None


def format_of(weight: WeightSpec, act: ActSpec = ActSpec()) -> Format:
    """The named Format holding `weight` and `act` (an HQQ weight keeps its own group size and zeros).

    Raises ValueError when no format of FORMATS stores that weight kind with those activations.
    """
    for fmt in FORMATS.values():
        w = fmt.weight
        same_weight = w.kind is weight.kind and w.bits == weight.bits and w.block_n == weight.block_n
        same_weight = same_weight and w.scaled == weight.scaled
        if w.kind is not WeightKind.HQQ:
            same_weight = same_weight and w.group_size == weight.group_size and w.zeros is weight.zeros
        if same_weight and fmt.act == act:
            return replace(fmt, weight=weight)
    raise ValueError(f"format: no gemlite format stores {weight} with activations {act}")


# --------------------------------------------------------------------------------------------
# Shared host data: kernel family names and autotune M buckets
# --------------------------------------------------------------------------------------------

#: The kernel families, by the names public GemLite gives them (``matmul_type``).
FAMILIES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM")
#: GemLite's M buckets: powers of two plus 1.5x steps from 16 on; larger M share the 4096 bucket.
M_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


# M -> its bucket, by table lookup (the hot path asks on every call).
_BUCKET_OF = tuple(next((b for b in M_BUCKETS if m <= b), 0) for m in range(M_BUCKETS[-1] + 1))


def m_bucket(M: int) -> int:
    """The smallest of M_BUCKETS >= M; M > 4096 maps to 4096. Raises ValueError for M < 1."""
    if not isinstance(M, int) or isinstance(M, bool) or M < 1:
        raise ValueError(f"M: expected a positive int, got {M!r}")
    return _BUCKET_OF[M] if M <= M_BUCKETS[-1] else M_BUCKETS[-1]
