"""The kernel contract (`gemlite.matmul.matmul`) against the float64 golden of `reference`, same codes.

Every family x every weight kind x fp16/bf16 activations x fp16/bf16/fp32 output runs on small shapes
(the Triton interpreter on CPU, or the GPU), with bias, tails in M, N and K, K splits and both packing
words; plus determinism, the atomic paths, forced tiles that leave K tails, the row-chunked workspace,
layout metadata, and every input the contract (and `GemLiteLinear.pack` in front of it) must refuse.

Operands come from the one operand builder: a case is written with `harness.case.pinned`, its tensors
drawn and quantized by `harness.build.make_operands`, its layer packed by `harness.build.build_layer`
(the public API); the contract is then called with the layer's prepared tensors and judged by
`harness.numerics.compare_output` against `harness.build.golden`, under the derived element-wise bound
of `harness.numerics` (its docstring says why c = 2 holds on the GPU and under the interpreter).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from gemlite import GemLiteLinear, autotune
from gemlite.formats import FORMATS, DType, Format, WeightKind, WeightSpec
from gemlite.kernels import interpreter_active
from gemlite.kernels import plan as kernel_plan
from gemlite.kernels.common import WRITE_ATOMIC, WRITE_ATOMIC_FINAL, WRITE_PARTIAL
from gemlite.layout import WeightLayout
from gemlite.matmul import matmul
from gemlite.packing import pack_codes
from gemlite.settings import is_deterministic, set_deterministic
from harness.build import build_layer, golden, make_operands, precision
from harness.case import Case, legality_problems, pinned
from harness.numerics import assert_exact, compare_output
from harness.repro import reproducer
from harness.support import AUTO, DTYPES, MATMUL_TYPES, SUPPORT

pytestmark = pytest.mark.interpreter

ACT_DTYPES = ("float16", "bfloat16")
OUT_DTYPES = ("float16", "bfloat16", "float32")
BIASES = ("none", "float32", "input")
DT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}


@pytest.fixture(autouse=True)
def _no_tuning():
    """Kernel tests judge numerics, not speed: on a GPU use the default tiles instead of tuning."""
    mode = autotune.get_autotune()
    autotune.set_autotune(False)
    yield
    autotune.set_autotune(mode)


# ------------------------------------------------------------------------------------------------
# Weight variants (the fields of a `pinned` case that pick the weight), and the contract run
# ------------------------------------------------------------------------------------------------

# scale_dtype "act": the scales (and float zeros) in the activation dtype, as HQQ usually hands them.
# One variant per weight kind (the main matrix) ...
KIND_VARIANTS = [
    dict(format="A16W16"),
    dict(format="A16W8_HQQ_INT", group_size=64, zeros="float", scale_dtype="act"),
    dict(format="A16W4_HQQ_INT", group_size=32, zeros="float", packing_bitwidth=8, scale_dtype="act"),
    dict(format="A16W2_HQQ_INT", group_size=128, zeros="int", scale_dtype="float32"),
    dict(format="A16W1_HQQ_INT", group_size=32, zeros="float", scale_dtype="act"),
    dict(format="A16W8_INT8"),
    # Outliers spread the e4m3 codes over their whole range, subnormals included (see
    # test_fp8_subnormal_codes).
    dict(format="A16W8_FP8", dist="outliers"),
    dict(format="A16W158_INT"),
]
# ... and the remaining variants: group sizes, zero modes, words, scale dtypes, channel-wise paths.
FORMAT_VARIANTS = [
    dict(format="A16W4_HQQ_INT", group_size=128, zeros="float", scale_dtype="act"),
    dict(format="A16W4_HQQ_INT", group_size=64, zeros="int", packing_bitwidth=8, scale_dtype="bfloat16"),
    dict(format="A16W4_HQQ_INT", group_size=256, zeros="none", scale_dtype="float32"),
    dict(format="A16W2_HQQ_INT", group_size=32, zeros="float", packing_bitwidth=8, scale_dtype="act"),
    dict(format="A16W1_HQQ_INT", group_size=128, zeros="int", scale_dtype="act"),
    dict(format="A16W8_HQQ_INT", group_size=32, zeros="none", packing_bitwidth=8, scale_dtype="float16"),
    # channel-wise, dequantized in the loop
    dict(format="A16W4_HQQ_INT", group_size=None, zeros="float", scale_dtype="act"),
    # channel-wise, exact codes, post-scaled
    dict(format="A16W4_HQQ_INT", group_size=None, zeros="int", scale_dtype="act"),
    # one code per byte
    dict(format="A16W8_HQQ_INT", group_size=None, zeros="none", packing_bitwidth=8, scale_dtype="act"),
    dict(format="A16W2_HQQ_INT", group_size=None, zeros="float", packing_bitwidth=8, scale_dtype="bfloat16"),
]


def variant_id(variant: dict) -> str:
    """A test id for a weight variant (``hqq4-g32-zfloat-w8-sact``, ``A16W8_INT8``)."""
    name = variant["format"]
    if FORMATS[name].weight.kind is not WeightKind.HQQ:
        return name
    g = "chan" if variant["group_size"] is None else f"g{variant['group_size']}"
    word = variant.get("packing_bitwidth", 32)
    return f"hqq{FORMATS[name].weight.bits}-{g}-z{variant['zeros']}-w{word}-s{variant['scale_dtype']}"


def kernel_case(
    variant: dict, *, family: str, act: str, out: str, M: int, N: int, K: int, bias: str, seed: int
) -> Case:
    """The legal `pinned` case of one weight variant with the given family, dtypes, shape and bias."""
    fields = dict(variant)
    if fields.get("scale_dtype") == "act":
        fields["scale_dtype"] = act
    return pinned(
        family=family, input_dtype=act, output_dtype=out, M=M, N=N, K=K, bias=bias, seed=seed, **fields
    )


def run_contract(case: Case, device: str):
    """Pack `case` through the harness, call the kernel contract with the layer's prepared tensors and
    judge the output against the golden; returns ``(y, ops, layer)``."""
    ops = make_operands(case, device)
    layer = build_layer(case, ops)
    out = DTYPES[case.output_dtype]
    family = None if case.family == AUTO else case.family
    y = matmul(ops.x, layer.W_q, layer.scales, layer.zeros, layer.bias, layer.layout, out, family)
    assert y.shape == (case.M, case.N) and y.dtype == out and y.device == ops.x.device
    context = (
        f"{case.label} {case.family} act={case.input_dtype} out={case.output_dtype} "
        f"M={case.M} N={case.N} K={case.K}"
    )
    result = compare_output(y, golden(case, ops), precision(case), repro=reproducer(case), context=context)
    assert result.ok, result.message()
    return y, ops, layer


def call_again(ops, layer, out_dtype: str, family: str) -> torch.Tensor:
    """The contract on the same prepared tensors and x once more."""
    return matmul(
        ops.x, layer.W_q, layer.scales, layer.zeros, layer.bias, layer.layout, DTYPES[out_dtype], family
    )


def launch_plan(ops, layer, out_dtype: str, family: str):
    """The launches `gemlite.kernels.plan` describes for this call (inside a `forced_config` block)."""
    config = autotune.get_config(family, ops.x.shape[0], layer.layout, DTYPES[out_dtype], layer.scales.dtype)
    _, launches = kernel_plan.plan(
        family,
        ops.x,
        layer.W_q,
        layer.scales,
        layer.zeros,
        layer.bias,
        layer.layout,
        DTYPES[out_dtype],
        config,
    )
    return launches


def family_launches(launches) -> list:
    """The launches of a family kernel (one per row chunk), not of a separate split-K reduction pass
    where the plan has one: only a family kernel is compiled with a WRITE_MODE."""
    return [step for step in launches if "WRITE_MODE" in step.constexprs]


# ------------------------------------------------------------------------------------------------
# The main matrix: every family x every weight kind x activation dtype x output dtype
# ------------------------------------------------------------------------------------------------

SHAPES_M, SHAPES_N, SHAPES_K = (1, 3, 17), (40, 64), (96, 128, 256)


def _fits(variant: dict, K: int) -> bool:
    group = variant.get("group_size")
    return group is None or K % group == 0


def _shape_for(i: int, variant: dict) -> tuple[int, int, int]:
    """Rotate through M, N and K (those the variant's group size allows) across the matrix."""
    Ks = [k for k in SHAPES_K if _fits(variant, k)]
    return SHAPES_M[i % 3], SHAPES_N[(i // 3) % 2], Ks[(i // 2) % len(Ks)]


MAIN = [
    (family, v, act, out)
    for family in MATMUL_TYPES
    for v in KIND_VARIANTS
    for act in ACT_DTYPES
    for out in OUT_DTYPES
]


@pytest.mark.parametrize(
    "family,variant,act,out", MAIN, ids=[f"{f}-{variant_id(v)}-a{DT[a]}-o{DT[o]}" for f, v, a, o in MAIN]
)
def test_every_family_kind_and_dtype(family, variant, act, out, device):
    i = MAIN.index((family, variant, act, out))
    M, N, K = _shape_for(i, variant)
    case = kernel_case(variant, family=family, act=act, out=out, M=M, N=N, K=K, bias=BIASES[i % 3], seed=i)
    run_contract(case, device)


VARIANTS = [(family, v) for family in MATMUL_TYPES for v in FORMAT_VARIANTS]


@pytest.mark.parametrize("family,variant", VARIANTS, ids=[f"{f}-{variant_id(v)}" for f, v in VARIANTS])
def test_format_variants(family, variant, device):
    i = VARIANTS.index((family, variant))
    M, N, K = _shape_for(i, variant)
    act, out = ACT_DTYPES[i % 2], OUT_DTYPES[i % 3]
    case = kernel_case(variant, family=family, act=act, out=out, M=M, N=N, K=K, bias="input", seed=1000 + i)
    run_contract(case, device)


@pytest.mark.slow
@pytest.mark.parametrize("family", MATMUL_TYPES)
@pytest.mark.parametrize("variant", KIND_VARIANTS + FORMAT_VARIANTS, ids=variant_id)
def test_every_shape(family, variant, device):
    """All M x N x K combinations (slow: the main matrix already rotates through them)."""
    for j, (M, N, K) in enumerate((m, n, k) for m in SHAPES_M for n in SHAPES_N for k in SHAPES_K):
        if _fits(variant, K):
            act, out = ACT_DTYPES[j % 2], OUT_DTYPES[j % 3]
            run_contract(
                kernel_case(variant, family=family, act=act, out=out, M=M, N=N, K=K, bias="float32", seed=j),
                device,
            )


@pytest.mark.parametrize("family", MATMUL_TYPES)
def test_fp8_subnormal_codes(family, device):
    """e4m3 codes below 2**-6 (subnormal in e4m3, normal in fp16/bf16) dequantize right."""
    case = pinned("A16W8_FP8", family=family, M=3, N=40, K=256, dist="outliers", bias="input", seed=4)
    _, ops, _ = run_contract(case, device)
    magnitude = ops.qw.codes.float().abs()
    assert int(((magnitude > 0) & (magnitude < 2.0**-6)).sum()) >= 4, "the case holds too few subnormal codes"


def test_dispatch_by_m(device):
    """matmul_type=None picks a family by M (GEMV, GEMM_SPLITK and GEMM sizes) and stays correct."""
    for M in (1, 5, 128):
        run_contract(
            pinned("A16W4_HQQ_INT", group_size=64, zeros="float", M=M, N=40, K=128, bias="input", seed=M),
            device,
        )


# ------------------------------------------------------------------------------------------------
# K tails, K splits, atomics and determinism (tiles forced)
# ------------------------------------------------------------------------------------------------

# Tiles whose K step (GEMV_REVSPLITK: the 2 x BLOCK_K one program covers) does not divide K = 96, so
# the last step runs past K (a K tail), and that split K over programs.
TAIL_CONFIGS = {
    "GEMV": autotune.Config(BLOCK_N=32, BLOCK_K=64, SPLIT_K=2),
    "GEMV_REVSPLITK": autotune.Config(BLOCK_N=32, BLOCK_K=32),
    "GEMV_SPLITK": autotune.Config(BLOCK_N=8, BLOCK_K=64, SPLIT_K=2),
    "GEMM_SPLITK": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, SPLIT_K=2),
    "GEMM": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, GROUP_M=2),
}
# Channel-wise or unpacked: any BLOCK_K is legal, K = 96 leaves a tail of 32.
TAIL_VARIANTS = [
    dict(format="A16W4_HQQ_INT", group_size=None, zeros="float", scale_dtype="act"),
    dict(format="A16W1_HQQ_INT", group_size=None, zeros="int", scale_dtype="act"),
    dict(format="A16W8_INT8"),
    dict(format="A16W16"),
]


@pytest.mark.parametrize("family", MATMUL_TYPES)
@pytest.mark.parametrize("variant", TAIL_VARIANTS, ids=variant_id)
def test_k_tail_with_forced_tile(family, variant, device):
    case = kernel_case(
        variant, family=family, act="bfloat16", out="float32", M=3, N=40, K=96, bias="input", seed=7
    )
    with autotune.forced_config(family, TAIL_CONFIGS[family]):
        run_contract(case, device)


# Tiles legal for groups of 32 that split K over several programs (GEMM: one program per tile).
# With K = 96: GEMV 3 splits of one 32-wide step, GEMV_REVSPLITK 3 slices of 2 x 16, GEMV_SPLITK
# 3 splits, GEMM_SPLITK asks for 4 splits of 3 K tiles and gets 3.
SPLIT_CONFIGS = {
    "GEMV": autotune.Config(BLOCK_N=64, BLOCK_K=32, SPLIT_K=3),
    "GEMV_REVSPLITK": autotune.Config(BLOCK_N=32, BLOCK_K=16),
    "GEMV_SPLITK": autotune.Config(BLOCK_N=16, BLOCK_K=32, SPLIT_K=4),
    "GEMM_SPLITK": autotune.Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=4),
    "GEMM": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, GROUP_M=2),
}
SPLITS_AT_K96 = {"GEMV": 3, "GEMV_REVSPLITK": 3, "GEMV_SPLITK": 3, "GEMM_SPLITK": 3, "GEMM": 1}
HQQ4_G32 = dict(format="A16W4_HQQ_INT", group_size=32, zeros="float", scale_dtype="act")


@pytest.mark.parametrize("family", MATMUL_TYPES)
def test_many_k_splits(family, device):
    case = kernel_case(
        HQQ4_G32, family=family, act="float16", out="float16", M=2, N=64, K=96, bias="input", seed=11
    )
    with autotune.forced_config(family, SPLIT_CONFIGS[family]):
        _, ops, layer = run_contract(case, device)
        launches = family_launches(launch_plan(ops, layer, case.output_dtype, family))
    assert launches[0].grid[1] == SPLITS_AT_K96[family], "grid axis 1: one program per K split"


@pytest.mark.parametrize("family", MATMUL_TYPES)
def test_deterministic_bitwise(family, device):
    """Two calls give bitwise the same output (split paths included: tiles forced to split K, reduced
    in a fixed order)."""
    assert is_deterministic()
    case = kernel_case(
        HQQ4_G32, family=family, act="bfloat16", out="bfloat16", M=3, N=64, K=128, bias="none", seed=3
    )
    with autotune.forced_config(family, SPLIT_CONFIGS[family]):
        y1, ops, layer = run_contract(case, device)
        y2 = call_again(ops, layer, case.output_dtype, family)
        launches = family_launches(launch_plan(ops, layer, case.output_dtype, family))
    assert_exact(y2, y1, what=f"{family}: second output")
    if family != "GEMM":
        assert launches[0].constexprs["WRITE_MODE"] == WRITE_PARTIAL.value


# Row pairs: every kind of weight and of activation the GEMV kernel reads (per-row and per-block
# activation scales, microscaled activations, NVFP4's tensor scales, the int32 sums of int8 codes).
PAIR_CASES = [
    (v, "float16", "float16", "input")
    for v in KIND_VARIANTS
    + [
        dict(format="A8W8_INT8_dynamic"),
        dict(format="A8W8_FP8_block_dynamic"),
        dict(format="A8W4_HQQ_INT_dynamic", group_size=128, zeros="float", scale_dtype="act"),
        dict(format="A16W4_MXFP"),
        dict(format="A4W4_NVFP_dynamic"),
    ]
] + [(dict(format="A8W8_INT8"), "int8", "float32", "none")]  # int32 sums, converted at the end


@pytest.mark.parametrize("variant,act,out,bias", PAIR_CASES, ids=[variant_id(c[0]) for c in PAIR_CASES])
def test_gemv_row_pairs_equal_single_rows(variant, act, out, bias, device):
    """A GEMV program of two rows (BLOCK_M = 2: both against each weight tile it loads) gives bitwise
    the one-row programs' output, the last of M = 3 rows without a partner included."""
    case = kernel_case(variant, family="GEMV", act=act, out=out, M=3, N=64, K=256, bias=bias, seed=21)
    one = autotune.Config(BLOCK_N=32, BLOCK_K=32, SPLIT_K=2)
    with autotune.forced_config("GEMV", one):
        y1, ops, layer = run_contract(case, device)
    with autotune.forced_config("GEMV", autotune.Config(BLOCK_M=2, BLOCK_N=32, BLOCK_K=32, SPLIT_K=2)):
        y2 = call_again(ops, layer, case.output_dtype, "GEMV")
        launches = family_launches(launch_plan(ops, layer, case.output_dtype, "GEMV"))
    assert launches[0].grid == (2 * 2, 2), "grid: 2 row blocks x 2 column blocks, 2 K splits"
    assert_exact(y2, y1, what=f"{variant_id(variant)}: two rows per program")


# e4m3 x e4m3 with channel scales (or none): a 128-row GEMM tile walks two K tiles an iteration where
# every split has an even number of them (TILE_PAIRS), each tile's product promoted one iteration late;
# K = 224 (7 tiles of 32) or 3 splits of 96 (3 tiles each) take the one-tile loop.
FP8_PAIR_CASES = [
    ("A8W8_FP8_dynamic", "float16", "float16", "input", 256, 1, True),
    ("A8W8_FP8_dynamic", "bfloat16", "float32", "none", 384, 3, True),
    ("A8W8_FP8_dynamic", "float16", "float16", "input", 224, 1, False),
    ("A8W8_FP8_dynamic", "float16", "bfloat16", "input", 288, 3, False),
    ("A8W8_FP8", "float8_e4m3fn", "float32", "output", 256, 2, True),  # codes without scales
]


@pytest.mark.parametrize(
    "fmt,act,out,bias,K,splits,paired",
    FP8_PAIR_CASES,
    ids=[f"{c[0]}-K{c[4]}-sk{c[5]}" for c in FP8_PAIR_CASES],
)
def test_fp8_tile_pairs(fmt, act, out, bias, K, splits, paired, device):
    case = kernel_case(dict(format=fmt), family="GEMM", act=act, out=out, M=5, N=64, K=K, bias=bias, seed=K)
    config = autotune.Config(BLOCK_M=128, BLOCK_N=64, BLOCK_K=32, SPLIT_K=splits, GROUP_M=2)
    with autotune.forced_config("GEMM", config):
        _, ops, layer = run_contract(case, device)
        launches = family_launches(launch_plan(ops, layer, case.output_dtype, "GEMM"))
    assert launches[0].grid[1] == splits
    assert launches[0].constexprs["TILE_PAIRS"] is paired


# 128 x 128 weight blocks (stored as a row of N scales per 128 inputs) on 128-row GEMM tiles narrower
# than, as wide as and wider than a block (BLOCK_N = 64, 128, 256), split and not: K = 512, four block
# rows, each with its own scales.
BLOCK_TILE_CASES = [
    ("A8W8_FP8_block_dynamic", "bfloat16", "float16", 64, 1),
    ("A8W8_FP8_block_dynamic", "float16", "float32", 256, 2),
    ("A8W8_INT8_block_dynamic", "float16", "bfloat16", 128, 4),
    ("A8W8_INT8_block_dynamic", "bfloat16", "float16", 256, 1),
]


@pytest.mark.parametrize(
    "fmt,act,out,block_n,splits",
    BLOCK_TILE_CASES,
    ids=[f"{c[0]}-BN{c[3]}-sk{c[4]}" for c in BLOCK_TILE_CASES],
)
def test_block_scaled_tiles(fmt, act, out, block_n, splits, device):
    case = kernel_case(dict(format=fmt), family="GEMM", act=act, out=out, M=5, N=320, K=512, bias="input",
                       seed=block_n + splits)  # fmt: skip
    config = autotune.Config(BLOCK_M=128, BLOCK_N=block_n, BLOCK_K=32, SPLIT_K=splits, GROUP_M=2)
    with autotune.forced_config("GEMM", config):
        _, ops, layer = run_contract(case, device)
        launches = family_launches(launch_plan(ops, layer, case.output_dtype, "GEMM"))
    assert launches[0].constexprs["BLOCK_N"] == block_n and launches[0].grid[1] == splits


# A8W8_FP8_dynamic with DEQUANT=1: the per-token quantizer, then cuBLAS's fp8 GEMM (`torch._scaled_mm`,
# row-wise scales); a bias of the output dtype goes to its epilogue, any other bias (or an fp32 output
# with one) is added to its fp32 product before the one rounding.
SCALED_MM_CASES = [
    ("float16", "float16", "none"),
    ("bfloat16", "bfloat16", "input"),
    ("float16", "bfloat16", "input"),
    ("bfloat16", "float16", "float32"),
    ("float16", "float32", "float32"),
    ("bfloat16", "float32", "none"),
]


@pytest.mark.parametrize(
    "act,out,bias", SCALED_MM_CASES, ids=[f"{a}-{o}-b{b}" for a, o, b in SCALED_MM_CASES]
)
def test_fp8_dynamic_scaled_mm(act, out, bias, device):
    case = kernel_case(dict(format="A8W8_FP8_dynamic"), family="GEMM", act=act, out=out, M=5, N=48, K=96,
                       bias=bias, seed=7)  # fmt: skip
    assert case.layout().fp8_scaled_mm
    with autotune.forced_config("GEMM", autotune.Config(BLOCK_M=16, BLOCK_N=128, BLOCK_K=64, DEQUANT=1)):
        _, ops, layer = run_contract(case, device)
        steps = launch_plan(ops, layer, case.output_dtype, "GEMM")
    assert [type(s).__name__ for s in steps][-1] == "TorchStep", "the product is cuBLAS's, not a kernel's"


def test_fp8_scaled_mm_needs_aligned_sizes():
    """cuBLAS takes fp8 operands whose K and N are multiples of 16: elsewhere DEQUANT=1 is illegal."""
    dq = autotune.Config(BLOCK_M=16, BLOCK_N=128, BLOCK_K=64, DEQUANT=1)
    for n, legal in ((48, True), (40, False)):
        layout = pinned("A8W8_FP8_dynamic", M=2, N=n, K=96).layout()
        assert layout.fp8_scaled_mm is legal
        assert (autotune.illegal_reason("GEMM", dq, layout) is None) is legal
    gemm = autotune.legal_configs("GEMM", pinned("A8W8_FP8_dynamic", M=2, N=48, K=96).layout(), "max")
    assert sum(c.DEQUANT for c in gemm) == 1, "one cuBLAS candidate: the tile does not change its product"


@pytest.mark.parametrize("family", ["GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK"])
@pytest.mark.parametrize("out", ["float16", "float32"], ids=["f16-atomic-ws", "f32-atomic-out"])
def test_atomic_paths_when_allowed(family, out, device):
    """set_deterministic(False): fp32 atomics into a workspace (fp16 out) or into the output (fp32)."""
    variant = dict(format="A16W2_HQQ_INT", group_size=32, zeros="float", scale_dtype="act")
    case = kernel_case(
        variant, family=family, act="float16", out=out, M=3, N=40, K=96, bias="float32", seed=5
    )
    set_deterministic(False)
    try:
        with autotune.forced_config(family, SPLIT_CONFIGS[family]):
            _, ops, layer = run_contract(case, device)
            launches = family_launches(launch_plan(ops, layer, out, family))
    finally:
        set_deterministic(True)
    expected = WRITE_ATOMIC_FINAL if out == "float32" else WRITE_ATOMIC
    assert launches[0].constexprs["WRITE_MODE"] == expected.value


def test_m_zero_returns_empty(device):
    case = pinned("A16W4_HQQ_INT", group_size=32, zeros="float", M=1, N=40, K=64)
    layer = build_layer(case, make_operands(case, device))
    x = torch.empty(0, 64, dtype=torch.float16, device=device)
    y = matmul(x, layer.W_q, layer.scales, layer.zeros, None, layer.layout, torch.bfloat16)
    assert y.shape == (0, 40) and y.dtype == torch.bfloat16


def test_interpreter_active_matches_device(device):
    assert interpreter_active() == (device == "cpu")


def test_cpu_tensors_without_interpreter_raise_a_clear_error():
    """In a process where the interpreter is off, CPU tensors get a RuntimeError that says what to do,
    from every entry (not "every candidate config failed" from inside the tuner)."""
    script = (
        "import torch\n"
        "from gemlite.kernels import interpreter_active\n"
        "from gemlite.matmul import matmul\n"
        "from harness.build import build_layer, make_operands\n"
        "from harness.case import pinned\n"
        "assert not interpreter_active()\n"
        "case = pinned('A16W8_INT8', M=1, K=32, N=8)\n"
        "ops = make_operands(case)\n"
        "layer = build_layer(case, ops)\n"
        "from gemlite.compat import forward_functional\n"
        "calls = [\n"
        "    lambda: matmul(\n"
        "        ops.x, layer.W_q, layer.scales, layer.zeros, None, layer.layout, torch.float16\n"
        "    ),\n"
        "    lambda: layer(ops.x),\n"
        "    lambda: forward_functional(ops.x, None, layer.get_tensor_args(), layer.get_meta_args()),\n"
        "]\n"
        "for call in calls:\n"
        "    try:\n"
        "        call()\n"
        "    except RuntimeError as e:\n"
        "        print('RAISED', e)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout  # matmul, the layer's forward, GemLite's functional path
    for line in lines:
        assert line.startswith("RAISED x:") and "TRITON_INTERPRET=1" in line and "CUDA GPU" in line, line


# ------------------------------------------------------------------------------------------------
# Prepared layouts, metadata, and what pack / the layout must refuse
# ------------------------------------------------------------------------------------------------


def _built(case: Case, device: str = "cpu"):
    ops = make_operands(case, device)
    return ops, build_layer(case, ops)


@pytest.mark.parametrize("word_bits", [32, 8])
def test_prepared_physical_layout(word_bits):
    """Packed codes are GemLite's [N, K // e] words transposed to [K // e, N]; scales and zeros are
    [G, N]; the tensors are what the scheme's `storage` says the contract checks."""
    case = pinned("A16W4_HQQ_INT", group_size=32, zeros="float", K=64, N=8, packing_bitwidth=word_bits)
    ops, layer = _built(case)
    codes, scales, zeros = ops.qw.codes, ops.qw.scales, ops.qw.zeros
    assert layer.W_q.dtype == {32: torch.int32, 8: torch.uint8}[word_bits] and layer.W_q.is_contiguous()
    assert_exact(layer.W_q, pack_codes(codes, 4, word_bits).t().contiguous(), what="prepared W_q")
    assert_exact(layer.scales, scales.t().contiguous(), what="prepared scales")
    assert_exact(layer.zeros, zeros.t().contiguous(), what="prepared zeros")
    layout = layer.layout
    assert layout.elems_per_word == word_bits // 4 and layout.group_size == 32 and layout.is_grouped
    storage = layout.scheme.storage(layout)
    assert storage["W_q"].shape == tuple(layer.W_q.shape) == (64 // (word_bits // 4), 8)
    assert storage["scales"].shape == tuple(layer.scales.shape) == (2, 8)


def test_prepared_channelwise_layout():
    """INT8 codes stay [N, K] as given; fp32 scales [1, N]; no zeros; post-scaled 8-bit layout."""
    ops, layer = _built(pinned("A16W8_INT8", input_dtype="bfloat16", K=64, N=8))
    assert_exact(layer.W_q, ops.qw.codes, what="prepared W_q")
    assert_exact(layer.scales, ops.qw.scales.float().t().contiguous(), what="prepared scales")
    assert layer.zeros.numel() == 0 and layer.layout.word_bits == 8 and layer.layout.post_scale


LAYOUT_CASES = [
    pinned("A16W4_HQQ_INT", group_size=128, zeros="float", K=256, N=40),
    pinned(
        "A16W2_HQQ_INT", group_size=None, zeros="int", K=96, N=40, input_dtype="bfloat16", packing_bitwidth=8
    ),
    pinned("A16W1_HQQ_INT", group_size=32, zeros="none", K=64, N=8),
    pinned("A16W8_INT8", K=64, N=8),
    pinned("A16W8_FP8", K=64, N=8, input_dtype="bfloat16"),
    pinned("A16W158_INT", K=64, N=8),
    pinned("A16W16", K=64, N=8, input_dtype="bfloat16"),
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=lambda c: c.label)
def test_metadata_round_trip(case):
    layout = _built(case)[1].layout
    assert layout.format == case.fmt
    meta = layout.to_metadata()
    assert meta.dtype == torch.int32 and meta.dim() == 1 and int(meta[1]) == 2
    again = WeightLayout.from_metadata(meta)
    assert again == layout and hash(again) == hash(layout)


def test_metadata_refuses_garbage():
    meta = _built(LAYOUT_CASES[0])[1].layout.to_metadata()  # A16W4_HQQ_INT/g128, K = 256
    with pytest.raises(ValueError, match="magic"):
        WeightLayout.from_metadata(torch.zeros(17, dtype=torch.int32))
    with pytest.raises(ValueError, match="int32"):
        WeightLayout.from_metadata(meta.to(torch.int64))
    with pytest.raises(ValueError, match="version"):
        WeightLayout.from_metadata(meta[:10])
    bad = meta.clone()
    bad[4] = bad[11] = 48  # version 2 fields 4 and 11: the spec's and the resolved group size
    with pytest.raises(ValueError, match="group_size"):  # 48 does not divide K = 256
        WeightLayout.from_metadata(bad)
    bad = meta.clone()
    bad[17] = ord("X")  # the first character of the format name
    with pytest.raises(ValueError, match="X16W4_HQQ_INT"):
        WeightLayout.from_metadata(bad)


@pytest.mark.parametrize("K,group", [(96, 48), (64, 16), (96, 64), (128, 96), (256, 100)])
def test_unsupported_group_size_is_refused(K, group):
    """Group sizes the kernels cannot tile exactly are refused, never silently miscomputed: by the
    layout (the contract), by the layer's constructor and, where the group divides K so the harness
    can draw the weight, by the public build."""
    fmt = FORMATS["A16W4_HQQ_INT"].with_group_size(group)
    with pytest.raises(ValueError, match="group_size"):
        WeightLayout(fmt, K, 8, group, 32, torch.float16)
    if group != 16:  # 4 bits in groups of 16 is NVFP4's layout: the constructor takes it (pack refuses HQQ)
        with pytest.raises(ValueError, match="group_size"):
            GemLiteLinear(4, group, K, 8)
    if K % group == 0:
        case = Case(format="A16W4_HQQ_INT", group_size=group, zeros="float", M=1, K=K, N=8)
        assert legality_problems(case, strict=False) == []
        with pytest.raises(ValueError, match="group_size"):
            build_layer(case, make_operands(case))


def test_odd_multiple_group_size_is_supported(device):
    """A group of 96 (a multiple of 32 but no power of two) runs on 32-wide K tiles."""
    for family in MATMUL_TYPES:
        case = Case(
            format="A16W4_HQQ_INT",
            group_size=96,
            zeros="float",
            M=3,
            K=192,
            N=40,
            output_dtype="float32",
            family=family,
            seed=3,
        )
        assert legality_problems(case, strict=False) == []
        run_contract(case, device)


def test_pack_refuses_bad_weights():
    """What the schemes' canonicalisation and the layout refuse, through the public `pack`."""
    ops, _ = _built(pinned("A16W4_HQQ_INT", group_size=32, zeros="float", K=64, N=8))
    codes, scales, zeros = ops.qw.codes, ops.qw.scales, ops.qw.zeros

    def hqq4():
        return GemLiteLinear(4, 32, 64, 8)

    with pytest.raises(ValueError, match="in_features"):
        GemLiteLinear(4, None, 48, 8)  # K not a multiple of 32
    with pytest.raises(TypeError, match="W_q"):
        hqq4().pack(codes.to(torch.int8), scales, zeros)
    with pytest.raises(ValueError, match="W_q"):
        hqq4().pack(codes + 16, scales, zeros)
    with pytest.raises(ValueError, match="scales"):
        hqq4().pack(codes, scales[:, :1], zeros)
    with pytest.raises(TypeError, match="scales"):
        hqq4().pack(codes, scales.to(torch.int32), zeros)
    with pytest.raises(ValueError, match="zeros"):
        hqq4().pack(codes, scales, zeros[:1])
    with pytest.raises(ValueError, match="zero"):
        hqq4().pack(codes, scales, 16)
    with pytest.raises(ValueError, match="packing_bitwidth"):
        hqq4().pack(codes, scales, zeros, packing_bitwidth=16)
    with pytest.raises(ValueError, match="input_dtype"):
        GemLiteLinear(4, 32, 64, 8, input_dtype=DType.FP32)
    with pytest.raises(TypeError, match="compute_dtype"):
        WeightLayout(FORMATS["A16W4_HQQ_INT"].with_group_size(32), 64, 8, 32, 32, torch.float32)

    dense, _ = _built(pinned("A16W16", K=64, N=8))  # an fp16 weight
    w16 = dense.qw.codes
    with pytest.raises(TypeError, match="W_q"):
        GemLiteLinear(16, None, 64, 8, input_dtype=DType.BF16).pack(w16, None, None)
    with pytest.raises(ValueError, match="scales"):
        GemLiteLinear(16, None, 64, 8).pack(w16, torch.ones(8, 1), None)

    ternary, _ = _built(pinned("A16W158_INT", K=64, N=8))
    with pytest.raises(ValueError, match="zeros"):
        GemLiteLinear(2, None, 64, 8).pack(
            ternary.qw.codes, ternary.qw.scales, 2, format=FORMATS["A16W158_INT"]
        )

    int8, _ = _built(pinned("A16W8_INT8", K=64, N=8))
    with pytest.raises(ValueError, match="group_size"):
        WeightLayout(
            Format("A16W8_INT8", WeightSpec(WeightKind.INT8, 8, group_size=32)), 64, 8, 32, 8, torch.float16
        )
    with pytest.raises(ValueError, match="scales"):  # INT8 is channel-wise whatever the layer's group
        GemLiteLinear(8, 32, 64, 8).pack(int8.qw.codes, torch.ones(8, 2), None)
    with pytest.raises(TypeError, match="scales: MXFP4 scales are e8m0 bytes"):  # float scales: no conversion
        GemLiteLinear(4, 32, 64, 8).pack(codes, scales, None, format=FORMATS["A16W4_MXFP"])


# The weight-only format of the registry whose tensors stand in for a format without kernels.
def _stand_in(fmt: Format) -> str:
    kind = fmt.weight.kind
    named = {WeightKind.INT8: "A16W8_INT8", WeightKind.FP8: "A16W8_FP8", WeightKind.TERNARY: "A16W158_INT"}
    return named.get(kind, f"A16W{fmt.weight.bits}_HQQ_INT")


WITHOUT_KERNELS = [name for name in FORMATS if name not in SUPPORT]


@pytest.mark.parametrize("name", WITHOUT_KERNELS)
def test_formats_without_kernels_are_refused(name):
    """A format this release has no kernels for (MX/NVFP weights, block-scaled weights, dynamic
    activations) is refused by `pack` with NotImplementedError, never run as a weight-only format."""
    fmt = FORMATS[name]
    stand_in = _stand_in(fmt)
    group = 128 if SUPPORT[stand_in].packed and stand_in != "A16W158_INT" else None
    zeros = "float" if group else SUPPORT[stand_in].zeros[0].value
    ops, _ = _built(pinned(stand_in, group_size=group, zeros=zeros, K=128, N=128))
    layer = GemLiteLinear(fmt.weight.bits, group, 128, 128)
    with pytest.raises(NotImplementedError, match=rf"{fmt.weight.kind.name}|activation|block"):
        layer.pack(ops.qw.codes, ops.qw.scales, ops.qw.zeros, format=fmt)


# ------------------------------------------------------------------------------------------------
# matmul: inputs it must refuse before launching anything
# ------------------------------------------------------------------------------------------------


def test_matmul_refuses_bad_inputs(device):
    case = pinned("A16W4_HQQ_INT", group_size=32, zeros="float", M=3, N=40, K=64)
    ops, layer = _built(case, device)
    W, s, z, layout = layer.W_q, layer.scales, layer.zeros, layer.layout
    x = ops.x
    f16 = torch.float16
    with pytest.raises(TypeError, match="x: expected dtype"):
        matmul(x.to(torch.bfloat16), W, s, z, None, layout, f16)
    with pytest.raises(ValueError, match=r"x: expected shape \[M, 64\]"):
        matmul(x[:, :32], W, s, z, None, layout, f16)
    with pytest.raises(ValueError, match="x: must be contiguous"):
        matmul(x.t().contiguous().t(), W, s, z, None, layout, f16)
    with pytest.raises(TypeError, match="out_dtype"):
        matmul(x, W, s, z, None, layout, torch.int32)
    with pytest.raises(ValueError, match="matmul_type"):
        matmul(x, W, s, z, None, layout, f16, "GEMV_FAST")
    with pytest.raises(ValueError, match="bias"):
        matmul(x, W, s, z, torch.zeros(41, device=device), layout, f16)
    with pytest.raises(ValueError, match="W_q"):
        matmul(x, W.t(), s, z, None, layout, f16)
    with pytest.raises(ValueError, match="scales"):
        matmul(x, W, s[:1], z, None, layout, f16)
    with pytest.raises(TypeError, match="scales"):
        matmul(x, W, s.to(torch.int32), z, None, layout, f16)
    with pytest.raises(TypeError, match="layout"):
        matmul(x, W, s, z, None, "A16W4", f16)
    with pytest.raises(ValueError, match="illegal"):
        with autotune.forced_config("GEMM", autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64)):
            matmul(x, W, s, z, None, layout, f16, "GEMM")  # BLOCK_K 64 straddles groups of 32


@pytest.mark.parametrize("family", ["GEMV_REVSPLITK", "GEMV", "GEMM_SPLITK"])
def test_workspace_bound_runs_row_chunks(family, device, monkeypatch):
    """A split family whose fp32 workspace would pass MAX_WORKSPACE_BYTES runs in row chunks, with
    bitwise the same result as one launch (on the H100, GEMV_REVSPLITK forced at M = 4096 on an
    8192 x 28672 weight asked for a 30 GB workspace and ran out of memory)."""
    configs = {
        "GEMV_REVSPLITK": autotune.Config(BLOCK_N=32, BLOCK_K=16),
        "GEMV": autotune.Config(BLOCK_N=32, BLOCK_K=32, SPLIT_K=2),
        "GEMM_SPLITK": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, SPLIT_K=2),
    }
    case = kernel_case(
        HQQ4_G32, family=family, act="float16", out="float16", M=5, N=40, K=128, bias="input", seed=7
    )
    with autotune.forced_config(family, configs[family]):
        y_one, ops, layer = run_contract(case, device)
        assert len(family_launches(launch_plan(ops, layer, "float16", family))) == 1
        # Room for the partials of two rows only: 5 rows run as chunks of 2, 2 and 1.
        splits = 128 // 32 if family == "GEMV_REVSPLITK" else 2
        monkeypatch.setattr(kernel_plan, "MAX_WORKSPACE_BYTES", 2 * splits * 40 * 4)
        assert kernel_plan.rows_per_launch(family, configs[family], 5, 128, 40) == 2
        assert len(family_launches(launch_plan(ops, layer, "float16", family))) == 3
        y_chunked = call_again(ops, layer, "float16", family)
    assert_exact(y_chunked, y_one, what=f"{family}: row-chunked output")
