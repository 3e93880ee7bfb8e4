"""A16W158_INT: BitNet b1.58 ternary weights ``W = t * s``, t in {-1, 0, 1}, one scale.

Stored as 2-bit codes ``q = t + 1`` with the integer zero-point 1 (``W = (q - 1) * s``) and the scale
repeated per output channel in fp32, packed like HQQ codes.
"""

from __future__ import annotations

import torch

from gemlite.formats import Format, WeightKind, WeightSpec, Zeros
from gemlite.schemes.base import Canonical, check_meta_tensor
from gemlite.schemes.hqq import PackedScheme

ZERO = 1  # the stored code of t = 0


class TernaryScheme(PackedScheme):
    kinds = (WeightKind.TERNARY,)

    def zero_mode(self, spec: WeightSpec) -> Zeros:
        return Zeros.INT

    def check_layout(self, layout) -> None:
        super().check_layout(layout)
        if layout.zero_int != ZERO:
            raise ValueError(f"zero_int: TERNARY weights use the zero-point {ZERO}, got {layout.zero_int}")

    def canonicalize(self, fmt: Format, W_q, scales, zeros, *, n, k, group_size, compute_dtype) -> Canonical:
        """W_q: uint8 codes ``t + 1`` in {0, 1, 2}; scales: N fp32-representable values; zeros: 1 or None."""
        if W_q.dtype != torch.uint8:
            raise TypeError(f"W_q: TERNARY codes are uint8 (t + 1), got {W_q.dtype}")
        top = int(W_q.max())
        if top > 2:
            raise ValueError(f"W_q: TERNARY codes t + 1 must lie in [0, 2], got a maximum of {top}")
        if zeros is not None and (not isinstance(zeros, int) or isinstance(zeros, bool) or zeros != ZERO):
            raise ValueError(
                f"zeros: TERNARY weights use the integer zero-point {ZERO} (or None), got {zeros!r}"
            )
        what = "N (one per output channel)"
        scales = check_meta_tensor("scales", scales, n, what, W_q.device).reshape(n, 1).float().contiguous()
        return Canonical(WeightSpec(WeightKind.TERNARY, 2, zeros=Zeros.INT), W_q.contiguous(), scales, ZERO)

    def weight_bytes(self, spec: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
        return N * K * 2 // 8 + N * 4


SCHEME = TernaryScheme()
