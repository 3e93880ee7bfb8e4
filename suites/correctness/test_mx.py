"""Microscaled weights (A16W8_MXFP, A16W4_MXFP, A16W4_NVFP; `gemlite.schemes.mx`) beyond the drawn cases
of ``test_formats.py`` / ``test_paths.py``:

* the quantizers give the reference's codes and scales bit for bit, ties included (ties to even);
* scales are bytes: a uint8 scale and the same bits as float8_e8m0fnu (float8_e4m3fn for NVFP4) build
  the same layer, and byte 127 means 2**0 (never a numeric conversion);
* known vectors through every family, K tails (a tile half past K reads no scale out of bounds);
* the helpers (``from_linear``, ``from_weights``, ``from_packed_weights``, GemLite's ``A16Wn`` with
  ``quant_type="MXFP"``) and the errors for bad input (each names its argument);
* microscaled ACTIVATIONS (A8W{8,4}_MXFP_dynamic with ``post_scale=False``, A4W4_MXFP_dynamic,
  A4W4_NVFP_dynamic; `gemlite.schemes.mx.MXActQuant`): the quantizer's codes, scales and NVFP4 tensor
  scale bitwise the reference's (drawn rows, every e2m1 / e4m3 tie, fp16's 65504 and bf16's 3e38 without
  a saturated scale), known vectors through every family, K tails, raw-byte scales, the helpers, and the
  rows gemlite defines where the reference has none (all zero, NaN / Inf, a tiny bf16 x).
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
from harness.numerics import Precision, assert_exact, check_output, golden_from_dequantized, sqnr_db
from reference.scaling import nvfp4_quantize

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


def test_nvfp4_group_scale_is_rounded_from_the_exact_quotient(device):
    # amax 4.8125 gives ts = fp32(2688 / 4.8125) = 558.54547; a group of amax 2.921875 then has
    # fp32(2.921875 / 6) * ts = 272, the tie between e4m3 256 and 288 (to even: 256). With the rounded
    # reciprocal of 6 instead (CUDA torch's tensor / scalar), the product is 272.00003 and rounds to
    # 288: the reference did that on the H200 and disagreed with the kernel's div_rn.
    from gemlite.kernels.plan import quantize_activation_mx
    from gemlite.schemes.mx import ACT_NVFP4

    x = torch.zeros(2, 32, dtype=torch.bfloat16)
    x[0, 0], x[0, 16], x[1, 5] = 4.8125, 2.921875, -2.921875
    x = x.to(device)
    want = torch.tensor([[448.0, 256.0], [256.0, 0.0]])
    _, s_ref, _ = nvfp4_quantize(x.double())
    _, s_lib, _ = quantize_nvfp4(x)
    _, s_kernel, _ = quantize_activation_mx(x, ACT_NVFP4)
    for what, s in (("reference", s_ref), ("quantize_nvfp4", s_lib), ("kernel", s_kernel)):
        assert_exact(s.float().cpu(), want, what=f"NVFP4 group scales ({what})")


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
    weights; from_linear and from_weights build the same layer; post_scale=False: MXFP8 activations."""
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
    assert proc_cls(device, torch.bfloat16, post_scale=False).format.name == f"A8W{bits}_MXFP_dynamic"
    with pytest.raises(TypeError, match="post_scale: expected a bool"):
        proc_cls(device, torch.bfloat16, post_scale=1)
    with pytest.raises(TypeError, match="fp8: the activation codes are torch.float8_e4m3fn"):
        proc_cls(device, torch.bfloat16, fp8=torch.float8_e5m2)
    with pytest.raises(ValueError, match="scales: pre-quantized MX weights need their e8m0 scales"):
        proc_cls(device, torch.bfloat16).from_weights(qw.codes, bias)


# --------------------------------------------------------------------------------------------
# Microscaled activations: A8W8_MXFP_dynamic, A8W4_MXFP_dynamic (post_scale=False), A4W4_MXFP_dynamic,
# A4W4_NVFP_dynamic
# --------------------------------------------------------------------------------------------

ACT_FORMATS = ("A8W8_MXFP_dynamic", "A8W4_MXFP_dynamic", "A4W4_MXFP_dynamic", "A4W4_NVFP_dynamic")
ACT_KINDS = {"mxfp8": "A8W8_MXFP_dynamic", "mxfp4": "A4W4_MXFP_dynamic", "nvfp4": "A4W4_NVFP_dynamic"}


def _act_processor(name, device, dtype=torch.float16):
    from gemlite import helper

    if name.startswith("A8W"):
        return getattr(helper, name)(device=device, dtype=dtype, post_scale=False)
    return getattr(helper, name)(device=device, dtype=dtype)


def _quantize_act(x, name, device):
    """gemlite's quantizer on `x` (run on `device`), results on the CPU: (codes, scales, ts or None)."""
    from gemlite.kernels.plan import quantize_activation_mx
    from gemlite.schemes import act_scheme

    codes, scales, ts = quantize_activation_mx(x.to(device), act_scheme(FORMATS[name].act.kind))
    return codes.cpu(), scales.cpu(), None if ts is None else float(ts)


def _assert_act_matches_reference(x, name, device):
    codes, scales, ts = _quantize_act(x, name, device)
    want = ref.quantize_activation(FORMATS[name].act, x)
    assert_exact(codes.view(torch.uint8), want.codes.view(torch.uint8), what=f"{name} activation codes")
    assert_exact(scales.view(torch.uint8), want.scales.view(torch.uint8), what=f"{name} activation scales")
    assert ts == want.tensor_scale, (ts, want.tensor_scale)


def _act_rows(dist: str, m: int, k: int, dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((m, k), generator=g, dtype=torch.float64)
    if dist == "outliers":
        x[:, torch.rand((k,), generator=g) < 0.05] *= 100.0
    elif dist == "magnitudes":  # each row at its own scale (fp16: subnormals at the bottom)
        x *= torch.logspace(-7, 4, m, dtype=torch.float64)[:, None]
    elif dist == "groups":  # every group of 16 at its own scale, some all zero
        x *= torch.logspace(-5, 3, k // 16, dtype=torch.float64).repeat_interleave(16)
        x[:, 16:32] = 0.0
    return x.to(dtype)


@pytest.mark.parametrize("dist", ["normal", "outliers", "magnitudes", "groups"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", list(ACT_KINDS))
@pytest.mark.parametrize("K", [32, 96, 1088])
def test_mx_activation_codes_match_the_reference(kind, dtype, dist, K, device):
    """Drawn rows (K below, at and past the quantizer's 1024-wide program): codes, scale bytes and NVFP4's
    tensor scale bitwise the reference's."""
    _assert_act_matches_reference(_act_rows(dist, 7, K, dtype, seed=K + len(dist)), ACT_KINDS[kind], device)


def _act_ties(kind: str, dtype) -> torch.Tensor:
    """Rows whose every group has a power-of-two MX scale (or NVFP4 s_g = 1 under ts = 1), holding every
    e2m1 / e4m3 rounding tie of that scale, both signs, and values a hair beside them."""
    mids4 = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
    eps = 2.0**-5  # t +- eps is exact in fp16 and bf16 for every tie t <= 5
    beside = [t + d for t in mids4 for d in (-eps, eps)]
    if kind == "mxfp8":
        every = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
        grid = sorted({float(v) for v in every if 0 <= v <= 448})
        ties = [(a + b) / 2 for a, b in zip(grid, grid[1:])]
        ties = [t for t in ties if torch.tensor(t).to(dtype).item() == t][::3]
        top = 448.0
    else:
        ties, top = mids4 + beside, 6.0
    rows = []
    for e in (-4, 0, 3):  # a power-of-two group scale 2**e: the quotients stay ties
        vals = [top] + ties + [-t for t in ties]
        vals = (vals * 16)[: 16 * ((len(vals) + 15) // 16)]
        row = torch.tensor(vals, dtype=torch.float64).reshape(-1, 16)
        row[:, 0] = top  # every group of 16 (and of 32) holds the top value: its scale is 2**e exactly
        rows.append(row.reshape(-1) * 2.0**e)
    width = max(r.numel() for r in rows)
    width = 32 * ((width + 31) // 32)
    x = torch.stack([torch.nn.functional.pad(r, (0, width - r.numel())) for r in rows])
    if kind == "nvfp4":  # ts = 2688 / amax = 1 and s_g = amax_g / 6: the group's top value 6 (s_g = 1)
        x = torch.cat([x[1:2], torch.zeros(1, width)])
        x[1, 0] = 2688.0
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("kind", list(ACT_KINDS))
def test_mx_activation_ties_to_even(kind, dtype, device):
    """Every tie rounds to the even code, as the reference (e2m1: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1,
    1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4; e4m3 to the even mantissa); values a hair beside a tie round to
    their side."""
    x = _act_ties(kind, dtype)
    _assert_act_matches_reference(x, ACT_KINDS[kind], device)
    if kind != "mxfp8":
        codes, _, ts = _quantize_act(torch.tensor([[6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -5.0, -0.25,
                                                    *[0.0] * 22]], dtype=dtype), ACT_KINDS[kind], device)
        assert codes[0, :10].tolist() == [7, 0, 2, 2, 4, 4, 6, 6, 14, 0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_nvfp4_activations_never_saturate(dtype, device):
    """NVFP4's tensor scale comes from the call's own amax: at fp16's 65504 (bf16: 3e38) the group scales
    stay within e4m3 (at most 448) and every dequantized value lies within half an e2m1 step of x: no
    saturated scale, no corrupted code. (A fixed tensor scale of 1 would clamp amax_g / 6 = 1e4 to 448.)"""
    top = 65504.0 if dtype == torch.float16 else 3.0e38
    x = _act_rows("normal", 4, 96, torch.float64, seed=5)
    x = x / x.abs().max() * top
    x[0, 0] = top
    x[1, :16] = x[1, :16] / 1e3  # a small group next to the large ones
    fmt = FORMATS["A4W4_NVFP_dynamic"]
    for xs in (x.to(dtype), (x / top * 1e30).to(dtype) if dtype == torch.bfloat16 else x.to(dtype)):
        _assert_act_matches_reference(xs, fmt.name, device)
        codes, scales, ts = _quantize_act(xs, fmt.name, device)
        s_g = scales.double()
        assert bool((s_g <= 448).all()) and bool(torch.isfinite(s_g).all())
        x_deq = ref.e2m1_to_float(codes) * s_g.repeat_interleave(16, dim=1) / ts
        amax_g = xs.double().abs().reshape(4, 6, 16).amax(-1).repeat_interleave(16, dim=1)
        assert bool(((x_deq - xs.double()).abs() <= amax_g / 6 * (1 + 2**-3)).all())  # half e2m1's top step
    # ... and through a layer (fp32 output; bf16 at 1e30, so y stays finite): within the bound of the
    # reference's product of the same codes.
    torch.manual_seed(2)
    qw = ref.quantize_weight(fmt, torch.randn(24, 96) / 96**0.5)
    layer = GemLiteLinear(4, None, 96, 24, DType.from_torch(dtype), DType.FP32)
    layer = layer.pack(qw.codes.to(device), qw.scales.to(device), qw.tensor_scale, format=fmt)
    for family in ("GEMV", "GEMM"):
        y = layer.forward_manual(xs.to(device), family)
        assert bool(torch.isfinite(y).all())
        xq = ref.dequantize_activation(ref.quantize_activation(fmt.act, xs))
        golden = golden_from_dequantized(xq, ref.dequantize_weight(qw))
        deq = torch.float32 if family == "GEMV" else torch.bfloat16
        check_output(y.cpu(), golden, Precision(torch.float32, dtype, deq_dtype=deq, deq_exact=True))


def test_nvfp4_tiny_activations_get_the_largest_tensor_scale(device):
    """A bf16 x whose amax is below 2688 / 3.4e38 (~7.9e-36) has no finite fp32 tensor scale: the
    reference refuses it; gemlite takes ts = fp32's largest value, so the codes still resolve x."""
    x = (_act_rows("normal", 2, 64, torch.float64, seed=3) * 1e-37).to(torch.bfloat16)
    with pytest.raises(ValueError, match="too small for a finite fp32 NVFP4 tensor scale"):
        ref.quantize_activation(FORMATS["A4W4_NVFP_dynamic"].act, x)
    codes, scales, ts = _quantize_act(x, "A4W4_NVFP_dynamic", device)
    assert ts == torch.finfo(torch.float32).max
    x_deq = ref.e2m1_to_float(codes) * scales.double().repeat_interleave(16, dim=1) / ts
    assert sqnr_db(x.double(), x_deq) > 15.0


def _exact_x(name: str, m: int = 2, k: int = 96) -> torch.Tensor:
    """Activations the format quantizes exactly: e2m1 values, each group of 16 holding a 6 (MX: scale
    2**0 for e2m1, 2**-6 for e4m3, where x * 64 is an e4m3 value); NVFP4: 1.75 times that (amax 10.5, so
    ts = 2688 / 10.5 = 256 and s_g = 448: the codes are the e2m1 pattern, x_deq = x)."""
    from gemlite.formats import E2M1_VALUES

    pattern = torch.tensor([E2M1_VALUES[i % 16] for i in range(k)], dtype=torch.float64) + 0.0  # no -0.0
    x = torch.stack([pattern if r % 2 == 0 else pattern.flip(0).roll(7) for r in range(m)])
    return x * (1.75 if name == "A4W4_NVFP_dynamic" else 1.0)


def _known_weight(name: str, k: int = 96, device="cpu"):
    """(codes, scales, ts or None) of a 2-row weight and its float64 value: row 0 all 1.0 (NVFP4: 0.5),
    row 1 the same with -1 at k = 1 and group scales 2, 1/2, 1 (MX; NVFP4 one group scale of 2 over
    ts = 4)."""
    fmt = FORMATS[name]
    if fmt.weight.kind.name == "MXFP8":
        codes = torch.ones((2, k), dtype=torch.float8_e4m3fn)
        codes[1, 1] = -1.0
    else:
        codes = torch.full((2, k), 2, dtype=torch.uint8)  # e2m1 index 2 = 1.0
        codes[1, 1] = 10  # -1.0
    if fmt.weight.kind.name == "NVFP4":
        scales = torch.full((2, k // 16), 0x40, dtype=torch.uint8)  # e4m3 2.0
        ts = 4.0
    else:
        scales = torch.tensor([[127] * (k // 32), [128, 126] + [127] * (k // 32 - 2)], dtype=torch.uint8)
        ts = None
    qw = ref.QuantizedWeight(fmt, codes, scales.view(torch.float8_e4m3fn) if ts else scales, None, ts)
    return codes.to(device), scales.to(device), ts, ref.dequantize_weight(qw)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ACT_FORMATS)
def test_mx_activation_known_vectors(name, family, device):
    """Exactly quantized activations x a known weight: every family gives the exact product in fp32
    (every product and partial sum is exact), and the reference agrees. The scales are handed as bytes
    and as their own dtype, both giving that result."""
    fmt = FORMATS[name]
    x = _exact_x(name)
    assert_exact(ref.dequantize_activation(ref.quantize_activation(fmt.act, x)), x, what="exact activations")
    codes, scales, ts, w = _known_weight(name, device=device)
    want = (x @ w.T).float()
    as_dtype = torch.float8_e4m3fn if ts else torch.float8_e8m0fnu
    for s in (scales, scales.view(as_dtype)):
        layer = GemLiteLinear(fmt.weight.bits, None, 96, 2, DType.FP16, DType.FP32).pack(
            codes, s, ts, format=fmt
        )
        y = layer.forward_manual(x.half().to(device), family)
        assert_exact(y.cpu(), want, what=f"{name} {family}")


@pytest.mark.parametrize("name", ACT_FORMATS)
@pytest.mark.parametrize("family,tile", [
    ("GEMM", dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=64)),
    ("GEMM_SPLITK", dict(BLOCK_M=16, BLOCK_N=32, BLOCK_K=128, SPLIT_K=2)),
    ("GEMM", dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, GROUP_M=2)),
    ("GEMV", dict(BLOCK_N=32, BLOCK_K=64, SPLIT_K=2)),
    ("GEMV_REVSPLITK", dict(BLOCK_N=16, BLOCK_K=16)),  # a step inside one MX group
])  # fmt: skip
def test_mx_activation_k_tails(name, family, tile, device):
    """K = 96 against 64- and 128-wide K tiles (the last tile half past K: its activation codes and scale
    bytes are masked, never read past the row) and small tiles, bf16, under the bound."""
    fmt = FORMATS[name]
    torch.manual_seed(4)
    linear = nn.Linear(K, N, bias=True).to(torch.bfloat16)
    layer = _act_processor(name, device, torch.bfloat16).from_linear(linear, del_orig=False)
    qw = ref.quantize_weight(fmt, linear.weight.detach())
    x = _act_rows("outliers", 5, K, torch.bfloat16, seed=9)
    with autotune.forced_config(family, autotune.Config(**tile)):
        y = layer.forward_manual(x.to(device), family)
    xq = ref.dequantize_activation(ref.quantize_activation(fmt.act, x))
    golden = golden_from_dequantized(xq, ref.dequantize_weight(qw), linear.bias.detach())
    deq = torch.float32 if family.startswith("GEMV") else torch.bfloat16
    check_output(y.cpu(), golden, Precision(torch.bfloat16, torch.bfloat16, deq_dtype=deq, deq_exact=True),
                 context=f"{name} {family}")  # fmt: skip


@pytest.mark.parametrize("name", ACT_FORMATS)
def test_mx_activation_helpers(name, device):
    """from_linear, from_weights (scales as bytes and as their dtype) and from_packed_weights build the
    same layer; a state_dict round trip gives it back; the output is within the bound of the
    reference's product of the same codes, and near the float product (SQNR)."""
    fmt = FORMATS[name]
    torch.manual_seed(5)
    linear = nn.Linear(K, N, bias=True).to(torch.float16)
    qw = ref.quantize_weight(fmt, linear.weight.detach())
    bias = linear.bias.detach().to(device)
    proc = _act_processor(name, device)
    a = proc.from_linear(linear, del_orig=False)
    assert a.format.name == name and a.input_dtype is DType.FP16 and a.quantizer == "rtn"
    nv = qw.tensor_scale is not None
    extra = (qw.tensor_scale,) if nv else ()
    raw_or_typed = qw.scales.view(torch.uint8) if nv else qw.scales.view(torch.float8_e8m0fnu)
    layers = [
        proc.from_weights(qw.codes, bias, qw.scales, *extra),
        proc.from_weights(qw.codes, bias, raw_or_typed, *extra),
    ]
    if fmt.weight.bits == 4:
        layers.append(proc.from_packed_weights(ref.pack_e2m1(qw.codes), bias, qw.scales, *extra))
    x = _x(3, device=device)
    y = a(x)
    for layer in layers:
        assert layer.format.name == name
        assert_exact(layer(x), y, what=f"{name} output")
    fresh = GemLiteLinear(a.W_nbits, a.group_size, K, N, a.input_dtype, a.output_dtype).to(device)
    fresh.load_state_dict(a.state_dict())
    assert fresh.format.name == name
    assert_exact(fresh(x), y, what="output after a state_dict round trip")
    xq = ref.dequantize_activation(ref.quantize_activation(fmt.act, x.cpu()))
    golden = golden_from_dequantized(xq, ref.dequantize_weight(qw), linear.bias.detach(),
                                     W_float=linear.weight.detach().double())  # fmt: skip
    precision = Precision(torch.float16, torch.float16, deq_dtype=torch.bfloat16, deq_exact=True)
    check_output(y.cpu(), golden, precision)
    y_float = x.cpu().double() @ linear.weight.detach().double().T + linear.bias.detach().double()
    # (K = 1024 on CPU: A8W8 ~28 dB, the 4-bit formats 15.8-18.7 dB, A16W4_HQQ_INT g128 20.2 dB)
    assert sqnr_db(y_float, y.cpu()) > (24.0 if fmt.weight.bits == 8 else 12.0)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's 0 * Inf
@pytest.mark.parametrize("name", ACT_FORMATS)
def test_mx_activation_zero_and_nonfinite_rows(name, device):
    """An all-zero row gives the bias; a row holding NaN or +-Inf gives NaN in every column (its group's
    scale byte is the NaN byte, its codes 0); the other rows are bitwise what they are with that value
    replaced by 0 (NVFP4's tensor scale skips non-finite values)."""
    torch.manual_seed(6)
    linear = nn.Linear(K, N, bias=True).to(torch.float16)
    layer = _act_processor(name, device).from_linear(linear, del_orig=False)
    x = _x(4, device=device)
    x[1] = 0.0
    clean = x.clone()
    x[2, 40], x[3, 5] = float("nan"), float("-inf")
    clean[2, 40], clean[3, 5] = 0.0, 0.0
    for family in ("GEMV", "GEMM"):
        y, y_clean = layer.forward_manual(x, family), layer.forward_manual(clean, family)
        assert_exact(y[1], linear.bias.detach().to(device).half(), what="all-zero row")
        assert bool(torch.isnan(y[2:]).all()), family
        assert_exact(y[:2], y_clean[:2], what="rows without NaN / Inf")
    codes, scales, _ = _quantize_act(x, name, device)
    nan_byte = 0x7F if name == "A4W4_NVFP_dynamic" else 0xFF
    g = FORMATS[name].act.group_size
    assert int(scales.view(torch.uint8)[2, 40 // g]) == nan_byte
    assert not bool(codes.view(torch.uint8)[2, 40 // g * g:(40 // g + 1) * g].any())


def test_mx_activation_bad_input(device):
    from gemlite.formats import ActKind, ActSpec, WeightKind, WeightSpec
    from gemlite.kernels.plan import quantize_activation, quantize_activation_mx
    from gemlite.schemes import act_scheme

    qw = ref.quantize_weight(FORMATS["A4W4_NVFP_dynamic"], _weight(n=4, k=64))
    with pytest.raises(ValueError, match="meta_scale: NVFP4 weights need their tensor scale"):
        _act_processor("A4W4_NVFP_dynamic", device).from_weights(qw.codes, None, qw.scales)
    with pytest.raises(NotImplementedError, match="input_scale: a static NVFP4 activation scale"):
        _act_processor("A4W4_NVFP_dynamic", device).from_weights(qw.codes, None, qw.scales, 1.0, 0.5)
    with pytest.raises(ValueError, match="scales: pre-quantized MX weights need their e8m0 scales"):
        _act_processor("A4W4_MXFP_dynamic", device).from_weights(qw.codes, None)
    with pytest.raises(TypeError, match="scales: MXFP4 scales are e8m0 bytes"):
        _act_processor("A4W4_MXFP_dynamic", device).from_weights(qw.codes, None, qw.scales.float())
    nv = act_scheme(ActKind.NVFP4)
    with pytest.raises(ValueError, match="format: NVFP4 activations multiply NVFP4 weights; got MXFP4"):
        nv.check_spec(ActSpec(ActKind.NVFP4, 16), WeightSpec(WeightKind.MXFP4, 4, group_size=32))
    with pytest.raises(ValueError, match="format: MXFP8 activations take scale groups of 32, got 16"):
        act_scheme(ActKind.MXFP8).check_spec(ActSpec(ActKind.MXFP8, 16), WeightSpec(WeightKind.MXFP8, 8, 32))
    with pytest.raises(TypeError, match="scheme: NVFP4 activations have byte scales .*quantize_activation_m"):
        quantize_activation(torch.ones(1, 32, dtype=torch.float16), nv)
    with pytest.raises(TypeError, match="scheme: expected an MXFP8, MXFP4 or NVFP4 activation scheme"):
        quantize_activation_mx(torch.ones(1, 32, dtype=torch.float16), act_scheme(ActKind.FP8))
