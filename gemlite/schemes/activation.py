"""Activation schemes: how x is brought to the kernels' input.

Only ``NONE`` exists in this release: fp16/bf16 activations are used as given (the layer checks
their dtype). Each dynamic scheme (per-token INT8/FP8, 1x128 blocks, MXFP8/MXFP4, NVFP4) will add a
class here: the activation dtype a layer of that scheme takes, and the quantization of x into the
kernel's activation operand and its scales. `gemlite.schemes.act_scheme` refuses the kinds without one.
"""

from __future__ import annotations

from gemlite.formats import ActKind


class NoActivationQuant:
    """Activations used as given, in the layer's compute dtype."""

    kind = ActKind.NONE


SCHEMES = (NoActivationQuant(),)
