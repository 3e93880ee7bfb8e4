"""reference.linear: hand-checked golden outputs, every format in FORMATS, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gemlite.formats import CODE_ACT_KINDS, FORMATS, WeightKind

F32, F64 = torch.float32, torch.float64
# Formats quantized from a float weight (the codes-in formats A8W8_INT8 / A8W8_FP8 take codes instead).
FLOAT_FORMATS = [name for name, f in FORMATS.items() if f.act.kind not in CODE_ACT_KINDS]


def int8_weight(fmt_name: str) -> ref.QuantizedWeight:
    # codes [[1, 2], [3, -4]] with row scales [0.5, 2] -> W = [[0.5, 1], [6, -8]]
    codes = torch.tensor([[1, 2], [3, -4]], dtype=torch.int8)
    return ref.QuantizedWeight(FORMATS[fmt_name], codes, torch.tensor([[0.5], [2.0]]), None)


def test_weight_only_golden_with_bias():
    fmt = FORMATS["A16W8_INT8"]
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=torch.float16)
    bias = torch.tensor([1.0, -1.0])
    y = ref.linear(fmt, x, int8_weight("A16W8_INT8"), bias)
    # row 0: [0.5 + 2 + 1, 6 - 16 - 1]; row 1: [-0.5 + 0.5 + 1, -6 - 4 - 1]
    assert y.dtype == F64
    assert y.tolist() == [[3.5, -11.0], [1.0, -11.0]]
    assert ref.linear(fmt, x, int8_weight("A16W8_INT8")).tolist() == [[2.5, -10.0], [0.0, -10.0]]


def test_dynamic_int8_golden_quantizes_the_activations_first():
    fmt = FORMATS["A8W8_INT8_dynamic"]
    # Row 0: s = 1, -63.5 -> -64 (half away from zero). Row 1: s = 2, 3 / 2 = 1.5 -> 2, so 3 becomes 4.
    x = torch.tensor([[127.0, -63.5], [254.0, 3.0]])
    y = ref.linear(fmt, x, int8_weight("A8W8_INT8_dynamic"), torch.tensor([0.25, 0.0]))
    # W = [[0.5, 1], [6, -8]]: row 0 [63.5 - 64, 762 + 512], row 1 [127 + 4, 1524 - 32]
    assert y.tolist() == [[-0.5 + 0.25, 1274.0], [131.0 + 0.25, 1492.0]]


def test_dynamic_nvfp4_golden():
    fmt = FORMATS["A4W4_NVFP_dynamic"]
    # x: amax 6 -> ts = 448, s_g = 448, eff = 1; 1.25 ties to 1.0. W: e2m1 codes 2 (1.0) and 4 (2.0),
    # s_g = 448 and ts = 448, so W = [1, 2, 0, ...]. y = 6 * 1 + 1 * 2 (not 6 + 2.5) + bias.
    x = torch.zeros(1, 16)
    x[0, 0], x[0, 1] = 6.0, 1.25
    codes = torch.zeros(1, 16, dtype=torch.uint8)
    codes[0, 0], codes[0, 1] = 2, 4
    qw = ref.QuantizedWeight(fmt, codes, torch.full((1, 1), 448.0).to(torch.float8_e4m3fn), None, 448.0)
    assert ref.linear(fmt, x, qw, torch.tensor([0.5])).tolist() == [[8.5]]


def test_float_weights_and_leading_dims():
    fmt = FORMATS["A16W16"]
    W = torch.tensor([[1.0, -2.0, 0.5], [0.25, 0.0, 4.0]], dtype=torch.bfloat16)
    qw = ref.quantize_weight(fmt, W)
    x = torch.arange(18, dtype=F32).reshape(2, 3, 3)
    y = ref.linear(fmt, x, qw)
    assert y.shape == (2, 3, 2)
    assert torch.equal(y, x.double() @ W.double().T)


def test_out_dtype_casts_the_float64_result_once():
    fmt = FORMATS["A16W8_INT8"]
    x = torch.tensor([[1.0, 2.0**-12]])  # y[0] = 0.5 + 2**-12 in float64: not an fp16 value
    y64 = ref.linear(fmt, x, int8_weight("A16W8_INT8"))
    y16 = ref.linear(fmt, x, int8_weight("A16W8_INT8"), out_dtype=torch.float16)
    assert y16.dtype == torch.float16
    assert torch.equal(y16, y64.to(torch.float16))


# --------------------------------------------------------------------------------------------
# Every format
# --------------------------------------------------------------------------------------------

# Relative Frobenius error against the unquantized float64 product for W ~ 0.05 N(0, 1), x ~ N(0, 1),
# K = 256. Observed: fp16 2e-4; 8-bit 0.01-0.04; 4-bit 0.10-0.15; 2-bit and ternary ~0.5; 1-bit
# min-max ~1.9 (every weight becomes its group's min or max). The limits leave ~1.5x headroom.
REL_ERROR_LIMIT = {16: 1e-3, 8: 0.06, 4: 0.25, 2: 0.75, 1: 2.6}


@pytest.mark.parametrize("name", FLOAT_FORMATS)
def test_every_format_quantizes_and_runs(name):
    fmt = FORMATS[name]
    gen = torch.Generator().manual_seed(sum(map(ord, name)))
    n, k = 64, 256
    W = torch.randn(n, k, generator=gen) * 0.05
    x = torch.randn(2, 3, k, generator=gen).to(torch.float16)
    bias = torch.randn(n, generator=gen)
    qw = ref.quantize_weight(fmt, W)
    y = ref.linear(fmt, x, qw, bias)
    assert y.shape == (2, 3, n)
    assert y.dtype == F64
    assert bool(torch.isfinite(y).all())
    exact = x.double() @ W.double().T
    rel = ((y - bias.double() - exact).norm() / exact.norm()).item()
    assert rel <= REL_ERROR_LIMIT[fmt.weight.bits], f"{name}: relative error {rel:.3g}"
    # A dynamic format must actually quantize x: its golden differs from the weight-only one.
    if fmt.act.is_dynamic:
        weight_only = x.double() @ ref.dequantize_weight(qw).T + bias.double()
        assert not torch.equal(y, weight_only)
    out = ref.linear(fmt, x, qw, bias, out_dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16 and torch.equal(out, y.to(torch.bfloat16))


@settings(deadline=None, max_examples=30)
@given(
    name=st.sampled_from(FLOAT_FORMATS),
    m=st.integers(0, 4),
    n=st.integers(1, 5),
    k_blocks=st.integers(1, 2),
    x_dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    seed=st.integers(0, 2**31 - 1),
)
def test_linear_is_the_product_of_the_dequantized_operands(name, m, n, k_blocks, x_dtype, seed):
    fmt = FORMATS[name]
    k = 128 * k_blocks
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, k, generator=gen)
    x = torch.randn(m, k, generator=gen).to(x_dtype)
    qw = ref.quantize_weight(fmt, W, scale_dtype=torch.float32)
    y = ref.linear(fmt, x, qw)
    x_used = (
        ref.dequantize_activation(ref.quantize_activation(fmt.act, x)) if fmt.act.is_dynamic else x.double()
    )
    # Each output is one float64 dot product of the operands: compare element by element with math.fsum.
    w_used = ref.dequantize_weight(qw)
    for i in range(m):
        for j in range(n):
            assert y[i, j].item() == pytest.approx(
                math.fsum((x_used[i] * w_used[j]).tolist()), rel=1e-12, abs=1e-12
            )
    assert y.shape == (m, n)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_linear_bad_input():
    fmt = FORMATS["A16W8_INT8"]
    qw = int8_weight("A16W8_INT8")
    x = torch.ones(3, 2)
    with pytest.raises(
        ValueError, match=r"x: expected shape \[..., K=2\] to match the weight \[N=2, K=2\], got \[3, 5\]"
    ):
        ref.linear(fmt, torch.ones(3, 5), qw)
    with pytest.raises(TypeError, match="x: expected dtype"):
        ref.linear(fmt, torch.ones(3, 2, dtype=torch.int32), qw)
    with pytest.raises(
        ValueError, match=r"bias: expected shape \[2\] \(one value per output feature\), got \[3\]"
    ):
        ref.linear(fmt, x, qw, torch.ones(3))
    with pytest.raises(ValueError, match=r"bias: expected a 1-D tensor \[N=2\], got shape \[1, 2\]"):
        ref.linear(fmt, x, qw, torch.ones(1, 2))
    with pytest.raises(ValueError, match="qw: was quantized for A16W8_INT8, not for fmt A16W8_FP8"):
        ref.linear(FORMATS["A16W8_FP8"], x, qw)
    with pytest.raises(TypeError, match="out_dtype: expected None or"):
        ref.linear(fmt, x, qw, out_dtype=torch.int64)
    with pytest.raises(ValueError, match=r"out_dtype: int32 holds integer results only, got 1.5"):
        ref.linear(fmt, torch.tensor([[1.0, 1.0]]), qw, out_dtype=torch.int32)
    with pytest.raises(TypeError, match="qw: expected a reference.QuantizedWeight, got Tensor"):
        ref.linear(fmt, x, torch.ones(2, 2))
    with pytest.raises(ValueError, match="x: expected finite values, found nan"):
        ref.linear(fmt, torch.tensor([[1.0, math.nan]]), qw)
    with pytest.raises(ValueError, match=r"act.group_size: INT8 activation groups of 128 must divide K=200"):
        block = FORMATS["A8W8_INT8_block_dynamic"]
        ref.linear(block, torch.ones(1, 200), ref.quantize_weight(block, torch.ones(4, 200)))


def test_codes_in_goldens_take_the_codes_as_they_are():
    """A8W8_INT8 / A8W8_FP8: x is int8 / e4m3 codes, W its codes, no scale anywhere; an integer bias and
    an int32 output are exact."""
    fmt = FORMATS["A8W8_INT8"]
    qw = ref.QuantizedWeight(fmt, torch.tensor([[1, -128], [127, 3]], dtype=torch.int8), None, None)
    x = torch.tensor([[-128, 127], [2, -1]], dtype=torch.int8)
    bias = torch.tensor([5, -7], dtype=torch.int32)
    y = ref.linear(fmt, x, qw, bias, out_dtype=torch.int32)
    # row 0: [-128 - 16256 + 5, -16256 + 381 - 7]; row 1: [2 + 128 + 5, 254 - 3 - 7]
    assert y.dtype == torch.int32 and y.tolist() == [[-16379, -15882], [135, 244]]
    with pytest.raises(TypeError, match="x: expected dtype torch.int8"):
        ref.linear(fmt, x.float(), qw)
    fp8 = FORMATS["A8W8_FP8"]
    qw8 = ref.QuantizedWeight(fp8, torch.tensor([[0.5, -448.0]]).to(torch.float8_e4m3fn), None, None)
    x8 = torch.tensor([[2.0, 0.015625]]).to(torch.float8_e4m3fn)
    assert ref.linear(fp8, x8, qw8).tolist() == [[1.0 - 7.0]]
    with pytest.raises(ValueError, match="x: expected finite values"):
        ref.linear(fp8, torch.tensor([[math.nan, 1.0]]).to(torch.float8_e4m3fn), qw8)


def test_weight_kinds_all_covered_by_formats():
    assert {f.weight.kind for f in FORMATS.values()} == set(WeightKind)
