"""Hypothesis strategies for the correctness suite: hypothesis draws the CONFIGURATION, torch draws the data.

A drawn case is a `Case`: a small frozen record (format, group size, zero-point form, M, K, N, dtypes,
bias, value distribution, seed, kernel family, packing word) that serialises to one line of JSON, so
a failure can be rerun exactly with ``python -m harness.repro '<json>'``. The tensors themselves are
made from ``case.seed`` with a ``torch.Generator`` by `harness.build.make_operands` (drawing large
tensors element by element through hypothesis would be slow and would not shrink usefully;
notes/harness-anchors.md §4.8).

What may be drawn for a format (its group sizes, zero-point forms, scale dtypes, output dtypes,
packing words) is not decided here but read from the support registry `harness.build.SUPPORT`, so
adding a format to the suite is one registry entry.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from hypothesis import strategies as st

from gemlite.formats import FORMATS, Format, WeightKind, Zeros
from harness.build import AUTO, DISTRIBUTIONS, FAMILIES, SUPPORT, FormatSupport
from harness.profiles import M_BUCKETS, Profile

# N values worth hitting on purpose: 1, tile sizes and their neighbours, odd sizes.
_SPECIAL_N = (1, 2, 15, 16, 17, 33, 40, 63, 64, 65, 100, 127, 128, 129, 192)


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


# --------------------------------------------------------------------------------------------
# Sizes
# --------------------------------------------------------------------------------------------


def bucket_edges(max_M: int) -> tuple[int, ...]:
    """Every autotune M bucket boundary and its neighbours (b - 1, b, b + 1), up to max_M."""
    edges = {m for b in M_BUCKETS for m in (b - 1, b, b + 1) if 1 <= m <= max_M}
    return tuple(sorted(edges))


def m_values(profile: Profile) -> st.SearchStrategy[int]:
    """M: 1 to 8 (decode), every bucket edge +-1, and (large profiles) anything up to max_M."""
    options = [st.integers(1, min(8, profile.max_M)), st.sampled_from(bucket_edges(profile.max_M))]
    if profile.max_M > 65:
        options.append(st.integers(1, profile.max_M))
    return st.one_of(*options)


def k_values(profile: Profile, group_size: int | None) -> st.SearchStrategy[int]:
    """K: a multiple of 32 and of the group size, up to max_K; includes 32 * odd (channel-wise / g32)."""
    step = 32 if group_size is None else math.lcm(32, group_size)
    top = profile.max_K // step
    if top < 1:
        raise ValueError(f"group_size: {group_size} exceeds the profile's max_K={profile.max_K}")
    options = [st.integers(1, min(top, 16)).map(lambda j: j * step)]
    if top > 16:
        options.append(st.integers(1, top).map(lambda j: j * step))
    large = sorted({k for k in profile.large_sizes if k % step == 0 and k <= profile.max_K})
    if large:
        options.append(st.sampled_from(large))
        # A "real" size plus an odd number of 32-wide slices: tails no power-of-two tile covers.
        if step == 32:
            odd = [k + 32 * j for k in large for j in (1, 3) if k + 32 * j <= profile.max_K]
            if odd:
                options.append(st.sampled_from(odd))
    return st.one_of(*options)


def n_values(profile: Profile) -> st.SearchStrategy[int]:
    """N: anything up to max_N, tile sizes and their neighbours, and real model sizes."""
    specials = [n for n in _SPECIAL_N if n <= profile.max_N]
    specials += [n for n in profile.large_sizes if n <= profile.max_N]
    specials += [n + 1 for n in profile.large_sizes if n + 1 <= profile.max_N]
    return st.one_of(st.integers(1, profile.max_N), st.sampled_from(sorted(set(specials))))


# --------------------------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------------------------


@st.composite
def cases(
    draw,
    profile: Profile,
    *,
    formats: tuple[str, ...] | None = None,
    families: tuple[str, ...] | None = None,
    dists: tuple[str, ...] = DISTRIBUTIONS,
) -> Case:
    """A strategy of legal `Case` s for `profile`.

    profile: sizes and limits (`harness.profiles`).
    formats: the formats to draw from (default: every format of the support registry).
    families: the kernel families to draw from (default: every family and "AUTO").
    dists: the value distributions to draw from.
    """
    names = tuple(formats or SUPPORT)
    for name in names:
        if name not in SUPPORT:
            raise ValueError(f"formats: {name!r} is not in the support registry ({', '.join(SUPPORT)})")
    fams = tuple(families or FAMILIES)
    for fam in fams:
        if fam not in FAMILIES:
            raise ValueError(f"families: {fam!r} is not a kernel family ({', '.join(FAMILIES)})")
    name = draw(st.sampled_from(names))
    sup = SUPPORT[name]
    group_size = draw(st.sampled_from([g for g in sup.group_sizes if g is None or g <= profile.max_K]))
    K = draw(k_values(profile, group_size))
    zeros = draw(st.sampled_from([z.value for z in sup.zeros]))
    input_dtype = draw(st.sampled_from(sup.input_dtypes))
    case = Case(
        format=name,
        group_size=group_size,
        zeros=zeros,
        M=draw(m_values(profile)),
        K=K,
        N=draw(n_values(profile)),
        input_dtype=input_dtype,
        output_dtype=draw(st.sampled_from(sup.output_dtypes_for(input_dtype))),
        scale_dtype=draw(st.sampled_from(sup.scale_dtypes)),
        bias=draw(st.sampled_from(sup.bias_kinds)),
        dist=draw(st.sampled_from(dists)),
        seed=draw(st.integers(0, 2**32 - 1)),
        family=draw(st.sampled_from(fams)),
        packing_bitwidth=draw(st.sampled_from(sup.packing_bitwidths)),
    )
    return case


#: M up to which AUTO may dispatch to a GEMV family: gemlite.dispatch sends only M = 1 there today,
#: GemLite-style dispatch up to 4; the budget rule covers both.
_AUTO_GEMV_MAX_M = 4


def fit_to_family(case: Case, profile: Profile) -> Case:
    """`case` with its family's interpreter budget applied (`Profile.work_budget`): M shrunk, then N,
    until M * N * K fits. K (tied to the group size) never changes. Deterministic, so the case that
    runs is the case a failure reports; unchanged when the profile has no budget.
    """
    budget = profile.budget(case.family)
    if case.family == AUTO and case.M <= _AUTO_GEMV_MAX_M:
        budgets = [b for _, b in profile.work_budget]
        budget = min(budgets) if budgets else None
    if budget is None or case.M * case.N * case.K <= budget:
        return case
    M = max(1, min(case.M, budget // (case.N * case.K)))
    N = max(1, min(case.N, budget // (M * case.K)))
    return case.replace(M=M, N=N)


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
