"""Microscaled weights (A16W8_MXFP, A16W4_MXFP, A16W4_NVFP; `gemlite.schemes.mx`) beyond the drawn cases
of ``test_formats.py`` / ``test_paths.py``:

* the quantizers give the reference's codes and scales bit for bit, ties included (ties to even);
* scales are bytes: a uint8 scale and the same bits as float8_e8m0fnu (float8_e4m3fn for NVFP4) build
  the same layer, and byte 127 means 2**0 (never a numeric conversion);
* known vectors through every family, K tails (a tile half past K reads no scale out of bounds);
* the helpers (``from_linear``, ``from_weights``, ``from_packed_weights``, GemLite's ``A16Wn`` with
  ``quant_type="MXFP"``) and the errors for bad input (each names its argument).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import reference as ref
from gemlite import DType, GemLiteLinear, autotune
from gemlite.formats import FAMILIES, FORMATS
from gemlite.helper import A16W4_MXFP, A16W4_NVFP, A16W8_MXFP, A16Wn, A16Wn_MXFP
from gemlite.schemes import weight_scheme
from gemlite.schemes.mx import e2m1_codes, quantize_mx, quantize_nvfp4
from harness.numerics import Precision, assert_exact, check_output, golden_from_dequantized

MX_FORMATS = ("A16W8_MXFP", "A16W4_MXFP", "A16W4_NVFP")
PROCESSORS = {"A16W8_MXFP": A16W8_MXFP, "A16W4_MXFP": A16W4_MXFP, "A16W4_NVFP": A16W4_NVFP}
N, K = 24, 96


def _weight(dtype=torch.float32, seed=0, n=N, k=K) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) / k**0.5
    w[1] = 0.0  # an all-zero row (e8m0 byte 0, NVFP4 scale 0)
    w[2, :32] *= 300.0  # a group of outliers
    return w.to(dtype)


def _x(m=3, k=K, dtype=torch.float16, device="cpu", seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g).to(dtype).to(device)


def _tie_weight() -> torch.Tensor:
    """Every e2m1 / e4m3 rounding tie on a unit scale (group amax 6 / 448: e = 0, NVFP4 s_g = 1 with
    ts = 1 from the tensor amax 2688), both signs, plus values just beside them."""
    mids4 = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0])
    row4 = torch.cat([mids4, -mids4, torch.nextafter(mids4, torch.zeros(7)), torch.tensor([6.0] * 11)])
    grid8 = torch.tensor([1.0, 1.125, 2.0, 2.25, 0.015625, 0.017578125, 256.0, 288.0])
    mids8 = (grid8[0::2] + grid8[1::2]) / 2  # ties between neighbouring e4m3 values
    row8 = torch.cat([mids8, -mids8, torch.tensor([448.0] * 24)])
    w = torch.zeros(4, 32)
    w[0], w[1], w[2] = row4, -row4, row8
    w[3, 0] = 2688.0  # the NVFP4 tensor amax: ts = 448 * 6 / 2688 = 1
    return w


# --------------------------------------------------------------------------------------------
# Quantizers == reference, bit for bit
# --------------------------------------------------------------------------------------------


def test_e2m1_rounds_ties_to_even():
    v = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, float("inf"), -0.25, -0.3, -0.0, -5.5])
    want = torch.tensor([0, 2, 2, 4, 4, 6, 6, 7, 7, 0, 9, 0, 15], dtype=torch.uint8)
    assert_exact(e2m1_codes(v), want, what="e2m1 codes")
    assert_exact(e2m1_codes(v), ref.float_to_e2m1(v), what="e2m1 codes vs reference")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", MX_FORMATS)
def test_quantizers_match_the_reference_exactly(name, dtype):
    fmt = FORMATS[name]
    for w in (_weight(dtype), _tie_weight().to(dtype) if dtype != torch.float16 else _tie_weight().half()):
        qw = ref.quantize_weight(fmt, w)
        if name == "A16W4_NVFP":
            codes, s_g, ts = quantize_nvfp4(w)
            assert_exact(ts, torch.tensor([qw.tensor_scale]), what="tensor scale")
        else:
            codes, s_g = quantize_mx(w, "e4m3" if name == "A16W8_MXFP" else "e2m1")
        assert_exact(s_g.view(torch.uint8), qw.scales.view(torch.uint8), what=f"{name} scales")
        assert_exact(codes.view(torch.uint8), qw.codes.view(torch.uint8), what=f"{name} codes")


def test_quantizers_refuse_bad_input():
    with pytest.raises(ValueError, match="x: contains NaN or Inf"):
        quantize_mx(torch.full((2, 32), float("nan")), "e2m1")
    with pytest.raises(ValueError, match="x: K=48 must be a multiple of the MX group 32"):
        quantize_mx(torch.ones(2, 48), "e4m3")
    with pytest.raises(ValueError, match="element: expected 'e4m3'"):
        quantize_mx(torch.ones(2, 32), "e5m2")
    with pytest.raises(TypeError, match="W: expected a float16, bfloat16 or float32 tensor, got torch.int8"):
        quantize_nvfp4(torch.ones(2, 32, dtype=torch.int8), "W")
    with pytest.raises(ValueError, match="too small for a finite fp32 NVFP4 tensor scale"):
        quantize_nvfp4(torch.full((1, 16), 1e-40), "W")


# --------------------------------------------------------------------------------------------
# Scales are bytes; known vectors through every family
# --------------------------------------------------------------------------------------------


def _layer(name, codes, scales, zeros=None, k=64, n=2, out=DType.FP32, **kw):
    fmt = FORMATS[name]
    layer = GemLiteLinear(fmt.weight.bits, None, k, n, DType.FP16, out)
    return layer.pack(codes, scales, zeros, format=fmt, **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_known_vectors_and_scale_bytes(family, device):
    k = 64
    x = torch.arange(k, dtype=torch.float16).reshape(1, k).repeat(2, 1).to(device) / 8
    total = float(x[0].double().sum())
    codes4 = torch.full((2, k), 2, dtype=torch.uint8, device=device)  # e2m1 index 2 = 1.0
    codes4[1, 1] = 10  # -1.0
    e8m0 = torch.tensor([[127, 127], [128, 126]], dtype=torch.uint8, device=device)  # 2**0; 2**1, 2**-1
    s0, s1, x1 = float(x[0, :32].double().sum()), float(x[0, 32:].double().sum()), float(x[0, 1])
    for scales in (e8m0, e8m0.view(torch.float8_e8m0fnu)):
        y = _layer("A16W4_MXFP", codes4, scales).forward_manual(x, family)
        assert_exact(y[0].cpu(), torch.tensor([total, 2 * (s0 - 2 * x1) + 0.5 * s1]), what=family)  # k / 8
    codes8 = torch.ones((2, k), dtype=torch.float8_e4m3fn, device=device)
    y8 = _layer("A16W8_MXFP", codes8, e8m0).forward_manual(x, family)
    assert_exact(y8[0].cpu(), torch.tensor([total, 2 * s0 + 0.5 * s1]), what=family)
    # NVFP4: e4m3 group scales (here 2.0 = byte 0x40) over the tensor scale 4: W = 1 * 2 / 4 = 0.5.
    s_g = torch.full((2, k // 16), 0x40, dtype=torch.uint8, device=device)
    for scales, ts in ((s_g, 4.0), (s_g.view(torch.float8_e4m3fn), torch.tensor(4.0))):
        y4 = _layer("A16W4_NVFP", codes4, scales, ts).forward_manual(x, family)
        assert_exact(y4[0].cpu(), torch.tensor([total / 2, (total - 2 * x1) / 2]), what=family)


@pytest.mark.parametrize("name", MX_FORMATS)
@pytest.mark.parametrize("family,tile", [
    ("GEMM", dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64)),
    ("GEMM_SPLITK", dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=128, SPLIT_K=2)),
    ("GEMV", dict(BLOCK_N=32, BLOCK_K=64, SPLIT_K=2)),
    ("GEMM", dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=16)),  # a tile inside one group
    ("GEMM", dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64, DEQUANT=1)),
])  # fmt: skip
def test_k_tails_and_small_tiles(name, family, tile, device):
    """K = 96 with 64- and 128-wide K tiles (the last tile half past K: its codes and scales masked) and
    a 16-wide tile (inside one group), against the golden under the bound."""
    fmt = FORMATS[name]
    qw = ref.quantize_weight(fmt, _weight())
    proc = PROCESSORS[name](device=device, dtype=torch.bfloat16)
    layer = proc.from_weights(qw.codes, None, qw.scales, qw.tensor_scale) if qw.tensor_scale else (
        proc.from_weights(qw.codes, qw.scales))  # fmt: skip
    x = _x(5, dtype=torch.bfloat16, device=device)
    with autotune.forced_config(family, autotune.Config(**tile)):
        y = layer.forward_manual(x, family)
    golden = golden_from_dequantized(x, ref.dequantize_weight(qw))
    deq = torch.float32 if family == "GEMV" else torch.bfloat16
    precision = Precision(torch.bfloat16, torch.bfloat16, deq_dtype=deq, deq_exact=name != "A16W4_NVFP")
    check_output(y, golden, precision, context=f"{name} {family}")


def test_tiles_may_hold_several_groups():
    """MX groups (32, NVFP4 16) run inside the K tile: every tile the spaces hold is legal."""
    from gemlite.layout import WeightLayout

    for name in MX_FORMATS:
        fmt = FORMATS[name]
        layout = WeightLayout(fmt, 4096, 4096, fmt.weight.group_size, 32 if fmt.weight.bits == 4 else 8,
                              torch.float16)  # fmt: skip
        for family in FAMILIES:
            assert autotune.legal_configs(family, layout, "max"), (name, family)
        wide = autotune.Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128)  # 8 (NVFP4) or 4 groups per tile
        assert autotune.illegal_reason("GEMM", wide, layout) is None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", MX_FORMATS)
def test_helpers_build_the_same_layer(name, device):
    torch.manual_seed(0)
    linear = nn.Linear(K, N, bias=True).to(torch.float16)
    fmt = FORMATS[name]
    qw = ref.quantize_weight(fmt, linear.weight.detach())
    bias = linear.bias.detach().to(device)
    proc = PROCESSORS[name](device=device)
    a = proc.from_linear(linear, del_orig=False)
    assert a.format.name == name and a.input_dtype is DType.FP16 and a.quantizer == "rtn"
    if name == "A16W4_NVFP":
        b = proc.from_weights(qw.codes, bias, qw.scales, qw.tensor_scale)
        packed = ref.pack_e2m1(qw.codes)
        c = proc.from_packed_weights(packed, bias, qw.scales.view(torch.uint8), qw.tensor_scale)
        layers = (b, c)
    else:
        b = proc.from_weights(qw.codes, qw.scales, bias)
        c = proc.from_weights(qw.codes, qw.scales.view(torch.float8_e8m0fnu), bias)
        layers = (b, c)
        if name == "A16W4_MXFP":
            layers += (
                proc.from_packed_weights(ref.pack_e2m1(qw.codes), qw.scales, bias),
                A16Wn_MXFP(device, W_nbits=4).from_weights(qw.codes, qw.scales, bias),
                A16Wn(device).from_weights(qw.codes, qw.scales, None, 4, 32, bias, quant_type="MXFP"),
                A16Wn(device).from_packed_weights(
                    ref.pack_e2m1(qw.codes), qw.scales, None, 4, 32, bias, "MXFP"
                ),
            )
    x = _x(3, device=device)
    y = a(x)
    for layer in layers:
        assert_exact(layer(x), y, what=f"{name} output")
        assert_exact(layer.W_q, a.W_q, what="W_q")
        assert_exact(layer.scales.view(torch.uint8), a.scales.view(torch.uint8), what="scales")
    golden = golden_from_dequantized(x, ref.dequantize_weight(qw), linear.bias.detach().to(device))
    # M = 3 dispatches to GEMM_SPLITK: weights rounded to fp16 for the dot (exact for MXFP8 / MXFP4).
    check_output(y, golden, Precision(torch.float16, torch.float16, deq_exact=name != "A16W4_NVFP"))
    # A checkpoint round trip gives the layer back bit for bit.
    fresh = GemLiteLinear(a.W_nbits, a.group_size, K, N, a.input_dtype, a.output_dtype).to(device)
    fresh.load_state_dict(a.state_dict())
    assert fresh.format.name == name
    assert_exact(fresh(x), y, what="output after a state_dict round trip")


def test_weight_bytes_and_storage():
    per_element = {"A16W8_MXFP": 1 + 1 / 32, "A16W4_MXFP": 0.5 + 1 / 32, "A16W4_NVFP": 0.5 + 1 / 16}
    for name, per_elem in per_element.items():
        spec = FORMATS[name].weight
        extra = 4 if name == "A16W4_NVFP" else 0
        assert weight_scheme(spec.kind).weight_bytes(spec, 4096, 1024, 2) == 4096 * 1024 * per_elem + extra


# --------------------------------------------------------------------------------------------
# Bad input: refused before any kernel runs, the message naming the argument
# --------------------------------------------------------------------------------------------


def test_bad_input_is_refused(device):
    qw4 = ref.quantize_weight(FORMATS["A16W4_MXFP"], _weight(n=4, k=64)[::2].contiguous())
    qw8 = ref.quantize_weight(FORMATS["A16W8_MXFP"], _weight(n=4, k=64)[::2].contiguous())
    nv = ref.quantize_weight(FORMATS["A16W4_NVFP"], _weight(n=4, k=64)[::2].contiguous())
    with pytest.raises(TypeError, match=r"scales: MXFP4 scales are e8m0 bytes .* got torch.float32"):
        _layer("A16W4_MXFP", qw4.codes, ref.e8m0_to_float(qw4.scales).float())
    with pytest.raises(ValueError, match=r"scales: expected N \* K / 32 = 2 \* 64 / 32 = 4 values"):
        _layer("A16W4_MXFP", qw4.codes, qw4.scales[:, :1])
    with pytest.raises(ValueError, match="scales: byte 255 .* is NaN"):
        _layer("A16W4_MXFP", qw4.codes, torch.full_like(qw4.scales, 255))
    with pytest.raises(ValueError, match="scales: MXFP8 weights need their scales"):
        _layer("A16W8_MXFP", qw8.codes, None)
    with pytest.raises(TypeError, match="W_q: MXFP8 weights take float8_e4m3fn codes, got torch.uint8"):
        _layer("A16W8_MXFP", qw8.codes.view(torch.uint8), qw8.scales)
    with pytest.raises(ValueError, match=r"W_q: e2m1 indices must lie in \[0, 15\], got a maximum of 16"):
        _layer("A16W4_MXFP", torch.full_like(qw4.codes, 16), qw4.scales)
    with pytest.raises(ValueError, match="zeros: MXFP4 weights take no zeros"):
        _layer("A16W4_MXFP", qw4.codes, qw4.scales, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="zeros: NVFP4 weights have no zero-point but need the fp32 tensor"):
        _layer("A16W4_NVFP", nv.codes, nv.scales, None)
    with pytest.raises(ValueError, match="zeros: NVFP4's tensor scale must be a positive finite"):
        _layer("A16W4_NVFP", nv.codes, nv.scales, -1.0)
    with pytest.raises(TypeError, match="scales: NVFP4 scales are e4m3 values"):
        _layer("A16W4_NVFP", nv.codes, qw4.scales.view(torch.float8_e8m0fnu).repeat(1, 2), nv.tensor_scale)
    with pytest.raises(ValueError, match="in_features: K must be a multiple of 32, got 48"):
        codes, scales = torch.zeros(2, 48, dtype=torch.uint8), torch.zeros(2, 3, dtype=torch.uint8)
        GemLiteLinear(4, None, 48, 2).pack(codes, scales, None, format=FORMATS["A16W4_NVFP"])
    proc = A16W4_NVFP(device=device)
    with pytest.raises(ValueError, match="meta_scale: NVFP4 weights need their tensor scale"):
        proc.from_weights(nv.codes, None, nv.scales)
    with pytest.raises(ValueError, match="packed: MXFP8 codes are one e4m3 byte each"):
        A16W8_MXFP(device=device).from_weights(qw8.codes, qw8.scales, packed=True)
    with pytest.raises(TypeError, match="W_q: packed e2m1 codes are uint8 bytes"):
        A16W4_MXFP(device=device).from_packed_weights(qw4.codes.to(torch.int8), qw4.scales)
    with pytest.raises(ValueError, match="W_nbits: MXFP weights are 8-bit .* or 4-bit .*, got 2"):
        A16Wn_MXFP(device=device, W_nbits=2)
    with pytest.raises(ValueError, match="group_size: MXFP weights have groups of 32, got 64"):
        A16Wn(device=device).from_weights(qw4.codes, qw4.scales, None, 4, 64, quant_type="MXFP")


def test_exact_weights_in_the_bound():
    """MXFP8 / MXFP4 weights reach the dot unrounded (within the dtype's normal range): the bound charges
    them only the underflow term (`harness.numerics`)."""
    from harness.numerics import underflow_unit

    p = Precision(torch.float16, torch.bfloat16, deq_exact=True)
    assert p.u_deq == 0.0 and p.eta_deq == underflow_unit(torch.bfloat16)
    assert "weights exact in bfloat16" in p.describe(64)
    assert Precision(torch.float16, torch.float16).u_deq > 0


@pytest.mark.parametrize("bits", [8, 4])
def test_dynamic_mx_helpers(bits, device):
    """A8W{8,4}_MXFP_dynamic with GemLite's default post_scale=True: e4m3 activations per token x MX
    weights; from_linear and from_weights build the same layer; post_scale=False is a later release."""
    from gemlite.helper import A8W4_MXFP_dynamic, A8W8_MXFP_dynamic, A8Wn_MXFP_dynamic

    proc_cls = A8W8_MXFP_dynamic if bits == 8 else A8W4_MXFP_dynamic
    torch.manual_seed(1)
    linear = nn.Linear(K, N, bias=True).to(torch.bfloat16)
    fmt = FORMATS[f"A8W{bits}_MXFP_post_scale_dynamic"]
    qw = ref.quantize_weight(fmt, linear.weight.detach())
    a = proc_cls(device=device, dtype=torch.bfloat16).from_linear(linear, del_orig=False)
    assert a.format.name == fmt.name and a.input_dtype is DType.BF16
    bias = linear.bias.detach().to(device)
    b = A8Wn_MXFP_dynamic(device, torch.bfloat16, W_nbits=bits).from_weights(qw.codes, bias, qw.scales)
    x = _x(3, dtype=torch.bfloat16, device=device)
    y = a(x)
    assert_exact(b(x), y, what="from_weights vs from_linear")
    if bits == 4:
        c = proc_cls(device, torch.bfloat16).from_packed_weights(ref.pack_e2m1(qw.codes), bias, qw.scales)
        assert_exact(c(x), y, what="from_packed_weights")
    xq = ref.dequantize_activation(ref.quantize_activation(fmt.act, x))  # what the kernel multiplies
    golden = golden_from_dequantized(xq, ref.dequantize_weight(qw), linear.bias.detach().to(device))
    check_output(y, golden, Precision(torch.bfloat16, torch.bfloat16, deq_exact=True))
    with pytest.raises(NotImplementedError, match="post_scale: MXFP8 activations .* later release"):
        proc_cls(device, torch.bfloat16, post_scale=False)
    with pytest.raises(TypeError, match="fp8: the activation codes are torch.float8_e4m3fn"):
        proc_cls(device, torch.bfloat16, fp8=torch.float8_e5m2)
    with pytest.raises(ValueError, match="scales: pre-quantized MX weights need their e8m0 scales"):
        proc_cls(device, torch.bfloat16).from_weights(qw.codes, bias)
