"""`Case`: one drawn kernel-vs-reference case, a small frozen record that serialises to one line of JSON.

A case names its format, group size, zero-point form, M, K, N, dtypes, bias, value distribution, seed,
kernel family and packing word, and the user-selectable paths it runs: determinism on or off, a forced
tile config, a shrunk workspace bound (row-chunked launches), codes handed to ``pack`` already packed,
and a state_dict round trip. `harness.build` makes its tensors from the seed, so a failure is rerun
exactly with ``python -m harness.repro '<json>'`` (JSON written before a field existed still loads, the
field at its default). What is legal for a format comes from the support registry
(`harness.support.SUPPORT`) and, for a tile, from ``gemlite.autotune.illegal_reason``;
`legality_problems` says what a case breaks, `pinned` writes a legal case by hand.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from gemlite.autotune import Config, illegal_reason
from gemlite.formats import FORMATS, Format, WeightKind, Zeros
from gemlite.layout import WeightLayout
from gemlite.schemes import weight_scheme
from harness.support import AUTO, DISTRIBUTIONS, DTYPES, FAMILIES, PACKED_INPUT_DTYPES, SUPPORT, FormatSupport

_CONFIG_FIELDS = tuple(Config.__dataclass_fields__)


@dataclass(frozen=True)
class Case:
    """One drawn kernel-vs-reference case; everything needed to rebuild it bit for bit.

    format: a key of `gemlite.formats.FORMATS` supported by `harness.build.SUPPORT` (e.g. "A16W4_HQQ_INT").
    group_size: the weight group size along K; None means channel-wise (HQQ only; other formats carry
        their fixed group size, None for the channel-wise 8-bit and ternary formats).
    zeros: the zero-point form, a `Zeros` value ("float", "int", "none").
    M, K, N: x is [M, K], the weight [N, K], y [M, N].
    input_dtype: activation (and compute) dtype: "float16" or "bfloat16".
    output_dtype: "float16", "bfloat16" or "float32".
    scale_dtype: dtype of the stored scales (and float zeros): "float16", "bfloat16" or "float32".
    bias: "none", "input" (a bias of the activation dtype) or "float32".
    dist: the value distribution, one of DISTRIBUTIONS.
    seed: seeds the torch.Generator that draws every tensor.
    family: the kernel family forced through ``forward_manual``, or "AUTO" for the layer's own dispatch.
    packing_bitwidth: the packing word of packed codes (32 or 8); 32 for formats stored unpacked.
    deterministic: ``gemlite.set_deterministic`` for the run (False: split-K paths use fp32 atomics).
    tile: the ``gemlite.autotune.Config`` fields forced for `family` (``forced_config``), or None for the
        config gemlite picks; legal per ``gemlite.autotune.illegal_reason`` (never with "AUTO"). In JSON an
        object (``{"BLOCK_K": 64, ...}``); held as sorted (name, value) pairs so a case stays hashable.
    workspace_bytes: ``gemlite.kernels.plan.MAX_WORKSPACE_BYTES`` for the run (None: gemlite's own): a
        small value makes a split launch run in row chunks.
    packed_input: None (``pack`` gets the uint8 codes), or the integer dtype of the words ``pack`` gets
        with ``packed=True`` ("uint8"/"int8" for 8-bit words, "int32"/"uint32" for 32-bit ones): the codes
        packed in GemLite's layout by the reference packer (packed formats only).
    state_dict: also save the layer's state_dict, load it into a fresh layer built with the same
        constructor arguments and check that its output equals the original's bit for bit (deterministic
        runs; with atomics, within the bound).
    """

    format: str
    group_size: int | None
    zeros: str
    M: int
    K: int
    N: int
    input_dtype: str = "float16"
    output_dtype: str = "float16"
    scale_dtype: str = "float16"
    bias: str = "none"
    dist: str = "normal"
    seed: int = 0
    family: str = AUTO
    packing_bitwidth: int = 32
    deterministic: bool = True
    tile: tuple[tuple[str, int], ...] | None = None
    workspace_bytes: int | None = None
    packed_input: str | None = None
    state_dict: bool = False

    def __post_init__(self) -> None:
        tile = self.tile
        if isinstance(tile, dict):
            tile = tuple(sorted(tile.items()))
        elif isinstance(tile, (list, tuple)) and not isinstance(tile, str):
            try:
                tile = tuple(sorted((str(k), v) for k, v in tile))
            except (TypeError, ValueError):
                pass  # legality_problems names it
        object.__setattr__(self, "tile", tile)

    # ----------------------------------------------------------------------------------------

    @property
    def support(self) -> FormatSupport:
        return SUPPORT[self.format]

    @property
    def fmt(self) -> Format:
        """The `Format` this case runs: the named format with the case's group size and zeros."""
        fmt = FORMATS[self.format]
        if fmt.weight.kind is WeightKind.HQQ:
            fmt = fmt.with_group_size(self.group_size).with_zeros(Zeros(self.zeros))
        return fmt

    @property
    def label(self) -> str:
        """The report label of the format (``A16W4_HQQ_INT/g128``)."""
        return self.fmt.label

    @property
    def resolved_group_size(self) -> int:
        """The group size as an int (K for channel-wise)."""
        return self.K if self.group_size is None else self.group_size

    @property
    def config(self) -> Config | None:
        """The forced tile as a ``gemlite.autotune.Config`` (None: gemlite picks). Raises ValueError for
        unknown or invalid fields."""
        return None if self.tile is None else Config.from_dict(dict(self.tile))

    def layout(self) -> WeightLayout:
        """The ``gemlite.layout.WeightLayout`` a layer of this case gets (the tile's legality depends on
        it). The integer zero-point is a stand-in (its value does not change what is legal)."""
        fmt = self.fmt
        zero_int = 1 if weight_scheme(fmt.weight.kind).zero_mode(fmt.weight) is Zeros.INT else None
        word = self.packing_bitwidth if self.support.packed else fmt.weight.bits
        return WeightLayout(
            fmt, self.K, self.N, self.resolved_group_size, word, DTYPES[self.input_dtype], zero_int
        )

    def to_json(self) -> str:
        """One line of JSON holding every field (the reproducer's argument)."""
        data = asdict(self)
        data["tile"] = None if self.tile is None else dict(self.tile)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict[str, Any]) -> Case:
        """Rebuild a case from `to_json`'s output (or the dict it encodes).

        Raises ValueError for malformed JSON, unknown or missing fields, and illegal cases.
        """
        if isinstance(text, str):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(f"case: not valid JSON ({e}): {text[:200]!r}") from None
        else:
            data = dict(text)
        if not isinstance(data, dict):
            raise ValueError(f"case: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"case: unknown field(s) {unknown}; known: {sorted(names)}")
        required = {"format", "group_size", "zeros", "M", "K", "N"}
        missing = sorted(required - set(data))
        if missing:
            raise ValueError(f"case: missing field(s) {missing}")
        case = cls(**data)
        problems = legality_problems(case, strict=False)
        if problems:
            raise ValueError("case: illegal case: " + "; ".join(problems))
        return case

    def replace(self, **changes) -> Case:
        return replace(self, **changes)


def legality_problems(case: Case, *, strict: bool = True) -> list[str]:
    """Every way `case` breaks the rules of its format and of the support registry (empty when legal).

    strict: also require the group size to be one the registry draws (the suite's own probes of
    unusual group sizes, e.g. 48, are legal cases without being drawn).
    """
    out = []
    if case.format not in SUPPORT:
        return [f"format {case.format!r} is not in the support registry ({', '.join(SUPPORT)})"]
    sup = SUPPORT[case.format]
    for name in ("M", "K", "N", "seed", "packing_bitwidth"):
        v = getattr(case, name)
        if not isinstance(v, int) or isinstance(v, bool):
            out.append(f"{name} must be an int, got {v!r}")
    for name in ("deterministic", "state_dict"):
        if not isinstance(getattr(case, name), bool):
            out.append(f"{name} must be true or false, got {getattr(case, name)!r}")
    w = case.workspace_bytes
    if w is not None and (not isinstance(w, int) or isinstance(w, bool) or w < 1):
        out.append(f"workspace_bytes must be a positive int or null, got {w!r}")
    g = case.group_size
    if g is not None and (not isinstance(g, int) or isinstance(g, bool)):
        out.append(f"group_size must be an int or null (channel-wise), got {g!r}")
    if out:
        return out
    if case.M < 1 or case.N < 1 or case.K < 1:
        out.append(f"M, K, N must be positive, got {case.M}, {case.K}, {case.N}")
    if case.K % 32:
        out.append(f"K must be a multiple of 32, got {case.K}")
    fixed_group = FORMATS[case.format].weight.kind is not WeightKind.HQQ
    if (strict or fixed_group) and case.group_size not in sup.group_sizes:
        out.append(f"group_size {case.group_size} not drawn for {case.format} (legal: {sup.group_sizes})")
    elif case.group_size is not None and (case.group_size < 1 or case.K % case.group_size):
        out.append(f"group_size {case.group_size} does not divide K={case.K}")
    legal_zeros = [z.value for z in sup.zeros]
    if case.zeros not in legal_zeros:
        out.append(f"zeros {case.zeros!r} not legal for {case.format} (legal: {legal_zeros})")
    if case.input_dtype not in sup.input_dtypes:
        out.append(f"input_dtype {case.input_dtype!r} not legal (legal: {sup.input_dtypes})")
    legal_out = sup.output_dtypes_for(case.input_dtype)
    if case.output_dtype not in legal_out:
        out.append(f"output_dtype {case.output_dtype!r} not legal with {case.input_dtype}: {legal_out}")
    if case.scale_dtype not in sup.scale_dtypes:
        out.append(f"scale_dtype {case.scale_dtype!r} not legal here (legal: {sup.scale_dtypes})")
    if case.bias not in sup.bias_kinds:
        out.append(f"bias {case.bias!r} not legal for {case.format} (legal: {sup.bias_kinds})")
    if case.dist not in DISTRIBUTIONS:
        out.append(f"dist {case.dist!r} unknown (known: {DISTRIBUTIONS})")
    if case.family not in FAMILIES:
        out.append(f"family {case.family!r} unknown (known: {FAMILIES})")
    if case.packing_bitwidth not in sup.packing_bitwidths:
        out.append(f"packing_bitwidth {case.packing_bitwidth} not legal (legal: {sup.packing_bitwidths})")
    elif sup.packed and case.K % (case.packing_bitwidth // sup.code_bits):
        out.append(f"K={case.K} is not a multiple of the codes per {case.packing_bitwidth}-bit word")
    if not 0 <= case.seed < 2**63:
        out.append(f"seed must lie in [0, 2**63), got {case.seed}")
    if case.packed_input is not None:
        legal_words = PACKED_INPUT_DTYPES.get(case.packing_bitwidth, ()) if sup.packed else ()
        if case.packed_input not in legal_words:
            out.append(
                f"packed_input {case.packed_input!r} not legal for {case.format} with "
                f"{case.packing_bitwidth}-bit words (legal: None, {', '.join(legal_words) or 'nothing else'})"
            )
    if out:
        return out
    out += _tile_problems(case)
    return out


def _tile_problems(case: Case) -> list[str]:
    """Why `case.tile` cannot run its family on its layout (empty when it can, or when there is none)."""
    if case.tile is None:
        return []
    if case.family == AUTO:
        return ["tile: a forced config needs a kernel family, not AUTO (it would apply to one family only)"]
    if not isinstance(case.tile, tuple) or not all(isinstance(p, tuple) and len(p) == 2 for p in case.tile):
        return [f"tile must be an object of config fields or null, got {case.tile!r}"]
    unknown = sorted(k for k, _ in case.tile if k not in _CONFIG_FIELDS)
    if unknown:
        return [f"tile: unknown config field(s) {unknown}; known: {list(_CONFIG_FIELDS)}"]
    try:
        config = case.config
        layout = case.layout()
    except (TypeError, ValueError) as e:
        return [f"tile: {e}"]
    reason = illegal_reason(case.family, config, layout)
    return [] if reason is None else [f"tile {config.short()} illegal here: {reason}"]


def pinned(format: str, **fields_) -> Case:
    """A hand-written case for ``@example(...)`` pins: the format's first legal choice for every field
    not given. Raises ValueError if the result is illegal."""
    sup = SUPPORT[format]
    base = dict(
        format=format,
        group_size=sup.group_sizes[0],
        zeros=sup.zeros[0].value,
        M=1,
        K=128,
        N=64,
        input_dtype=sup.input_dtypes[0],
        scale_dtype=sup.scale_dtypes[0],
        packing_bitwidth=sup.packing_bitwidths[0],
    )
    base["output_dtype"] = sup.output_dtypes_for(fields_.get("input_dtype", base["input_dtype"]))[0]
    base.update(fields_)
    case = Case(**base)
    problems = legality_problems(case)
    if problems:
        raise ValueError(f"pinned case for {format} is illegal: " + "; ".join(problems))
    return case
