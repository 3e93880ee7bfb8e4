"""reference.activations: per-token, block, MX and NVFP4 activation quantization.

Dequantization bounds, per element (s: the stored scale of the element's group):

* INT8 (per token or per block): |err| <= s / 2 (nothing is clamped: amax / s <= 127 (1 + 2**-24)).
* FP8: |err| <= s * max(2**-4 |x / s|, 2**-10) + s * 448 * 2**-23 (half an e4m3 ulp).
* MXFP8 / MXFP4: half an element step at 2**e (|x / 2**e| never exceeds 448 / 6).
* NVFP4: eff * (h(min(|v|, 6)) + max(|v| - 6, 0)), eff = s_g / ts, v = x / eff (see the weight tests).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gemlite.formats import FORMATS, ActKind, ActSpec

F32, F64 = torch.float32, torch.float64
FLOOR32 = torch.tensor(1e-6, dtype=F32).item()

PER_TOKEN_INT8 = ActSpec(ActKind.INT8)
PER_TOKEN_FP8 = ActSpec(ActKind.FP8)
BLOCK_INT8 = ActSpec(ActKind.INT8, 128)
BLOCK_FP8 = ActSpec(ActKind.FP8, 128)
MXFP8 = ActSpec(ActKind.MXFP8, 32)
MXFP4 = ActSpec(ActKind.MXFP4, 32)
NVFP4 = ActSpec(ActKind.NVFP4, 16)
ALL_SPECS = [PER_TOKEN_INT8, PER_TOKEN_FP8, BLOCK_INT8, BLOCK_FP8, MXFP8, MXFP4, NVFP4]


def t32(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F32)


# --------------------------------------------------------------------------------------------
# Hand-computed quantizations
# --------------------------------------------------------------------------------------------


def test_per_token_int8():
    # Row scales: 127 / 127 = 1, 254 / 127 = 2, all-zero row -> 1e-6. Ties round away from zero:
    # -63.5 -> -64, 0.5 -> 1, 3 / 2 = 1.5 -> 2, -1 / 2 = -0.5 -> -1.
    x = t32([[127.0, -63.5, 0.5, 2.0], [254.0, 3.0, -1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    qa = ref.quantize_activation(PER_TOKEN_INT8, x)
    assert qa.scales.dtype == F32 and qa.scales.shape == (3, 1)
    assert qa.scales[:, 0].tolist() == [1.0, 2.0, FLOOR32]
    assert qa.codes.dtype == torch.int8
    assert qa.codes.tolist() == [[127, -64, 1, 2], [127, 2, -1, 0], [0, 0, 0, 0]]
    assert ref.dequantize_activation(qa).tolist() == [
        [127.0, -64.0, 1.0, 2.0],
        [254.0, 4.0, -2.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]


def test_per_token_fp8():
    x = t32([[448.0, 17.0, -19.0, 0.1], [896.0, 1.0, 0.0, 0.0]])
    qa = ref.quantize_activation(PER_TOKEN_FP8, x)
    assert qa.scales[:, 0].tolist() == [1.0, 2.0]
    assert qa.codes.dtype == torch.float8_e4m3fn
    assert qa.codes.double().tolist() == [[448.0, 16.0, -20.0, 0.1015625], [448.0, 0.5, 0.0, 0.0]]


@pytest.mark.parametrize("spec", [BLOCK_INT8, BLOCK_FP8], ids=["int8", "fp8"])
def test_block_activations_one_scale_per_row_and_128_inputs(spec):
    top = 127.0 if spec.kind is ActKind.INT8 else 448.0
    x = torch.zeros(2, 256)
    x[0, 0], x[0, 5] = top, 2.5  # block (0, 0): s = 1
    x[0, 200], x[0, 130] = 2 * top, 3.0  # block (0, 1): s = 2
    qa = ref.quantize_activation(spec, x)
    assert qa.scales.shape == (2, 2)
    assert qa.scales.tolist() == [[1.0, 2.0], [FLOOR32, FLOOR32]]
    if spec.kind is ActKind.INT8:
        assert (qa.codes[0, 5].item(), qa.codes[0, 130].item()) == (3, 2)  # 2.5 -> 3, 1.5 -> 2
    else:
        assert (qa.codes[0, 5].item(), qa.codes[0, 130].item()) == (2.5, 1.5)
    assert qa.group_size == 128


def test_mx_activations_known_groups():
    row = [5.0, 0.75, -2.5] + [0.0] * 29 + [12.0, 1.0, -7.0] + [0.0] * 29
    qa = ref.quantize_activation(MXFP4, t32([row]))
    assert qa.scales.tolist() == [[127, 128]]
    assert qa.codes[0, [0, 1, 2, 32, 33, 34]].tolist() == [6, 2, 12, 7, 1, 14]
    qa8 = ref.quantize_activation(MXFP8, t32([row]))
    # amax 5 -> ceil(log2(5 / 448)) = -6; amax 12 -> ceil(log2(12 / 448)) = -5
    assert qa8.scales.tolist() == [[121, 122]]
    assert qa8.codes[0, [0, 1, 32]].double().tolist() == [320.0, 48.0, 384.0]


def test_nvfp4_activations_share_one_tensor_scale_across_rows():
    # amax over all of x is 6 -> ts = 448; row 1's group amax 3 -> s_g = 224, eff = 0.5.
    x = torch.zeros(2, 16)
    x[0, 0], x[0, 1] = 6.0, 1.25  # 1.25 ties to 1.0 (code 2)
    x[1, 0], x[1, 1] = 3.0, -0.25
    qa = ref.quantize_activation(NVFP4, x)
    assert qa.tensor_scale == 448.0
    assert qa.scales.double().tolist() == [[448.0], [224.0]]
    assert qa.codes[:, :2].tolist() == [[7, 2], [7, 9]]
    assert ref.dequantize_activation(qa)[:, :2].tolist() == [[6.0, 1.0], [3.0, -0.25]]


def test_no_rows_is_fine():
    for spec in ALL_SPECS:
        qa = ref.quantize_activation(spec, torch.zeros(0, 256))
        assert qa.codes.shape == (0, 256)
        assert ref.dequantize_activation(qa).shape == (0, 256)


# --------------------------------------------------------------------------------------------
# Bounds, and the same rules as the weights
# --------------------------------------------------------------------------------------------


def _half_step_e2m1(v: torch.Tensor) -> torch.Tensor:
    a = v.abs()
    return torch.where(a <= 2, 0.25, torch.where(a <= 4, 0.5, 1.0)).to(F64)


def _half_ulp_e4m3(v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(v.abs() * 2.0**-4, torch.full_like(v, 2.0**-10))


def check_activation_bound(qa: ref.QuantizedActivation, x: torch.Tensor) -> None:
    x64 = x.double()
    err = (x64 - ref.dequantize_activation(qa)).abs()
    kind, g = qa.act.kind, qa.group_size
    if kind in (ActKind.INT8, ActKind.FP8):
        s = qa.scales.double().repeat_interleave(g, 1)
        if kind is ActKind.INT8:
            bound = s / 2
        else:
            bound = s * _half_ulp_e4m3(x64 / s) + s * 448 * 2.0**-23
    elif kind in (ActKind.MXFP8, ActKind.MXFP4):
        p = ref.e8m0_to_float(qa.scales).repeat_interleave(g, 1)
        v = x64 / p
        bound = p * (_half_ulp_e4m3(v) if kind is ActKind.MXFP8 else _half_step_e2m1(v))
    else:
        eff = qa.scales.double().repeat_interleave(g, 1) / qa.tensor_scale
        v = torch.where(eff > 0, x64 / torch.where(eff > 0, eff, 1.0), 0.0)
        bound = eff * (_half_step_e2m1(v.clamp(-6, 6)) + (v.abs() - 6).clamp(min=0))
    excess = err - bound * (1 + 1e-12)
    assert bool((excess <= 0).all()), f"{kind.name}: error exceeds the bound by {excess.max().item():.3g}"


@settings(deadline=None, max_examples=60)
@given(
    spec=st.sampled_from(ALL_SPECS),
    m=st.integers(0, 6),
    k_blocks=st.integers(1, 3),
    x_dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    magnitude=st.sampled_from([1e-3, 1.0, 50.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_dequantization_error_within_the_format_bound(spec, m, k_blocks, x_dtype, magnitude, seed):
    k = 128 * k_blocks
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(m, k, generator=gen, dtype=F64) * magnitude).to(x_dtype)
    qa = ref.quantize_activation(spec, x)
    assert qa.codes.shape == (m, k)
    assert qa.scales.shape == (m, k // qa.group_size)
    check_activation_bound(qa, x)


@settings(deadline=None, max_examples=30)
@given(spec=st.sampled_from(ALL_SPECS), m=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_activation_rules_equal_the_weight_rules(spec, m, seed):
    """A token row quantizes exactly as a weight row of the matching weight format would."""
    weight_format = {
        ActKind.INT8: "A8W8_INT8_dynamic",
        ActKind.FP8: "A8W8_FP8_dynamic",
        ActKind.MXFP8: "A16W8_MXFP",
        ActKind.MXFP4: "A16W4_MXFP",
        ActKind.NVFP4: "A16W4_NVFP",
    }[spec.kind]
    fmt = FORMATS[weight_format]
    if spec.group_size == 128:
        fmt = FORMATS[weight_format.replace("_dynamic", "_block_dynamic")]
    x = torch.randn(m, 256, generator=torch.Generator().manual_seed(seed))
    if spec.group_size == 128:
        x = x[:1]  # a 128 x 128 weight block spans rows; one row makes it a 1 x 128 block
    qa = ref.quantize_activation(spec, x)
    qw = ref.quantize_weight(fmt, x)
    assert torch.equal(qa.codes.view(torch.uint8), qw.codes.view(torch.uint8))
    assert torch.equal(qa.scales.view(torch.uint8), qw.scales.view(torch.uint8))
    assert qa.tensor_scale == qw.tensor_scale


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_block_activations_need_k_divisible_by_128():
    with pytest.raises(ValueError, match=r"act.group_size: INT8 activation groups of 128 must divide K=200"):
        ref.quantize_activation(BLOCK_INT8, torch.randn(2, 200))
    with pytest.raises(ValueError, match=r"act.group_size: MXFP4 activation groups of 32 must divide K=48"):
        ref.quantize_activation(MXFP4, torch.randn(2, 48))


def test_act_spec_errors():
    with pytest.raises(ValueError, match="act: ActKind.NONE does not quantize activations"):
        ref.quantize_activation(ActSpec(), torch.randn(2, 8))
    with pytest.raises(ValueError, match="act.group_size: MXFP8 activations use groups of 32, got None"):
        ref.quantize_activation(ActSpec(ActKind.MXFP8), torch.randn(2, 64))
    with pytest.raises(TypeError, match="act: expected a gemlite.formats.ActSpec, got str"):
        ref.quantize_activation("int8", torch.randn(2, 8))


def test_x_errors():
    with pytest.raises(TypeError, match="x: expected dtype"):
        ref.quantize_activation(PER_TOKEN_INT8, torch.ones(2, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"x: expected a 2-D tensor \[M, K\], got shape \[8\]"):
        ref.quantize_activation(PER_TOKEN_INT8, torch.ones(8))
    with pytest.raises(ValueError, match="x: expected finite values, found inf"):
        ref.quantize_activation(PER_TOKEN_FP8, torch.tensor([[1.0, math.inf]]))


def test_quantized_activation_validation():
    codes = torch.zeros(2, 256, dtype=torch.int8)
    ok = ref.QuantizedActivation(BLOCK_INT8, codes, torch.ones(2, 2))
    assert (ok.M, ok.K, ok.group_size) == (2, 256, 128)
    with pytest.raises(
        ValueError, match=r"scales: expected shape \[2, 2\] \(one scale per group of 128 along K=256\)"
    ):
        ref.QuantizedActivation(BLOCK_INT8, codes, torch.ones(2, 1))
    with pytest.raises(TypeError, match="scales: expected dtype torch.float32, got torch.float16"):
        ref.QuantizedActivation(PER_TOKEN_INT8, codes, torch.ones(2, 1, dtype=torch.float16))
    with pytest.raises(TypeError, match="codes: expected dtype torch.int8, got torch.uint8"):
        ref.QuantizedActivation(PER_TOKEN_INT8, codes.view(torch.uint8), torch.ones(2, 1))
    with pytest.raises(ValueError, match=r"codes: codes must lie in \[0, 15\], found 16"):
        ref.QuantizedActivation(
            MXFP4, torch.full((1, 32), 16, dtype=torch.uint8), torch.full((1, 1), 127, dtype=torch.uint8)
        )
    nv_codes = torch.zeros(1, 16, dtype=torch.uint8)
    nv_scales = torch.ones(1, 1).to(torch.float8_e4m3fn)
    with pytest.raises(TypeError, match="tensor_scale: expected a Python float for NVFP4, got NoneType"):
        ref.QuantizedActivation(NVFP4, nv_codes, nv_scales)
    with pytest.raises(ValueError, match="tensor_scale: expected a positive finite float, got inf"):
        ref.QuantizedActivation(NVFP4, nv_codes, nv_scales, math.inf)
    with pytest.raises(ValueError, match="tensor_scale: only NVFP4 activations have one, not INT8"):
        ref.QuantizedActivation(PER_TOKEN_INT8, codes, torch.ones(2, 1), 1.0)
    with pytest.raises(TypeError, match="qa: expected a reference.QuantizedActivation"):
        ref.dequantize_activation(codes)


def test_activation_group_size():
    assert ref.activation_group_size(PER_TOKEN_INT8, 200) == 200
    assert ref.activation_group_size(BLOCK_FP8, 256) == 128
    assert ref.activation_group_size(NVFP4, 64) == 16
    with pytest.raises(ValueError, match="act.group_size: FP8 activation groups of 128 must divide K=64"):
        ref.activation_group_size(BLOCK_FP8, 64)
