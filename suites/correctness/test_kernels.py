"""The kernel contract (`gemlite.kernels`) against the float64 golden of `reference`, same codes.

Every family x every weight kind x fp16/bf16 activations x fp16/bf16/fp32 output runs on small shapes
(the Triton interpreter on CPU, or the GPU), with bias, tails in M, N and K, K splits and both packing
words; plus determinism, the atomic paths, forced tiles that leave K tails, layout metadata and every
input the contract must refuse.

Bound, element-wise: |y - y*| <= C * (u_out |y*| + (u_dot + K * 2**-24) * sum_k |x_k W_k|), with u the
unit roundoff (fp16 2**-11, bf16 2**-8, fp32 2**-24): one rounding of the output, one rounding of each
dequantized weight to the dot dtype, fp32 accumulation over K. C = 4 leaves room for the few extra
roundings of the epilogue and, under the interpreter, for its fp32 -> bf16 casts that truncate (up to
2u) instead of rounding to nearest.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

import reference as ref
from gemlite import autotune
from gemlite.formats import Format, WeightKind, WeightSpec, Zeros
from gemlite.kernels import MATMUL_TYPES, WeightLayout, interpreter_active, matmul, prepare_weight
from gemlite.settings import is_deterministic, set_deterministic

pytestmark = pytest.mark.interpreter

U = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}
C_BOUND = 4
ACT_DTYPES = (torch.float16, torch.bfloat16)
OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
DT = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32"}


@pytest.fixture(autouse=True)
def _no_tuning():
    """Kernel tests judge numerics, not speed: on a GPU use the default tiles instead of tuning."""
    mode = autotune.get_autotune()
    autotune.set_autotune(False)
    yield
    autotune.set_autotune(mode)


# ------------------------------------------------------------------------------------------------
# Weight cases: codes + scales + zeros in canonical form, for the reference and for prepare_weight
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WCase:
    """A weight format variant. group: None = channel-wise. zeros: "float" | "int" | "none"."""

    kind: WeightKind
    bits: int
    group: int | None = None
    zeros: str = "none"
    word_bits: int = 32
    scale_dtype: torch.dtype | None = None  # HQQ: None = the activation dtype

    @property
    def id(self) -> str:
        if self.kind is not WeightKind.HQQ:
            return self.kind.value
        g = "chan" if self.group is None else f"g{self.group}"
        s = "" if self.scale_dtype is None else f"-s{DT[self.scale_dtype]}"
        return f"hqq{self.bits}-{g}-z{self.zeros}-w{self.word_bits}{s}"

    def spec(self) -> WeightSpec:
        zeros = {"float": Zeros.FLOAT, "int": Zeros.INT, "none": Zeros.NONE}[self.zeros]
        if self.kind is WeightKind.TERNARY:
            zeros = Zeros.INT
        return WeightSpec(self.kind, self.bits, group_size=self.group, zeros=zeros)

    def fits(self, K: int) -> bool:
        return self.group is None or K % self.group == 0


# One case per weight kind (the main matrix) ...
KIND_CASES = [
    WCase(WeightKind.FLOAT, 16),
    WCase(WeightKind.HQQ, 8, 64, "float"),
    WCase(WeightKind.HQQ, 4, 32, "float", word_bits=8),
    WCase(WeightKind.HQQ, 2, 128, "int", scale_dtype=torch.float32),
    WCase(WeightKind.HQQ, 1, 32, "float"),
    WCase(WeightKind.INT8, 8),
    WCase(WeightKind.FP8, 8),
    WCase(WeightKind.TERNARY, 2),
]
# ... and the remaining variants: group sizes, zero modes, words, scale dtypes, channel-wise paths.
VARIANT_CASES = [
    WCase(WeightKind.HQQ, 4, 128, "float"),
    WCase(WeightKind.HQQ, 4, 64, "int", word_bits=8, scale_dtype=torch.bfloat16),
    WCase(WeightKind.HQQ, 4, 256, "none", scale_dtype=torch.float32),
    WCase(WeightKind.HQQ, 2, 32, "float", word_bits=8),
    WCase(WeightKind.HQQ, 1, 128, "int"),
    WCase(WeightKind.HQQ, 8, 32, "none", word_bits=8, scale_dtype=torch.float16),
    WCase(WeightKind.HQQ, 4, None, "float"),  # channel-wise, dequantized in the loop
    WCase(WeightKind.HQQ, 4, None, "int"),  # channel-wise, exact codes, post-scaled
    WCase(WeightKind.HQQ, 8, None, "none", word_bits=8),  # one code per byte
    WCase(WeightKind.HQQ, 2, None, "float", word_bits=8, scale_dtype=torch.bfloat16),
]


def make_weight(case: WCase, N: int, K: int, act: torch.dtype, device, seed: int):
    """(fmt, reference QuantizedWeight, (codes, scales, zeros) canonical) for `case`."""
    g = torch.Generator().manual_seed(seed)
    sdt = case.scale_dtype or act
    kind = case.kind
    G = 1 if case.group is None else K // case.group
    zeros = None
    if kind is WeightKind.FLOAT:
        codes, scales = (torch.randn(N, K, generator=g) * 0.1).to(act), None
    elif kind in (WeightKind.HQQ, WeightKind.TERNARY):
        top = 2 if kind is WeightKind.TERNARY else (1 << case.bits) - 1
        codes = torch.randint(0, top + 1, (N, K), generator=g, dtype=torch.uint8)
        if kind is WeightKind.TERNARY:
            scales, zeros = (torch.rand(N, 1, generator=g) * 0.05 + 0.01), 1
        else:
            scales = (torch.rand(N, G, generator=g) * 0.05 / (top + 1) + 0.002).to(sdt)
            if case.zeros == "float":
                zeros = (torch.rand(N, G, generator=g) * top).to(sdt)
            elif case.zeros == "int":
                zeros = 1 << (case.bits - 1)
    elif kind is WeightKind.INT8:
        codes = torch.randint(-128, 128, (N, K), generator=g, dtype=torch.int8)
        scales = torch.rand(N, 1, generator=g) * 1e-3 + 1e-4
    else:  # FP8: a wide spread of e4m3 values, subnormals included
        codes = (torch.randn(N, K, generator=g) * torch.rand(N, K, generator=g) * 200).clamp(-448, 448)
        codes = codes.to(torch.float8_e4m3fn)
        scales = torch.rand(N, 1, generator=g) * 1e-3 + 1e-4
    fmt = Format(f"test-{case.id}", case.spec())
    qw = ref.QuantizedWeight(fmt, codes, scales, zeros)
    to = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t
    return fmt, qw, (to(codes), to(scales), to(zeros))


def check_close(y: torch.Tensor, x: torch.Tensor, fmt, qw, bias, act: torch.dtype, what: str) -> None:
    """Assert y is within the module docstring's bound of the float64 golden."""
    xc, bc = x.cpu(), None if bias is None else bias.cpu()
    y_star = ref.linear(fmt, xc, qw, bc)
    abs_sum = xc.double().abs() @ ref.dequantize_weight(qw).abs().T
    K = x.shape[1]
    bound = C_BOUND * (U[y.dtype] * y_star.abs() + (U[act] + K * 2.0**-24) * abs_sum)
    yd = y.cpu().double()
    assert torch.isfinite(yd).all(), f"{what}: non-finite outputs"
    err = (yd - y_star).abs()
    bad = err > bound
    if bad.any():
        i = int((err / bound.clamp_min(1e-300)).argmax())
        m, n = divmod(i, y.shape[1])
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{bad.numel()} outputs beyond the bound; worst y[{m},{n}] = "
            f"{yd[m, n].item():.6g}, golden {y_star[m, n].item():.6g}, |err| {err[m, n].item():.3g} > "
            f"bound {bound[m, n].item():.3g}"
        )


def run_case(case: WCase, family, act, out, M, N, K, bias_dtype, device, seed):
    fmt, qw, (codes, scales, zeros) = make_weight(case, N, K, act, device, seed)
    layout, t = prepare_weight(case.spec(), codes, scales, zeros, compute_dtype=act, word_bits=case.word_bits)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(M, K, generator=g).to(act).to(device)
    bias = None if bias_dtype is None else torch.randn(N, generator=g).to(bias_dtype).to(device)
    y = matmul(x, t["W_q"], t["scales"], t["zeros"], bias, layout, out, family)
    assert y.shape == (M, N) and y.dtype == out and y.device == x.device
    check_close(y, x, fmt, qw, bias, act, f"{family} {case.id} act={DT[act]} out={DT[out]} M={M} N={N} K={K}")
    return y, (x, t, bias, layout)


# ------------------------------------------------------------------------------------------------
# The main matrix: every family x every weight kind x activation dtype x output dtype
# ------------------------------------------------------------------------------------------------

SHAPES_M, SHAPES_N, SHAPES_K = (1, 3, 17), (40, 64), (96, 128, 256)


def _shape_for(i: int, case: WCase) -> tuple[int, int, int]:
    """Rotate through M, N and K (those the case's group size allows) across the matrix."""
    Ks = [k for k in SHAPES_K if case.fits(k)]
    return SHAPES_M[i % 3], SHAPES_N[(i // 3) % 2], Ks[(i // 2) % len(Ks)]


MAIN = [
    (family, case, act, out)
    for family in MATMUL_TYPES
    for case in KIND_CASES
    for act in ACT_DTYPES
    for out in OUT_DTYPES
]


@pytest.mark.parametrize(
    "family,case,act,out", MAIN, ids=[f"{f}-{c.id}-a{DT[a]}-o{DT[o]}" for f, c, a, o in MAIN]
)
def test_every_family_kind_and_dtype(family, case, act, out, device):
    i = MAIN.index((family, case, act, out))
    M, N, K = _shape_for(i, case)
    bias_dtype = (None, torch.float32, act)[i % 3]
    run_case(case, family, act, out, M, N, K, bias_dtype, device, seed=i)


VARIANTS = [(family, case) for family in MATMUL_TYPES for case in VARIANT_CASES]


@pytest.mark.parametrize("family,case", VARIANTS, ids=[f"{f}-{c.id}" for f, c in VARIANTS])
def test_format_variants(family, case, device):
    i = VARIANTS.index((family, case))
    M, N, K = _shape_for(i, case)
    act, out = ACT_DTYPES[i % 2], OUT_DTYPES[i % 3]
    run_case(case, family, act, out, M, N, K, torch.float16, device, seed=1000 + i)


@pytest.mark.slow
@pytest.mark.parametrize("family", MATMUL_TYPES)
@pytest.mark.parametrize("case", KIND_CASES + VARIANT_CASES, ids=lambda c: c.id)
def test_every_shape(family, case, device):
    """All M x N x K combinations (slow: the main matrix already rotates through them)."""
    for j, (M, N, K) in enumerate((m, n, k) for m in SHAPES_M for n in SHAPES_N for k in SHAPES_K):
        if case.fits(K):
            run_case(
                case, family, ACT_DTYPES[j % 2], OUT_DTYPES[j % 3], M, N, K, torch.float32, device, seed=j
            )


def test_dispatch_by_m(device):
    """matmul_type=None picks a family by M (GEMV, GEMM_SPLITK and GEMM sizes) and stays correct."""
    case = WCase(WeightKind.HQQ, 4, 64, "float")
    for M in (1, 5, 128):
        run_case(case, None, torch.float16, torch.float16, M, 40, 128, torch.float16, device, seed=M)


# ------------------------------------------------------------------------------------------------
# K tails, K splits, atomics and determinism (tiles forced)
# ------------------------------------------------------------------------------------------------

# Tiles whose K step does not divide K = 96 (masked K tails) and that split K over programs.
TAIL_CONFIGS = {
    "GEMV": autotune.Config(BLOCK_N=32, BLOCK_K=64, SPLIT_K=2),
    "GEMV_REVSPLITK": autotune.Config(BLOCK_N=32, BLOCK_K=32),
    "GEMV_SPLITK": autotune.Config(BLOCK_N=8, BLOCK_K=64, SPLIT_K=2),
    "GEMM_SPLITK": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, SPLIT_K=2),
    "GEMM": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, GROUP_M=2),
}
# Channel-wise or unpacked: any BLOCK_K is legal, K = 96 leaves a tail of 32.
TAIL_CASES = [
    WCase(WeightKind.HQQ, 4, None, "float"),
    WCase(WeightKind.HQQ, 1, None, "int"),
    WCase(WeightKind.INT8, 8),
    WCase(WeightKind.FLOAT, 16),
]


@pytest.mark.parametrize("family", MATMUL_TYPES)
@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_k_tail_with_forced_tile(family, case, device):
    with autotune.forced_config(family, TAIL_CONFIGS[family]):
        run_case(case, family, torch.bfloat16, torch.float32, 3, 40, 96, torch.bfloat16, device, seed=7)


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


@pytest.mark.parametrize("family", MATMUL_TYPES)
def test_many_k_splits(family, device):
    case = WCase(WeightKind.HQQ, 4, 32, "float")
    with autotune.forced_config(family, SPLIT_CONFIGS[family]):
        run_case(case, family, torch.float16, torch.float16, 2, 64, 96, torch.float16, device, seed=11)


@pytest.mark.parametrize("family", MATMUL_TYPES)
def test_deterministic_bitwise(family, device):
    """Two calls give bitwise the same output (split paths included: tiles forced to split K)."""
    assert is_deterministic()
    case = WCase(WeightKind.HQQ, 4, 32, "float")
    config = SPLIT_CONFIGS[family]
    with autotune.forced_config(family, config):
        y1, (x, t, bias, layout) = run_case(
            case, family, torch.bfloat16, torch.bfloat16, 3, 64, 128, None, device, 3
        )
        y2 = matmul(x, t["W_q"], t["scales"], t["zeros"], bias, layout, torch.bfloat16, family)
    assert torch.equal(y1, y2), f"{family}: two calls differ"


@pytest.mark.parametrize("family", ["GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK"])
@pytest.mark.parametrize("out", [torch.float16, torch.float32], ids=["f16-atomic-ws", "f32-atomic-out"])
def test_atomic_paths_when_allowed(family, out, device):
    """set_deterministic(False): fp32 atomics into a workspace (fp16 out) or into the output (fp32)."""
    case = WCase(WeightKind.HQQ, 2, 32, "float")
    config = SPLIT_CONFIGS[family]
    set_deterministic(False)
    try:
        with autotune.forced_config(family, config):
            run_case(case, family, torch.float16, out, 3, 40, 96, torch.float32, device, seed=5)
    finally:
        set_deterministic(True)


def test_m_zero_returns_empty(device):
    case = WCase(WeightKind.HQQ, 4, 32, "float")
    _, _, (codes, scales, zeros) = make_weight(case, 40, 64, torch.float16, device, 0)
    layout, t = prepare_weight(case.spec(), codes, scales, zeros, compute_dtype=torch.float16)
    x = torch.empty(0, 64, dtype=torch.float16, device=device)
    y = matmul(x, t["W_q"], t["scales"], t["zeros"], None, layout, torch.bfloat16)
    assert y.shape == (0, 40) and y.dtype == torch.bfloat16


def test_interpreter_active_matches_device(device):
    assert interpreter_active() == (device == "cpu")


def test_cpu_tensors_without_interpreter_raise_a_clear_error():
    """In a process where the interpreter is off, CPU tensors get a RuntimeError that says what to do."""
    script = (
        "import torch\n"
        "from gemlite.formats import WeightKind, WeightSpec\n"
        "from gemlite.kernels import interpreter_active, matmul, prepare_weight\n"
        "assert not interpreter_active()\n"
        "lay, t = prepare_weight(WeightSpec(WeightKind.INT8, 8), torch.zeros(8, 32, dtype=torch.int8),\n"
        "                        torch.ones(8, 1), None, compute_dtype=torch.float16)\n"
        "try:\n"
        "    matmul(torch.zeros(1, 32, dtype=torch.float16), t['W_q'], t['scales'], t['zeros'], None, lay,\n"
        "           torch.float16)\n"
        "except RuntimeError as e:\n"
        "    print('RAISED', e)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=path)
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RAISED" in proc.stdout and "TRITON_INTERPRET=1" in proc.stdout and "CUDA GPU" in proc.stdout


# ------------------------------------------------------------------------------------------------
# prepare_weight: layouts, metadata, and what it must refuse
# ------------------------------------------------------------------------------------------------


def _hqq(bits=4, group=32, zeros=Zeros.FLOAT) -> WeightSpec:
    return WeightSpec(WeightKind.HQQ, bits, group_size=group, zeros=zeros)


def _hqq_inputs(N=8, K=64, G=2, dtype=torch.float16):
    return torch.zeros(N, K, dtype=torch.uint8), torch.ones(N, G, dtype=dtype), torch.zeros(N, G, dtype=dtype)


def test_prepared_physical_layout():
    """Packed codes are GemLite's [N, K // e] words transposed to [K // e, N]; metadata [G, N]."""
    from gemlite.packing import pack_codes

    codes = torch.randint(0, 16, (8, 64), dtype=torch.uint8)
    scales, zeros = torch.rand(8, 2, dtype=torch.float16), torch.rand(8, 2, dtype=torch.float16)
    for word_bits, dtype in ((32, torch.int32), (8, torch.uint8)):
        layout, t = prepare_weight(
            _hqq(), codes, scales, zeros, compute_dtype=torch.float16, word_bits=word_bits
        )
        assert t["W_q"].dtype == dtype and t["W_q"].is_contiguous()
        assert torch.equal(t["W_q"], pack_codes(codes, 4, word_bits).t())
        assert torch.equal(t["scales"], scales.t()) and torch.equal(t["zeros"], zeros.t())
        assert layout.elems_per_word == word_bits // 4 and layout.group_size == 32 and layout.is_grouped
    w8 = torch.randint(-128, 128, (8, 64), dtype=torch.int8)
    layout, t = prepare_weight(
        WeightSpec(WeightKind.INT8, 8), w8, torch.ones(8, 1), None, compute_dtype=torch.bfloat16
    )
    assert (
        torch.equal(t["W_q"], w8) and t["zeros"].numel() == 0 and layout.word_bits == 8 and layout.post_scale
    )


LAYOUTS = [
    WeightLayout(_hqq(4, 128), 256, 40, 128, 32, torch.float16),
    WeightLayout(_hqq(2, None, Zeros.INT), 96, 40, 96, 8, torch.bfloat16, zero_int=2),
    WeightLayout(_hqq(1, 32, Zeros.NONE), 64, 8, 32, 32, torch.float16),
    WeightLayout(WeightSpec(WeightKind.INT8, 8), 64, 8, 64, 8, torch.float16),
    WeightLayout(WeightSpec(WeightKind.FP8, 8), 64, 8, 64, 8, torch.bfloat16),
    WeightLayout(
        WeightSpec(WeightKind.TERNARY, 2, zeros=Zeros.INT), 64, 8, 64, 32, torch.float16, zero_int=1
    ),
    WeightLayout(WeightSpec(WeightKind.FLOAT, 16), 64, 8, 64, 16, torch.bfloat16),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: f"{lay.spec.kind.value}{lay.spec.bits}")
def test_metadata_round_trip(layout):
    meta = layout.to_metadata()
    assert meta.dtype == torch.int32 and meta.dim() == 1
    again = WeightLayout.from_metadata(meta)
    assert again == layout and hash(again) == hash(layout)


def test_metadata_refuses_garbage():
    meta = LAYOUTS[0].to_metadata()
    with pytest.raises(ValueError, match="magic"):
        WeightLayout.from_metadata(torch.zeros(14, dtype=torch.int32))
    with pytest.raises(ValueError, match="int32"):
        WeightLayout.from_metadata(meta.to(torch.int64))
    with pytest.raises(ValueError, match="version"):
        WeightLayout.from_metadata(meta[:10])
    bad = meta.clone()
    bad[9] = 48  # a group size that does not divide K = 256
    with pytest.raises(ValueError, match="group_size"):
        WeightLayout.from_metadata(bad)


@pytest.mark.parametrize("K,group", [(96, 48), (64, 16), (96, 64), (128, 96), (256, 100)])
def test_unsupported_group_size_is_refused(K, group):
    """Group sizes the kernels cannot tile exactly are refused, never silently miscomputed."""
    codes, scales, zeros = _hqq_inputs(8, K, max(1, K // group))
    with pytest.raises(ValueError, match="group_size"):
        prepare_weight(
            _hqq(4, group),
            codes,
            scales[:, : K // group],
            zeros[:, : K // group],
            compute_dtype=torch.float16,
        )


def test_odd_multiple_group_size_is_supported(device):
    """A group of 96 (a multiple of 32 but no power of two) runs on 32-wide K tiles."""
    case = WCase(WeightKind.HQQ, 4, 96, "float")
    for family in MATMUL_TYPES:
        run_case(case, family, torch.float16, torch.float32, 3, 40, 192, None, device, seed=3)


def test_prepare_weight_refuses_bad_inputs():
    f16 = torch.float16
    codes, scales, zeros = _hqq_inputs()
    with pytest.raises(ValueError, match="in_features"):
        prepare_weight(
            _hqq(4, None),
            torch.zeros(8, 48, dtype=torch.uint8),
            scales[:, :1],
            zeros[:, :1],
            compute_dtype=f16,
        )
    with pytest.raises(TypeError, match="codes"):
        prepare_weight(_hqq(), codes.to(torch.int8), scales, zeros, compute_dtype=f16)
    with pytest.raises(ValueError, match="codes"):
        prepare_weight(_hqq(), codes + 16, scales, zeros, compute_dtype=f16)
    with pytest.raises(ValueError, match="scales"):
        prepare_weight(_hqq(), codes, scales[:, :1], zeros, compute_dtype=f16)
    with pytest.raises(TypeError, match="scales"):
        prepare_weight(_hqq(), codes, scales.to(torch.int32), zeros, compute_dtype=f16)
    with pytest.raises(ValueError, match="zeros"):
        prepare_weight(_hqq(), codes, scales, zeros[:1], compute_dtype=f16)
    with pytest.raises(TypeError, match="zeros"):
        prepare_weight(_hqq(zeros=Zeros.INT), codes, scales, zeros, compute_dtype=f16)
    with pytest.raises(ValueError, match="zero"):
        prepare_weight(_hqq(zeros=Zeros.INT), codes, scales, 16, compute_dtype=f16)
    with pytest.raises(ValueError, match="zeros"):
        prepare_weight(_hqq(zeros=Zeros.NONE), codes, scales, zeros, compute_dtype=f16)
    with pytest.raises(ValueError, match="word_bits"):
        prepare_weight(_hqq(), codes, scales, zeros, compute_dtype=f16, word_bits=16)
    with pytest.raises(TypeError, match="compute_dtype"):
        prepare_weight(_hqq(), codes, scales, zeros, compute_dtype=torch.float32)
    float_spec, w16 = WeightSpec(WeightKind.FLOAT, 16), torch.zeros(8, 64, dtype=f16)
    with pytest.raises(TypeError, match="codes"):
        prepare_weight(float_spec, w16, None, None, compute_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="scales"):
        prepare_weight(float_spec, w16, torch.ones(8, 1), None, compute_dtype=f16)
    ternary = WeightSpec(WeightKind.TERNARY, 2, zeros=Zeros.INT)
    with pytest.raises(ValueError, match="zeros"):
        prepare_weight(ternary, codes, torch.ones(8, 1), 2, compute_dtype=f16)
    int8_g32, w8 = WeightSpec(WeightKind.INT8, 8, group_size=32), codes.to(torch.int8)
    with pytest.raises(ValueError, match="group_size"):
        prepare_weight(int8_g32, w8, torch.ones(8, 2), None, compute_dtype=f16)
    with pytest.raises(NotImplementedError, match="MXFP4"):
        prepare_weight(WeightSpec(WeightKind.MXFP4, 4, group_size=32), codes, scales, None, compute_dtype=f16)
    block_spec = WeightSpec(WeightKind.INT8, 8, group_size=128, block_n=128)
    with pytest.raises(NotImplementedError, match="block_n"):
        prepare_weight(
            block_spec, torch.zeros(8, 128, dtype=torch.int8), torch.ones(1, 1), None, compute_dtype=f16
        )


# ------------------------------------------------------------------------------------------------
# matmul: inputs it must refuse before launching anything
# ------------------------------------------------------------------------------------------------


def test_matmul_refuses_bad_inputs(device):
    case = WCase(WeightKind.HQQ, 4, 32, "float")
    _, _, (codes, scales, zeros) = make_weight(case, 40, 64, torch.float16, device, 0)
    layout, t = prepare_weight(case.spec(), codes, scales, zeros, compute_dtype=torch.float16)
    W, s, z = t["W_q"], t["scales"], t["zeros"]
    x = torch.randn(3, 64, dtype=torch.float16, device=device)
    f16 = torch.float16
    with pytest.raises(TypeError, match="x: expected dtype"):
        matmul(x.to(torch.bfloat16), W, s, z, None, layout, f16)
    with pytest.raises(ValueError, match=r"x: expected shape \[M, 64\]"):
        matmul(x[:, :32], W, s, z, None, layout, f16)
    with pytest.raises(ValueError, match="x: must be contiguous"):
        matmul(torch.randn(64, 3, dtype=f16, device=device).t(), W, s, z, None, layout, f16)
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
    import gemlite.kernels as kernels

    configs = {
        "GEMV_REVSPLITK": autotune.Config(BLOCK_N=32, BLOCK_K=16),
        "GEMV": autotune.Config(BLOCK_N=32, BLOCK_K=32, SPLIT_K=2),
        "GEMM_SPLITK": autotune.Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, SPLIT_K=2),
    }
    case = WCase(WeightKind.HQQ, 4, 32, "float")
    with autotune.forced_config(family, configs[family]):
        y_one, (x, t, bias, layout) = run_case(
            case, family, torch.float16, torch.float16, 5, 40, 128, torch.float16, device, seed=7
        )
        # Room for the partials of two rows only: 5 rows run as chunks of 2, 2 and 1.
        splits = 128 // 32 if family == "GEMV_REVSPLITK" else 2
        monkeypatch.setattr(kernels, "MAX_WORKSPACE_BYTES", 2 * splits * 40 * 4)
        assert kernels._rows_per_launch(family, configs[family], 5, layout) == 2
        y_chunked = matmul(x, t["W_q"], t["scales"], t["zeros"], bias, layout, torch.float16, family)
    assert torch.equal(y_one, y_chunked)
