"""The case strategies and the operand builder only produce legal, reproducible cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gemlite.autotune import Config, illegal_reason
from gemlite.formats import FORMATS, M_BUCKETS, WeightKind
from harness.build import build_layer, golden, make_operands, precision
from harness.case import Case, legality_problems, pinned
from harness.numerics import DEQ_COMPUTE, DEQ_EXACT
from harness.profiles import PROFILES, default_profile_name, get_profile
from harness.strategies import (
    INTERPRETER_TILES,
    PATH_VARIANTS,
    bucket_edges,
    cases,
    fit_to_family,
    path_cases,
)
from harness.support import AUTO, DISTRIBUTIONS, FAMILIES, MATMUL_TYPES, NEAR_OVERFLOW, SUPPORT

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
    if case.tile is not None:
        assert case.family != AUTO
        assert illegal_reason(case.family, case.config, case.layout()) is None
    if case.packed_input is not None:
        assert sup.packed


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
    # bucket edges, N not a multiple of any tile, every family and distribution, and every path a user
    # can select: both determinism settings, forced tiles with a K tail and DEQUANT=1 tiles, shrunk
    # workspace bounds, every packed-word dtype, state_dict round trips.
    seen = {"K_odd": False, "M_edge": False, "N_odd": False, "groups": set(), "fams": set(), "dists": set()}
    seen.update(det=set(), tail=set(), dequant=False, workspace=False, packed=set(), state_dict=False)

    @settings(max_examples=600, deadline=None, derandomize=True)
    @given(case=cases(PROFILES["cpu"]))
    def draw(case):
        seen["K_odd"] |= (case.K // 32) % 2 == 1 and case.K > 32
        seen["M_edge"] |= case.M in (15, 17, 23, 25, 47, 49, 63, 65)
        seen["N_odd"] |= case.N % 16 != 0 and case.N > 16
        seen["groups"].add(case.group_size)
        seen["fams"].add(case.family)
        seen["dists"].add(case.dist)
        seen["det"].add(case.deterministic)
        config = case.config
        if config is not None and case.K % config.BLOCK_K:
            seen["tail"].add(case.family)
        seen["dequant"] |= config is not None and bool(config.DEQUANT)
        seen["workspace"] |= case.workspace_bytes is not None
        seen["packed"].add(case.packed_input)
        seen["state_dict"] |= case.state_dict

    draw()
    assert seen["K_odd"] and seen["M_edge"] and seen["N_odd"]
    assert seen["groups"] == {32, 64, 128, 256, None, 16}  # 16: NVFP4's fixed group
    assert seen["fams"] == set(FAMILIES)
    assert seen["dists"] == set(DISTRIBUTIONS)
    assert seen["det"] == {True, False}
    assert seen["tail"] == set(MATMUL_TYPES), "a forced tile with BLOCK_K past a K tail, for every family"
    assert seen["dequant"] and seen["workspace"] and seen["state_dict"]
    assert seen["packed"] == {None, "uint8", "int8", "int32", "uint32"}


def test_interpreter_tiles_are_valid_and_pass_k_tails():
    for family, tiles in INTERPRETER_TILES.items():
        assert tiles and all(isinstance(t, Config) for t in tiles)
        # BLOCK_K above 32: a tile that leaves a tail at K = 32 * odd (the interpreter's own tiles never do).
        assert any(t.BLOCK_K > 32 for t in tiles), family
    assert any(t.DEQUANT for t in INTERPRETER_TILES["GEMM"])


def test_new_case_fields_round_trip_and_old_json_loads():
    tile = {"BLOCK_M": 16, "BLOCK_N": 32, "BLOCK_K": 64, "GROUP_M": 2}
    case = pinned(
        "A16W4_HQQ_INT", group_size=None, zeros="int", K=96, family="GEMM", tile=tile,
        deterministic=False, workspace_bytes=640, packed_input="uint32", state_dict=True,
    )  # fmt: skip
    assert Case.from_json(case.to_json()) == case and hash(case) == hash(Case.from_json(case.to_json()))
    assert '"tile":{"BLOCK_K":64,"BLOCK_M":16,"BLOCK_N":32,"GROUP_M":2}' in case.to_json()
    assert case.config == Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, GROUP_M=2)
    # A case written before these fields existed loads with gemlite's defaults.
    old = Case.from_json('{"format":"A16W4_HQQ_INT","group_size":32,"zeros":"float","M":2,"K":96,"N":24}')
    assert old.deterministic and old.tile is None and old.workspace_bytes is None
    assert old.packed_input is None and not old.state_dict


def test_illegal_paths_are_named():
    base = pinned("A16W4_HQQ_INT", group_size=32, K=96, family="GEMM")
    assert any("straddle" in p for p in legality_problems(base.replace(tile={"BLOCK_M": 16, "BLOCK_K": 64})))
    assert any("AUTO" in p for p in legality_problems(base.replace(family=AUTO, tile={"BLOCK_M": 16})))
    assert any("unknown config" in p for p in legality_problems(base.replace(tile={"BLOCK_Q": 16})))
    assert any("packed_input" in p for p in legality_problems(base.replace(packed_input="int8")))
    assert any(
        "packed_input" in p for p in legality_problems(pinned("A16W8_INT8").replace(packed_input="int32"))
    )
    assert any("workspace_bytes" in p for p in legality_problems(base.replace(workspace_bytes=0)))
    assert any("deterministic" in p for p in legality_problems(base.replace(deterministic=1)))


def test_fit_to_family_keeps_the_number_of_launches():
    case = pinned(
        "A16W4_HQQ_INT", group_size=32, K=512, N=192, M=64, family="GEMV", workspace_bytes=32 * 4 * 192
    )
    fitted = fit_to_family(case, PROFILES["quick"])
    assert fitted.M * fitted.N * fitted.K <= PROFILES["quick"].budget("GEMV")
    # Half the rows fit before and after: the same number of launches.
    assert fitted.workspace_bytes == max(4 * fitted.N, fitted.M * 4 * fitted.N // 2)


# --------------------------------------------------------------------------------------------
# The path matrix
# --------------------------------------------------------------------------------------------

PATHS = path_cases()


def test_path_matrix_reaches_every_path_of_every_scale_mode():
    cases_ = [c for _, c in PATHS]
    ids = [i for i, _ in PATHS]
    assert len(set(ids)) == len(ids) and all(legality_problems(c, strict=False) == [] for c in cases_)
    for vname in PATH_VARIANTS:
        mine = [c for i, c in PATHS if i.startswith(vname + "-")]
        combos = {(c.family, c.deterministic, c.output_dtype, bool(c.config.DEQUANT)) for c in mine}
        for family in ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK"):
            for det in (True, False):
                for out in ("float16", "bfloat16", "float32"):
                    assert (family, det, out, False) in combos, (vname, family, det, out)
        # dynamic activations: no DEQUANT path, except the codes scratch (A8W4 / A8W2 HQQ dynamic), the
        # bf16 operands of microscaled layouts and cuBLAS's fp8 GEMM (A8W8_FP8_dynamic)
        layout = mine[0].layout()
        scratch = layout.codes_scratch or layout.operands_scratch or layout.fp8_scaled_mm
        dequant = not FORMATS[mine[0].format].act.is_dynamic or scratch
        for out in ("float16", "bfloat16", "float32"):
            assert ("GEMM", True, out, False) in combos and (("GEMM", True, out, True) in combos) == dequant
        assert any(c.state_dict for c in mine) and any(c.workspace_bytes for c in mine)
        assert {c.bias for c in mine} == {"none", "input", "float32"}
        if SUPPORT[mine[0].format].packed:
            assert any(c.packed_input for c in mine)


def test_path_matrix_runs_k_tails_and_splits():
    for _, c in PATHS:
        # Grouped HQQ and 128 x 128 blocks run whole groups; microscaled groups (32 / 16) run inside
        # tiles, K tails included.
        grouped = c.group_size is not None and c.fmt.weight.kind is WeightKind.HQQ
        grouped = grouped or c.fmt.act.group_size == 128
        assert (c.K % c.config.BLOCK_K != 0) == (not grouped and c.config.BLOCK_K == 64), c
    # Every mode's split families meet each other setting both ways across the matrix.
    for det in (True, False):
        for out in ("float16", "float32"):
            for post in (True, False):
                sel = [
                    c for i, c in PATHS
                    if c.deterministic == det and c.output_dtype == out and ("-post-" in i + "-") == post
                    and c.family != "GEMM"
                ]  # fmt: skip
                assert any(c.workspace_bytes for c in sel) and any(not c.workspace_bytes for c in sel)
                assert any(c.bias != "none" for c in sel)


@pytest.mark.parametrize(
    "name,family,tile,expected",
    [
        ("A16W16", "GEMM", None, DEQ_EXACT),
        ("A16W16", "GEMM", {"BLOCK_M": 16, "BLOCK_K": 64, "DEQUANT": 1}, DEQ_EXACT),
        ("A16W4_HQQ_INT", "GEMM", None, DEQ_COMPUTE),
        ("A16W4_HQQ_INT", "GEMV", None, torch.float32),
        ("A16W8_INT8", "GEMM_SPLITK", None, torch.float32),
        ("A16W8_INT8", "GEMM", {"BLOCK_M": 16, "BLOCK_K": 64, "DEQUANT": 1}, DEQ_COMPUTE),
        ("A16W158_INT", "GEMV_REVSPLITK", None, torch.float32),
    ],
)
def test_precision_follows_the_path(name, family, tile, expected):
    extra = {"group_size": 64, "zeros": "float"} if name == "A16W4_HQQ_INT" else {}
    case = pinned(name, family=family, tile=tile, **extra)
    assert precision(case).deq_dtype == expected
    # AUTO resolves through gemlite's dispatch: M = 1 runs a GEMV family, M >= 128 GEMM.
    auto = pinned("A16W4_HQQ_INT", group_size=64, zeros="float", family=AUTO, M=1)
    assert precision(auto).deq_dtype == torch.float32
    assert precision(auto.replace(M=128)).deq_dtype == DEQ_COMPUTE


def test_packed_input_builds_the_same_layer():
    case = pinned("A16W2_HQQ_INT", group_size=32, zeros="float", K=128, N=24, packing_bitwidth=8, seed=4)
    ops = make_operands(case)
    plain = build_layer(case, ops)
    for words in ("uint8", "int8"):
        packed = build_layer(case.replace(packed_input=words), ops)
        assert torch.equal(packed.W_q, plain.W_q) and packed.layout == plain.layout


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
