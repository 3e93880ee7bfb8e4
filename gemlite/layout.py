"""`WeightLayout`: everything about a prepared weight except its tensors, and its saved metadata.

A layout holds the whole `gemlite.formats.Format` (weight spec and activation spec), the sizes, the
resolved group size, the packing word and the compute dtype. Every rule that depends on the weight
encoding is asked of the format's scheme (`gemlite.schemes`), never branched on here.

Physical layout the schemes prepare (what the kernels read):

* Packed codes (HQQ 1/2/4/8-bit, TERNARY): ``W_q`` is ``[K // e, N]`` with N contiguous, the
  transpose of `gemlite.packing.pack_codes`' ``[N, K // e]`` words (``e = word_bits // bits``).
* Unpacked codes (FLOAT fp16/bf16, INT8, FP8) stay ``[N, K]`` with K contiguous.
* Scales and float zeros: ``[K // group_size, N]`` with N contiguous (``[1, N]`` channel-wise).
* Absent tensors are empty fp32 tensors, never None; an integer zero-point lives in `zero_int`.

The compute dtype is x's dtype: fp16/bf16, or int8 / float8_e4m3fn for activation codes given by the
caller (A8W8_INT8, A8W8_FP8). Dynamic formats quantize fp16 or bf16 x whatever their compute dtype says
(the quantizer reads either; the matmul kernels read its codes).

Saved metadata (the ``metadata`` buffer of a `GemLiteLinear`) is an int32 vector. Version 2 names the
format and carries its activation spec; version 1 (gemlite 0.1.0 checkpoints, weight-only) is still
read, its format inferred from the weight spec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from gemlite.formats import (
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
from gemlite.packing import WORD_BITS
from gemlite.schemes import act_scheme, check_format, weight_scheme
from gemlite.schemes.activation import ActQuant
from gemlite.schemes.base import K_MULTIPLE, KernelKind, ZeroMode
from gemlite.schemes.mx import MXActQuant, MXScheme

COMPUTE_DTYPES = (torch.float16, torch.bfloat16)  # of fp16/bf16 activations; codes: the act scheme's

# Stable integer codes for the metadata (never renumber: they are saved in checkpoints).
_METADATA_MAGIC = 0x47454D4C  # "GEML"
_KIND_CODES = {
    WeightKind.FLOAT: 0,
    WeightKind.HQQ: 1,
    WeightKind.INT8: 2,
    WeightKind.FP8: 3,
    WeightKind.TERNARY: 4,
    WeightKind.MXFP8: 5,
    WeightKind.MXFP4: 6,
    WeightKind.NVFP4: 7,
}
_ACT_CODES = {
    ActKind.NONE: 0,
    ActKind.INT8: 1,
    ActKind.FP8: 2,
    ActKind.MXFP8: 3,
    ActKind.MXFP4: 4,
    ActKind.NVFP4: 5,
    ActKind.INT8_CODES: 6,
    ActKind.FP8_CODES: 7,
}
_ZEROS_CODES = {Zeros.NONE: 0, Zeros.INT: 1, Zeros.FLOAT: 2}
_COMPUTE_CODES = {
    DType.FP16.value: torch.float16,
    DType.BF16.value: torch.bfloat16,
    DType.INT8.value: torch.int8,  # activation codes given by the caller (v2 only)
    DType.FP8.value: torch.float8_e4m3fn,
}
_V1_FIELDS = 14
_V2_HEADER = 17  # fields before the format name's characters


@dataclass(frozen=True)
class WeightLayout:
    """A prepared weight, without its tensors; hashable (the hot path keys its launch choices on it).

    format: the `Format` (weight spec with the group size as the user gave it, activation spec).
    in_features: K.  out_features: N.
    group_size: K-elements sharing one scale, resolved (K for channel-wise).
    word_bits: packing word of packed codes (8 or 32); for unpacked kinds the element width.
    compute_dtype: the activation dtype (x's): torch.float16 or torch.bfloat16, the tensor-core operand
        dtype; int8 / float8_e4m3fn for activation codes given by the caller (the act scheme's
        `compute_dtypes`).
    zero_int: the integer zero-point when the zero mode is Zeros.INT (TERNARY: 1), else None.

    Construction validates consistency (the scheme checks what its kernels can run) and raises
    ValueError/TypeError naming the field.
    """

    format: Format
    in_features: int
    out_features: int
    group_size: int
    word_bits: int
    compute_dtype: torch.dtype
    zero_int: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.format, Format):
            raise TypeError(f"format: expected a gemlite.formats.Format, got {type(self.format).__name__}")
        check_format(self.format)
        spec = self.spec
        k, g = self.in_features, self.group_size
        for name, value in (
            ("in_features", k),
            ("out_features", self.out_features),
            ("group_size", g),
            ("word_bits", self.word_bits),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if k % K_MULTIPLE != 0:
            raise ValueError(f"in_features: K must be a multiple of {K_MULTIPLE}, got {k}")
        allowed = self.act_scheme.compute_dtypes
        if self.compute_dtype not in allowed:
            raise TypeError(
                f"compute_dtype: {self.format.name} takes {' or '.join(map(str, allowed))} activations, "
                f"got {self.compute_dtype}"
            )
        if spec.group_size is None and g != k:
            raise ValueError(f"group_size: a channel-wise spec resolves to in_features={k}, got {g}")
        if spec.group_size is not None and spec.group_size != g:
            raise ValueError(f"group_size: resolved {g} differs from spec.group_size={spec.group_size}")
        scheme = self.scheme
        if scheme.packed:
            if self.word_bits not in WORD_BITS:
                raise ValueError(f"word_bits: packed codes use 8- or 32-bit words, got {self.word_bits}")
        elif self.word_bits != spec.bits:
            raise ValueError(
                f"word_bits: unpacked {spec.kind.name} weights use {spec.bits}, got {self.word_bits}"
            )
        scheme.check_layout(self)
        self.act_scheme.check_layout(self)
        if self.zero_mode is Zeros.INT:
            if not isinstance(self.zero_int, int) or isinstance(self.zero_int, bool):
                raise ValueError(
                    f"zero_int: {spec.kind.name} with integer zeros needs an int, got {self.zero_int!r}"
                )
            if not 0 <= self.zero_int <= spec.max_code:
                raise ValueError(
                    f"zero_int: must lie in [0, {spec.max_code}] for {spec.bits}-bit codes, "
                    f"got {self.zero_int}"
                )
        elif self.zero_int is not None:
            raise ValueError(
                f"zero_int: only integer zero-points carry one, got {self.zero_int} for {self.zero_mode.name}"
            )

    def __hash__(self) -> int:
        # Computed once: the hot path keys its launch choices on the layout.
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((self.format, self.in_features, self.out_features, self.group_size, self.word_bits,
                      self.compute_dtype, self.zero_int))  # fmt: skip
            object.__setattr__(self, "_hash", h)
        return h

    # ---- what the scheme says about this layout ---------------------------------------------------

    @property
    def spec(self) -> WeightSpec:
        return self.format.weight

    @property
    def act(self) -> ActSpec:
        return self.format.act

    @property
    def scheme(self):
        """The `gemlite.schemes` weight scheme of this layout's weight kind."""
        return weight_scheme(self.format.weight.kind)

    @property
    def is_packed(self) -> bool:
        """Codes are packed `elems_per_word` to a word (HQQ, TERNARY)."""
        return self.scheme.packed

    @property
    def elems_per_word(self) -> int:
        return self.word_bits // self.spec.bits if self.is_packed else 1

    @property
    def num_groups(self) -> int:
        """Scale rows along K (1 when channel-wise)."""
        return self.in_features // self.group_size

    @property
    def is_grouped(self) -> bool:
        """Scales/zeros vary along K, so a K tile must not straddle two groups."""
        return self.group_size != self.in_features

    @property
    def zero_mode(self) -> Zeros:
        return self.scheme.zero_mode(self.spec)

    @property
    def has_scales(self) -> bool:
        return self.scheme.has_scales(self.spec)

    @property
    def post_scale(self) -> bool:
        """Scales multiply the fp32 accumulator per output column (see the scheme's `post_scale`)."""
        return self.scheme.post_scale(self)

    @property
    def zero_sums(self) -> bool:
        """The tensor-core families read the per-token quantizer's sums of x's codes for this layout's
        zero-point term: pre-scaled float zeros against 8-bit activation codes (`gemlite.kernels.gemm`)."""
        c = self.constexprs
        return bool(c["PRE_SCALE"]) and c["ZERO_MODE"] == int(ZeroMode.FLOAT) and self.act.is_dynamic

    @property
    def codes_scratch(self) -> bool:
        """A GEMM config with DEQUANT=1 copies the weight's exact codes into an ``[N, K]`` e4m3 scratch and
        runs the typed-load 8-bit GEMM on it (`gemlite.kernels.plan`): packed codes with float zeros
        against e4m3 activation codes (A8W4 / A8W2 HQQ dynamic; codes below 16, which e4m3 holds exactly)."""
        c = self.constexprs
        packed = c["W_KIND"] == int(KernelKind.PACKED) and c["W_BITS"] <= 4
        return self.zero_sums and packed and c["X_QUANT"] == int(ActQuant.FP8)

    @property
    def fp8_scaled_mm(self) -> bool:
        """A GEMM config with DEQUANT=1 hands the product to cuBLAS's fp8 GEMM (`torch._scaled_mm` with
        row-wise scales: x's per-token scales and the weight's channel scales, fp32 accumulation without
        fast accumulation, one rounding) after the per-token quantizer (`gemlite.kernels.plan`):
        channel-scaled e4m3 weights against e4m3 activation codes quantized at run time (A8W8_FP8_dynamic).
        K and N must be multiples of 16 (cuBLAS's fp8 operand alignment, checked by `torch._scaled_mm`)."""
        c = self.constexprs
        fp8 = c["W_KIND"] == int(KernelKind.FP8) and bool(c["POST_SCALE"])
        per_token = self.act.is_dynamic and c["X_QUANT"] == int(ActQuant.FP8) and c["X_GROUP"] == 0
        return fp8 and per_token and self.in_features % 16 == 0 and self.out_features % 16 == 0

    @property
    def operands_scratch(self) -> bool:
        """A GEMM config with DEQUANT=1 dequantizes both operands into bf16 scratch tensors (exact: the
        values the fused K loop's bf16 dot multiplies) and hands the product to cuBLAS, whose fp32
        accumulator then takes the activations' row or tensor scales (`gemlite.kernels.plan`):
        microscaled weights or activations (MX, NVFP4) with activations quantized at run time, where the
        fused loop dequantizes the x tile as well as the weight tile in every output tile's program."""
        mx = isinstance(self.scheme, MXScheme) or isinstance(self.act_scheme, MXActQuant)
        return self.act.is_dynamic and mx

    @property
    def act_scheme(self):
        """The `gemlite.schemes.activation` scheme of this layout's activations (NONE: used as given)."""
        return act_scheme(self.format.act.kind)

    @functools.cached_property
    def constexprs(self) -> dict:
        """The layout constants the kernels are compiled with (computed once per layout): the weight
        scheme's and the activation scheme's (``X_QUANT``)."""
        return {**self.scheme.constexprs(self), **self.act_scheme.constexprs(self)}

    # ---- serialization --------------------------------------------------------------------------

    def to_metadata(self) -> torch.Tensor:
        """int32 1-D tensor encoding this layout (metadata version 2); inverse of `from_metadata`."""
        spec, act = self.spec, self.act
        values = [
            _METADATA_MAGIC,
            2,
            _KIND_CODES[spec.kind],
            spec.bits,
            0 if spec.group_size is None else spec.group_size,
            spec.block_n,
            _ZEROS_CODES[spec.zeros],
            _ACT_CODES[act.kind],
            0 if act.group_size is None else act.group_size,
            self.in_features,
            self.out_features,
            self.group_size,
            self.word_bits,
            DType.from_torch(self.compute_dtype).value,
            0 if self.zero_int is None else 1,
            0 if self.zero_int is None else self.zero_int,
            len(self.format.name),
            *(ord(c) for c in self.format.name),
        ]
        return torch.tensor(values, dtype=torch.int32)

    @classmethod
    def from_metadata(cls, t: torch.Tensor) -> WeightLayout:
        """Rebuild a layout from a metadata tensor (version 2, or version 1 of gemlite 0.1.0).

        Raises ValueError for anything else (naming what is wrong).
        """
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int32 or t.dim() != 1:
            got = (
                f"{t.dtype} tensor of shape {tuple(t.shape)}"
                if isinstance(t, torch.Tensor)
                else type(t).__name__
            )
            raise ValueError(f"t: expected a 1-D int32 metadata tensor, got {got}")
        return _decode(tuple(int(a) for a in t.tolist()))

    def key(self) -> str:
        """A compact string naming this layout (the custom op's layout argument); see `from_key`."""
        return ",".join(str(v) for v in self.to_metadata().tolist())

    @staticmethod
    def from_key(key: str) -> WeightLayout:
        """The layout of a `key` string (memoized: the hot path calls it for every launch)."""
        return _from_key(key)


@functools.lru_cache(maxsize=4096)
def _from_key(key: str) -> WeightLayout:
    try:
        values = tuple(int(v) for v in key.split(","))
    except ValueError:
        raise ValueError(f"layout: not a gemlite layout key: {key[:80]!r}") from None
    return _decode(values)


def _decode(v: tuple[int, ...]) -> WeightLayout:
    if len(v) < 2 or v[0] != _METADATA_MAGIC:
        raise ValueError("t: not a gemlite WeightLayout metadata tensor (bad magic number)")
    kinds = {c: k for k, c in _KIND_CODES.items()}
    zeros = {c: z for z, c in _ZEROS_CODES.items()}
    if v[1] == 1 and len(v) == _V1_FIELDS:
        # v1: magic, 1, kind, bits, spec group, block_n, zeros, K, N, group, word, dtype, has zint, zint
        if v[2] not in kinds or v[6] not in zeros or v[11] not in _COMPUTE_CODES:
            raise ValueError(f"t: corrupt metadata (kind={v[2]}, zeros={v[6]}, compute dtype={v[11]})")
        spec = _spec(kinds[v[2]], v[3], v[4], v[5], zeros[v[6]])
        fmt = format_of(spec, ActSpec())
        return WeightLayout(fmt, v[7], v[8], v[9], v[10], _COMPUTE_CODES[v[11]], v[13] if v[12] else None)
    if v[1] == 2 and len(v) >= _V2_HEADER and len(v) == _V2_HEADER + v[16]:
        acts = {c: a for a, c in _ACT_CODES.items()}
        if v[2] not in kinds or v[6] not in zeros or v[7] not in acts or v[13] not in _COMPUTE_CODES:
            raise ValueError(
                f"t: corrupt metadata (kind={v[2]}, zeros={v[6]}, act={v[7]}, compute dtype={v[13]})"
            )
        try:
            name = "".join(chr(c) for c in v[_V2_HEADER:])
        except (ValueError, OverflowError):
            raise ValueError("t: corrupt metadata (format name)") from None
        if name not in FORMATS:
            raise ValueError(f"t: the metadata names format {name!r}, which this gemlite does not know")
        # Whether the codes carry scales is the named format's (no field of its own: v2 is unchanged).
        spec = _spec(kinds[v[2]], v[3], v[4], v[5], zeros[v[6]], FORMATS[name].weight.scaled)
        fmt = format_of(spec, ActSpec(acts[v[7]], v[8] or None))
        if fmt.name != name:
            raise ValueError(f"t: corrupt metadata: its fields describe {fmt.name}, its name says {name}")
        return WeightLayout(fmt, v[9], v[10], v[11], v[12], _COMPUTE_CODES[v[13]], v[15] if v[14] else None)
    raise ValueError(
        f"t: unsupported metadata version {v[1]} with {len(v)} fields (expected version 2, or version 1 "
        f"with {_V1_FIELDS})"
    )


def _spec(
    kind: WeightKind, bits: int, group: int, block_n: int, zeros: Zeros, scaled: bool = True
) -> WeightSpec:
    try:
        return WeightSpec(kind, bits, group_size=group or None, block_n=block_n, zeros=zeros, scaled=scaled)
    except ValueError as e:
        raise ValueError(f"t: corrupt metadata ({e})") from None
