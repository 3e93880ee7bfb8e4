"""gemlite vs reference: every supported format on every kernel family, under the error bound.

One test per format of `harness.support.SUPPORT` (``test_A16W4_HQQ_INT`` ...), parametrized by kernel
family: the five families forced through ``forward_manual`` and ``AUTO`` (the layer's own dispatch on
M). Hypothesis draws the case for that family (group size, zero-point form, K, N, M, dtypes, bias, value
distribution, seed, and the user-selectable paths: determinism, a forced tile legal for the family, a
shrunk workspace bound, packed input, a state_dict round trip; `harness.strategies`), so that each run
covers new shapes; how many and how large comes from the profile (`harness.profiles`: ``quick`` for the
fast CI subset, ``cpu``, ``gpu``, ``thorough``). Under the Triton interpreter the GEMV families are slow
per output row, so a case is fitted to its family's budget (`harness.strategies.fit_to_family`: fewer
rows, then fewer columns). ``test_paths.py`` holds the matrix that reaches every path on every run.

Each test also replays pinned regressions (``@example``) on every family: the shapes public GemLite
gets wrong (groups smaller than its BLOCK_K, channel-wise groups of a non-power-of-two K, K = 32 * odd),
M at autotune bucket edges, and a long reduction led by a massive activation, where an fp16
accumulator cannot hide.

A failure shows the worst elements against the bound and ``python -m harness.repro '<case>'``.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given

from gemlite.formats import FORMATS, WeightKind
from harness import profiles
from harness.build import build_layer, make_operands, run_layer
from harness.case import Case, pinned
from harness.numerics import assert_exact
from harness.strategies import bucket_edges, cases, fit_to_family
from harness.support import FAMILIES, MATMUL_TYPES, SUPPORT

PROFILE = profiles.current()
SETTINGS = PROFILE.hypothesis_settings()


def _pins(name: str) -> list[Case]:
    """The pinned regressions of one format (run on every family, whatever the profile)."""
    if FORMATS[name].weight.kind is WeightKind.HQQ:
        return [
            # Groups of 32 over K = 32 * 3: below any BLOCK_K GemLite picks, ragged against 64/128 tiles.
            pinned(name, group_size=32, K=96, N=40, M=3, zeros="float", bias="input", seed=11),
            # Groups of 64 (GemLite's integer GEMM uses BLOCK_K >= 64 and one scale row per tile), int zero,
            # bf16 scales, M = 16 + 1 (a bucket edge), N not a multiple of a tile.
            pinned(
                name,
                group_size=64,
                K=192,
                N=33,
                M=17,
                zeros="int",
                scale_dtype="bfloat16",
                input_dtype="bfloat16",
                output_dtype="float32",
                seed=12,
            ),
            # Channel-wise over K = 96: the group is K itself, not a power of two; 8-bit packing words.
            pinned(
                name,
                group_size=None,
                K=96,
                N=17,
                M=2,
                zeros="none",
                scale_dtype="float32",
                packing_bitwidth=8,
                bias="float32",
                seed=13,
            ),
            # A long same-sign reduction led by a massive activation: an fp16 accumulator loses the tail.
            pinned(name, group_size=128, K=2048, N=16, M=2, zeros="float", dist="massive", seed=14),
        ]
    sup = SUPPORT[name]
    if sup.input_dtypes[0] not in ("float16", "bfloat16"):
        # Codes in (A8W8_INT8, A8W8_FP8): x is codes, the bias of the output dtype.
        first, *others = sup.output_dtypes
        return [
            pinned(name, K=96, N=40, M=3, bias="output", seed=21),
            pinned(name, K=160, N=33, M=17, output_dtype=others[0], bias="output", seed=22),
            pinned(name, K=128, N=24, M=2, output_dtype="float16", bias="output", seed=23),
            # Same-sign sums past 2**24 (int8: up to 2048 * 2**14): only an exact accumulator gets them.
            pinned(name, K=2048, N=16, M=2, output_dtype=first, dist="positive", seed=24),
        ]
    out_fp32 = "float32" in SUPPORT[name].output_dtypes_for("bfloat16")
    blocks = FORMATS[name].weight.block_n > 1  # 128 x 128 blocks: K a multiple of 128, N ragged
    return [
        pinned(name, K=128 if blocks else 96, N=40, M=3, bias="input", seed=21),
        pinned(
            name,
            K=256 if blocks else 160,
            N=33,
            M=17,
            input_dtype="bfloat16",
            output_dtype="float32" if out_fp32 else "bfloat16",
            bias="float32",
            seed=22,
        ),
        pinned(name, K=2048, N=16, M=2, dist="massive", seed=24),
    ]


def _drawn(name: str, family: str):
    """The hypothesis test of one format on one family: cases drawn for that family (a forced tile must
    be legal for it), plus the format's pins on it."""

    @SETTINGS
    @given(case=cases(PROFILE, formats=(name,), families=(family,)))
    def run(judge, case):
        judge(fit_to_family(case, PROFILE))

    for pin in reversed(_pins(name)):
        run = example(case=pin.replace(family=family))(run)
    return run


def _format_test(name: str):
    """The test of one format: drawn cases plus its pins, parametrized by kernel family."""
    by_family = {family: _drawn(name, family) for family in FAMILIES}

    @pytest.mark.parametrize("family", FAMILIES)
    def test(family, judge):
        by_family[family](judge)

    test.__name__ = test.__qualname__ = f"test_{name}"
    test.__doc__ = f"{name}: gemlite vs reference on every kernel family (drawn cases + pinned regressions)."
    return test


for _name in SUPPORT:
    globals()[f"test_{_name}"] = _format_test(_name)
del _name


# --------------------------------------------------------------------------------------------
# Sweeps (slow: the correctness session runs them, the fast CI subset does not)
# --------------------------------------------------------------------------------------------


_GEMV_FAMILIES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK")


def _bucket_edge_params():
    """(M, family) for every bucket edge: up to the profile's max_M for the GEMV families (one program
    per row: slow under the interpreter), and at least up to 129 for the tile families and AUTO, so the
    dispatch boundary into GEMM (M = 128 today) is crossed on CPU too."""
    for family in FAMILIES:
        top = PROFILE.max_M if family in _GEMV_FAMILIES else max(PROFILE.max_M, 129)
        for M in bucket_edges(top):
            yield pytest.param(M, family, id=f"{M}-{family}")


@pytest.mark.slow
@pytest.mark.parametrize("M,family", list(_bucket_edge_params()))
def test_every_bucket_edge(M, family, judge):
    """Every autotune M bucket edge (b - 1, b, b + 1) on every family, 4-bit g64 (one case each)."""
    judge(pinned("A16W4_HQQ_INT", group_size=64, K=192, N=72, M=M, family=family, bias="input", seed=M))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["GEMV", "GEMM"])
@pytest.mark.parametrize("input_dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("output_dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("scale_dtype", ["float16", "bfloat16", "float32"])
def test_every_dtype_combination(family, input_dtype, output_dtype, scale_dtype, judge):
    """Every activation x output x scale dtype for 2-bit g32 with float zeros."""
    judge(
        pinned(
            "A16W2_HQQ_INT",
            group_size=32,
            K=128,
            N=48,
            M=5,
            family=family,
            input_dtype=input_dtype,
            output_dtype=output_dtype,
            scale_dtype=scale_dtype,
            bias="input",
            seed=5,
        )
    )


# --------------------------------------------------------------------------------------------
# Bitwise reproducibility (gemlite's default mode: no atomics, fixed-order split-K reduction)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_bitwise_reproducible(family, device):
    """Two calls with the same input give bitwise the same output (meaningful on a GPU, where split-K
    partials reduced with atomics would not)."""
    case = pinned("A16W4_HQQ_INT", group_size=64, K=256, N=48, M=5, family=family, bias="input", seed=3)
    ops = make_operands(case, device)
    layer = build_layer(case, ops)
    first = run_layer(layer, ops.x, family)
    assert_exact(run_layer(layer, ops.x, family), first, what=f"second {family} output")


# --------------------------------------------------------------------------------------------
# Group sizes outside the drawn set: computed right or refused, never silently wrong
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", MATMUL_TYPES)
@pytest.mark.parametrize("group_size", [16, 48, 96, 160])
def test_unusual_group_sizes_are_exact_or_refused(family, group_size, judge, device):
    """Group sizes public GemLite miscomputes (16 < BLOCK_K; 48, 96, 160 not powers of two): gemlite
    must either compute them within the bound or refuse them at pack time with a ValueError naming
    group_size."""
    case = Case(
        format="A16W4_HQQ_INT",
        group_size=group_size,
        zeros="float",
        M=3,
        K=480,
        N=24,
        family=family,
        bias="input",
        seed=group_size,
    )
    try:
        build_layer(case, make_operands(case, device))
    except ValueError as e:
        assert "group_size" in str(e), f"group_size={group_size} refused without naming the argument: {e}"
        return
    judge(case)
