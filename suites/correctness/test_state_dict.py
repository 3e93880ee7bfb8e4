"""state_dict / load_state_dict round trips, module hygiene (.to(), schema), and load-time checks.

A fresh GemLiteLinear built with the same constructor arguments must load a packed layer's state_dict
and then produce bitwise the same output, whatever the format; so must a module loaded through a
parent, through torch.save / torch.load, or onto the meta device with ``assign=True``.

Layers are packed from the one operand builder: cases written with `harness.case.pinned`, tensors
from `harness.build.make_operands`, the layer from `harness.build.build_layer` (the public API).
"""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from gemlite import DType, GemLiteLinear
from gemlite.helper import A16W8_FP8, A16W8_INT8, A16W158_INT
from harness.build import build_layer, make_operands
from harness.case import Case, pinned
from harness.support import DTYPES, SUPPORT

pytestmark = pytest.mark.interpreter

K, N = 128, 40
SCHEMA = {"W_q", "scales", "zeros", "metadata"}


def _case(format: str, **fields) -> Case:
    return pinned(format, **{"K": K, "N": N, "M": 3, "bias": "input", **fields})


CASES = {
    "hqq4-g64-float": _case("A16W4_HQQ_INT", group_size=64, zeros="float"),
    "hqq2-g32-int-bf16": _case("A16W2_HQQ_INT", group_size=32, zeros="int", input_dtype="bfloat16"),
    "hqq1-chan-none": _case("A16W1_HQQ_INT", group_size=None, zeros="none"),
    "hqq8-g64-float-word8": _case("A16W8_HQQ_INT", group_size=64, zeros="float", packing_bitwidth=8),
    "hqq4-g32-float-word8": _case("A16W4_HQQ_INT", group_size=32, zeros="float", packing_bitwidth=8),
    "int8": _case("A16W8_INT8"),
    "fp8": _case("A16W8_FP8"),
    "ternary": _case("A16W158_INT"),  # output = activation dtype: built by the A16W158_INT helper
    "ternary-f32-out": _case("A16W158_INT", output_dtype="float32"),  # built by pack(format=...)
    "w16-bf16": _case("A16W16", input_dtype="bfloat16"),
    # dynamic activations: the metadata names the activation quantization too
    "a8w8-int8": _case("A8W8_INT8_dynamic"),
    "a8w8-fp8-f32-out": _case("A8W8_FP8_dynamic", output_dtype="float32"),
    "a8w4-g64-float": _case("A8W4_HQQ_INT_dynamic", group_size=64, zeros="float"),
    "a8w2-chan-int-word8": _case("A8W2_HQQ_INT_dynamic", group_size=None, zeros="int", packing_bitwidth=8),
    "a8w158": _case("A8W158_INT_dynamic"),
    "a8w8-fp8-block": _case("A8W8_FP8_block_dynamic", group_size=128, K=256),
    "a8w8-int8-block-f32-out": _case(
        "A8W8_INT8_block_dynamic", group_size=128, K=256, output_dtype="float32"
    ),
    # microscaled weights: scale bytes (and NVFP4's tensor scale) travel bit for bit
    "mxfp8": _case("A16W8_MXFP"),
    "mxfp4-bf16": _case("A16W4_MXFP", input_dtype="bfloat16"),
    "nvfp4-f32-out": _case("A16W4_NVFP", output_dtype="float32"),
    "a8w8-mxfp-post": _case("A8W8_MXFP_post_scale_dynamic"),
    "a8w4-mxfp-post": _case("A8W4_MXFP_post_scale_dynamic"),
    # 8-bit codes given as they are, no scales: x is codes; the int32 output takes an int32 bias
    "a8w8-int8-codes-i32": _case("A8W8_INT8", bias="output"),
    "a8w8-fp8-codes-bf16": _case("A8W8_FP8", output_dtype="bfloat16", bias="output"),
    # microscaled activations: the metadata names their quantization (e4m3 / e2m1 codes, byte scales)
    "a8w8-mxfp-bf16": _case("A8W8_MXFP_dynamic", input_dtype="bfloat16"),
    "a8w4-mxfp": _case("A8W4_MXFP_dynamic"),
    "a4w4-mxfp": _case("A4W4_MXFP_dynamic"),
    "a4w4-nvfp-f32-out": _case("A4W4_NVFP_dynamic", output_dtype="float32"),
}


def constructor_args(case: Case) -> dict:
    """The GemLiteLinear constructor arguments of `case`'s layer (what a loader rebuilds it with)."""
    return dict(
        W_nbits=case.fmt.weight.bits,
        group_size=case.group_size,
        in_features=case.K,
        out_features=case.N,
        input_dtype=DType.from_torch(DTYPES[case.input_dtype]),
        output_dtype=DType.from_torch(DTYPES[case.output_dtype]),
    )


def make(name: str, device: str, bias: bool = True):
    """(packed layer, its constructor arguments, its x) for one of CASES."""
    case = CASES[name] if bias else CASES[name].replace(bias="none")
    ops = make_operands(case, device)
    return build_layer(case, ops), constructor_args(case), ops.x


def test_every_supported_format_has_a_round_trip() -> None:
    assert {case.format for case in CASES.values()} == set(SUPPORT)


def test_fresh_layer_has_the_packed_schema(device: str) -> None:
    fresh = GemLiteLinear(4, 64, K, N)
    sd = fresh.state_dict()
    assert set(sd) == SCHEMA and all(t.numel() == 0 for t in sd.values())
    packed, _, _ = make("hqq4-g64-float", device, bias=False)
    assert set(packed.state_dict()) == SCHEMA
    with_bias, _, _ = make("hqq4-g64-float", device, bias=True)
    assert set(with_bias.state_dict()) == SCHEMA | {"bias"}
    assert torch.equal(with_bias.metadata.cpu(), with_bias.layout.to_metadata())


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_is_bitwise(name: str, device: str) -> None:
    layer, kwargs, x = make(name, device)
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
    a, kw_a, x = make("hqq4-g64-float", device)
    b, kw_b, _ = make("int8", device, bias=False)  # fp16 activations too: the same x serves both
    model = nn.Sequential(a, nn.ReLU(), nn.Identity(), b)
    fresh = nn.Sequential(GemLiteLinear(**kw_a), nn.ReLU(), nn.Identity(), GemLiteLinear(**kw_b)).to(device)
    result = fresh.load_state_dict(model.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(fresh[0](x), a(x)) and torch.equal(fresh[3](x), b(x))


def test_load_onto_meta_device_with_assign(device: str) -> None:
    layer, kwargs, x = make("hqq2-g32-int-bf16", device)
    with torch.device("meta"):
        fresh = GemLiteLinear(**kwargs)
    fresh.load_state_dict(layer.state_dict(), assign=True)
    assert torch.equal(fresh(x), layer(x))


def test_loaded_bias_replaces_or_removes(device: str) -> None:
    with_bias, kwargs, x = make("int8", device, bias=True)
    without, _, _ = make("int8", device, bias=False)
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
    layer, _, _ = make("hqq4-g64-float", device)
    other = GemLiteLinear(**kwargs, in_features=K, out_features=N).to(device)
    with pytest.raises(RuntimeError, match="metadata: the saved weight does not fit this layer: .*" + match):
        other.load_state_dict(layer.state_dict())


def test_load_checks_sizes(device: str) -> None:
    layer, _, _ = make("hqq4-g64-float", device)
    other = GemLiteLinear(4, 64, in_features=2 * K, out_features=N).to(device)
    with pytest.raises(RuntimeError, match=r"in_features=128 \(layer: 256\)"):
        other.load_state_dict(layer.state_dict())


def test_missing_and_unexpected_keys(device: str) -> None:
    layer, kwargs, _ = make("hqq4-g64-float", device)
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


@pytest.mark.parametrize("name", ["int8", "w16-bf16", "hqq4-g64-float"])
def test_dtype_casts_keep_storage_dtypes(name: str, device: str) -> None:
    layer, _, x = make(name, device)
    dtypes = {key: t.dtype for key, t in layer.state_dict().items()}
    y = layer(x)
    for cast in (
        lambda m: m.half(),
        lambda m: m.to(torch.bfloat16),
        lambda m: m.float(),
        lambda m: m.double(),
    ):
        cast(layer)
        assert {key: t.dtype for key, t in layer.state_dict().items()} == dtypes
        assert torch.equal(layer(x), y)


def test_device_moves(device: str) -> None:
    layer, _, x = make("fp8", device)
    y = layer(x)
    layer.to("cpu")
    assert all(t.device.type == "cpu" for t in layer.state_dict().values())
    layer.to(device)
    assert torch.equal(layer(x), y)
    assert layer.W_q.device == x.device


def test_helpers_build_loadable_layers(device: str) -> None:
    """Helpers quantize a float nn.Linear themselves; the float weight and x are the harness's."""
    ops = make_operands(_case("A16W16", M=2), device)
    x = ops.x
    for proc, ctor in (
        (A16W8_INT8(device=device), dict(W_nbits=8, group_size=None)),
        (A16W8_FP8(device=device), dict(W_nbits=8, group_size=None)),
        (A16W158_INT(device=device), dict(W_nbits=2, group_size=None)),
    ):
        linear = nn.Linear(K, N).half()
        linear.weight.data.copy_(ops.W_float)
        layer = proc.from_linear(linear)
        fresh = GemLiteLinear(**ctor, in_features=K, out_features=N).to(device)
        fresh.load_state_dict(layer.state_dict())
        assert fresh.format == layer.format
        assert torch.equal(fresh(x), layer(x))


def test_packing_parameters_keeps_buffers(device: str) -> None:
    """Tensors handed over as nn.Parameters (e.g. a float layer's weight) become plain buffers."""
    ops = make_operands(_case("A16W16"), device)  # an fp16 weight and an fp16 bias
    w, b = nn.Parameter(ops.qw.codes), nn.Parameter(ops.bias)
    layer = GemLiteLinear(16, None, K, N).pack(w, None, None, b)
    assert list(layer.parameters()) == []
    assert set(layer.state_dict()) == SCHEMA | {"bias"}
    assert not layer.W_q.requires_grad and not layer.bias.requires_grad


def test_partial_weight_is_refused_even_when_not_strict(device: str) -> None:
    layer, kwargs, _ = make("hqq4-g64-float", device)
    sd = layer.state_dict()
    del sd["scales"]
    target = GemLiteLinear(**kwargs).to(device)
    with pytest.raises(RuntimeError, match="a gemlite weight loads as a whole .*missing scales"):
        target.load_state_dict(sd, strict=False)
