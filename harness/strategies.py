"""Hypothesis strategies for the correctness suite: hypothesis draws the CONFIGURATION, torch draws the data.

A drawn case is a `harness.case.Case`: a small frozen record that serialises to one line of JSON, so
a failure can be rerun exactly with ``python -m harness.repro '<json>'``. The tensors themselves are
made from ``case.seed`` with a ``torch.Generator`` by `harness.build.make_operands` (drawing large
tensors element by element through hypothesis would be slow and would not shrink usefully;
notes/harness-anchors.md §4.8).

What may be drawn for a format (its group sizes, zero-point forms, scale dtypes, output dtypes,
packing words) is not decided here but read from the support registry `harness.support.SUPPORT`, so
adding a format to the suite is one registry entry. Besides its shapes and dtypes a case draws the
paths a user can select: determinism on or off, a forced tile (`tile_pool`: tiles whose BLOCK_K passes
the drawn K tails, DEQUANT=1 GEMM tiles), a shrunk workspace bound (row-chunked launches), packed codes
handed to ``pack(packed=True)`` and a state_dict round trip.

Random draws cover combinations; `path_cases` is the complement that does not rely on luck: one pinned
case per (weight scale mode, kernel path, determinism, output dtype), the other settings rotated
through them, so every run (the quick profile's included) reaches every path a user can select.
"""

from __future__ import annotations

import math

from hypothesis import strategies as st

from gemlite.autotune import Config, configs, illegal_reason
from gemlite.formats import FORMATS, M_BUCKETS
from harness.case import Case, pinned
from harness.profiles import Profile
from harness.support import AUTO, BIAS_KINDS, DISTRIBUTIONS, FAMILIES, PACKED_INPUT_DTYPES, SUPPORT

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
# Tiles
# --------------------------------------------------------------------------------------------


def _c(**kw) -> Config:
    return Config(**kw)


#: Forced tiles a CPU case may draw, per family: no more programs than the interpreter's own tile
#: launches (BLOCK_N >= 64: under the interpreter every program costs Python time), with BLOCK_K above
#: the K tails of the drawn K = 32 * odd (the interpreter's own tiles have BLOCK_K = 32, so without
#: these EVEN_K is always true on CPU), more K splits than the defaults, and DEQUANT=1 GEMM tiles (the
#: dequantize-then-matmul path, never picked under the interpreter). `tile_pool` keeps the ones legal
#: for a case (``gemlite.autotune.illegal_reason``: e.g. BLOCK_K must divide a grouped layout's group).
INTERPRETER_TILES: dict[str, tuple[Config, ...]] = {
    "GEMV": (
        _c(BLOCK_N=64, BLOCK_K=64, SPLIT_K=2),
        _c(BLOCK_N=64, BLOCK_K=128, SPLIT_K=1),
        _c(BLOCK_N=64, BLOCK_K=32, SPLIT_K=3),
        _c(BLOCK_M=2, BLOCK_N=64, BLOCK_K=64, SPLIT_K=2),
    ),
    "GEMV_REVSPLITK": (_c(BLOCK_N=64, BLOCK_K=64), _c(BLOCK_N=128, BLOCK_K=16)),
    "GEMV_SPLITK": (
        _c(BLOCK_N=64, BLOCK_K=128, SPLIT_K=1),
        _c(BLOCK_N=64, BLOCK_K=32, SPLIT_K=3),
        _c(BLOCK_M=2, BLOCK_N=64, BLOCK_K=32, SPLIT_K=3),
    ),
    "GEMM_SPLITK": (
        _c(BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, SPLIT_K=2),
        _c(BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, SPLIT_K=4),
        _c(BLOCK_M=32, BLOCK_N=64, BLOCK_K=32, SPLIT_K=3),
    ),
    "GEMM": (
        _c(BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, GROUP_M=2),
        _c(BLOCK_M=32, BLOCK_N=64, BLOCK_K=128),
        _c(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=2, GROUP_M=2),
        _c(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, DEQUANT=1),
        _c(BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, DEQUANT=1),
        # the codes scratch's 8-bit GEMM (A8W4 / A8W2 HQQ dynamic: `WeightLayout.codes_scratch`)
        _c(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, DEQUANT=1),
    ),
}


def tile_pool(profile: Profile, family: str, case: Case) -> list[Config]:
    """The forced tiles `case` may draw for `family` under `profile` (legal for its layout): the
    interpreter tiles, plus (``profile.tiles == "autotune"``) every config of gemlite's "max" space."""
    if family == AUTO:
        return []
    pool = list(INTERPRETER_TILES[family])
    if profile.tiles == "autotune":
        pool += [c for c in configs(family, "max") if c not in pool]
    layout = case.layout()
    return [c for c in pool if illegal_reason(family, c, layout) is None]


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
    N = draw(n_values(profile))
    word = draw(st.sampled_from(sup.packing_bitwidths))
    case = Case(
        format=name,
        group_size=group_size,
        zeros=zeros,
        M=draw(m_values(profile)),
        K=K,
        N=N,
        input_dtype=input_dtype,
        output_dtype=draw(st.sampled_from(sup.output_dtypes_for(input_dtype))),
        scale_dtype=draw(st.sampled_from(sup.scale_dtypes)),
        bias=draw(st.sampled_from(sup.bias_kinds)),
        dist=draw(st.sampled_from(dists)),
        seed=draw(st.integers(0, 2**32 - 1)),
        family=draw(st.sampled_from(fams)),
        packing_bitwidth=word,
    )
    # The user-selectable paths. The first choice of each is gemlite's default, so the first examples
    # hypothesis tries are the plain ones; the next ones switch paths on.
    packed_words = PACKED_INPUT_DTYPES[word] if sup.packed else ()
    # A workspace bound of M / f fp32 rows of N: a split launch then runs rows per launch of about
    # M / (f * splits), several launches but not one per row (a tile family pads each launch to BLOCK_M
    # rows, which the interpreter computes in full).
    f = draw(st.sampled_from((None, 2, 8)))
    return case.replace(
        deterministic=draw(st.sampled_from((True, False))),
        tile=_tile_fields(draw(st.sampled_from([None, *tile_pool(profile, case.family, case)]))),
        workspace_bytes=None if f is None else 4 * N * max(1, case.M // f),
        packed_input=draw(st.sampled_from((None, *packed_words))),
        state_dict=draw(st.sampled_from((False, False, True))),  # doubles a case's run: a third of them
    )


def _tile_fields(config: Config | None) -> dict | None:
    return None if config is None else config.as_dict()


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
    workspace = case.workspace_bytes
    if workspace is not None:  # the same number of launches at the new M and N
        workspace = max(4 * N, workspace * N * M // (case.N * case.M))
    return case.replace(M=M, N=N, workspace_bytes=workspace)


# --------------------------------------------------------------------------------------------
# Every path, every run: the path matrix
# --------------------------------------------------------------------------------------------

#: One weight per scale mode the kernels have (`WeightLayout.post_scale`, ``PRE_SCALE``): no scales
#: (A16W16), pre-scaled (grouped HQQ; channel-wise HQQ with float zeros: ``(q - z) * s`` per weight),
#: post-scaled (channel-wise HQQ with integer or no zeros, INT8, FP8, ternary: exact codes, the
#: channel scale on the fp32 accumulator), microscaled (MXFP8, MXFP4, NVFP4: a scale per group of 32 /
#: 16 inputs inside the K tile, neither PRE_SCALE nor POST_SCALE). No layout is both pre- and
#: post-scaled: ``PRE_SCALE = has_scales and not POST_SCALE``. Names say the mode ("dense", "pre",
#: "post", "mx") for ``-k`` selections.
PATH_VARIANTS: dict[str, dict] = {
    "dense": dict(format="A16W16"),
    "hqq4-g64-pre": dict(format="A16W4_HQQ_INT", group_size=64, zeros="float"),
    "hqq8-g64-pre-zint-w8": dict(format="A16W8_HQQ_INT", group_size=64, zeros="int", packing_bitwidth=8),
    "hqq2-chan-pre-w8": dict(format="A16W2_HQQ_INT", group_size=None, zeros="float", packing_bitwidth=8),
    "hqq4-chan-post-zint": dict(format="A16W4_HQQ_INT", group_size=None, zeros="int"),
    "hqq1-chan-post-znone": dict(format="A16W1_HQQ_INT", group_size=None, zeros="none"),
    "int8-post": dict(format="A16W8_INT8"),
    "fp8-post": dict(format="A16W8_FP8"),
    "ternary-post": dict(format="A16W158_INT"),
    # Microscaled weights ("mx"): scale groups of 32 / 16 inside every K tile (K = 160: a K tail too).
    "mxfp8-mx": dict(format="A16W8_MXFP"),
    "mxfp4-mx-w8": dict(format="A16W4_MXFP", packing_bitwidth=8),
    "nvfp4-mx": dict(format="A16W4_NVFP"),
    # Dynamic activations (codes + per-token scales from gemlite/kernels/act_quant.py): no DEQUANT path,
    # except the codes scratch of packed codes with float zeros (A8W4 / A8W2 HQQ dynamic), the bf16
    # operands of microscaled layouts (MX / NVFP4 weights or activations) and cuBLAS's fp8 GEMM of
    # A8W8_FP8_dynamic (N = 48: cuBLAS takes fp8 operands whose K and N are multiples of 16).
    "int8-dyn-post": dict(format="A8W8_INT8_dynamic"),
    "fp8-dyn-post": dict(format="A8W8_FP8_dynamic", N=48),
    # ... per 1 x 128 block (K = 256: whole blocks), e4m3 codes against HQQ groups, and microscaled
    # activation codes (MXFP8: e8m0 per 32; NVFP4: e4m3 per 16 and the call's tensor scale).
    "int8-block-dyn": dict(format="A8W8_INT8_block_dynamic", K=256),
    "hqq4-g64-fp8-dyn": dict(format="A8W4_HQQ_INT_dynamic", group_size=64, zeros="float"),
    "mxfp8-mxact": dict(format="A8W8_MXFP_dynamic"),
    "nvfp4-nvact": dict(format="A4W4_NVFP_dynamic"),
}

#: The kernel paths of the matrix: each family forced to a tile that splits K (a K tail too where the
#: layout allows one: K = 160 = 2.5 tiles of 64 for channel-wise and unpacked weights; grouped ones run
#: K = 192 in whole groups of 64), and the DEQUANT=1 GEMM path (its tile smaller than the group of the
#: grouped weights, one K tail for the others). GEMV takes two rows per program (M = 3: a pair, then a
#: row with no partner); GEMV_SPLITK and GEMV_REVSPLITK, the same kernel, one.
PATH_TILES: dict[str, Config] = {
    "GEMV": _c(BLOCK_M=2, BLOCK_N=32, BLOCK_K=64, SPLIT_K=2),
    "GEMV_REVSPLITK": _c(BLOCK_N=32, BLOCK_K=64),
    "GEMV_SPLITK": _c(BLOCK_N=16, BLOCK_K=64, SPLIT_K=2),
    "GEMM_SPLITK": _c(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, SPLIT_K=2),
    "GEMM": _c(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, SPLIT_K=2, GROUP_M=2),
}
_DEQUANT_TILES = {
    True: _c(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, DEQUANT=1),
    False: _c(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, DEQUANT=1),
}
_SCRATCH_TILE = _c(BLOCK_M=64, BLOCK_N=32, BLOCK_K=32, DEQUANT=1)  # the codes scratch's GEMM tile
_SPLIT_FAMILIES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK")
_OUTS = ("float16", "bfloat16", "float32")
_OUT_IDS = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}
_BIAS_IDS = {"none": "none", "input": "in", "float32": "f32"}
_PATH_M, _PATH_N = 3, 40


def _scratch(fmt: str, fields: dict, K: int, N: int) -> str | None:
    """The DEQUANT=1 path of the matrix's layout of `fmt` with dynamic activations: "codes"
    (`WeightLayout.codes_scratch`), "operands" (`WeightLayout.operands_scratch`), "cublas"
    (`WeightLayout.fp8_scaled_mm`) or None (no DEQUANT)."""
    layout = pinned(fmt, **fields, M=_PATH_M, K=K, N=N).layout()
    if layout.fp8_scaled_mm:
        return "cublas"
    return "codes" if layout.codes_scratch else "operands" if layout.operands_scratch else None


def path_cases() -> list[tuple[str, Case]]:
    """``(id, case)`` for every path a user can select, on every weight scale mode (`PATH_VARIANTS`):

    * each split-K family (`PATH_TILES`) x determinism on / off x every output dtype: the fixed-order
      reduction, and with ``set_deterministic(False)`` fp32 atomics into a workspace (fp16/bf16 out) or
      into the output (fp32 out);
    * GEMM with a K tail, split in two, and GEMM with DEQUANT=1 (for dynamic activation formats, whose
      codes a 16-bit cuBLAS product would not multiply, only the codes scratch of A8W4 / A8W2 HQQ, the
      bf16 operands of the microscaled ones and cuBLAS's fp8 GEMM of A8W8_FP8_dynamic), x every output
      dtype.

    Rotated through those (so that across the matrix each value meets each path): the bias (none, the
    activation dtype, fp32), the activation dtype, the scale dtype (fp32 wherever the output is fp32:
    the paths that keep fp32 precision), a workspace bound that splits the 3 rows into launches of 2 + 1,
    packed codes handed to ``pack(packed=True)`` (packed formats) and a state_dict round trip. Shapes
    are interpreter-sized: M = 3, N = 40 (48 for A8W8_FP8_dynamic, see `PATH_VARIANTS`).

    The fp32-output cases draw positive x and W (``dist="positive"``): no cancellation, so
    ``sum_k |x_k W_k|`` is ``|y|`` and the bound is at its tightest, ``~2 (K + 3) u_fp32 |y|``. An fp32
    scale, zero or bias that a kernel or `pack` rounds to fp16/bf16 then costs up to ``u_fp16 |y|``
    (its own rounding error, relative), some 2**12 / K times the bound; with normal values the errors
    partly cancel against a bound charged on ``sum_k |x_k W_k|``, several times ``|y|`` (HQQ float
    zeros rounded to fp16, GEMV, K = 192: 1.35x the bound with normal values, 22x with positive ones).
    """
    out = []
    for v, (vname, variant) in enumerate(PATH_VARIANTS.items()):
        sup = SUPPORT[variant["format"]]
        grouped = variant.get("group_size") is not None
        K = variant.get("K", 192 if grouped else 160)
        N = variant.get("N", _PATH_N)
        rows = [(fam, det) for fam in _SPLIT_FAMILIES for det in (True, False)]
        rows += [("GEMM", True), ("DEQUANT", True)]
        dynamic = FORMATS[variant["format"]].act.is_dynamic
        for f, (path, det) in enumerate(rows):
            for o, out_dtype in enumerate(_OUTS):
                t = v + f + o + (0 if det else 1)
                family = "GEMM" if path == "DEQUANT" else path
                tile = PATH_TILES[family]
                fields = {k: w for k, w in variant.items() if k not in ("format", "K", "N")}
                scratch = _scratch(variant["format"], fields, K, N) if dynamic and path == "DEQUANT" else None
                if path == "DEQUANT" and dynamic and scratch is None:
                    continue  # dynamic activations without a scratch: no DEQUANT path
                if path == "DEQUANT":
                    tile = _SCRATCH_TILE if scratch == "codes" else _DEQUANT_TILES[grouped]
                split = family in _SPLIT_FAMILIES
                if out_dtype == "float32":
                    bias = "float32" if (v + f) % 2 == 0 else "none"
                    scale = "float32" if "float32" in sup.scale_dtypes else sup.scale_dtypes[0]
                else:
                    bias = BIAS_KINDS[(v + f + o) % 3]
                    scale = sup.scale_dtypes[t % len(sup.scale_dtypes)]
                word = variant.get("packing_bitwidth", 32)
                packed = PACKED_INPUT_DTYPES[word][t % 2] if sup.packed and t % 3 == 1 else None
                # Splits of K = 160 / 192 at BLOCK_K = 64: 2 for every split family (GEMV_REVSPLITK: one
                # per 2 * 64), so 2 rows per launch take 2 * 2 * N fp32 partials.
                workspace = 2 * 2 * N * 4 if split and t % 2 == 0 else None
                case = pinned(
                    variant["format"],
                    **fields,
                    M=_PATH_M,
                    K=K,
                    N=N,
                    family=family,
                    input_dtype=("float16", "bfloat16")[(v + f + o) % 2],
                    output_dtype=out_dtype,
                    scale_dtype=scale,
                    bias=bias,
                    dist="positive" if out_dtype == "float32" else "normal",
                    seed=1000 * v + 10 * f + o,
                    deterministic=det,
                    tile=tile.as_dict(),
                    workspace_bytes=workspace,
                    packed_input=packed,
                    state_dict=t % 3 == 0,
                )
                parts = [vname, path, "det_on" if det else "det_off", "o" + _OUT_IDS[out_dtype]]
                parts.append("b" + _BIAS_IDS[bias])
                parts += ["chunked"] if workspace else []
                parts += [f"packed_{packed}"] if packed else []
                parts += ["state_dict"] if case.state_dict else []
                out.append(("-".join(parts), case))
    return out
