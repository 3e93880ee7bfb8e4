"""Checkpoints saved by gemlite 0.1.0 (metadata version 1, weight-only) still load and run.

`fixtures/state_dict_v1.pt` was written by gemlite 0.1.0 (commit baa9cfe, under the Triton
interpreter on CPU): for seven layers (HQQ 4-bit g64 float zeros in 32-bit words, 2-bit channel-wise
integer zero in 8-bit words, 8-bit g32 no zeros with fp32 scales, INT8, FP8, ternary, bf16 A16W16) it
holds the constructor arguments, the ``state_dict``, the output of that release on a fixed x, and,
for the HQQ layers, the raw tensors given to ``pack``. Today's code must decode the version 1
metadata into the same format, and give the same output: bitwise on CPU (the kernels' device code is
what it was), bitwise equal to a layer packed today from the same tensors on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gemlite import DType, GemLiteLinear

pytestmark = pytest.mark.interpreter

FIXTURE = Path(__file__).parent / "fixtures" / "state_dict_v1.pt"
DATA = torch.load(FIXTURE, weights_only=True)
FORMATS = {
    "hqq4_g64_float_w32": "A16W4_HQQ_INT/g64",
    "hqq2_chan_int_w8": "A16W2_HQQ_INT/chan",
    "hqq8_g32_none_w32": "A16W8_HQQ_INT/g32",
    "int8": "A16W8_INT8",
    "fp8": "A16W8_FP8",
    "ternary": "A16W158_INT",
    "a16w16_bf16": "A16W16",
}


def _layer(entry: dict, device: str) -> GemLiteLinear:
    ctor = dict(entry["ctor"])
    ctor["input_dtype"] = DType[ctor["input_dtype"]]
    ctor["output_dtype"] = DType[ctor["output_dtype"]]
    return GemLiteLinear(**ctor).to(device)


@pytest.mark.parametrize("name", list(FORMATS))
def test_v1_state_dict_loads_and_gives_the_saved_output(name: str, device: str) -> None:
    entry = DATA["layers"][name]
    assert int(entry["state_dict"]["metadata"][1]) == 1  # really a version 1 checkpoint
    layer = _layer(entry, device)
    layer.load_state_dict({k: v.to(device) for k, v in entry["state_dict"].items()})
    assert layer.format.label == FORMATS[name]
    assert not layer.format.act.is_dynamic
    x = DATA["x_bf16" if "bf16" in name else "x_fp16"].to(device)
    y = layer(x)
    if device == "cpu":
        assert torch.equal(y.cpu(), entry["y"]), f"{name}: output differs from gemlite 0.1.0's"
    # Saved again, it is a version 2 checkpoint of the same layer.
    again = _layer(entry, device)
    again.load_state_dict(layer.state_dict())
    assert int(layer.state_dict()["metadata"][1]) == 2 and again.layout == layer.layout
    assert torch.equal(again(x), y)


@pytest.mark.parametrize("name", [n for n in FORMATS if DATA["layers"][n]["raw"] is not None])
def test_v1_layer_equals_one_packed_today(name: str, device: str) -> None:
    entry = DATA["layers"][name]
    loaded = _layer(entry, device)
    loaded.load_state_dict({k: v.to(device) for k, v in entry["state_dict"].items()})
    raw = entry["raw"]
    to = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    fresh = _layer(entry, device).pack(
        to(raw["W_q"]), to(raw["scales"]), to(raw["zeros"]), to(raw["bias"]),
        packing_bitwidth=raw["packing_bitwidth"],
    )  # fmt: skip
    for key in ("W_q", "scales", "zeros", "bias"):
        assert torch.equal(getattr(fresh, key), getattr(loaded, key)), key
    assert fresh.layout == loaded.layout
    x = DATA["x_fp16"].to(device)
    assert torch.equal(fresh(x), loaded(x))
