"""Activation schemes: how x is brought to the kernels' input.

Only ``NONE`` exists in this release: fp16/bf16 activations are used as given. Each dynamic scheme
(per-token INT8/FP8, 1x128 blocks, MXFP8/MXFP4, NVFP4) will add a class here of the same shape: the
activation dtype a layer of that scheme takes, and the quantization of x into the kernel's
activation operand and its scales.
"""

from __future__ import annotations

import torch

from gemlite.formats import ActKind


class NoActivationQuant:
    """Activations used as given, in the layer's compute dtype."""

    kind = ActKind.NONE

    def input_dtype(self, compute_dtype: torch.dtype) -> torch.dtype:
        """The dtype x must have."""
        return compute_dtype


SCHEMES = (NoActivationQuant(),)
