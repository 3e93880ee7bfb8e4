"""8-bit channel-wise weights, symmetric: ``W = W_q * scales[n]``, fp32 scales.

INT8 (A16W8_INT8): int8 codes, scale ``amax / 127``. FP8 (A16W8_FP8): float8_e4m3fn codes, scale
``amax / 448``. Codes stay ``[N, K]`` with K contiguous; the kernels post-scale (int8 and e4m3 values
are exact in fp16, bf16 and fp32).

Block-scaled (A8W8_{INT8,FP8}_block_dynamic, ``block_n = group_size = 128``): one fp32 scale per 128 x 128
block, given as ``[ceil(N / 128), K / 128]`` (any shape with that count; the last block row may be
ragged); K must be a multiple of 128 (the activations' 1 x 128 blocks). They are stored expanded to
one row of N scales per 128 inputs, ``[K / 128, N]``, the grouped layout every kernel reads (and
applied per K tile, never folded into a weight: ``gemlite/kernels/gemm.py``); that costs ``4 * N * K /
128`` bytes, 3% of the weight, where the blocks alone would take 1/128 of that.

Without scales (``WeightSpec.scaled`` False: A8W8_INT8, A8W8_FP8, for 8-bit activation codes given by
the caller): the codes are the weight, ``W = W_q``; ``scales`` must be None and is stored as the empty
placeholder.
"""

from __future__ import annotations

import math

import torch

from gemlite.formats import BLOCK_QUANT, Format, WeightKind, WeightSpec
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

    # ---- the 128 x 128 block variant ----------------------------------------------------------------

    def check_spec(self, spec: WeightSpec) -> None:
        if spec.block_n != 1 and (spec.block_n, spec.group_size) != (BLOCK_QUANT, BLOCK_QUANT):
            raise NotImplementedError(
                f"format: {spec.kind.name} weights with {spec.block_n}x{spec.group_size} blocks are not "
                f"supported; gemlite runs channel-wise and {BLOCK_QUANT}x{BLOCK_QUANT} blocks"
            )

    def has_scales(self, spec: WeightSpec) -> bool:
        return spec.scaled

    def post_scale(self, layout) -> bool:
        """Channel-wise scales multiply the accumulator; block scales each K tile's product."""
        return layout.spec.block_n == 1 and layout.spec.scaled

    def check_layout(self, layout) -> None:
        if layout.spec.block_n == 1:
            return super().check_layout(layout)
        k = layout.in_features
        if k % BLOCK_QUANT:
            raise ValueError(
                f"in_features: {layout.format.name} quantizes weights and activations in blocks of "
                f"{BLOCK_QUANT} along K, so K must be a multiple of {BLOCK_QUANT}, got {k}"
            )

    def weight_bytes(self, spec: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
        if not spec.scaled:
            return N * K
        if spec.block_n == 1:
            return super().weight_bytes(spec, K, N, scale_bytes)
        return N * K + (K // BLOCK_QUANT) * N * 4  # the scales as stored, one row of N per block of K

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
        if not fmt.weight.scaled:
            if scales is not None:
                raise ValueError(
                    f"scales: {fmt.name} multiplies {kind.name} codes as they are and takes no scales "
                    f"(None), got {type(scales).__name__}; for channel scales build the layer with "
                    "scaled_activations=True (activations then quantized per token)"
                )
            return Canonical(fmt.weight, W_q.contiguous(), None, None)
        if scales is None:
            raise ValueError(
                f"scales: {kind.name} weights need one scale per output channel (N = {n} values), got None"
                + (" (for no weight scale, pass torch.ones(N))" if fmt.act.is_dynamic else "")
            )
        if fmt.weight.block_n != 1:
            return self._canonical_blocks(fmt, W_q, scales, n, k)
        scales = check_meta_tensor("scales", scales, n, "N (one per output channel)", W_q.device)
        return Canonical(
            WeightSpec(kind, 8), W_q.contiguous(), scales.reshape(n, 1).float().contiguous(), None
        )

    def _canonical_blocks(self, fmt: Format, W_q, scales, n: int, k: int) -> Canonical:
        """Block scales ``[ceil(N / B), K / B]`` (any shape of that count) -> canonical ``[N, K / B]``."""
        b = BLOCK_QUANT
        if k % b:
            raise ValueError(
                f"in_features: {fmt.name} quantizes in blocks of {b} along K, so K must be a multiple of "
                f"{b}, got {k}"
            )
        nb = math.ceil(n / b)
        what = f"ceil(N / {b}) * K / {b} = {nb} * {k // b} (one per {b}x{b} block)"
        scales = check_meta_tensor("scales", scales, nb * (k // b), what, W_q.device).reshape(nb, k // b)
        rows = scales.float().repeat_interleave(b, dim=0)[:n].contiguous()
        return Canonical(fmt.weight, W_q.contiguous(), rows, None)

    def prepare(self, layout, canonical: Canonical) -> dict[str, torch.Tensor]:
        device = canonical.codes.device
        scales = empty_placeholder(device) if canonical.scales is None else scales_rows(canonical.scales)
        return {"W_q": canonical.codes, "scales": scales, "zeros": empty_placeholder(device)}

    def storage(self, layout) -> dict[str, Storage]:
        K, N = layout.in_features, layout.out_features
        scales = Storage(None, (layout.num_groups, N)) if layout.spec.scaled else Storage(torch.float32, None)
        return {
            "W_q": Storage(self.code_dtype, (N, K)),
            "scales": scales,
            "zeros": Storage(torch.float32, None),
        }


INT8 = ChannelWise8Scheme(WeightKind.INT8, torch.int8, KernelKind.INT8)
FP8 = ChannelWise8Scheme(WeightKind.FP8, torch.float8_e4m3fn, KernelKind.FP8)
