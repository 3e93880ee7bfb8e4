"""`Case`: one drawn kernel-vs-reference case, a small frozen record that serialises to one line of JSON.

A case names its format, group size, zero-point form, M, K, N, dtypes, bias, value distribution, seed,
kernel family and packing word; `harness.build` makes its tensors from the seed, so a failure is rerun
exactly with ``python -m harness.repro '<json>'``. What is legal for a format comes from the support
registry (`harness.support.SUPPORT`); `legality_problems` says what a case breaks, `pinned` writes a
legal case by hand.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from gemlite.formats import FORMATS, Format, WeightKind, Zeros
from harness.support import AUTO, DISTRIBUTIONS, FAMILIES, SUPPORT, FormatSupport


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

    def to_json(self) -> str:
        """One line of JSON holding every field (the reproducer's argument)."""
        return json.dumps(asdict(self), separators=(",", ":"))

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
    return out


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
