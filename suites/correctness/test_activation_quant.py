"""Dynamic activation quantization (``gemlite/kernels/act_quant.py``) against the reference, bit for bit,
and the results gemlite defines where the reference has no rule.

* Codes and scales equal ``reference.quantize_activation``'s exactly (`assert_exact`), for drawn rows
  (fp16/bf16, any K, outliers, tiny and huge magnitudes), exact ties (``n + 0.5`` for INT8, e4m3
  midpoints for FP8, with a power-of-two scale so the quotient is the tie itself), and quotients just
  below a tie whose fp32 rounding lands ON it (found by enumerating every fp16 value: the cases a
  kernel that rounds twice gets one code wrong).
* An all-zero row: scale 1e-6, codes 0, the output row is the bias (no division by zero).
* A row holding NaN, +Inf or -Inf: scale NaN, codes 0, the output row is NaN in every column, and the
  other rows are bitwise what they are without it.
* fp16's largest values (+-65504): codes +-127 / +-448, never a saturated wrong code.
* The helpers (``A8W8_INT8_dynamic``, ``A8W8_FP8_dynamic``) from a float ``nn.Linear``: within the bound
  of the reference's product of the same codes, and close to the float product (SQNR).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import reference as ref
from gemlite.formats import FORMATS, ActKind, ActSpec
from gemlite.kernels.plan import quantize_activation
from gemlite.schemes import act_scheme
from harness.numerics import Precision, assert_exact, check_output, golden_from_dequantized, sqnr_db

KINDS = {"int8": ActKind.INT8, "fp8": ActKind.FP8}
MAX_CODE = {"int8": 127.0, "fp8": 448.0}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
FAMILIES = ("GEMV", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM")
FORMAT_OF = {"int8": "A8W8_INT8_dynamic", "fp8": "A8W8_FP8_dynamic"}
# Where the kernels run: the GPU when there is one, else the CPU under the interpreter (suites/conftest.py).
# Inputs are built on the CPU and results brought back to it, next to the reference.
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _quantize(x: torch.Tensor, kind: str, group: int | None = None):
    codes, scales = quantize_activation(x.to(DEV), act_scheme(KINDS[kind]), group)
    return codes.cpu(), scales.cpu()


def _assert_matches_reference(x: torch.Tensor, kind: str, group: int | None = None) -> None:
    codes, scales = _quantize(x, kind, group)
    want = ref.quantize_activation(ActSpec(KINDS[kind], group), x)
    assert_exact(codes, want.codes, what=f"{kind} activation codes")
    assert_exact(scales, want.scales.reshape(scales.shape), what=f"{kind} activation scales")
    if group is None:
        _assert_sums_match(x, kind, want.codes)


def _assert_sums_match(x: torch.Tensor, kind: str, want_codes: torch.Tensor) -> None:
    """The per-token quantizer's sums of 32 codes (what the GEMM's zero-point term of float zeros
    reads): the sums of the reference codes' values, exactly (32 codes sum exactly in fp32), the last
    chunk of a K that is not a multiple of 32 summing only the codes inside K."""
    codes, _, sums = quantize_activation(x.to(DEV), act_scheme(KINDS[kind]), sums=True)
    assert_exact(codes.cpu(), want_codes, what=f"{kind} activation codes (with sums)")
    M, K = want_codes.shape
    values = torch.zeros((M, -(-K // 32) * 32), dtype=torch.float64)
    values[:, :K] = want_codes.to(torch.float64)
    want = values.reshape(M, -1, 32).sum(dim=2).to(torch.float32)
    assert_exact(sums.cpu(), want, what=f"{kind} activation code sums")


def _rows(dist: str, M: int, K: int, dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((M, K), generator=g, dtype=torch.float64)
    if dist == "outliers":
        x[:, torch.rand((K,), generator=g) < 0.05] *= 100.0
    elif dist == "magnitudes":  # each row at its own scale, 1e-6 .. 1e4 (fp16: subnormals at the bottom)
        x *= torch.logspace(-6, 4, M, dtype=torch.float64)[:, None]
    elif dist == "huge" and dtype == torch.bfloat16:
        x *= 1e30
    return x.to(dtype)


@pytest.mark.parametrize("dist", ["normal", "outliers", "magnitudes", "huge"])
@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("K", [32, 96, 1000, 2080])
def test_codes_and_scales_match_reference(kind, dtype, dist, K):
    """Drawn rows (K a multiple of the quantizer's 1024-wide steps or not): bitwise the reference's."""
    x = _rows(dist, 9, K, DTYPES[dtype], seed=K + len(dist))
    _assert_matches_reference(x, kind)


@pytest.mark.parametrize("dist", ["normal", "outliers", "magnitudes"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_block_codes_and_scales_match_reference(kind, dist):
    """1 x 128 blocks (the _block_dynamic formats): a scale per 128 inputs of a row, bitwise the
    reference's; one block of a row all zero, another holding a NaN."""
    x = _rows(dist, 5, 384, torch.float16, seed=7)
    x[1, 128:256] = 0.0
    _assert_matches_reference(x, kind, 128)
    x[2, 300] = float("nan")
    codes, scales = _quantize(x, kind, 128)
    assert_exact(torch.isnan(scales), torch.arange(15).reshape(5, 3) == 8, what="NaN block scale")
    assert_exact(codes[2, 256:].float(), torch.zeros(128), what="codes of a NaN block")


def _ties(kind: str) -> torch.Tensor:
    """Rows whose scale is a power of two (amax = c * 2**e), so every quotient is exact and the listed
    values are exact ties: n + 0.5 for INT8, the midpoint of two e4m3 neighbours for FP8."""
    rows = []
    for e in (-3, 0, 2):
        s = 2.0**e
        if kind == "int8":
            ties = [n + 0.5 for n in range(0, 126, 5)]
        else:
            grid = sorted({float(v) for v in torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn)
                           .float() if 0 <= v <= 448})  # fmt: skip
            ties = [(a + b) / 2 for a, b in zip(grid, grid[1:])][::7]
        values = [MAX_CODE[kind]] + ties + [-t for t in ties]
        rows.append(torch.tensor(values, dtype=torch.float64) * s)
    width = max(len(r) for r in rows)
    return torch.stack([torch.nn.functional.pad(r, (0, width - len(r))) for r in rows]).to(torch.float16)


@pytest.mark.parametrize("kind", list(KINDS))
def test_exact_ties(kind):
    """Ties: INT8 rounds half away from zero (2.5 -> 3, -2.5 -> -3), e4m3 to the even mantissa."""
    x = _ties(kind)
    _assert_matches_reference(x, kind)
    codes, _ = _quantize(torch.tensor([[127.0, 2.5, -2.5, 0.5, -0.5]], dtype=torch.float16), "int8")
    assert_exact(codes, torch.tensor([[127, 3, -3, 1, -1]], dtype=torch.int8), what="int8 ties")
    codes, _ = _quantize(torch.tensor([[448.0, 4.25, 4.75, -4.25, 0.0]], dtype=torch.float16), "fp8")
    want = torch.tensor([[448.0, 4.0, 5.0, -4.0, 0.0]]).to(torch.float8_e4m3fn)
    assert_exact(codes, want, what="e4m3 ties")


def _below_ties(amax: float, kind: str) -> np.ndarray:
    """Every fp16 value v <= amax whose quotient v / s (s = fp32(amax / c)) rounds to another code when
    it is first rounded to fp32: the exact quotient lies just off a tie, its fp32 rounding on it."""
    s = np.float32(np.float64(amax) / MAX_CODE[kind])
    v = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    v = v[v <= amax]
    exact = torch.from_numpy(v / np.float64(s))
    rounded = torch.from_numpy((v.astype(np.float32) / s).astype(np.float64))
    if kind == "int8":
        differ = ref.round_half_away_from_zero(exact) != ref.round_half_away_from_zero(rounded)
    else:
        e4m3 = [ref.float_to_e4m3(q.clamp(max=448)).float() for q in (exact, rounded)]
        differ = e4m3[0] != e4m3[1]
    return v[differ.numpy()]


@pytest.mark.parametrize("kind", list(KINDS))
def test_quotients_just_below_a_tie(kind):
    """The values a kernel that rounds x / s to fp32 and then to the code gets wrong (one code off)."""
    rows = []
    for amax in (100.0, 3.0, 0.0234375, 2000.0, 65504.0):
        hard = _below_ties(amax, kind)[:31]
        row = np.zeros(64)
        row[0] = amax
        row[1 : 1 + len(hard)] = hard
        row[32 : 32 + len(hard)] = -hard
        rows.append(row)
    x = torch.tensor(np.array(rows), dtype=torch.float16)
    assert int((x[:, 1:].abs() > 0).sum()) >= 4, "no hard value found: the test would check nothing"
    _assert_matches_reference(x, kind)


@pytest.mark.parametrize("kind", list(KINDS))
def test_fp16_max_values(kind):
    """+-65504 (fp16's largest): the scale 65504 / c and the largest codes, no saturation elsewhere."""
    x = torch.tensor([[65504.0, -65504.0, 65504.0 / 3, 1.0, -0.0], [65504.0, 0.0, 0.0, 0.0, 0.0]],
                     dtype=torch.float16)  # fmt: skip
    _assert_matches_reference(x, kind)
    codes, scales = _quantize(x, kind)
    top = torch.tensor([MAX_CODE[kind], -MAX_CODE[kind]]).to(codes.dtype)
    assert_exact(codes[0, :2], top, what="codes of +-65504")
    assert_exact(scales[:1], torch.tensor([65504.0 / MAX_CODE[kind]], dtype=torch.float32), what="scale")


def _layer(kind: str, K: int, N: int, dtype, out_dtype, seed: int = 0, bias: bool = True):
    from gemlite import DType, GemLiteLinear

    fmt = FORMATS[FORMAT_OF[kind]]
    g = torch.Generator().manual_seed(seed)
    qw = ref.quantize_weight(fmt, (torch.randn((N, K), generator=g, dtype=torch.float64) / K**0.5).float())
    b = torch.randn((N,), generator=g).to(dtype) if bias else None
    layer = GemLiteLinear(8, None, K, N, DType.from_torch(dtype), DType.from_torch(out_dtype))
    return layer.pack(qw.codes, qw.scales, None, b, format=fmt).to(DEV), qw, b


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_all_zero_row(kind, family):
    """An all-zero row: scale 1e-6 (the floor), codes 0, and its output row is the bias exactly."""
    x = torch.randn((4, 96)).half()
    x[2] = 0.0
    codes, scales = _quantize(x, kind)
    assert_exact(scales[2:3], torch.tensor([1e-6], dtype=torch.float32), what="scale of an all-zero row")
    assert_exact(codes[2].float(), torch.zeros(96), what="codes of an all-zero row")
    layer, _, bias = _layer(kind, 96, 40, torch.float16, torch.float32)
    y = layer.forward_manual(x.to(DEV), family).cpu()
    assert_exact(torch.isfinite(y), torch.ones_like(y, dtype=torch.bool), what="finite outputs")
    assert_exact(y[2], bias.float(), what="output row of an all-zero activation row")


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_nonfinite_rows_give_nan_rows(kind, family):
    """Rows holding NaN, +Inf or -Inf: scale NaN, codes 0, an all-NaN output row; the other rows are bitwise
    the output they have when those rows are finite."""
    x = torch.randn((5, 160)).half()
    bad = x.clone()
    bad[1, 7] = float("nan")
    bad[2, 0] = float("inf")
    bad[3, 159] = float("-inf")
    codes, scales = _quantize(bad, kind)
    nan_rows = torch.tensor([False, True, True, True, False])
    assert_exact(torch.isnan(scales), nan_rows, what="NaN scales of the non-finite rows")
    assert_exact(codes[1:4].float(), torch.zeros(3, 160), what="codes of the non-finite rows")
    layer, _, _ = _layer(kind, 160, 40, torch.float16, torch.float16)
    y_bad, y = (layer.forward_manual(t.to(DEV), family).cpu() for t in (bad, x))
    assert_exact(torch.isnan(y_bad), nan_rows[:, None].expand(5, 40), what="NaN output rows")
    assert_exact(y_bad[[0, 4]], y[[0, 4]], what="finite rows next to non-finite ones")


@pytest.mark.parametrize("out", ["float16", "float32"])
def test_nonfinite_rows_through_cublas_fp8(out):
    """The same rule on A8W8_FP8_dynamic's DEQUANT=1 path (cuBLAS's fp8 GEMM on the quantizer's codes,
    `WeightLayout.fp8_scaled_mm`: N = 48), with a bias of the output dtype (cuBLAS's epilogue) and with
    an fp32 output (the bias added to its product after it)."""
    from gemlite import autotune

    x = torch.randn((5, 160)).half()
    bad = x.clone()
    bad[1, 7], bad[2, 0], bad[3, 159] = float("nan"), float("inf"), float("-inf")
    nan_rows = torch.tensor([False, True, True, True, False])
    layer, _, _ = _layer("fp8", 160, 48, torch.float16, getattr(torch, out))
    assert layer.layout.fp8_scaled_mm
    with autotune.forced_config("GEMM", autotune.Config(BLOCK_M=16, BLOCK_N=128, BLOCK_K=64, DEQUANT=1)):
        y_bad, y = (layer.forward_manual(t.to(DEV), "GEMM").cpu() for t in (bad, x))
    assert_exact(torch.isnan(y_bad), nan_rows[:, None].expand(5, 48), what="NaN output rows")
    assert_exact(y_bad[[0, 4]], y[[0, 4]], what="finite rows next to non-finite ones")


@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
@pytest.mark.parametrize("kind", list(KINDS))
def test_helper_from_linear(kind, dtype):
    """The public helpers from a float nn.Linear: within the bound of the reference's product of the
    layer's own codes, and close to the float product."""
    from gemlite import helper

    K, N, M = 256, 72, 6
    linear = torch.nn.Linear(K, N, bias=True, dtype=DTYPES[dtype])
    w_float, b = linear.weight.detach().double().clone(), linear.bias.detach().clone()
    layer = getattr(helper, FORMAT_OF[kind])(device=DEV).from_linear(linear)
    assert layer.format.name == FORMAT_OF[kind] and layer.output_dtype.torch_dtype == DTYPES[dtype]
    x = torch.randn((M, K), dtype=DTYPES[dtype])
    y = layer(x.to(DEV)).cpu()
    fmt = layer.format
    qw = ref.QuantizedWeight(fmt, layer.W_q.cpu(), layer.scales.cpu().reshape(N, 1), None)
    x_hat = ref.dequantize_activation(ref.quantize_activation(fmt.act, x))
    gold = golden_from_dequantized(x_hat, ref.dequantize_weight(qw), b, y=ref.linear(fmt, x, qw, b))
    check_output(y, gold, Precision(DTYPES[dtype], DTYPES[dtype], deq_dtype=torch.float32))
    floor = {"int8": 30.0, "fp8": 20.0}[kind]
    assert sqnr_db(x.double() @ w_float.T + b.double(), y) > floor


def test_helper_arguments():
    """GemLite's constructor arguments; what is not in this release is refused by name."""
    from gemlite import helper

    assert helper.A8W8_dynamic(device="cpu").format.name == "A8W8_INT8_dynamic"
    assert helper.A8W8_dynamic(device="cpu", fp8=torch.float8_e4m3fn).format.name == "A8W8_FP8_dynamic"
    assert helper.A8W8_FP8_dynamic is helper.A8W8_fp8_dynamic
    assert helper.A8W8_INT8_dynamic(device="cpu", block_quant=True).format.name == "A8W8_INT8_block_dynamic"
    assert helper.A8W8_fp8_dynamic(device="cpu", block_quant=True).format.name == "A8W8_FP8_block_dynamic"
    with pytest.raises(TypeError, match="block_quant"):
        helper.A8W8_INT8_dynamic(device="cpu", block_quant=1)
    with pytest.raises(NotImplementedError, match="fp8"):
        helper.A8W8_dynamic(device="cpu", fp8=torch.float8_e5m2)
    with pytest.raises(TypeError, match="fp8"):
        helper.A8W8_fp8_dynamic(device="cpu", fp8=None)


@pytest.mark.parametrize("kind", list(KINDS))
def test_block_formats_refuse_k_not_a_multiple_of_128(kind):
    """128 x 128 blocks: in_features must be a multiple of 128 (the activation blocks); N may be ragged."""
    from gemlite import DType, GemLiteLinear, helper

    fmt = FORMATS[FORMAT_OF[kind].replace("_dynamic", "_block_dynamic")]
    codes = torch.zeros((64, 96), dtype=torch.int8 if kind == "int8" else torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="in_features: .* multiple of 128, got 96"):
        GemLiteLinear(8, None, 96, 64, DType.FP16, DType.FP16).pack(codes, torch.ones(1, 1), None, format=fmt)
    with pytest.raises(ValueError, match="multiple of 128"):
        getattr(helper, FORMAT_OF[kind])(device="cpu", block_quant=True).from_linear(torch.nn.Linear(96, 64))
    with pytest.raises(ValueError, match=r"scales: expected ceil\(N / 128\) \* K / 128 = 2 \* 2"):
        GemLiteLinear(8, None, 256, 200, DType.FP16, DType.FP16).pack(
            torch.zeros((200, 256), dtype=codes.dtype), torch.ones(2, 3), None, format=fmt
        )


def test_code_sums_are_per_token_only():
    """The sums of 32 codes come from the per-token quantizer; asking the 1 x 128-block one for them is
    refused, naming the argument."""
    x = torch.randn((2, 256), dtype=torch.float16).to(DEV)
    with pytest.raises(ValueError, match="sums: only the per-token quantizer sums its codes, got group=128"):
        quantize_activation(x, act_scheme(ActKind.FP8), 128, sums=True)


def test_a8w4_accuracy_next_to_a16w4():
    """The A8W4 design (exact codes in the fp8 dot, group scales and zeros in fp32) costs only the
    activations' e4m3 rounding next to A16W4 on the same HQQ weights, where casting the dequantized
    weights to e4m3 (public GemLite's design) loses several dB to e4m3's subnormals (weights ~5e-3)."""
    from gemlite import helper
    from gemlite.quantize import quantize_hqq

    g = torch.Generator().manual_seed(0)
    W = torch.randn((128, 512), generator=g) * 0.005
    x = torch.randn((16, 512), generator=g).half()
    codes, scales, zeros = quantize_hqq(W, 4, 128, scale_dtype=torch.float16)
    y_float = x.double() @ W.double().T
    a16 = helper.A16W4_HQQ_INT(device=DEV, dtype=torch.float16).from_weights(codes, scales, zeros)
    a8 = helper.A8W4_HQQ_INT_dynamic(device=DEV, dtype=torch.float16).from_weights(codes, scales, zeros)
    qw = ref.QuantizedWeight(a8.format, codes, scales, zeros)
    x_hat = ref.dequantize_activation(ref.quantize_activation(a8.format.act, x))
    cast = ref.dequantize_weight(qw).float().to(torch.float8_e4m3fn).double()
    y16, y8 = a16(x.to(DEV)).cpu(), a8(x.to(DEV)).cpu()
    sqnr16, sqnr8, naive = sqnr_db(y_float, y16), sqnr_db(y_float, y8), sqnr_db(y_float, x_hat @ cast.T)
    assert sqnr8 > sqnr16 - 1.0 and sqnr8 > naive + 2.0, (sqnr16, sqnr8, naive)
