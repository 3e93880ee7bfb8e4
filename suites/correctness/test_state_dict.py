"""state_dict / load_state_dict round trips, module hygiene (.to(), schema), and load-time checks.

A fresh GemLiteLinear built with the same constructor arguments must load a packed layer's state_dict
and then produce bitwise the same output, whatever the format; so must a module loaded through a
parent, through torch.save / torch.load, or onto the meta device with ``assign=True``.
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from gemlite import DType, GemLiteLinear
from gemlite.helper import A16W8_FP8, A16W8_INT8, A16W158_INT
from gemlite.quantize import quantize_fp8, quantize_hqq, quantize_int8, quantize_ternary

pytestmark = pytest.mark.interpreter

K, N = 128, 40
SCHEMA = {"W_q", "scales", "zeros", "metadata"}


def float_weight(seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, K, generator=gen) * 0.05


def activations(m: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(m, K, generator=gen).to(dtype).to(device)


def bias_of(dtype: torch.dtype, device: str) -> torch.Tensor:
    return (torch.linspace(-1, 1, N) * 0.1).to(dtype).to(device)


# Each case: constructor kwargs, and a function that packs a layer built with them.
def _hqq(bits, g, zeros_kind, act=DType.FP16, word_bits=32):
    def pack(layer, device, bias):
        codes, scales, zeros = quantize_hqq(float_weight(), bits, g, torch.float16)
        z = {"float": zeros, "int": (1 << bits) // 2, "none": None}[zeros_kind]
        z = z.to(device) if isinstance(z, torch.Tensor) else z
        return layer.pack(codes.to(device), scales.to(device), z, bias, packing_bitwidth=word_bits)

    return dict(W_nbits=bits, group_size=g, input_dtype=act), pack


def _int8(layer, device, bias):
    codes, scales = quantize_int8(float_weight())
    return layer.pack(codes.to(device), scales.to(device), None, bias)


def _fp8(layer, device, bias):
    codes, scales = quantize_fp8(float_weight())
    return layer.pack(codes.to(device), scales.to(device), None, bias)


def _ternary(layer, device, bias):
    t, s = quantize_ternary(float_weight())
    return layer._pack_ternary(t.to(device), s, bias)


def _w16(layer, device, bias):
    return layer.pack(float_weight().to(layer.input_dtype.torch_dtype).to(device), None, None, bias)


CASES = {
    "hqq4-g64-float": _hqq(4, 64, "float"),
    "hqq2-g32-int-bf16": _hqq(2, 32, "int", act=DType.BF16),
    "hqq1-chan-none": _hqq(1, None, "none"),
    "hqq8-g64-float-word8": _hqq(8, 64, "float", word_bits=8),
    "hqq4-g32-float-word8": _hqq(4, 32, "float", word_bits=8),
    "int8": (dict(W_nbits=8, group_size=None), _int8),
    "fp8": (dict(W_nbits=8, group_size=None), _fp8),
    "ternary": (dict(W_nbits=2, group_size=None), _ternary),
    "w16-bf16": (dict(W_nbits=16, group_size=None, input_dtype=DType.BF16), _w16),
}


def make(case: str, device: str, bias: bool = True) -> tuple[GemLiteLinear, dict]:
    kwargs, pack = CASES[case]
    kwargs = dict(kwargs, in_features=K, out_features=N)
    layer = GemLiteLinear(**kwargs)
    b = bias_of(layer.input_dtype.torch_dtype, device) if bias else None
    return pack(layer, device, b), kwargs


def test_fresh_layer_has_the_packed_schema(device: str) -> None:
    fresh = GemLiteLinear(4, 64, K, N)
    sd = fresh.state_dict()
    assert set(sd) == SCHEMA and all(t.numel() == 0 for t in sd.values())
    packed, _ = make("hqq4-g64-float", device, bias=False)
    assert set(packed.state_dict()) == SCHEMA
    with_bias, _ = make("hqq4-g64-float", device, bias=True)
    assert set(with_bias.state_dict()) == SCHEMA | {"bias"}
    assert torch.equal(with_bias.metadata.cpu(), with_bias.layout.to_metadata())


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_is_bitwise(case: str, device: str) -> None:
    layer, kwargs = make(case, device)
    x = activations(3, layer.input_dtype.torch_dtype, device)
    y = layer(x)
    fresh = GemLiteLinear(**kwargs).to(device)
    fresh.load_state_dict(layer.state_dict())
    assert fresh.format == layer.format and fresh.layout == layer.layout
    assert torch.equal(fresh(x), y)
    # Through a file, loaded with weights_only=True (plain tensors, nothing pickled).
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    again = GemLiteLinear(**kwargs).to(device)
    again.load_state_dict(torch.load(buf, weights_only=True, map_location=device))
    assert torch.equal(again(x), y)


def test_round_trip_through_a_parent_module(device: str) -> None:
    a, kw_a = make("hqq4-g64-float", device)
    b, kw_b = make("int8", device, bias=False)
    model = nn.Sequential(a, nn.ReLU(), nn.Identity(), b)
    fresh = nn.Sequential(GemLiteLinear(**kw_a), nn.ReLU(), nn.Identity(), GemLiteLinear(**kw_b)).to(device)
    result = fresh.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = activations(2, torch.float16, device)
    assert torch.equal(fresh[0](x), a(x)) and torch.equal(fresh[3](x), b(x))


def test_load_onto_meta_device_with_assign(device: str) -> None:
    layer, kwargs = make("hqq2-g32-int-bf16", device)
    with torch.device("meta"):
        fresh = GemLiteLinear(**kwargs)
    fresh.load_state_dict(layer.state_dict(), assign=True)
    x = activations(2, torch.bfloat16, device)
    assert torch.equal(fresh(x), layer(x))


def test_loaded_bias_replaces_or_removes(device: str) -> None:
    with_bias, kwargs = make("int8", device, bias=True)
    without, _ = make("int8", device, bias=False)
    x = activations(2, torch.float16, device)
    target = GemLiteLinear(**kwargs).to(device)
    target.load_state_dict(with_bias.state_dict())
    assert target.bias is not None and torch.equal(target(x), with_bias(x))
    target.load_state_dict(without.state_dict())
    assert target.bias is None and torch.equal(target(x), without(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(W_nbits=2, group_size=64), r"W_nbits=4 \(layer: 2\)"),
        (dict(W_nbits=4, group_size=32), r"group_size=64 \(layer: 32\)"),
        (
            dict(W_nbits=4, group_size=64, input_dtype=DType.BF16),
            r"input_dtype=DType.FP16 \(layer: DType.BF16\)",
        ),
    ],
)
def test_load_into_a_different_layer_fails(kwargs, match, device: str) -> None:
    layer, _ = make("hqq4-g64-float", device)
    other = GemLiteLinear(**kwargs, in_features=K, out_features=N).to(device)
    with pytest.raises(RuntimeError, match="metadata: the saved weight does not fit this layer: .*" + match):
        other.load_state_dict(layer.state_dict())


def test_load_checks_sizes(device: str) -> None:
    layer, _ = make("hqq4-g64-float", device)
    other = GemLiteLinear(4, 64, in_features=2 * K, out_features=N).to(device)
    with pytest.raises(RuntimeError, match=r"in_features=128 \(layer: 256\)"):
        other.load_state_dict(layer.state_dict())


def test_missing_and_unexpected_keys(device: str) -> None:
    layer, kwargs = make("hqq4-g64-float", device)
    sd = layer.state_dict()
    del sd["scales"]
    with pytest.raises(RuntimeError, match='Missing key.*"scales"'):
        GemLiteLinear(**kwargs).load_state_dict(sd)
    sd = layer.state_dict()
    sd["extra"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match='Unexpected key.*"extra"'):
        GemLiteLinear(**kwargs).load_state_dict(sd)


def test_unpacked_state_dict_loads_as_unpacked() -> None:
    target = GemLiteLinear(4, 64, K, N)
    target.load_state_dict(GemLiteLinear(4, 64, K, N).state_dict())
    assert not target.is_packed
    with pytest.raises(RuntimeError, match=r"call pack\(\)"):
        target(torch.randn(1, K).half())


# --------------------------------------------------------------------------------------------
# .to(): devices move, storage dtypes stay
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["int8", "w16-bf16", "hqq4-g64-float"])
def test_dtype_casts_keep_storage_dtypes(case: str, device: str) -> None:
    layer, _ = make(case, device)
    dtypes = {name: t.dtype for name, t in layer.state_dict().items()}
    x = activations(2, layer.input_dtype.torch_dtype, device)
    y = layer(x)
    for cast in (
        lambda m: m.half(),
        lambda m: m.to(torch.bfloat16),
        lambda m: m.float(),
        lambda m: m.double(),
    ):
        cast(layer)
        assert {name: t.dtype for name, t in layer.state_dict().items()} == dtypes
        assert torch.equal(layer(x), y)


def test_device_moves(device: str) -> None:
    layer, kwargs = make("fp8", device)
    x = activations(2, torch.float16, device)
    y = layer(x)
    layer.to("cpu")
    assert all(t.device.type == "cpu" for t in layer.state_dict().values())
    layer.to(device)
    assert torch.equal(layer(x), y)
    assert layer.W_q.device == x.device


def test_helpers_build_loadable_layers(device: str) -> None:
    w = float_weight()
    x = activations(2, torch.float16, device)
    for proc, ctor in (
        (A16W8_INT8(device=device), dict(W_nbits=8, group_size=None)),
        (A16W8_FP8(device=device), dict(W_nbits=8, group_size=None)),
        (A16W158_INT(device=device), dict(W_nbits=2, group_size=None)),
    ):
        linear = nn.Linear(K, N).half()
        linear.weight.data.copy_(w)
        layer = proc.from_linear(linear)
        fresh = GemLiteLinear(**ctor, in_features=K, out_features=N).to(device)
        fresh.load_state_dict(layer.state_dict())
        assert fresh.format == layer.format
        assert torch.equal(fresh(x), layer(x))


def test_packing_parameters_keeps_buffers(device: str) -> None:
    """Tensors handed over as nn.Parameters (e.g. a float layer's weight) become plain buffers."""
    w = nn.Parameter(float_weight().half().to(device))
    b = nn.Parameter(bias_of(torch.float16, device))
    layer = GemLiteLinear(16, None, K, N).pack(w, None, None, b)
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == SCHEMA | {"bias"}
    assert not layer.W_q.requires_grad and not layer.bias.requires_grad


def test_partial_weight_is_refused_even_when_not_strict(device: str) -> None:
    layer, kwargs = make("hqq4-g64-float", device)
    sd = layer.state_dict()
    del sd["scales"]
    target = GemLiteLinear(**kwargs).to(device)
    with pytest.raises(RuntimeError, match="a gemlite weight loads as a whole .*missing scales"):
        target.load_state_dict(sd, strict=False)
