"""The helper processors on real ``torch.nn.Linear`` layers, and the quantizers behind them.

* The quantizers (`gemlite.quantize`) give exactly the codes and scales of `reference.quantize_weight`.
* ``from_linear`` layers equal, bitwise, layers built with ``from_weights`` from the reference's codes
  (so the layer holds exactly those codes), match the reference's golden under the kernel bound, and
  stay within the format's a priori quantization error of the float layer.
* With hqq installed, ``from_linear`` of the HQQ helpers runs hqq's optimizer and says so (``quantizer``).
* ``patch_model`` swaps the right modules; ``warmup`` runs.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

import reference as ref
from gemlite import GemLiteLinear
from gemlite.formats import FORMATS
from gemlite.helper import (
    A16W1_HQQ_INT,
    A16W2_HQQ_INT,
    A16W4_HQQ_INT,
    A16W8_FP8,
    A16W8_HQQ_INT,
    A16W8_INT8,
    A16W16,
    A16W158_INT,
    patch_model,
    warmup,
)
from gemlite.quantize import (
    hqq_optimizer_available,
    quantize_fp8,
    quantize_hqq,
    quantize_hqq_optimized,
    quantize_int8,
    quantize_ternary,
    round_half_away,
)
from harness.numerics import Precision, compare_output, error_bound, golden_from_dequantized, unit_roundoff

K, N, G = 128, 40, 64
HQQ_PROCESSORS = {8: A16W8_HQQ_INT, 4: A16W4_HQQ_INT, 2: A16W2_HQQ_INT, 1: A16W1_HQQ_INT}


def float_linear(bias: bool, dtype: torch.dtype, device: str, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(K, N, bias=bias).to(device=device, dtype=dtype)


def activations(m: int, dtype: torch.dtype, device: str, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(m, K, generator=gen).to(dtype).to(device)


# --------------------------------------------------------------------------------------------
# Quantizers == reference, exactly (no kernels involved)
# --------------------------------------------------------------------------------------------


def tie_heavy_weight(dtype: torch.dtype) -> torch.Tensor:
    """A weight full of exact rounding ties for symmetric INT8 (and an all-zero row, a constant group)."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(N, K, generator=gen) * 0.05
    # Row 0: amax 127 -> scale 1 (exactly), values k + 0.5 are ties that round away from zero.
    w[0] = torch.arange(K, dtype=torch.float32) % 16 - 7.5
    w[0, 0] = 127.0
    w[1] = 0.0  # all-zero row: the scale floor keeps it finite
    w[2, :G] = 0.25  # a constant group
    return w.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_quantizers_equal_reference(dtype: torch.dtype) -> None:
    w = tie_heavy_weight(dtype)
    codes, scales = quantize_int8(w)
    qw = ref.quantize_weight(FORMATS["A16W8_INT8"], w)
    assert torch.equal(codes, qw.codes) and torch.equal(scales, qw.scales)
    assert codes[0, 1].item() == -7 and codes[0, 8].item() == 1  # -6.5 -> -7, 0.5 -> 1 (away from zero)
    codes, scales = quantize_fp8(w)
    qw = ref.quantize_weight(FORMATS["A16W8_FP8"], w)
    assert torch.equal(codes.view(torch.uint8), qw.codes.view(torch.uint8)) and torch.equal(scales, qw.scales)
    weight_t, scale = quantize_ternary(w)
    qw = ref.quantize_weight(FORMATS["A16W158_INT"], w)
    assert torch.equal((weight_t + 1).to(torch.uint8), qw.codes)
    assert torch.equal(scale.expand(N, 1), qw.scales)
    for bits in (8, 4, 2, 1):
        for g in (32, G, None):
            for scale_dtype in (torch.float16, torch.bfloat16, torch.float32):
                codes, scales, zeros = quantize_hqq(w, bits, g, scale_dtype)
                fmt = FORMATS[f"A16W{bits}_HQQ_INT"].with_group_size(g)
                qw = ref.quantize_weight(fmt, w, scale_dtype=scale_dtype)
                assert torch.equal(codes, qw.codes), (bits, g, scale_dtype)
                assert torch.equal(scales, qw.scales) and torch.equal(zeros, qw.zeros), (bits, g, scale_dtype)


def test_round_half_away() -> None:
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, -0.49999997, 2.4, -2.6, 0.0])
    expected = torch.tensor([1.0, 2.0, 3.0, -1.0, -3.0, 0.0, -0.0, 2.0, -3.0, 0.0])
    assert torch.equal(round_half_away(x), expected)
    assert torch.equal(round_half_away(x.double()), expected.double())


def test_hqq_degenerate_groups_stay_finite() -> None:
    """A group whose fp16 scale underflows or whose zero overflows dequantizes to about its minimum."""
    w = torch.zeros(2, 64)
    w[0] = 1000.0 + torch.arange(64) * 1e-5  # spread 6e-4 next to 1000: -min/s overflows fp16
    w[1] = torch.arange(64) * 1e-9  # spread 6e-8: the fp16 scale underflows to 0
    codes, scales, zeros = quantize_hqq(w, 4, None, torch.float16)
    deq = (codes.double() - zeros.double()) * scales.double()
    assert torch.isfinite(deq).all()
    assert (deq - w.double()).abs().max() < 0.5  # fp16 holds 1000 to +-0.25


# --------------------------------------------------------------------------------------------
# from_linear on a real nn.Linear
# --------------------------------------------------------------------------------------------


def element_error_bound(
    name: str, w: torch.Tensor, qw: ref.QuantizedWeight, scale_dtype: torch.dtype
) -> torch.Tensor:
    """An a priori bound of |W - dequantized W| per element (float64 [N, K]) for a round-to-nearest format.

    Derived from the format's rule, not from the dequantized weight:
    * HQQ: half a step, plus the shift of the grid by the stored zero's rounding (u |z| steps) and the
      shortfall of the stored scale at the clamped ends (u * max_code steps).
    * INT8: half a step (amax maps to 127 exactly, nothing clamps).
    * FP8: e4m3's unit roundoff 2**-4 relative, plus half the subnormal spacing (2**-10 steps).
    * TERNARY: half a step inside [-1.5 s, 1.5 s], else |W| - s (clamped to +-1).
    * FLOAT (A16W16 from an fp32 layer): one rounding to fp16, u |W| plus half fp16's subnormal spacing.
    """
    w64 = w.double()
    if name == "float":
        return 2**-11 * w64.abs() + 2**-25
    g = qw.group_size
    s = qw.scales.double().repeat_interleave(g, dim=1)
    if name.startswith("hqq"):
        u = unit_roundoff(scale_dtype)
        z = qw.zeros.double().repeat_interleave(g, dim=1)
        max_code = qw.fmt.weight.max_code
        return s * (0.5 + u * (max_code + z.abs() + 1))
    if name == "int8":
        return s * (0.5 + 2**-20)
    if name == "fp8":
        return 2**-4 * w64.abs() * (1 + 2**-20) + s * 2**-10
    if name == "ternary":
        return torch.maximum(s / 2, w64.abs() - s) * (1 + 2**-20)
    raise AssertionError(name)


PROCESSOR_CASES = [
    ("float", A16W16, torch.float16, torch.float32),
    ("int8", A16W8_INT8, torch.float16, torch.float16),
    ("fp8", A16W8_FP8, torch.bfloat16, torch.float32),
    ("hqq8", A16W8_HQQ_INT, torch.float16, torch.float16),
    ("hqq4", A16W4_HQQ_INT, torch.bfloat16, torch.bfloat16),
    ("hqq2", A16W2_HQQ_INT, torch.float16, torch.float32),
    ("hqq1", A16W1_HQQ_INT, torch.float16, torch.float16),
    ("ternary", A16W158_INT, torch.bfloat16, torch.bfloat16),
]


def reference_weight(name: str, w: torch.Tensor, dtype: torch.dtype) -> ref.QuantizedWeight:
    if name.startswith("hqq"):
        fmt = FORMATS[f"A16W{name[3:]}_HQQ_INT"].with_group_size(G)
        return ref.quantize_weight(fmt, w, scale_dtype=dtype)
    names = {"float": "A16W16", "int8": "A16W8_INT8", "fp8": "A16W8_FP8", "ternary": "A16W158_INT"}
    return ref.quantize_weight(FORMATS[names[name]], w)


def from_reference_codes(proc, name: str, qw: ref.QuantizedWeight, bias) -> GemLiteLinear:
    if name.startswith("hqq"):
        return proc.from_weights(qw.codes, qw.scales, qw.zeros, bias)
    if name == "ternary":
        return proc.from_weights(qw.codes.to(torch.int8) - 1, qw.scales[0, 0], bias)
    if name == "float":
        return proc.from_weights(qw.codes, bias)
    return proc.from_weights(qw.codes, bias, qw.scales)  # GemLite's order: (weight, bias, scales)


@pytest.mark.interpreter
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize(
    "name, processor, dtype, linear_dtype", PROCESSOR_CASES, ids=[c[0] for c in PROCESSOR_CASES]
)
def test_from_linear(name, processor, dtype, linear_dtype, bias: bool, device: str) -> None:
    linear = float_linear(bias, linear_dtype, device)
    w = linear.weight.detach().clone()
    b = None if linear.bias is None else linear.bias.detach().clone()
    proc = processor(device=device, dtype=dtype)
    # optimize=False: gemlite's round-to-nearest rule, which the reference holds bit for bit (hqq's
    # optimizer, the default when hqq is installed, is judged in test_hqq_optimizer_in_from_linear).
    hqq = name.startswith("hqq")
    layer = proc.from_linear(linear, group_size=G, optimize=False) if hqq else proc.from_linear(linear)
    assert layer.quantizer == "rtn"
    assert linear.weight is None and linear.bias is None  # del_orig=True frees the float layer
    assert layer.input_dtype.torch_dtype == dtype and layer.output_dtype.torch_dtype == dtype
    assert (layer.bias is not None) == bias

    qw = reference_weight(name, w, dtype)
    assert layer.format == qw.fmt

    x = activations(3, dtype, device)
    y = layer(x)
    # 1. The layer holds exactly the reference's codes and scales: same output, bitwise, as a layer
    #    built from them.
    assert torch.equal(y, from_reference_codes(proc, name, qw, b)(x))
    # 2. The kernel error against the golden of those codes is within the bound.
    golden = golden_from_dequantized(x, ref.dequantize_weight(qw), b, y=ref.linear(qw.fmt, x, qw, b))
    precision = Precision(dtype, dtype)
    cmp = compare_output(y, golden, precision, context=f"{name} from_linear")
    assert cmp.ok, cmp.message()
    # 3. Against the float layer: kernel bound + the a priori quantization error of the format.
    y_float = x.double() @ w.double().T + (0 if b is None else b.double())
    e = element_error_bound(name, w, qw, dtype)
    allowed = error_bound(golden, precision) + x.double().abs() @ e.T
    excess = ((y.double() - y_float).abs() - allowed).max().item()
    assert excess <= 0, (
        f"{name}: output strays from the float layer by {excess:.3g} beyond the quantization bound"
    )


@pytest.mark.interpreter
@pytest.mark.skipif(not hqq_optimizer_available(), reason="hqq is not installed (nox -s tests installs it)")
@pytest.mark.parametrize("bits", [4, 2])
def test_hqq_optimizer_in_from_linear(bits: int, device: str) -> None:
    """With hqq installed, the HQQ helpers' from_linear runs hqq's optimizer (as public GemLite does)
    and says so; the layer holds exactly the optimizer's codes; the optimizer lowers the mean absolute
    weight error it minimises against round-to-nearest on the same weight."""
    linear = float_linear(True, torch.float16, device)
    w, b = linear.weight.detach().clone(), linear.bias.detach().clone()
    proc = HQQ_PROCESSORS[bits](device=device)
    layer = proc.from_linear(copy.deepcopy(linear), group_size=G)
    assert layer.quantizer == "hqq"
    assert proc.from_linear(copy.deepcopy(linear), group_size=G, optimize=True).quantizer == "hqq"
    codes, scales, zeros = quantize_hqq_optimized(w, bits, G, torch.float16)
    x = activations(3, torch.float16, device)
    assert torch.equal(layer(x), proc.from_weights(codes, scales, zeros, b)(x))
    fmt = FORMATS[f"A16W{bits}_HQQ_INT"].with_group_size(G)
    qw = ref.quantize_weight(fmt, w)
    optimized = ref.QuantizedWeight(fmt, codes.cpu(), scales.cpu(), zeros.cpu())
    hqq_err = (w.double().cpu() - ref.dequantize_weight(optimized)).abs().mean()
    rtn_err = (w.double() - ref.dequantize_weight(qw).to(w.device)).abs().mean()
    assert hqq_err < rtn_err, (hqq_err.item(), rtn_err.item())


def test_from_linear_without_hqq_rounds_to_nearest(monkeypatch, no_hqq) -> None:
    import gemlite.helper

    monkeypatch.setattr(gemlite.helper, "hqq_optimizer_available", lambda: False)
    linear = float_linear(False, torch.float16, "cpu")
    proc = A16W4_HQQ_INT(device="cpu")
    assert proc.from_linear(copy.deepcopy(linear), group_size=G).quantizer == "rtn"
    with pytest.raises(ImportError, match="quantize_hqq_optimized: needs the `hqq` package"):
        proc.from_linear(copy.deepcopy(linear), group_size=G, optimize=True)
    with pytest.raises(TypeError, match="optimize: expected None or a bool, got str"):
        proc.from_linear(copy.deepcopy(linear), group_size=G, optimize="hqq")


@pytest.mark.interpreter
def test_from_linear_keeps_the_original_when_asked(device: str) -> None:
    linear = float_linear(True, torch.float16, device)
    layer = A16W4_HQQ_INT(device=device).from_linear(linear, del_orig=False, group_size=None)
    assert isinstance(linear.weight, nn.Parameter) and linear.bias is not None
    assert layer.format.label == "A16W4_HQQ_INT/chan"


class FakeHQQLinear:
    """What `from_hqqlinear` reads from an ``hqq.core.quantize.HQQLinear`` (axis=1 quantization)."""

    def __init__(self, codes, scales, zeros, bias, nbits: int, group_size: int) -> None:
        self._codes = codes
        self.meta = {
            "nbits": nbits,
            "group_size": group_size,
            "shape": tuple(codes.shape),
            "axis": 1,
            "scale": scales.reshape(-1, 1),
            "zero": zeros.reshape(-1, 1),
        }
        self.bias = bias

    def unpack(self, dtype=None):
        return self._codes.reshape(-1, self.meta["group_size"]).to(dtype)


@pytest.mark.interpreter
def test_from_hqq_layer_parts(device: str) -> None:
    linear = float_linear(True, torch.float16, device)
    w, b = linear.weight.detach(), linear.bias.detach()
    codes, scales, zeros = quantize_hqq(w, 4, G, torch.float16)
    proc = A16W4_HQQ_INT(device=device)
    layer = proc._from_hqq_parts(FakeHQQLinear(codes, scales, zeros, b, 4, G))
    x = activations(2, torch.float16, device)
    assert torch.equal(layer(x), proc.from_weights(codes, scales, zeros, b)(x))
    with pytest.raises(ValueError, match="hqq_layer: A16W4_HQQ_INT takes 4-bit weights, got 2-bit"):
        proc._from_hqq_parts(FakeHQQLinear(codes, scales, zeros, b, 2, G))


# --------------------------------------------------------------------------------------------
# Whole models
# --------------------------------------------------------------------------------------------


def small_model(device: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(K, 64),
            act=nn.ReLU(),
            block=nn.Sequential(OrderedDict(fc2=nn.Linear(64, 96, bias=False))),
            lm_head=nn.Linear(96, N),
        )
    ).to(device=device, dtype=torch.float16)


@pytest.mark.interpreter
@pytest.mark.parametrize("as_instance", [False, True], ids=["class", "instance"])
def test_patch_model(as_instance: bool, device: str) -> None:
    model = small_model(device)
    original = copy.deepcopy(model)
    processor = A16W4_HQQ_INT(device=device, dtype=torch.float16) if as_instance else A16W4_HQQ_INT
    assert patch_model(model, device, processor, group_size=32) is model
    assert isinstance(model.fc1, GemLiteLinear) and isinstance(model.block.fc2, GemLiteLinear)
    assert type(model.lm_head) is nn.Linear  # skipped by name
    assert model.lm_head.weight is original.lm_head.weight or torch.equal(
        model.lm_head.weight, original.lm_head.weight
    )
    # Each converted layer is exactly what from_linear makes of the original.
    x = activations(2, torch.float16, device)
    h = original.act(original.fc1(x))
    expected_fc1 = A16W4_HQQ_INT(device=device).from_linear(copy.deepcopy(original.fc1), group_size=32)
    expected_fc2 = A16W4_HQQ_INT(device=device).from_linear(copy.deepcopy(original.block.fc2), group_size=32)
    assert torch.equal(model.fc1(x), expected_fc1(x))
    assert torch.equal(model.block.fc2(h), expected_fc2(h))
    y = model(x)
    assert y.shape == (2, N) and y.dtype == torch.float16 and torch.isfinite(y).all()


@pytest.mark.interpreter
def test_patch_model_skip_list(device: str) -> None:
    model = small_model(device)
    patch_model(model, device, A16W8_INT8, skip_modules=["fc2", "lm_head"])
    assert isinstance(model.fc1, GemLiteLinear)
    assert type(model.block.fc2) is nn.Linear and type(model.lm_head) is nn.Linear


@pytest.mark.interpreter
@pytest.mark.parametrize("processor", [A16W8_INT8, A16W2_HQQ_INT])
def test_warmup_runs(processor, device: str, capsys) -> None:
    calls = warmup(processor, shapes=[(N, K), (32, 64)], batch_sizes=[1, 3], group_size=32, device=device)
    assert calls == 4
    err = capsys.readouterr().err
    assert "gemlite warmup" in err and "4/4" in err
    assert (
        warmup(processor(device=device), shapes=[(N, K)], batch_sizes=[2], group_size=32, progress=False) == 1
    )
    assert capsys.readouterr().err == ""
