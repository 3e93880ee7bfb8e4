"""The executable specification of every gemlite format, in plain PyTorch (float64 where it matters).

Imports only the vocabulary (`gemlite.formats`) from gemlite: an oracle that shared code with the
kernels it judges would check nothing.

    import reference as ref
    qw = ref.quantize_weight(fmt, W)          # canonical codes / scales / zeros of a float weight
    y = ref.linear(fmt, x, qw, bias)          # the float64 golden output
"""

from .activations import (
    QuantizedActivation,
    activation_group_size,
    dequantize_activation,
    quantize_activation,
)
from .elements import (
    e2m1_to_float,
    e4m3_to_float,
    e8m0_to_float,
    float_to_e2m1,
    float_to_e4m3,
    float_to_e8m0,
    round_half_away_from_zero,
    round_half_to_even,
)
from .linear import linear
from .packing import pack, pack_e2m1, unpack, unpack_e2m1
from .weights import QuantizedWeight, dequantize_weight, quantize_weight, weight_scale_shape

__all__ = [
    "QuantizedActivation",
    "QuantizedWeight",
    "activation_group_size",
    "dequantize_activation",
    "dequantize_weight",
    "e2m1_to_float",
    "e4m3_to_float",
    "e8m0_to_float",
    "float_to_e2m1",
    "float_to_e4m3",
    "float_to_e8m0",
    "linear",
    "pack",
    "pack_e2m1",
    "quantize_activation",
    "quantize_weight",
    "round_half_away_from_zero",
    "round_half_to_even",
    "unpack",
    "unpack_e2m1",
    "weight_scale_shape",
]
