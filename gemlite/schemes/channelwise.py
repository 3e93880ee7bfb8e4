"""8-bit channel-wise weights, symmetric: ``W = W_q * scales[n]``, fp32 scales.

INT8 (A16W8_INT8): int8 codes, scale ``amax / 127``. FP8 (A16W8_FP8): float8_e4m3fn codes, scale
``amax / 448``. Codes stay ``[N, K]`` with K contiguous; the kernels post-scale (int8 and e4m3 values
are exact in fp16, bf16 and fp32).
"""

from __future__ import annotations

import torch

from gemlite.formats import Format, WeightKind, WeightSpec
from gemlite.schemes.base import (
    Canonical,
    KernelKind,
    Storage,
    WeightScheme,
    check_meta_tensor,
    empty_placeholder,
    scales_rows,
)


class ChannelWise8Scheme(WeightScheme):
    def __init__(self, kind: WeightKind, code_dtype: torch.dtype, kernel_kind: KernelKind) -> None:
        self.kinds = (kind,)
        self.code_dtype = code_dtype
        self.kernel_kind = kernel_kind

    def canonicalize(self, fmt: Format, W_q, scales, zeros, *, n, k, group_size, compute_dtype) -> Canonical:
        # Channel-wise whatever group_size the layer was built with (it only describes HQQ codes); the
        # scales count below enforces one scale per output channel.
        kind = self.kinds[0]
        if W_q.dtype != self.code_dtype:
            raise TypeError(f"W_q: {kind.name} weights take {self.code_dtype} codes, got {W_q.dtype}")
        if zeros is not None:
            raise ValueError(
                f"zeros: {kind.name} weights are symmetric and take no zeros, got {type(zeros).__name__}"
            )
        if kind is WeightKind.FP8 and bool(torch.isnan(W_q.float()).any()):
            raise ValueError("W_q: the float8_e4m3fn weight contains NaN")
        if scales is None:
            raise ValueError(
                f"scales: {kind.name} weights need one scale per output channel (N = {n} values), got None"
            )
        scales = check_meta_tensor("scales", scales, n, "N (one per output channel)", W_q.device)
        return Canonical(
            WeightSpec(kind, 8), W_q.contiguous(), scales.reshape(n, 1).float().contiguous(), None
        )

    def prepare(self, layout, canonical: Canonical) -> dict[str, torch.Tensor]:
        device = canonical.codes.device
        return {
            "W_q": canonical.codes,
            "scales": scales_rows(canonical.scales),
            "zeros": empty_placeholder(device),
        }

    def storage(self, layout) -> dict[str, Storage]:
        K, N = layout.in_features, layout.out_features
        return {
            "W_q": Storage(self.code_dtype, (N, K)),
            "scales": Storage(None, (1, N)),
            "zeros": Storage(torch.float32, None),
        }


INT8 = ChannelWise8Scheme(WeightKind.INT8, torch.int8, KernelKind.INT8)
FP8 = ChannelWise8Scheme(WeightKind.FP8, torch.float8_e4m3fn, KernelKind.FP8)
