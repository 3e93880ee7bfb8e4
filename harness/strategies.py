"""Hypothesis strategies for the correctness suite: hypothesis draws the CONFIGURATION, torch draws the data.

A drawn case is a `harness.case.Case`: a small frozen record that serialises to one line of JSON, so
a failure can be rerun exactly with ``python -m harness.repro '<json>'``. The tensors themselves are
made from ``case.seed`` with a ``torch.Generator`` by `harness.build.make_operands` (drawing large
tensors element by element through hypothesis would be slow and would not shrink usefully;
notes/harness-anchors.md §4.8).

What may be drawn for a format (its group sizes, zero-point forms, scale dtypes, output dtypes,
packing words) is not decided here but read from the support registry `harness.support.SUPPORT`, so
adding a format to the suite is one registry entry.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from gemlite.formats import M_BUCKETS
from harness.case import Case
from harness.profiles import Profile
from harness.support import AUTO, DISTRIBUTIONS, FAMILIES, SUPPORT

# N values worth hitting on purpose: 1, tile sizes and their neighbours, odd sizes.
_SPECIAL_N = (1, 2, 15, 16, 17, 33, 40, 63, 64, 65, 100, 127, 128, 129, 192)

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
