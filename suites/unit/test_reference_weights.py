"""reference.weights: hand-computed quantizations per kind, error bounds, validation of QuantizedWeight.

Quantize-then-dequantize bounds, per element, with s the stored scale of the element's group
(u_s: unit roundoff of the scale dtype, 2**-11 fp16, 2**-8 bf16, 2**-24 fp32; u32 = 2**-24):

* FLOAT: fp32 -> fp16 rounding, |err| <= max(2**-11 |W|, 2**-25) (half an ulp, normal or subnormal).
* HQQ: |err| <= s / 2 wherever W / s + z lies inside [0, 2**bits - 1]; elsewhere (only at a group's
  min/max, pushed out by the rounding of the stored s and z) the overshoot is at most
  (maxq + |z|) * (u_s + 2 u32) steps, so |err| <= s * (1/2 + (maxq + |z|) (u_s + 2 u32)).
* INT8: |err| <= s / 2 (amax / s <= 127 (1 + u32) rounds to at most 127: nothing is clamped).
* FP8: |err| <= s * max(2**-4 |W / s|, 2**-10) + s * 448 * 2**-23 (half an e4m3 ulp; saturation at
  448 can cost only the fp32 rounding of the scale).
* TERNARY: |err| <= s / 2 where |W / s| <= 1.5, else |err| = |W| - s (the absmean grid clamps).
* MXFP8: |err| <= 2**e * max(2**-4 |v|, 2**-10), v = W / 2**e (|v| <= 448 by construction).
* MXFP4: |err| <= 2**e * h(|v|), h = 0.25 below 2, 0.5 below 4, 1 up to 6 (|v| <= 6 by construction).
* NVFP4: |err| <= eff * (h(min(|v|, 6)) + max(|v| - 6, 0)), eff = s_g / ts, v = W / eff; the rounding
  of s_g to e4m3 (2**-4 relative) lets |v| reach at most 6 (1 + 2**-4) / (1 - 2**-4) when s_g is normal.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gemlite.formats import FORMATS, Format, WeightKind, WeightSpec, Zeros

F32, F64 = torch.float32, torch.float64
U32 = 2.0**-24
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24}

HQQ4 = FORMATS["A16W4_HQQ_INT"]  # group 128, float zeros
INT8 = FORMATS["A16W8_INT8"]
FP8 = FORMATS["A16W8_FP8"]
TERNARY = FORMATS["A16W158_INT"]
MXFP8 = FORMATS["A16W8_MXFP"]
MXFP4 = FORMATS["A16W4_MXFP"]
NVFP4 = FORMATS["A16W4_NVFP"]
INT8_BLOCK = FORMATS["A8W8_INT8_block_dynamic"]
FP8_BLOCK = FORMATS["A8W8_FP8_block_dynamic"]


def hqq(bits: int, group_size: int | None, zeros: Zeros = Zeros.FLOAT) -> Format:
    return FORMATS[f"A16W{bits}_HQQ_INT"].with_group_size(group_size).with_zeros(zeros)


def t32(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F32)


# --------------------------------------------------------------------------------------------
# Hand-computed quantizations
# --------------------------------------------------------------------------------------------


def test_hqq_float_zeros_group():
    # Group 0: min -1, max 0.875 -> s = 1.875 / 15 = 0.125, z = 8 (both exact in fp16).
    # 0.0625 / s + z = 8.5 and 0.1875 / s + z = 9.5: ties, to even -> 8 and 10.
    # Group 1 is constant (1.0): s = 1, z = -1, code round(1 - 1) = 0, dequantized exactly.
    W = t32([[-1.0, 0.875, 0.0625, 0.1875, 1.0, 1.0, 1.0, 1.0]])
    qw = ref.quantize_weight(hqq(4, 4), W)
    assert qw.scales.dtype == torch.float16 and qw.zeros.dtype == torch.float16
    assert qw.scales.tolist() == [[0.125, 1.0]]
    assert qw.zeros.tolist() == [[8.0, -1.0]]
    assert qw.codes.dtype == torch.uint8
    assert qw.codes.tolist() == [[0, 15, 8, 10, 0, 0, 0, 0]]
    assert ref.dequantize_weight(qw).tolist() == [[-1.0, 0.875, 0.0, 0.25, 1.0, 1.0, 1.0, 1.0]]


def test_hqq_2bit_channelwise():
    # min 0, max 3 -> s = 1, z = 0; codes are the values themselves.
    W = t32([[0.0, 1.0, 2.0, 3.0, 1.4, 2.6], [-3.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    qw = ref.quantize_weight(hqq(2, None), W, scale_dtype=F32)
    assert qw.group_size == 6
    assert qw.scales.tolist() == [[1.0], [1.0]]
    assert qw.zeros.tolist() == [[0.0], [3.0]]
    assert qw.codes.tolist() == [[0, 1, 2, 3, 1, 3], [0, 3, 3, 3, 3, 3]]


def test_hqq_int_zeros_are_symmetric_around_the_midpoint():
    # 4 bits: z = 8, s = amax / 7 = 0.25. 0.375 / s = 1.5 -> 2 (even), -0.125 / s = -0.5 -> -0 (even).
    W = t32([[-1.75, 1.75, 0.375, -0.125], [0.0, 0.0, 0.0, 0.0]])
    qw = ref.quantize_weight(hqq(4, 4, Zeros.INT), W)
    assert qw.zeros == 8
    assert qw.scales.tolist()[0] == [0.25]
    # An all-zero group takes the 1e-6 floor (in fp16) and codes at the zero point.
    assert qw.scales[1, 0].item() == pytest.approx(1e-6, rel=2e-2)
    assert qw.codes.tolist() == [[1, 15, 10, 8], [8, 8, 8, 8]]
    assert ref.dequantize_weight(qw)[0].tolist() == [-1.75, 1.75, 0.5, 0.0]


def test_int8_row_rounds_ties_away_from_zero():
    # Row 0: amax 127 -> s = 1. Row 1: all zero -> s = 1e-6 (fp32). Row 2: amax 254 -> s = 2.
    W = t32(
        [
            [127.0, 2.5, -2.5, 0.5, -0.5, 1.25, -126.5, 0.0],
            [0.0] * 8,
            [254.0, 5.0, -3.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    qw = ref.quantize_weight(INT8, W)
    assert qw.scales.dtype == F32 and qw.scales.shape == (3, 1)
    assert qw.scales[:, 0].tolist() == [1.0, torch.tensor(1e-6, dtype=F32).item(), 2.0]
    assert qw.codes.dtype == torch.int8
    assert qw.codes.tolist() == [
        [127, 3, -3, 1, -1, 1, -127, 0],
        [0] * 8,
        [127, 3, -2, 1, 0, 0, 0, 0],  # 2.5 -> 3, -1.5 -> -2, 0.5 -> 1
    ]


def test_fp8_row():
    # Row 0: amax 448 -> s = 1; e4m3 RNE: 17 -> 16, 19 -> 20, 0.1 -> 0.1015625, 3 * 2**-10 -> 2**-8.
    # Row 1: amax 896 -> s = 2, the same values doubled.
    W = t32([[448.0, 17.0, 19.0, 0.1, 3 * 2.0**-10], [896.0, 34.0, -38.0, 0.2, 0.0]])
    qw = ref.quantize_weight(FP8, W)
    assert qw.scales[:, 0].tolist() == [1.0, 2.0]
    assert qw.codes.dtype == torch.float8_e4m3fn
    assert qw.codes.double().tolist() == [
        [448.0, 16.0, 20.0, 0.1015625, 2.0**-8],
        [448.0, 16.0, -20.0, 0.1015625, 0.0],
    ]


def test_ternary_absmean():
    # mean|W| = 8 / 8 = 1. W / s: 2 -> 1 (clamped), 0.25 -> 0, -0.75 -> -1, 0.5 -> 0 (tie, even),
    # -1.5 -> -2 (tie, even) -> -1 (clamped).
    W = t32([[2.0, -1.0, 0.25, -0.75], [0.0, 0.5, -1.5, 2.0]])
    qw = ref.quantize_weight(TERNARY, W)
    assert qw.zeros == 1
    assert qw.scales.dtype == F32 and qw.scales.tolist() == [[1.0], [1.0]]
    assert qw.codes.tolist() == [[2, 0, 1, 0], [1, 1, 0, 2]]
    assert ref.dequantize_weight(qw).tolist() == [[1.0, -1.0, 0.0, -1.0], [0.0, 0.0, -1.0, 1.0]]


def test_block_scaled_int8_weight_with_ragged_blocks():
    # N = 130, K = 200: 2 x 2 blocks of 128 x 128, the last ones ragged.
    W = torch.zeros(130, 200)
    W[0, 0], W[1, 1] = 127.0, 2.5  # block (0, 0): amax 127 -> s = 1; 2.5 -> 3
    W[5, 130] = 12.7  # block (0, 1): s = fp32(12.7 / 127)
    W[129, 199], W[129, 150] = 254.0, 3.0  # block (1, 1): s = 2; 1.5 -> 2
    qw = ref.quantize_weight(INT8_BLOCK, W)  # block (1, 0) is all zero: s = 1e-6
    assert qw.scales.shape == (2, 2)
    expected_01 = (torch.tensor(12.7, dtype=F32).double() / 127).float().item()
    assert qw.scales.tolist() == [[1.0, expected_01], [torch.tensor(1e-6, dtype=F32).item(), 2.0]]
    assert (qw.codes[0, 0], qw.codes[1, 1], qw.codes[5, 130]) == (127, 3, 127)
    assert (qw.codes[129, 199], qw.codes[129, 150]) == (127, 2)
    assert int(qw.codes.abs().sum()) == 127 + 3 + 127 + 127 + 2


def test_block_scaled_fp8_weight():
    W = torch.zeros(128, 256)
    W[3, 7], W[3, 8] = 448.0, 17.0  # block (0, 0): s = 1
    W[100, 200] = 896.0  # block (0, 1): s = 2
    qw = ref.quantize_weight(FP8_BLOCK, W)
    assert qw.scales.tolist() == [[1.0, 2.0]]
    assert (qw.codes[3, 7].item(), qw.codes[3, 8].item(), qw.codes[100, 200].item()) == (448.0, 16.0, 448.0)


def _mx_row(groups: list[list[float]]) -> torch.Tensor:
    """One row of 32-wide groups, each starting with the given values and padded with zeros."""
    row = []
    for values in groups:
        row += values + [0.0] * (32 - len(values))
    return t32([row])


def test_mxfp4_groups_known_exponents_and_codes():
    W = _mx_row(
        [
            [5.0, 0.75, -2.5, 0.2],  # amax 5: ceil(log2(5/6)) = 0 -> byte 127; 5 -> 4, 0.75 -> 1, -2.5 -> -2
            [12.0, 1.0, -7.0],  # amax 12: 12/6 = 2 exactly -> e = 1, byte 128; 6, 0.5, -3.5 -> -4
            [12.5],  # 12.5/6 = 2.08 -> e = 2, byte 129; 3.125 -> 3
            [],  # all zero: e = -127, byte 0
        ]
    )
    qw = ref.quantize_weight(MXFP4, W)
    assert qw.scales.dtype == torch.uint8
    assert qw.scales.tolist() == [[127, 128, 129, 0]]
    codes = qw.codes[0].reshape(4, 32)
    assert codes[0, :4].tolist() == [6, 2, 12, 0]
    assert codes[1, :3].tolist() == [7, 1, 14]
    assert codes[2, :1].tolist() == [5]
    assert int(codes[3].sum()) == 0
    deq = ref.dequantize_weight(qw)[0].reshape(4, 32)
    assert deq[0, :4].tolist() == [4.0, 1.0, -2.0, 0.0]
    assert deq[1, :3].tolist() == [12.0, 1.0, -8.0]
    assert deq[2, 0].item() == 12.0


def test_mxfp8_groups_known_exponents_and_codes():
    W = _mx_row(
        [
            [448.0, 17.0],  # 448/448 = 1 -> e = 0, byte 127; 17 -> 16
            [449.0, 17.0],  # just above: e = 1, byte 128; 449/2 = 224.5 -> 224, 8.5 -> 8
            [1.0, 0.1],  # 1/448 -> ceil(-8.807) = -8, byte 119; codes 256 and 25.6 -> 26
        ]
    )
    qw = ref.quantize_weight(MXFP8, W)
    assert qw.scales.tolist() == [[127, 128, 119]]
    codes = qw.codes[0].double().reshape(3, 32)
    assert codes[0, :2].tolist() == [448.0, 16.0]
    assert codes[1, :2].tolist() == [224.0, 8.0]
    assert codes[2, :2].tolist() == [256.0, 26.0]


def test_nvfp4_tensor_and_group_scales():
    # amax(W) = 6 -> ts = 448 * 6 / 6 = 448.
    # Group 0 amax 6: s_g = 6/6 * 448 = 448, eff = 1.
    # Group 1 amax 3: s_g = 224 (on the e4m3 grid), eff = 0.5.
    # Group 2 amax 1: 1/6 * 448 = 74.67 -> e4m3 72 (step 8 in [64, 128)); eff = 72/448, and
    #   1 / eff = 6.22 saturates to code 7 (6), dequantized 6 * 72 / 448.
    row = [6.0, 0.75] + [0.0] * 14 + [3.0, -0.25] + [0.0] * 14 + [1.0] + [0.0] * 15
    qw = ref.quantize_weight(NVFP4, t32([row]))
    assert qw.tensor_scale == 448.0
    assert qw.scales.dtype == torch.float8_e4m3fn
    assert qw.scales.double().tolist() == [[448.0, 224.0, 72.0]]
    assert qw.codes[0, [0, 1, 16, 17, 32]].tolist() == [7, 2, 7, 9, 7]
    deq = ref.dequantize_weight(qw)[0]
    assert deq[[0, 1, 16, 17]].tolist() == [6.0, 1.0, 3.0, -0.25]
    assert deq[32].item() == 6 * 72 / 448


def test_nvfp4_tensor_scale_is_fp32_rounded():
    W = torch.zeros(1, 16)
    W[0, 3] = 5.0  # ts = 2688 / 5 = 537.6, not exact in fp32
    qw = ref.quantize_weight(NVFP4, W)
    assert qw.tensor_scale == torch.tensor(537.6, dtype=F32).item()
    zero = ref.quantize_weight(NVFP4, torch.zeros(2, 16))
    assert zero.tensor_scale == 1.0
    assert int(zero.codes.sum()) == 0 and ref.dequantize_weight(zero).abs().sum() == 0


def test_float_weights_are_kept_or_rounded_to_fp16():
    W16 = torch.randn(3, 8, dtype=torch.bfloat16)
    assert ref.quantize_weight(FORMATS["A16W16"], W16).codes is W16
    W = torch.tensor([[1.0 + 2.0**-13, 2.0]])
    qw = ref.quantize_weight(FORMATS["A16W16"], W)
    assert qw.codes.dtype == torch.float16 and qw.scales is None and qw.zeros is None
    assert ref.dequantize_weight(qw).tolist() == [[1.0, 2.0]]


# --------------------------------------------------------------------------------------------
# Quantize-then-dequantize error bounds (see the module docstring)
# --------------------------------------------------------------------------------------------


def _e2m1_half_step(v: torch.Tensor) -> torch.Tensor:
    a = v.abs()
    return torch.where(a <= 2, 0.25, torch.where(a <= 4, 0.5, 1.0)).to(F64)


def _e4m3_half_ulp(v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(v.abs() * 2.0**-4, torch.full_like(v, 2.0**-10))


def _expand(s: torch.Tensor, rows: int, cols: int, shape) -> torch.Tensor:
    full = s.double().repeat_interleave(rows, 0).repeat_interleave(cols, 1)
    return full[: shape[0], : shape[1]]


def check_error_bound(qw: ref.QuantizedWeight, W: torch.Tensor, scale_dtype: torch.dtype) -> None:
    w = W.double()
    err = (w - ref.dequantize_weight(qw)).abs()
    kind = qw.fmt.weight.kind
    g, shape = qw.group_size, (qw.N, qw.K)
    slack = 1e-12  # float64 arithmetic in the quantizer and the check
    if kind is WeightKind.FLOAT:
        # half an fp16 ulp: 2**-11 relative for normals, 2**-25 absolute in the subnormal range
        kept = W.dtype in (torch.float16, torch.bfloat16)
        bound = torch.zeros_like(w) if kept else torch.clamp_min(w.abs() * 2.0**-11, 2.0**-25)
    elif kind is WeightKind.HQQ:
        s = _expand(qw.scales, 1, g, shape)
        z = (
            _expand(qw.zeros, 1, g, shape)
            if isinstance(qw.zeros, torch.Tensor)
            else torch.full_like(w, qw.zeros)
        )
        maxq = qw.fmt.weight.max_code
        v = w / s + z
        inside = (v >= 0) & (v <= maxq)
        assert bool((err[inside] <= s[inside] * (0.5 + slack)).all()), "unclamped element beyond half a step"
        overshoot = (maxq + z.abs()) * (UNIT_ROUNDOFF[scale_dtype] + 2 * U32)
        bound = s * (0.5 + overshoot)
    elif kind is WeightKind.INT8:
        bound = _expand(qw.scales, qw.fmt.weight.block_n, g, shape) / 2
    elif kind is WeightKind.FP8:
        s = _expand(qw.scales, qw.fmt.weight.block_n, g, shape)
        bound = s * _e4m3_half_ulp(w / s) + s * 448 * 2.0**-23
    elif kind is WeightKind.TERNARY:
        s = _expand(qw.scales, 1, g, shape)
        bound = torch.maximum(s / 2, w.abs() - s)
    elif kind in (WeightKind.MXFP8, WeightKind.MXFP4):
        p = ref.e8m0_to_float(qw.scales).repeat_interleave(32, 1)
        v = w / p
        half = _e4m3_half_ulp(v) if kind is WeightKind.MXFP8 else _e2m1_half_step(v)
        assert bool((v.abs() <= (448 if kind is WeightKind.MXFP8 else 6)).all()), (
            "MX element outside its range"
        )
        bound = p * half
    else:  # NVFP4
        eff = qw.scales.double().repeat_interleave(16, 1) / qw.tensor_scale
        v = torch.where(eff > 0, w / torch.where(eff > 0, eff, 1.0), 0.0)
        normal = qw.scales.double().repeat_interleave(16, 1) >= 2.0**-6
        assert bool((v.abs()[normal] <= 6 * (1 + 2.0**-4) / (1 - 2.0**-4)).all()), "NVFP4 overshoot"
        bound = eff * (_e2m1_half_step(v.clamp(-6, 6)) + (v.abs() - 6).clamp(min=0))
    excess = err - bound * (1 + slack)
    assert bool((excess <= 0).all()), f"{qw.fmt.label}: error exceeds the bound by {excess.max().item():.3g}"


@settings(deadline=None, max_examples=60)
@given(
    name=st.sampled_from(sorted({f.name for f in FORMATS.values() if not f.act.is_quantized})),
    n=st.integers(1, 6),
    k_groups=st.integers(1, 4),
    group=st.sampled_from([8, 16, 32, 64, None]),
    w_dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    scale_dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    magnitude=st.sampled_from([0.05, 1.0, 20.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_quantization_error_within_the_format_bound(
    name, n, k_groups, group, w_dtype, scale_dtype, magnitude, seed
):
    fmt = FORMATS[name]
    if fmt.weight.kind is WeightKind.HQQ:
        fmt = fmt.with_group_size(group)
        if fmt.weight.bits == 1 and fmt.weight.zeros is Zeros.INT:
            fmt = fmt.with_zeros(Zeros.FLOAT)
    k = 32 * k_groups  # a multiple of every fixed group (16, 32) and of the drawn HQQ group up to 32
    if group is not None and fmt.weight.kind is WeightKind.HQQ:
        k = group * k_groups
    gen = torch.Generator().manual_seed(seed)
    W = (torch.randn(n, k, generator=gen, dtype=F64) * magnitude).to(w_dtype)
    qw = ref.quantize_weight(fmt, W, scale_dtype=scale_dtype)
    assert (qw.N, qw.K) == (n, k)
    if fmt.weight.kind is WeightKind.HQQ:
        assert qw.scales.dtype == scale_dtype
        assert qw.scales.shape == (n, k // qw.group_size)
    check_error_bound(qw, W, scale_dtype)


@settings(deadline=None, max_examples=40)
@given(
    bits=st.sampled_from([8, 4, 2]),
    zeros=st.sampled_from([Zeros.FLOAT, Zeros.INT]),
    n=st.integers(1, 4),
    k=st.sampled_from([6, 12, 24, 36]),
    data=st.data(),
)
def test_hqq_accepts_any_group_that_divides_k(bits, zeros, n, k, data):
    group = data.draw(st.sampled_from([d for d in range(1, k + 1) if k % d == 0]), label="group")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    fmt = hqq(bits, group, zeros)
    W = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    qw = ref.quantize_weight(fmt, W, scale_dtype=F32)  # fp32 scales: tiny groups keep their range
    assert qw.scales.shape == (n, k // group)
    check_error_bound(qw, W, F32)


@settings(deadline=None, max_examples=25)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 300),
    fp8=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_scaled_weights_any_shape(n, k, fp8, seed):
    fmt = FP8_BLOCK if fp8 else INT8_BLOCK
    W = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    qw = ref.quantize_weight(fmt, W)
    assert qw.scales.shape == (math.ceil(n / 128), math.ceil(k / 128))
    check_error_bound(qw, W, F32)
    # each block's largest element lands on the top code
    amax = W.abs().max()
    top = qw.codes.double().abs().max().item()
    assert top == (448.0 if fp8 else 127.0) or amax == 0


# --------------------------------------------------------------------------------------------
# QuantizedWeight validation and quantize_weight bad input
# --------------------------------------------------------------------------------------------


def _hqq_operands(n=2, k=8, group=4):
    codes = torch.zeros(n, k, dtype=torch.uint8)
    scales = torch.ones(n, k // group, dtype=torch.float16)
    zeros = torch.zeros(n, k // group, dtype=torch.float16)
    return hqq(4, group), codes, scales, zeros


def test_valid_operands_construct():
    fmt, codes, scales, zeros = _hqq_operands()
    qw = ref.QuantizedWeight(fmt, codes, scales, zeros)
    assert (qw.N, qw.K, qw.group_size) == (2, 8, 4)


def test_group_size_must_divide_k():
    with pytest.raises(
        ValueError, match=r"group_size: A16W4_HQQ_INT groups of 128 must divide in_features K=192"
    ):
        ref.quantize_weight(HQQ4, torch.randn(4, 192))
    fmt, codes, _, _ = _hqq_operands()
    with pytest.raises(ValueError, match="group_size: .* groups of 3 must divide in_features K=8"):
        ref.QuantizedWeight(hqq(4, 3), codes, torch.ones(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="group_size: .* groups of 32 must divide in_features K=48"):
        ref.quantize_weight(MXFP4, torch.randn(2, 48))


def test_codes_out_of_range():
    fmt, codes, scales, zeros = _hqq_operands()
    codes[1, 3] = 16
    with pytest.raises(ValueError, match=r"codes: codes must lie in \[0, 15\], found 16 at index \[1, 3\]"):
        ref.QuantizedWeight(fmt, codes, scales, zeros)
    with pytest.raises(ValueError, match=r"codes: codes must lie in \[0, 2\], found 3"):
        ref.QuantizedWeight(TERNARY, torch.full((2, 4), 3, dtype=torch.uint8), torch.ones(2, 1), 1)


def test_wrong_dtypes():
    fmt, codes, scales, zeros = _hqq_operands()
    with pytest.raises(TypeError, match="codes: expected dtype torch.uint8, got torch.int32"):
        ref.QuantizedWeight(fmt, codes.int(), scales, zeros)
    with pytest.raises(
        TypeError, match="scales: expected dtype torch.float16 or torch.bfloat16 or torch.float32"
    ):
        ref.QuantizedWeight(fmt, codes, scales.int(), zeros)
    with pytest.raises(TypeError, match="scales: expected dtype torch.float8_e4m3fn, got torch.float32"):
        ref.QuantizedWeight(NVFP4, torch.zeros(1, 16, dtype=torch.uint8), torch.ones(1, 1), None, 1.0)
    with pytest.raises(TypeError, match="W: expected dtype"):
        ref.quantize_weight(INT8, torch.ones(2, 4, dtype=torch.int32))
    with pytest.raises(TypeError, match="scale_dtype: expected"):
        ref.quantize_weight(HQQ4, torch.randn(2, 128), scale_dtype=torch.int8)
    with pytest.raises(TypeError, match="fmt: expected a gemlite.formats.Format"):
        ref.quantize_weight("A16W4_HQQ_INT", torch.randn(2, 128))


def test_mismatched_scale_counts():
    fmt, codes, scales, zeros = _hqq_operands()
    with pytest.raises(
        ValueError, match=r"scales: expected shape \[2, 2\] \(one scale per group of 4 along K=8\)"
    ):
        ref.QuantizedWeight(fmt, codes, torch.ones(2, 3, dtype=torch.float16), zeros)
    with pytest.raises(ValueError, match=r"scales: expected shape \[2, 2\]"):
        ref.QuantizedWeight(
            fmt, codes, torch.ones(4, 1, dtype=torch.float16), zeros
        )  # right count, wrong shape
    with pytest.raises(ValueError, match=r"zeros: expected shape \[2, 2\]"):
        ref.QuantizedWeight(fmt, codes, scales, torch.zeros(2, 1, dtype=torch.float16))
    with pytest.raises(ValueError, match=r"scales: expected shape \[2, 2\] \(one scale per 128 x 128 block"):
        ref.QuantizedWeight(INT8_BLOCK, torch.zeros(130, 129, dtype=torch.int8), torch.ones(1, 1), None)


def test_zeros_forms():
    fmt, codes, scales, _ = _hqq_operands()
    with pytest.raises(TypeError, match="zeros: expected a torch.Tensor, got NoneType"):
        ref.QuantizedWeight(fmt, codes, scales, None)
    int_fmt = fmt.with_zeros(Zeros.INT)
    assert ref.QuantizedWeight(int_fmt, codes, scales, 7).zeros == 7
    with pytest.raises(ValueError, match=r"zeros: the integer zero must lie in \[0, 15\], got 16"):
        ref.QuantizedWeight(int_fmt, codes, scales, 16)
    with pytest.raises(TypeError, match="zeros: expected a Python int, got float"):
        ref.QuantizedWeight(int_fmt, codes, scales, 7.0)
    with pytest.raises(ValueError, match="zeros: A16W8_INT8 has no zero-points"):
        ref.QuantizedWeight(INT8, torch.zeros(2, 4, dtype=torch.int8), torch.ones(2, 1), 0)
    with pytest.raises(ValueError, match="zeros: TERNARY weights use the integer zero 1, got 0"):
        ref.QuantizedWeight(TERNARY, torch.ones(2, 4, dtype=torch.uint8), torch.ones(2, 1), 0)
    none_fmt = fmt.with_zeros(Zeros.NONE)
    qw = ref.QuantizedWeight(none_fmt, torch.full((2, 8), 3, dtype=torch.uint8), scales, None)
    assert ref.dequantize_weight(qw).tolist() == [[3.0] * 8] * 2  # W = q * s


def test_tensor_scale_rules():
    codes = torch.zeros(1, 16, dtype=torch.uint8)
    s = torch.ones(1, 1).to(torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="tensor_scale: expected a Python float for NVFP4, got NoneType"):
        ref.QuantizedWeight(NVFP4, codes, s, None)
    with pytest.raises(ValueError, match="tensor_scale: expected a positive finite float, got -1.0"):
        ref.QuantizedWeight(NVFP4, codes, s, None, -1.0)
    with pytest.raises(ValueError, match="tensor_scale: only NVFP4 weights have one"):
        ref.QuantizedWeight(INT8, torch.zeros(1, 4, dtype=torch.int8), torch.ones(1, 1), None, 2.0)


def test_non_finite_values_are_rejected():
    with pytest.raises(ValueError, match="W: expected finite values, found nan at index"):
        ref.quantize_weight(INT8, torch.tensor([[1.0, math.nan]]))
    with pytest.raises(ValueError, match="scales: expected finite values, found inf"):
        ref.QuantizedWeight(INT8, torch.zeros(1, 4, dtype=torch.int8), torch.tensor([[math.inf]]), None)
    with pytest.raises(ValueError, match="scales: e8m0 byte 255 is NaN"):
        ref.QuantizedWeight(
            MXFP4, torch.zeros(1, 32, dtype=torch.uint8), torch.full((1, 1), 255, dtype=torch.uint8), None
        )
    with pytest.raises(ValueError, match="codes: FP8 codes contain NaN"):
        ref.QuantizedWeight(FP8, torch.full((1, 4), math.nan).to(torch.float8_e4m3fn), torch.ones(1, 1), None)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"codes: expected a 2-D tensor \[N, K\], got shape \[8\]"):
        ref.QuantizedWeight(INT8, torch.zeros(8, dtype=torch.int8), torch.ones(1, 1), None)
    with pytest.raises(ValueError, match=r"W: expected a 2-D tensor \[N, K\], got shape \[2, 3, 4\]"):
        ref.quantize_weight(INT8, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="W: expected a non-empty"):
        ref.quantize_weight(INT8, torch.zeros(0, 4))
    with pytest.raises(ValueError, match="scales: A16W16 weights take no scales"):
        ref.QuantizedWeight(FORMATS["A16W16"], torch.zeros(2, 2, dtype=torch.float16), torch.ones(2, 1), None)


def test_unquantizable_hqq_variants():
    with pytest.raises(ValueError, match="fmt: .* Zeros.NONE"):
        ref.quantize_weight(hqq(4, 4, Zeros.NONE), torch.randn(2, 8))
    with pytest.raises(ValueError, match="fmt: .* 1-bit with an integer zero"):
        ref.quantize_weight(hqq(1, 4, Zeros.INT), torch.randn(2, 8))


def test_fp16_zero_overflow_is_reported_not_turned_into_nan():
    # Spread 1e-3 next to an offset of 1000: z = -min / s ~ -2.5e8, beyond fp16's 65504.
    W = torch.tensor([[1000.0, 1000.001, 1000.0005, 1000.0002]])
    with pytest.raises(ValueError, match=r"W: group 0 of row 0 gets scale .*use scale_dtype=torch.float32"):
        ref.quantize_weight(hqq(8, 4), W)
    qw = ref.quantize_weight(hqq(8, 4), W, scale_dtype=F32)
    check_error_bound(qw, W, F32)


def test_dequantize_weight_rejects_other_types():
    with pytest.raises(TypeError, match="qw: expected a reference.QuantizedWeight, got Tensor"):
        ref.dequantize_weight(torch.zeros(2, 2))


def test_spec_with_groupwise_int8_uses_ceil_groups():
    fmt = Format("int8_g64", WeightSpec(WeightKind.INT8, 8, group_size=64))
    W = torch.randn(3, 100, generator=torch.Generator().manual_seed(0))
    qw = ref.quantize_weight(fmt, W)
    assert qw.scales.shape == (3, 2)
    assert torch.equal(qw.scales[:, 1], (W[:, 64:].abs().amax(1).double() / 127).float())
    check_error_bound(qw, W, F32)


def test_weight_scale_shape():
    assert ref.weight_scale_shape(HQQ4, 3, 256) == (3, 2)
    assert ref.weight_scale_shape(HQQ4.with_group_size(None), 3, 256) == (3, 1)
    assert ref.weight_scale_shape(INT8, 3, 256) == (3, 1)
    assert ref.weight_scale_shape(INT8_BLOCK, 130, 200) == (2, 2)
    assert ref.weight_scale_shape(MXFP8, 3, 64) == (3, 2)
    assert ref.weight_scale_shape(NVFP4, 3, 64) == (3, 4)
    assert ref.weight_scale_shape(FORMATS["A16W16"], 3, 64) is None
    with pytest.raises(TypeError, match="fmt: expected a gemlite.formats.Format, got str"):
        ref.weight_scale_shape("A16W8_INT8", 3, 64)


@settings(deadline=None, max_examples=30)
@given(n=st.integers(1, 4), k_groups=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_scales_follow_the_stated_formulas(n, k_groups, seed):
    """Scales recomputed with independent tools (Python math, torch's own e4m3 cast) from the rules."""
    k = 32 * k_groups
    W = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3
    rows = W.double().tolist()

    int8 = ref.quantize_weight(INT8, W)
    for r, row in enumerate(rows):
        expected = torch.tensor(max(abs(v) for v in row) / 127, dtype=F64).float().item()
        assert int8.scales[r, 0].item() == expected

    for fmt, top in ((MXFP4, 6.0), (MXFP8, 448.0)):
        mx = ref.quantize_weight(fmt, W)
        for r, row in enumerate(rows):
            for j in range(k // 32):
                amax = max(abs(v) for v in row[32 * j : 32 * j + 32])
                assert mx.scales[r, j].item() == math.ceil(math.log2(amax / top)) + 127

    nv = ref.quantize_weight(NVFP4, W)
    amax = max(abs(v) for row in rows for v in row)
    ts = torch.tensor(2688.0 / amax, dtype=F64).float()
    assert nv.tensor_scale == ts.item()
    group_amax = W.abs().reshape(n, k // 16, 16).amax(-1)
    expected = ((group_amax / 6) * ts).clamp(max=448).to(torch.float8_e4m3fn)
    assert torch.equal(nv.scales.view(torch.uint8), expected.view(torch.uint8))


@pytest.mark.parametrize("name", ["A8W8_INT8", "A8W8_FP8"])
def test_unscaled_8bit_weights_are_their_codes(name):
    """INT8 / FP8 weights without scales (for 8-bit activation codes): W = q; quantize_weight takes a
    W that holds its codes exactly and refuses anything else."""
    fmt = FORMATS[name]
    if fmt.weight.kind is WeightKind.INT8:
        W = torch.tensor([[-128.0, 127.0, 0.0], [3.0, -7.0, 1.0]])
        bad, dtype = 0.5, torch.int8
    else:
        W = torch.tensor([[-448.0, 448.0, 0.0], [2.0**-9, -1.125, 96.0]])
        bad, dtype = 1.0625, torch.float8_e4m3fn
    qw = ref.quantize_weight(fmt, W)
    assert qw.codes.dtype == dtype and qw.scales is None and ref.weight_scale_shape(fmt, 2, 3) is None
    assert torch.equal(ref.dequantize_weight(qw), W.double())
    with pytest.raises(ValueError, match=f"W: {name} has no scales, so W must hold its codes exactly"):
        ref.quantize_weight(fmt, torch.tensor([[bad, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=f"scales: {name} weights take no scales"):
        ref.QuantizedWeight(fmt, qw.codes, torch.ones(2, 1), None)
