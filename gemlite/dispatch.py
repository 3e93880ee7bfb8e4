"""Which kernel family serves a matmul of M rows.

Start from public GemLite's thresholds (notes section 3): GEMM from M = 64, a GEMV family at decode
sizes, GEMM_SPLITK in between. The GEMV family follows the weight's memory layout: packed codes are
stored with N contiguous (one word holds several consecutive k), which GEMV_REVSPLITK's wide-N tiles
stream well; unpacked 8/16-bit weights keep K contiguous, which GEMV_SPLITK's long-K, narrow-N tiles
stream well. Thresholds are GemLite's, not yet re-measured on our kernels.
"""

from __future__ import annotations

from gemlite.formats import WeightKind

GEMM_MIN_M = 64  # from here tensor-core tiles without a K split have enough parallelism over M x N
GEMV_MAX_M_PACKED = 4  # sub-8-bit codes: dequantization is cheap per byte, GEMV wins up to M = 4
GEMV_MAX_M_UNPACKED = 2  # 8/16-bit weights: twice the bytes per value, the tensor-core path wins sooner


def choose_matmul_type(M: int, layout) -> str:
    """The kernel family for an ``[M, K] @ W`` product with weight `layout` (a WeightLayout).

    Raises ValueError for M < 1.
    """
    if not isinstance(M, int) or isinstance(M, bool) or M < 1:
        raise ValueError(f"M: expected a positive int, got {M!r}")
    if M >= GEMM_MIN_M:
        return "GEMM"
    low_bit = layout.spec.bits < 8 and layout.spec.kind in (WeightKind.HQQ, WeightKind.TERNARY)
    if M <= (GEMV_MAX_M_PACKED if low_bit else GEMV_MAX_M_UNPACKED):
        return "GEMV_REVSPLITK" if layout.is_packed else "GEMV_SPLITK"
    return "GEMM_SPLITK"
