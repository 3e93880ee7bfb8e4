"""The case strategies and the operand builder only produce legal, reproducible cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gemlite.formats import FORMATS, M_BUCKETS, WeightKind
from harness.build import golden, make_operands
from harness.case import Case, legality_problems, pinned
from harness.profiles import PROFILES, default_profile_name, get_profile
from harness.strategies import bucket_edges, cases
from harness.support import DISTRIBUTIONS, FAMILIES, NEAR_OVERFLOW, SUPPORT

# The weight-only formats of the first kernels release, all of which the suite must run.
KERNELS_I = (
    "A16W16",
    "A16W8_HQQ_INT",
    "A16W4_HQQ_INT",
    "A16W2_HQQ_INT",
    "A16W1_HQQ_INT",
    "A16W8_INT8",
    "A16W8_FP8",
    "A16W158_INT",
)


def test_registry_covers_the_release_formats():
    assert set(KERNELS_I) <= set(SUPPORT)
    for name, sup in SUPPORT.items():
        assert name in FORMATS
        if FORMATS[name].weight.kind is WeightKind.HQQ:
            assert set(sup.group_sizes) == {32, 64, 128, 256, None}
            assert {z.value for z in sup.zeros} == {"float", "int", "none"}
            assert set(sup.scale_dtypes) == {"float16", "bfloat16", "float32"}
            assert set(sup.packing_bitwidths) == {8, 32}


def test_bucket_edges():
    edges = bucket_edges(4096)
    for b in M_BUCKETS:
        assert {b - 1, b, b + 1} - {0, 4097} <= set(edges)
    assert max(bucket_edges(65)) == 65 and 66 not in bucket_edges(65)
    assert list(edges) == sorted(set(edges))


def test_profiles():
    assert default_profile_name(True) == "gpu" and default_profile_name(False) == "quick"
    with pytest.raises(ValueError, match="profile: unknown profile 'fast'"):
        get_profile("fast")
    quick, cpu, gpu, thorough = (PROFILES[n] for n in ("quick", "cpu", "gpu", "thorough"))
    assert quick.examples < cpu.examples < gpu.examples < thorough.examples
    assert cpu.max_K <= 512 and cpu.max_N <= 192 and cpu.max_M <= 65
    assert gpu.max_K >= 8192 and gpu.max_M == 4096
    s = cpu.hypothesis_settings()
    assert s.deadline is None and s.derandomize and s.max_examples == cpu.examples
    assert not thorough.hypothesis_settings().derandomize


def _check_legal(case: Case, profile) -> None:
    assert legality_problems(case) == []
    sup = SUPPORT[case.format]
    assert case.K % 32 == 0 and case.K <= profile.max_K
    assert case.group_size is None or case.K % case.group_size == 0
    assert 1 <= case.M <= profile.max_M and 1 <= case.N <= profile.max_N
    assert case.group_size in sup.group_sizes
    assert case.output_dtype in sup.output_dtypes_for(case.input_dtype)
    if sup.packed:
        assert case.K % (case.packing_bitwidth // sup.code_bits) == 0
    fmt = case.fmt  # the Format resolves (group size and zeros legal for the spec)
    assert fmt.name == case.format
    assert Case.from_json(case.to_json()) == case


@settings(max_examples=300, deadline=None, derandomize=True)
@given(case=cases(PROFILES["cpu"]))
def test_cpu_cases_are_legal(case):
    _check_legal(case, PROFILES["cpu"])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(case=cases(PROFILES["gpu"]))
def test_gpu_cases_are_legal(case):
    _check_legal(case, PROFILES["gpu"])


@settings(max_examples=50, deadline=None, derandomize=True)
@given(case=cases(PROFILES["quick"], formats=("A16W4_HQQ_INT",), families=("GEMV",)))
def test_restricted_draws_stay_restricted(case):
    assert case.format == "A16W4_HQQ_INT" and case.family == "GEMV"


def test_draws_reach_the_edges():
    # Over many draws, the strategy reaches what it promises: K = 32 * odd, every group size, M at
    # bucket edges, N not a multiple of any tile, every family and distribution.
    seen = {"K_odd": False, "M_edge": False, "N_odd": False, "groups": set(), "fams": set(), "dists": set()}

    @settings(max_examples=400, deadline=None, derandomize=True)
    @given(case=cases(PROFILES["cpu"]))
    def draw(case):
        seen["K_odd"] |= (case.K // 32) % 2 == 1 and case.K > 32
        seen["M_edge"] |= case.M in (15, 17, 23, 25, 47, 49, 63, 65)
        seen["N_odd"] |= case.N % 16 != 0 and case.N > 16
        seen["groups"].add(case.group_size)
        seen["fams"].add(case.family)
        seen["dists"].add(case.dist)

    draw()
    assert seen["K_odd"] and seen["M_edge"] and seen["N_odd"]
    assert seen["groups"] == {32, 64, 128, 256, None}
    assert seen["fams"] == set(FAMILIES)
    assert seen["dists"] == set(DISTRIBUTIONS)


def test_from_json_rejects_malformed_cases():
    good = pinned("A16W4_HQQ_INT", group_size=64, K=128)
    with pytest.raises(ValueError, match="not valid JSON"):
        Case.from_json("{nope")
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['colour'\]"):
        Case.from_json(good.to_json()[:-1] + ',"colour":1}')
    with pytest.raises(ValueError, match="missing field"):
        Case.from_json('{"format": "A16W16"}')
    with pytest.raises(ValueError, match="group_size 48 does not divide K=128|group_size 48 not drawn"):
        Case.from_json(good.to_json().replace('"group_size":64', '"group_size":48'))
    with pytest.raises(ValueError, match="K must be a multiple of 32"):
        Case.from_json(good.to_json().replace('"K":128', '"K":100'))
    with pytest.raises(ValueError, match="illegal"):
        pinned("A16W158_INT", scale_dtype="float16")


# --------------------------------------------------------------------------------------------
# Operands
# --------------------------------------------------------------------------------------------


def _small(**kw) -> Case:
    base = dict(format="A16W4_HQQ_INT", group_size=32, zeros="float", M=5, K=128, N=24)
    base.update(kw)
    return Case(**base)


def test_operands_are_deterministic_in_the_seed():
    a, b = make_operands(_small(seed=7)), make_operands(_small(seed=7))
    assert torch.equal(a.x, b.x) and torch.equal(a.qw.codes, b.qw.codes)
    assert torch.equal(a.qw.scales, b.qw.scales)
    c = make_operands(_small(seed=8))
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("name", KERNELS_I)
@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_operands_follow_the_format(name, dist):
    sup = SUPPORT[name]
    case = pinned(name, M=6, K=256, N=20, dist=dist, bias="input", seed=3)
    ops = make_operands(case)
    assert ops.x.shape == (6, 256) and ops.x.dtype == torch.float16
    assert ops.qw.fmt == case.fmt and ops.qw.codes.shape == (20, 256)
    assert ops.bias is not None and ops.bias.dtype == torch.float16
    gold = golden(case, ops)
    assert torch.isfinite(gold.y).all()
    if dist == "near_overflow":
        # The golden stays finite in fp16 while one side reaches 2**15 in magnitude.
        reach = float(gold.magnitude.max())
        assert reach <= NEAR_OVERFLOW * (1 + 2**-8)
        assert torch.isfinite(gold.y.to(torch.float16)).all()
        big = max(float(ops.x.abs().max()), float(ref.dequantize_weight(ops.qw).abs().max()))
        assert big >= NEAR_OVERFLOW / 4 or reach >= NEAR_OVERFLOW / 2
    if dist == "zeros":
        assert bool((ops.x == 0).all(dim=1).any()) or case.M < 4
    assert sup.output_dtypes_for("float16")


def test_unsigned_and_one_bit_int_zero_operands():
    none = make_operands(_small(zeros="none", seed=1))
    assert none.qw.zeros is None and float(ref.dequantize_weight(none.qw).min()) >= 0
    one = make_operands(_small(format="A16W1_HQQ_INT", zeros="int", seed=2))
    assert one.qw.zeros == 1 and float(ref.dequantize_weight(one.qw).max()) <= 0
    # Quantization kept the weight: SQNR of the dequantized vs the float weight is sensible.
    W = ref.dequantize_weight(none.qw)
    err = float(torch.linalg.vector_norm(W - none.W_float) / torch.linalg.vector_norm(none.W_float))
    assert err < 0.2 and not math.isnan(err)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(case=cases(PROFILES["quick"]), data=st.data())
def test_every_drawn_case_builds_operands_and_golden(case, data):
    ops = make_operands(case)
    gold = golden(case, ops)
    assert gold.y.shape == (case.M, case.N)
    assert torch.isfinite(gold.y.to(getattr(torch, case.output_dtype))).all()
