"""A16W16: an unquantized fp16/bf16 weight, used as is (a baseline through gemlite's kernels)."""

from __future__ import annotations

import torch

from gemlite.formats import Format, WeightKind, WeightSpec
from gemlite.schemes.base import Canonical, KernelKind, Storage, WeightScheme, empty_placeholder


class DenseScheme(WeightScheme):
    kinds = (WeightKind.FLOAT,)
    kernel_kind = KernelKind.FLOAT

    def has_scales(self, spec: WeightSpec) -> bool:
        return False

    def post_scale(self, layout) -> bool:
        return False

    def canonicalize(self, fmt: Format, W_q, scales, zeros, *, n, k, group_size, compute_dtype) -> Canonical:
        if W_q.dtype != compute_dtype:
            name = "FP16" if compute_dtype == torch.float16 else "BF16"
            raise TypeError(
                f"W_q: a W_nbits=16 weight must have the activation dtype {compute_dtype} "
                f"(input_dtype={name}), got {W_q.dtype}"
            )
        if scales is not None:
            raise ValueError(f"scales: a W_nbits=16 weight takes no scales, got {type(scales).__name__}")
        if zeros is not None:
            raise ValueError(f"zeros: a W_nbits=16 weight takes no zeros, got {type(zeros).__name__}")
        if not bool(torch.isfinite(W_q).all()):
            raise ValueError("W_q: the 16-bit weight contains NaN or Inf")
        return Canonical(fmt.weight, W_q.contiguous(), None, None)

    def prepare(self, layout, canonical: Canonical) -> dict[str, torch.Tensor]:
        device = canonical.codes.device
        return {
            "W_q": canonical.codes,
            "scales": empty_placeholder(device),
            "zeros": empty_placeholder(device),
        }

    def storage(self, layout) -> dict[str, Storage]:
        K, N = layout.in_features, layout.out_features
        return {
            "W_q": Storage(layout.compute_dtype, (N, K)),
            "scales": Storage(torch.float32, None),
            "zeros": Storage(torch.float32, None),
        }

    def weight_bytes(self, spec: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
        return N * K * 2


SCHEME = DenseScheme()
