"""The error bound of harness.numerics: a correct kernel passes it, the classic bugs do not.

"Kernels" here are plain PyTorch emulations run on CPU, so the bound's verdicts are checked without
Triton: the known-good one dequantizes ``(q - z) * s`` in fp32, rounds it once to the compute dtype,
accumulates in fp32 and casts once; the known-bad ones each carry one bug a real kernel can have.
"""

from __future__ import annotations

import math

import pytest
import torch

from harness.numerics import (
    DEQ_EXACT,
    SAFETY,
    BoundViolation,
    ExactMismatch,
    Golden,
    Precision,
    assert_exact,
    check_output,
    compare_output,
    error_bound,
    exact_diff,
    golden_from_dequantized,
    sqnr_db,
    underflow_unit,
    unit_roundoff,
)

FP16, BF16, FP32 = torch.float16, torch.bfloat16, torch.float32


def _hqq_operands(M, K, N, g, *, compute, positive=False, seed=0, scale_dtype=FP16):
    """x [M, K] (compute dtype), 4-bit codes [N, K], scales/zeros [N, K // g], bias [N] (fp32)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=gen)
    if positive:
        x = x.abs() + 0.25
    codes = torch.randint(0, 16, (N, K), generator=gen, dtype=torch.uint8)
    scales = (torch.rand(N, K // g, generator=gen) * 0.02 + 0.005).to(scale_dtype)
    zeros = (torch.rand(N, K // g, generator=gen) * 15).to(scale_dtype)
    if positive:
        zeros = torch.zeros_like(zeros)
    bias = torch.randn(N, generator=gen)
    return x.to(compute), codes, scales, zeros, bias


def _expand(t, g):
    return t.repeat_interleave(g, dim=1)


def _dequant64(codes, scales, zeros, g):
    return (codes.double() - _expand(zeros.double(), g)) * _expand(scales.double(), g)


def _good_kernel(x, codes, scales, zeros, bias, g, *, compute, out):
    """A correct kernel: (q - z) * s in fp32, one rounding to the compute dtype, fp32 accumulation."""
    W = ((codes.float() - _expand(zeros.float(), g)) * _expand(scales.float(), g)).to(compute)
    y = x.float() @ W.float().T
    if bias is not None:
        y = y + bias.float()
    return y.to(out)


def _golden(x, codes, scales, zeros, bias, g):
    return golden_from_dequantized(x, _dequant64(codes, scales, zeros, g), bias)


# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------


def test_unit_roundoffs():
    assert unit_roundoff(torch.float64) == 2.0**-53
    assert unit_roundoff(FP32) == 2.0**-24
    assert unit_roundoff(FP16) == 2.0**-11
    assert unit_roundoff(BF16) == 2.0**-8
    assert unit_roundoff(torch.float8_e4m3fn) == 2.0**-4
    assert underflow_unit(FP16) == 2.0**-25
    assert underflow_unit(FP32) == 2.0**-150
    with pytest.raises(TypeError, match="dtype: expected a floating-point dtype"):
        unit_roundoff(torch.int32)


def test_precision_validates():
    with pytest.raises(TypeError, match="out_dtype"):
        Precision(torch.int8, FP16)
    with pytest.raises(ValueError, match="safety"):
        Precision(FP16, FP16, safety=100.0)
    with pytest.raises(TypeError, match="deq_dtype"):
        Precision(FP16, FP16, deq_dtype="fp16")
    assert f"{SAFETY:g} * (u_out" in Precision(FP16, FP16).describe(K=64)
    assert "u_deq=2^-8 (bfloat16)" in Precision(FP32, BF16).describe(K=64)
    assert "u_deq=2^-24 (float32)" in Precision(FP32, BF16, deq_dtype=FP32).describe(K=64)
    assert "u_deq=0 (weights exact)" in Precision(FP32, BF16, deq_dtype=DEQ_EXACT).describe(K=64)


def _one_element(bias_abs=None) -> Golden:
    # y* = 3, sum|x W| + |b| = 10, sum|x| = 2, K = 8.
    return Golden(
        y=torch.tensor([[3.0]], dtype=torch.float64),
        magnitude=torch.tensor([[10.0]], dtype=torch.float64),
        x_abs_sum=torch.tensor([[2.0]], dtype=torch.float64),
        K=8,
        bias_abs=None if bias_abs is None else torch.tensor([[bias_abs]], dtype=torch.float64),
    )


def test_bound_formula_by_hand():
    # fp16 out, bf16 compute, fp32 acc: weights rounded to bf16 (a pre-scaled tensor-core path).
    acc = 9 * 2**-24 * 10  # (K + 1) u_acc S
    expected = SAFETY * (2**-11 * 3 + 2**-25 + 2**-8 * 10 + 2**-134 * 2 + acc)
    assert error_bound(_one_element(), Precision(FP16, BF16)).item() == pytest.approx(expected, rel=1e-15)
    # A bias of 4 in S: no weight rounding charged on it (S_W = 6).
    expected = SAFETY * (2**-11 * 3 + 2**-25 + 2**-8 * 6 + 2**-134 * 2 + acc)
    assert error_bound(_one_element(4.0), Precision(FP16, BF16)).item() == pytest.approx(expected, rel=1e-15)
    # fp32 dequantization (GEMV, post-scaled), fp32 out: every term at fp32.
    expected = SAFETY * (2**-24 * 3 + 2**-150 + 2**-24 * 6 + 2**-150 * 2 + acc)
    got = error_bound(_one_element(4.0), Precision(FP32, BF16, deq_dtype=FP32)).item()
    assert got == pytest.approx(expected, rel=1e-15)
    # A16W16: the weights are not rounded at all.
    expected = SAFETY * (2**-24 * 3 + 2**-150 + acc)
    got = error_bound(_one_element(4.0), Precision(FP32, FP16, deq_dtype=DEQ_EXACT)).item()
    assert got == pytest.approx(expected, rel=1e-15)


# --------------------------------------------------------------------------------------------
# Known good passes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compute", [FP16, BF16])
@pytest.mark.parametrize("out", [FP16, BF16, FP32])
@pytest.mark.parametrize("K,g", [(32, 32), (512, 128), (4096, 64)])
@pytest.mark.parametrize("positive", [False, True])
def test_correct_kernel_passes(compute, out, K, g, positive):
    x, codes, scales, zeros, bias = _hqq_operands(8, K, 24, g, compute=compute, positive=positive)
    y = _good_kernel(x, codes, scales, zeros, bias, g, compute=compute, out=out)
    result = check_output(y, _golden(x, codes, scales, zeros, bias, g), Precision(out, compute))
    assert result.ok and result.n_failed == 0
    assert 0 < result.bound_ratio <= 1.0
    assert result.max_rel_error < 0.05
    assert result.sqnr_golden_db > 20


def _gemv_kernel(x, codes, scales, zeros, bias, g, *, out, scales_as=None, bias_as=None):
    """A correct GEMV: (q - z) * s in fp32 (no rounding to the compute dtype), fp32 FMAs, one cast.
    scales_as / bias_as: a dtype the kernel (wrongly) rounds the fp32 scales / bias to first."""
    s = scales if scales_as is None else scales.to(scales_as)
    W = (codes.float() - _expand(zeros.float(), g)) * _expand(s.float(), g)
    y = x.float() @ W.T
    if bias is not None:
        y = y + (bias if bias_as is None else bias.to(bias_as)).float()
    return y.to(out)


@pytest.mark.parametrize("compute", [FP16, BF16])
@pytest.mark.parametrize("out", [FP16, BF16, FP32])
@pytest.mark.parametrize("K,g", [(32, 32), (512, 128), (4096, 64)])
def test_correct_fp32_dequantization_passes_the_fp32_bound(compute, out, K, g):
    x, codes, scales, zeros, bias = _hqq_operands(8, K, 24, g, compute=compute, scale_dtype=FP32)
    y = _gemv_kernel(x, codes, scales, zeros, bias, g, out=out)
    golden = _golden(x, codes, scales, zeros, bias, g)
    result = check_output(y, golden, Precision(out, compute, deq_dtype=FP32))
    assert 0 < result.bound_ratio <= 1.0


@pytest.mark.parametrize("what", ["scales", "bias"])
@pytest.mark.parametrize("K,g", [(64, 32), (256, 64)])
def test_fp32_scales_or_bias_rounded_to_fp16_fail_where_fp32_is_kept(what, K, g):
    # The README keeps fp32 scales and bias. A GEMV (fp32 dequantization) with fp32 output that rounds
    # them to fp16 errs ~2**13 x more than the correct kernel and breaks the fp32 bound (3-40 x, less at
    # large K, whose worst-case accumulation term grows like K), while the old charge of an fp16 weight
    # rounding on every path let it through.
    x, codes, scales, zeros, bias = _hqq_operands(8, K, 24, g, compute=FP16, scale_dtype=FP32)
    bias = bias * 4
    kwargs = {"scales_as": FP16} if what == "scales" else {"bias_as": FP16}
    y = _gemv_kernel(x, codes, scales, zeros, bias, g, out=FP32, **kwargs)
    golden = _golden(x, codes, scales, zeros, bias, g)
    tight = compare_output(y, golden, Precision(FP32, FP16, deq_dtype=FP32))
    assert not tight.ok and tight.bound_ratio > 2
    assert compare_output(y, golden, Precision(FP32, FP16)).ok  # the compute-dtype charge cannot tell
    good = _gemv_kernel(x, codes, scales, zeros, bias, g, out=FP32)
    assert compare_output(good, golden, Precision(FP32, FP16, deq_dtype=FP32)).bound_ratio < 0.05


def test_exact_weights_bound_catches_a_rounded_dense_weight():
    # A16W16: the weight IS the fp16 tensor; a kernel that passes it through bf16 loses bits the fp32
    # accumulation would have kept.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 256, generator=gen).to(FP16)
    W = (torch.randn(16, 256, generator=gen) / 16).to(FP16)
    golden = golden_from_dequantized(x, W.double())
    good = (x.float() @ W.float().T).to(FP32)
    assert check_output(good, golden, Precision(FP32, FP16, deq_dtype=DEQ_EXACT)).ok
    bad = (x.float() @ W.to(BF16).float().T).to(FP32)
    assert not compare_output(bad, golden, Precision(FP32, FP16, deq_dtype=DEQ_EXACT)).ok


def test_failures_raise_typed_assertions():
    x, codes, scales, zeros, bias = _hqq_operands(2, 64, 4, 32, compute=FP16)
    golden = _golden(x, codes, scales, zeros, bias, 32)
    with pytest.raises(BoundViolation, match="OUTSIDE the error bound"):
        check_output(golden.y.to(FP16) + 1, golden, Precision(FP16, FP16))
    with pytest.raises(ExactMismatch, match="codes"):
        assert_exact(codes, codes + 1, what="codes")
    assert issubclass(BoundViolation, AssertionError) and issubclass(ExactMismatch, AssertionError)


def test_exact_output_has_zero_ratio_and_infinite_sqnr():
    x, codes, scales, zeros, _ = _hqq_operands(2, 64, 8, 32, compute=FP16)
    golden = _golden(x, codes, scales, zeros, None, 32)
    result = compare_output(golden.y.clone(), golden, Precision(FP32, FP16))
    assert result.ok and result.bound_ratio == 0.0 and result.mae == 0.0
    assert math.isinf(result.sqnr_golden_db)
    assert result.worst == ()


def test_subnormal_weights_do_not_fail_a_correct_kernel():
    # Dequantized weights around 1e-7 are fp16 subnormals: only an absolute accuracy is left, which the
    # eta terms of the bound account for (a purely relative bound would fail this correct kernel).
    g = 32
    x, codes, _, zeros, bias = _hqq_operands(4, 256, 16, g, compute=FP16)
    scales = torch.full((16, 256 // g), 3e-8, dtype=FP32)
    y = _good_kernel(x, codes, scales, zeros.float(), None, g, compute=FP16, out=FP32)
    check_output(y, _golden(x, codes, scales, zeros.float(), None, g), Precision(FP32, FP16))


def test_unquantized_sqnr_is_reported():
    x, codes, scales, zeros, bias = _hqq_operands(4, 128, 16, 32, compute=FP16)
    W = _dequant64(codes, scales, zeros, 32)
    W_float = W + 1e-3 * torch.randn(W.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    golden = golden_from_dequantized(x, W, bias, W_float=W_float)
    y = _good_kernel(x, codes, scales, zeros, bias, 32, compute=FP16, out=FP32)
    result = compare_output(y, golden, Precision(FP32, FP16))
    assert result.sqnr_float_db is not None
    assert result.sqnr_float_db < result.sqnr_golden_db  # quantization error dwarfs kernel rounding


# --------------------------------------------------------------------------------------------
# Known bad fails
# --------------------------------------------------------------------------------------------


def test_wrong_group_index_fails():
    g = 32
    x, codes, scales, zeros, bias = _hqq_operands(4, 256, 16, g, compute=FP16)
    shifted_s = torch.roll(scales, 1, dims=1)  # group j uses the scale of group j - 1
    shifted_z = torch.roll(zeros, 1, dims=1)
    y = _good_kernel(x, codes, shifted_s, shifted_z, bias, g, compute=FP16, out=FP16)
    result = compare_output(y, _golden(x, codes, scales, zeros, bias, g), Precision(FP16, FP16))
    assert not result.ok and result.bound_ratio > 10


def test_dropped_bias_fails():
    x, codes, scales, zeros, bias = _hqq_operands(4, 128, 16, 64, compute=BF16)
    y = _good_kernel(x, codes, scales, zeros, None, 64, compute=BF16, out=BF16)
    result = compare_output(y, _golden(x, codes, scales, zeros, bias, 64), Precision(BF16, BF16))
    assert not result.ok


def test_skipped_k_tail_fails():
    g = 32
    x, codes, scales, zeros, bias = _hqq_operands(4, 96, 16, g, compute=FP16)
    x_cut = x.clone()
    x_cut[:, 64:] = 0  # a kernel whose K loop stops at the last full 64-wide tile
    y = _good_kernel(x_cut, codes, scales, zeros, bias, g, compute=FP16, out=FP32)
    assert not compare_output(y, _golden(x, codes, scales, zeros, bias, g), Precision(FP32, FP16)).ok


@pytest.mark.parametrize("K,tile", [(4096, 1), (4096, 32), (8192, 16)])
def test_fp16_accumulation_over_large_k_fails(K, tile):
    # Same-sign data (no cancellation): an fp16 accumulator rounds partial sums as large as the result
    # every `tile` inputs, a random walk of K / tile roundings of u_fp16 * |y| each, which the
    # fp32-accumulator bound does not allow.
    g = 64
    x, codes, scales, zeros, _ = _hqq_operands(8, K, 32, g, compute=FP16, positive=True)
    W = ((codes.float() - _expand(zeros.float(), g)) * _expand(scales.float(), g)).to(FP16)
    acc = torch.zeros(8, 32, dtype=FP16)
    for k in range(0, K, tile):
        acc = (acc.float() + x[:, k : k + tile].float() @ W[:, k : k + tile].float().T).to(FP16)
    golden = _golden(x, codes, scales, zeros, None, g)
    result = compare_output(acc, golden, Precision(FP16, FP16))
    assert not result.ok and result.bound_ratio > 1.2
    # ... while the same data accumulated in fp32 passes.
    good = _good_kernel(x, codes, scales, zeros, None, g, compute=FP16, out=FP16)
    assert compare_output(good, golden, Precision(FP16, FP16)).ok


def test_nan_and_inf_fail_where_the_golden_is_finite():
    x, codes, scales, zeros, bias = _hqq_operands(3, 64, 5, 32, compute=FP16)
    golden = _golden(x, codes, scales, zeros, bias, 32)
    y = golden.y.to(FP16)
    y[1, 2] = float("nan")
    y[0, 4] = float("inf")
    result = compare_output(y, golden, Precision(FP16, FP16))
    assert not result.ok and result.n_nonfinite == 2 and result.n_failed == 2
    assert math.isinf(result.bound_ratio) and math.isinf(result.max_rel_error)
    assert "non-finite outputs where the golden is finite: 2" in result.message()
    with pytest.raises(AssertionError, match="OUTSIDE the error bound"):
        check_output(y, golden, Precision(FP16, FP16))


def test_golden_beyond_the_output_range_expects_that_infinity():
    golden = Golden(
        y=torch.tensor([[70000.0, -70000.0]], dtype=torch.float64),
        magnitude=torch.tensor([[70000.0, 70000.0]], dtype=torch.float64),
        x_abs_sum=torch.tensor([[1.0]], dtype=torch.float64),
        K=32,
    )
    inf = float("inf")
    ok = compare_output(torch.tensor([[inf, -inf]], dtype=FP16), golden, Precision(FP16, FP16))
    assert ok.ok
    bad = compare_output(torch.tensor([[-inf, float("nan")]], dtype=FP16), golden, Precision(FP16, FP16))
    assert bad.n_failed == 2


def test_failure_message_lists_worst_elements_bound_and_reproducer():
    x, codes, scales, zeros, bias = _hqq_operands(4, 128, 16, 64, compute=FP16)
    golden = _golden(x, codes, scales, zeros, bias, 64)
    y = golden.y.to(FP16)
    y[2, 7] += 1.0
    repro = "python -m harness.repro '{}'"
    result = compare_output(y, golden, Precision(FP16, FP16), repro=repro, context="A16W4")
    msg = result.message()
    assert result.n_failed == 1
    assert result.worst[0].index == (2, 7) and result.worst[0].ratio > 1
    assert "(2, 7)" in msg and "bound: |y - y*| <=" in msg and "K=128" in msg
    assert "reproduce: python -m harness.repro '{}'" in msg
    assert "[A16W4]" in msg


def test_compare_output_rejects_bad_arguments():
    golden = _golden(*_hqq_operands(2, 64, 4, 32, compute=FP16)[:4], None, 32)
    with pytest.raises(ValueError, match="y: expected shape"):
        compare_output(torch.zeros(2, 5), golden, Precision(FP16, FP16))
    with pytest.raises(TypeError, match="y: expected a floating-point tensor"):
        compare_output(torch.zeros(2, 4, dtype=torch.int32), golden, Precision(FP16, FP16))
    with pytest.raises(ValueError, match="x, W"):
        golden_from_dequantized(torch.zeros(2, 64), torch.zeros(4, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match="bias: expected shape"):
        golden_from_dequantized(torch.zeros(2, 64), torch.zeros(4, 64, dtype=torch.float64), torch.zeros(3))
    with pytest.raises(TypeError, match="magnitude: expected a 2-D float64"):
        Golden(golden.y, golden.magnitude.float(), golden.x_abs_sum, 64)


# --------------------------------------------------------------------------------------------
# Aggregates and exact comparisons
# --------------------------------------------------------------------------------------------


def test_sqnr_db():
    ref = torch.tensor([1.0, 0.0])
    assert sqnr_db(ref, torch.tensor([1.0, 0.1])) == pytest.approx(20.0)
    assert math.isinf(sqnr_db(ref, ref))
    with pytest.raises(ValueError, match="approx: expected shape"):
        sqnr_db(ref, torch.zeros(3))


def test_exact_diff_reports_packed_words_in_hex():
    a = torch.tensor([[0x87654321 - 2**32, 7]], dtype=torch.int32)
    assert exact_diff(a, a.clone()) is None
    b = a.clone()
    b[0, 0] = 0x12345678
    diff = exact_diff(b, a, what="packed W_q")
    assert diff.startswith("packed W_q: 1 of 2 elements differ")
    assert "0x12345678" in diff and "0x87654321" in diff and "(0, 0)" in diff
    with pytest.raises(AssertionError, match="packed W_q"):
        assert_exact(b, a, what="packed W_q")


def test_exact_diff_is_bitwise_for_floats_and_checks_dtype_and_shape():
    z = torch.tensor([0.0], dtype=FP16)
    assert exact_diff(-z, z, what="scales") is not None  # -0.0 is not the stored 0.0
    nan = torch.tensor([float("nan")], dtype=FP32)
    assert exact_diff(nan, nan.clone()) is None  # the same NaN bits are the same scale
    assert "dtype" in exact_diff(z, z.float())
    assert "shape" in exact_diff(z, torch.zeros(2, dtype=FP16))
    e4m3 = torch.tensor([1.0, 2.0]).to(torch.float8_e4m3fn)
    assert exact_diff(e4m3, torch.tensor([1.0, 3.0]).to(torch.float8_e4m3fn)) is not None
    with pytest.raises(TypeError, match="expected two tensors"):
        exact_diff([1], z)


def test_truncated_bf16_weights_and_output_stay_within_the_bound():
    # The Triton interpreter truncates fp32 -> bf16. Worst case: every dequantized weight truncated by
    # almost a whole ulp (all in the same direction) AND the output truncated by almost a whole ulp:
    # still within c = 2 (module docstring), if only just.
    K = 32
    x = torch.ones(1, K, dtype=BF16)
    W = torch.full((1, K), 1 + 0.99 * 2.0**-7, dtype=torch.float64)  # bf16 truncates it to 1.0
    bias = torch.tensor([0.24], dtype=torch.float64)
    golden = golden_from_dequantized(x, W, bias)
    y = (x.float() @ W.to(BF16).float().T + bias.float()).to(BF16)  # 32.24 truncates to 32.0
    y_truncated = torch.tensor([[32.0]], dtype=BF16)
    result = compare_output(y_truncated, golden, Precision(BF16, BF16))
    assert result.ok and 0.9 < result.bound_ratio < 1.0
    assert compare_output(y, golden, Precision(BF16, BF16)).ok  # round-to-nearest: comfortably inside
