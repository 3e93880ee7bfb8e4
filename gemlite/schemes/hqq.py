"""HQQ integer weights: unsigned b-bit codes (8/4/2/1), ``W = (W_q - zeros) * scales`` per group along K.

Zero-points come as a float per group (Zeros.FLOAT), one Python int for the whole weight (Zeros.INT)
or not at all (Zeros.NONE). Codes are bit-packed along K into 8- or 32-bit words (`gemlite.packing`),
and the kernels read the transpose ``[K // e, N]`` (N contiguous).
"""

from __future__ import annotations

import math
import operator

import torch

from gemlite.formats import Format, WeightKind, WeightSpec, Zeros
from gemlite.packing import pack_codes
from gemlite.schemes.base import (
    GROUP_MULTIPLE,
    Canonical,
    KernelKind,
    Storage,
    WeightScheme,
    check_meta_tensor,
    empty_placeholder,
    scales_rows,
)


class PackedScheme(WeightScheme):
    """What HQQ and ternary codes share: bit-packed words, grouped scales, the packed storage."""

    kernel_kind = KernelKind.PACKED
    packed = True

    def prepare(self, layout, canonical: Canonical) -> dict[str, torch.Tensor]:
        spec = layout.spec
        device = canonical.codes.device
        # pack_codes gives [N, K // e] (GemLite's layout); the kernels read its transpose, N contiguous.
        w_q = pack_codes(canonical.codes.contiguous(), spec.bits, layout.word_bits).t().contiguous()
        zeros = canonical.zeros
        return {
            "W_q": w_q,
            "scales": scales_rows(canonical.scales),
            "zeros": scales_rows(zeros) if isinstance(zeros, torch.Tensor) else empty_placeholder(device),
        }

    def storage(self, layout) -> dict[str, Storage]:
        K, N, G = layout.in_features, layout.out_features, layout.num_groups
        float_zeros = layout.zero_mode is Zeros.FLOAT
        return {
            "W_q": Storage(
                torch.int32 if layout.word_bits == 32 else torch.uint8, (K // layout.elems_per_word, N)
            ),
            "scales": Storage(None, (G, N)),
            "zeros": Storage(None, (G, N)) if float_zeros else Storage(torch.float32, None),
        }


class HQQScheme(PackedScheme):
    kinds = (WeightKind.HQQ,)
    takes_group_size = True

    def post_scale(self, layout) -> bool:
        """Channel-wise HQQ with no or integer zeros: the dot sees the exact ``q - z`` (``|q - z| <= 255``,
        exact in bf16 and fp16) and only the fp32 accumulator is rounded, once, by the scale."""
        return not layout.is_grouped and layout.zero_mode is not Zeros.FLOAT

    def check_layout(self, layout) -> None:
        k, g = layout.in_features, layout.group_size
        if k % g != 0 or (g != k and g % GROUP_MULTIPLE != 0):
            raise ValueError(
                f"group_size: HQQ groups must divide in_features={k} and be a multiple of "
                f"{GROUP_MULTIPLE} (or equal in_features for channel-wise), got {g}"
            )

    def canonicalize(self, fmt: Format, W_q, scales, zeros, *, n, k, group_size, compute_dtype) -> Canonical:
        g, bits = group_size, fmt.weight.bits
        device = W_q.device
        if W_q.dtype != torch.uint8:
            raise TypeError(f"W_q: a W_nbits={bits} layer takes uint8 (HQQ codes), got {W_q.dtype}")
        max_code = (1 << bits) - 1
        top = int(W_q.max())
        if top > max_code:
            raise ValueError(f"W_q: {bits}-bit codes must lie in [0, {max_code}], got a maximum of {top}")
        count, what = n * (k // g), f"N * K / group_size = {n} * {k} / {g}"
        if g == k:
            what = "N (channel-wise: group_size = in_features)"
        if scales is None:
            raise ValueError(f"scales: {bits}-bit HQQ codes need scales ({what} = {count} values), got None")
        scales = check_meta_tensor("scales", scales, count, what, device).reshape(n, k // g)
        if zeros is None:
            zero_mode = Zeros.NONE
        elif isinstance(zeros, torch.Tensor):
            zeros = check_meta_tensor("zeros", zeros, count, what, device).reshape(n, k // g).contiguous()
            zero_mode = Zeros.FLOAT
        elif isinstance(zeros, bool):
            raise TypeError(f"zeros: expected a tensor, an int or None, got {zeros!r}")
        else:
            try:
                zeros = operator.index(zeros)
            except TypeError:
                raise TypeError(
                    f"zeros: expected a tensor, an int or None, got {type(zeros).__name__} {zeros!r}"
                ) from None
            if not 0 <= zeros <= max_code:
                raise ValueError(
                    f"zeros: an integer zero of {bits}-bit codes must lie in [0, {max_code}], got {zeros}"
                )
            zero_mode = Zeros.INT
        spec = WeightSpec(WeightKind.HQQ, bits, group_size=None if g == k else g, zeros=zero_mode)
        return Canonical(spec, W_q.contiguous(), scales.contiguous(), zeros)

    def weight_bytes(self, spec: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
        groups = N * (K // (spec.group_size or K))
        total = math.ceil(N * K * spec.bits / 8) + groups * scale_bytes
        if spec.zeros is Zeros.FLOAT:
            total += groups * scale_bytes
        return total


SCHEME = HQQScheme()
