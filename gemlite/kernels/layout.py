"""A prepared weight: its `WeightLayout` (everything but the tensors) and `prepare_weight`.

Physical layout chosen for the kernels (what `prepare_weight` returns):

* Packed codes (HQQ 1/2/4/8-bit, TERNARY): ``W_q`` is ``[K // e, N]`` with N contiguous, i.e. the
  transpose of `gemlite.packing.pack_codes`' ``[N, K // e]`` words (``e = word_bits // bits``). A
  tensor-core tile ``B[BLOCK_K, BLOCK_N]`` then reads, for each of its BLOCK_K rows, BLOCK_N
  consecutive words: wide coalesced loads along N, and the ``e`` codes of a word are consecutive k,
  which is the reduction axis every kernel walks. (Public GemLite stores packed weights the same way.)
* Unpacked codes (FLOAT fp16/bf16, INT8, FP8) stay ``[N, K]`` with K contiguous, as given: the
  GEMV_SPLITK family, which serves them at decode, streams long K runs of a few rows.
* Scales and float zeros: ``[K // group_size, N]`` with N contiguous (one row per K-group; ``[1, N]``
  when channel-wise), so a tile loads one contiguous row of BLOCK_N values per group.
* Absent tensors (no scales, integer or no zeros) are empty fp32 tensors, never None, so that a
  module can hold them as buffers. An integer zero-point lives in the layout (`zero_int`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gemlite.formats import DType, WeightKind, WeightSpec, Zeros
from gemlite.packing import WORD_BITS, pack_codes

# Weight kinds the integer/float weight-only kernels run. MX/NVFP and block-scaled 8-bit weights
# arrive in a later release and are refused with NotImplementedError.
SUPPORTED_KINDS = (WeightKind.FLOAT, WeightKind.HQQ, WeightKind.INT8, WeightKind.FP8, WeightKind.TERNARY)
COMPUTE_DTYPES = (torch.float16, torch.bfloat16)
SCALE_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
# Integer grouped formats need BLOCK_K | group_size for one scale row per tile; every family has a
# 32-wide (or 16-wide) K tile, so any multiple of 32 that divides K works.
GROUP_MULTIPLE = 32
K_MULTIPLE = 32

# Stable integer codes for `to_metadata` (never renumber: they are saved in checkpoints).
_METADATA_MAGIC = 0x47454D4C  # "GEML"
_METADATA_VERSION = 1
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
_ZEROS_CODES = {Zeros.NONE: 0, Zeros.INT: 1, Zeros.FLOAT: 2}
_CODE_DTYPES = {
    WeightKind.HQQ: torch.uint8,
    WeightKind.TERNARY: torch.uint8,
    WeightKind.INT8: torch.int8,
    WeightKind.FP8: torch.float8_e4m3fn,
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@dataclass(frozen=True)
class WeightLayout:
    """Everything about a prepared weight except its tensors; hashable, part of autotune keys.

    spec: the weight format (kind, bits, zeros; group_size as the user gave it).
    in_features: K.  out_features: N.
    group_size: K-elements sharing one scale, resolved (K for channel-wise).
    word_bits: packing word of packed HQQ/TERNARY codes (8 or 32); for unpacked kinds the element
        width (16 for FLOAT, 8 for INT8/FP8).
    compute_dtype: torch.float16 or torch.bfloat16: the activation dtype and tensor-core operand dtype.
    zero_int: the integer zero-point when spec.zeros is Zeros.INT (TERNARY: 1), else None.

    Construction validates consistency and raises ValueError/TypeError naming the field.
    """

    spec: WeightSpec
    in_features: int
    out_features: int
    group_size: int
    word_bits: int
    compute_dtype: torch.dtype
    zero_int: int | None = None

    def __post_init__(self) -> None:
        spec = self.spec
        if not isinstance(spec, WeightSpec):
            raise TypeError(f"spec: expected a gemlite.formats.WeightSpec, got {type(spec).__name__}")
        if spec.kind not in SUPPORTED_KINDS or spec.block_n != 1:
            raise NotImplementedError(
                f"spec: {spec.kind.name} weights (block_n={spec.block_n}) are not supported by the kernels "
                f"yet; supported: {', '.join(k.name for k in SUPPORTED_KINDS)} with block_n=1"
            )
        k, n, g = self.in_features, self.out_features, self.group_size
        for name, value in (
            ("in_features", k),
            ("out_features", n),
            ("group_size", g),
            ("word_bits", self.word_bits),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if k % K_MULTIPLE != 0:
            raise ValueError(f"in_features: K must be a multiple of {K_MULTIPLE}, got {k}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise TypeError(
                f"compute_dtype: expected torch.float16 or torch.bfloat16, got {self.compute_dtype}"
            )
        if spec.group_size is None and g != k:
            raise ValueError(f"group_size: a channel-wise spec resolves to in_features={k}, got {g}")
        if spec.group_size is not None and spec.group_size != g:
            raise ValueError(f"group_size: resolved {g} differs from spec.group_size={spec.group_size}")
        if spec.kind is WeightKind.HQQ:
            if k % g != 0 or (g != k and g % GROUP_MULTIPLE != 0):
                raise ValueError(
                    f"group_size: HQQ groups must divide in_features={k} and be a multiple of "
                    f"{GROUP_MULTIPLE} (or equal in_features for channel-wise), got {g}"
                )
        elif g != k:
            raise ValueError(
                f"group_size: {spec.kind.name} weights are channel-wise (group_size=None), got {g}"
            )
        if self.is_packed:
            if self.word_bits not in WORD_BITS:
                raise ValueError(f"word_bits: packed codes use 8- or 32-bit words, got {self.word_bits}")
        elif self.word_bits != spec.bits:
            raise ValueError(
                f"word_bits: unpacked {spec.kind.name} weights use {spec.bits}, got {self.word_bits}"
            )
        zero_kind = Zeros.INT if spec.kind is WeightKind.TERNARY else spec.zeros
        if zero_kind is Zeros.INT:
            if not isinstance(self.zero_int, int) or isinstance(self.zero_int, bool):
                raise ValueError(
                    f"zero_int: {spec.kind.name} with integer zeros needs an int, got {self.zero_int!r}"
                )
            if spec.kind is WeightKind.TERNARY and self.zero_int != 1:
                raise ValueError(f"zero_int: TERNARY weights use the zero-point 1, got {self.zero_int}")
            if not 0 <= self.zero_int <= spec.max_code:
                raise ValueError(
                    f"zero_int: must lie in [0, {spec.max_code}] for {spec.bits}-bit codes, "
                    f"got {self.zero_int}"
                )
        elif self.zero_int is not None:
            raise ValueError(
                f"zero_int: only integer zero-points carry one, got {self.zero_int} for {zero_kind.name}"
            )

    # ---- derived properties the kernels use -------------------------------------------------

    @property
    def is_packed(self) -> bool:
        """Codes are packed `elems_per_word` to a word (HQQ, TERNARY)."""
        return self.spec.kind in (WeightKind.HQQ, WeightKind.TERNARY)

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
        return Zeros.INT if self.spec.kind is WeightKind.TERNARY else self.spec.zeros

    @property
    def has_scales(self) -> bool:
        return self.spec.kind is not WeightKind.FLOAT

    @property
    def post_scale(self) -> bool:
        """Scales multiply the fp32 accumulator per output column instead of each weight.

        True when the scale is one per row and the dot operand before scaling is an exact small
        integer or fp8 value: INT8, FP8, TERNARY, and channel-wise HQQ with no or integer zeros
        (``|q - z| <= 255``, exact in bf16 and fp16). Then the dot sees exact weights and only the
        fp32 accumulator is rounded, once, by the scale.
        """
        kind = self.spec.kind
        if kind in (WeightKind.INT8, WeightKind.FP8, WeightKind.TERNARY):
            return True
        return kind is WeightKind.HQQ and not self.is_grouped and self.zero_mode is not Zeros.FLOAT

    # ---- serialization --------------------------------------------------------------------------

    def to_metadata(self) -> torch.Tensor:
        """int32 1-D tensor encoding this layout (saved in state_dict); inverse of `from_metadata`."""
        spec = self.spec
        values = [
            _METADATA_MAGIC,
            _METADATA_VERSION,
            _KIND_CODES[spec.kind],
            spec.bits,
            0 if spec.group_size is None else spec.group_size,
            spec.block_n,
            _ZEROS_CODES[spec.zeros],
            self.in_features,
            self.out_features,
            self.group_size,
            self.word_bits,
            DType.from_torch(self.compute_dtype).value,
            0 if self.zero_int is None else 1,
            0 if self.zero_int is None else self.zero_int,
        ]
        return torch.tensor(values, dtype=torch.int32)

    @classmethod
    def from_metadata(cls, t: torch.Tensor) -> WeightLayout:
        """Rebuild a layout from `to_metadata`'s tensor; raises ValueError for anything else."""
        if not isinstance(t, torch.Tensor) or t.dtype != torch.int32 or t.dim() != 1:
            got = (
                f"{t.dtype} tensor of shape {tuple(t.shape)}"
                if isinstance(t, torch.Tensor)
                else type(t).__name__
            )
            raise ValueError(f"t: expected a 1-D int32 metadata tensor, got {got}")
        v = [int(a) for a in t.tolist()]
        if len(v) < 2 or v[0] != _METADATA_MAGIC:
            raise ValueError("t: not a gemlite WeightLayout metadata tensor (bad magic number)")
        if v[1] != _METADATA_VERSION or len(v) != 14:
            raise ValueError(
                f"t: unsupported metadata version {v[1]} with {len(v)} fields (expected version 1, 14)"
            )
        kinds = {c: k for k, c in _KIND_CODES.items()}
        zeros = {c: z for z, c in _ZEROS_CODES.items()}
        dtypes = {DType.FP16.value: torch.float16, DType.BF16.value: torch.bfloat16}
        if v[2] not in kinds or v[6] not in zeros or v[11] not in dtypes:
            raise ValueError(f"t: corrupt metadata (kind={v[2]}, zeros={v[6]}, compute dtype={v[11]})")
        spec = WeightSpec(kinds[v[2]], v[3], group_size=v[4] or None, block_n=v[5], zeros=zeros[v[6]])
        return cls(spec, v[7], v[8], v[9], v[10], dtypes[v[11]], v[13] if v[12] else None)


def _check_tensor(name: str, t, shape: tuple[int, ...], dtypes: tuple[torch.dtype, ...], device) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
    if t.dtype not in dtypes:
        raise TypeError(
            f"{name}: expected dtype in ({', '.join(_dtype_name(d) for d in dtypes)}), "
            f"got {_dtype_name(t.dtype)}"
        )
    if t.device != device:
        raise ValueError(f"{name}: expected to be on {device} like codes, got {t.device}")


def _empty(device) -> torch.Tensor:
    return torch.empty(0, dtype=torch.float32, device=device)


def prepare_weight(
    spec: WeightSpec,
    codes: torch.Tensor,
    scales: torch.Tensor | None,
    zeros: torch.Tensor | int | None,
    *,
    compute_dtype: torch.dtype,
    word_bits: int = 32,
) -> tuple[WeightLayout, dict[str, torch.Tensor]]:
    """Turn canonical weight tensors into the kernels' layout and tensors.

    spec: the weight format; spec.group_size None means channel-wise.
    codes: ``[N, K]``: the fp16/bf16 weight (FLOAT, dtype == compute_dtype), uint8 codes (HQQ,
        TERNARY in {0, 1, 2}), int8 (INT8) or float8_e4m3fn (FP8).
    scales: ``[N, K // g]`` fp16/bf16/fp32 (HQQ; ``[N, 1]`` channel-wise), ``[N, 1]`` (INT8, FP8,
        TERNARY), or None (FLOAT).
    zeros: ``[N, K // g]`` float tensor (Zeros.FLOAT), a Python int (Zeros.INT; TERNARY: 1 or None),
        or None (Zeros.NONE).
    compute_dtype: torch.float16 or torch.bfloat16, the activation dtype.
    word_bits: packing word for HQQ/TERNARY codes, 8 or 32 (ignored for unpacked kinds).

    Returns ``(layout, {"W_q", "scales", "zeros"})`` on codes' device, in the physical layout the
    module docstring describes. Raises TypeError for wrong types/dtypes, ValueError for shapes, code
    ranges, group or word sizes the kernels cannot run, NotImplementedError for MX/NVFP/block formats.
    """
    if not isinstance(spec, WeightSpec):
        raise TypeError(f"spec: expected a gemlite.formats.WeightSpec, got {type(spec).__name__}")
    if not isinstance(codes, torch.Tensor) or codes.dim() != 2:
        got = f"shape {tuple(codes.shape)}" if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(f"codes: expected a 2-D [N, K] tensor, got {got}")
    if not isinstance(compute_dtype, torch.dtype) or compute_dtype not in COMPUTE_DTYPES:
        raise TypeError(f"compute_dtype: expected torch.float16 or torch.bfloat16, got {compute_dtype!r}")
    if not isinstance(word_bits, int) or word_bits not in WORD_BITS:
        raise ValueError(f"word_bits: expected one of {WORD_BITS}, got {word_bits!r}")
    n, k = codes.shape
    kind, device = spec.kind, codes.device
    if n == 0 or k == 0:
        raise ValueError(f"codes: expected a non-empty [N, K] tensor, got shape {(n, k)}")
    if codes.numel() >= 2**31:
        raise ValueError(
            f"codes: at most 2**31 - 1 elements are supported (32-bit offsets), got {codes.numel()}"
        )
    group = k if spec.group_size is None else spec.group_size
    zero_int = None
    if kind is WeightKind.TERNARY:
        if zeros is not None and (not isinstance(zeros, int) or isinstance(zeros, bool) or zeros != 1):
            raise ValueError(f"zeros: TERNARY weights use the integer zero-point 1 (or None), got {zeros!r}")
        zero_int = 1
    elif spec.zeros is Zeros.INT:
        if not isinstance(zeros, int) or isinstance(zeros, bool):
            raise TypeError(
                f"zeros: spec.zeros is Zeros.INT, expected a Python int, got {type(zeros).__name__}"
            )
        zero_int = zeros
    layout = WeightLayout(
        spec,
        in_features=k,
        out_features=n,
        group_size=group,
        word_bits=word_bits if kind in (WeightKind.HQQ, WeightKind.TERNARY) else spec.bits,
        compute_dtype=compute_dtype,
        zero_int=zero_int,
    )

    # Codes.
    if kind is WeightKind.FLOAT:
        if codes.dtype != compute_dtype:
            raise TypeError(
                f"codes: a FLOAT weight must have the compute dtype {compute_dtype}, got {codes.dtype}"
            )
    elif codes.dtype != _CODE_DTYPES[kind]:
        raise TypeError(f"codes: {kind.name} weights take {_CODE_DTYPES[kind]} codes, got {codes.dtype}")
    if layout.is_packed:
        top = 2 if kind is WeightKind.TERNARY else spec.max_code
        if int(codes.max()) > top:
            raise ValueError(
                f"codes: {kind.name} {spec.bits}-bit codes must lie in [0, {top}], got max {int(codes.max())}"
            )
        # pack_codes gives [N, K // e] (GemLite's layout); the kernels read its transpose, N contiguous.
        w_q = pack_codes(codes.contiguous(), spec.bits, word_bits).t().contiguous()
    else:
        w_q = codes.contiguous()

    # Scales: [K // g, N] rows with N contiguous.
    if kind is WeightKind.FLOAT:
        if scales is not None:
            raise ValueError("scales: FLOAT (A16W16) weights take no scales, got a tensor")
        scales_out = _empty(device)
    else:
        _check_tensor("scales", scales, (n, layout.num_groups), SCALE_DTYPES, device)
        scales_out = scales.t().contiguous()

    # Zeros: a float tensor in the same layout as the scales, else empty.
    if layout.zero_mode is Zeros.FLOAT:
        _check_tensor("zeros", zeros, (n, layout.num_groups), SCALE_DTYPES, device)
        zeros_out = zeros.t().contiguous()
    else:
        if layout.zero_mode is Zeros.NONE and zeros is not None:
            raise ValueError(f"zeros: spec.zeros is Zeros.NONE, expected None, got {type(zeros).__name__}")
        zeros_out = _empty(device)

    # Every kernel family must have a legal tile for this layout (import here: autotune does not
    # depend on this module, keeping the import graph acyclic).
    from gemlite import autotune

    autotune.check_layout(layout)
    return layout, {"W_q": w_q, "scales": scales_out, "zeros": zeros_out}
