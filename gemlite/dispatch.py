"""Which kernel family serves a matmul of M rows.

Measured on an H100 SXM (triton 3.6, `tools/family_sweep.py`, CUDA graph over rotating weight
copies, 2026-11-24), every family forced at each M:

* M = 1: the plain GEMV wins for packed codes (A16W4 g128 8192x28672: GEMV 86.8 us, GEMV_REVSPLITK
  111.0, GEMM_SPLITK 116.0; A16W2 8192x8192: 27.1 vs 39.2 vs 40.3) and GEMV_SPLITK for unpacked
  8/16-bit weights, whose K is contiguous (A16W8_INT8 8192x8192: 27.8 us vs GEMV 40.2, GEMM_SPLITK
  53.3; A16W16: 47.6 vs 57.4 and 49.6).
* 2 <= M < 128: GEMM_SPLITK. The GEMV families stream the weight once per row of x, so their time
  grows linearly with M (A16W4 at M = 2: GEMM_SPLITK 113.7 us vs GEMV 142.1; A16W8_INT8 31.5 vs 47.8),
  while a 16-row tensor-core tile reads it once; at M = 64 GEMM_SPLITK still beats GEMM (A16W8_INT8
  59.1 vs 98.1 us, A16W2 72.8 vs 113.5; A16W4 8192x28672 167.2 vs 161.4).
* M >= 128: GEMM (A16W4 8192x28672 at M = 256: 435 us vs GEMM_SPLITK 528). Its space holds large
  tiles, a few of them split over K (for M x N too small to fill the SMs), and dequantize + cuBLAS.
"""

from __future__ import annotations

GEMM_MIN_M = 128  # from here the large tiles of GEMM's space pay (some split over K, autotuned)
GEMV_MAX_M = 1  # a GEMV family re-reads the weight for every row of x: only worth it for one row


def choose_matmul_type(M: int, layout) -> str:
    """The kernel family for an ``[M, K] @ W`` product with weight `layout` (a WeightLayout).

    Raises ValueError for M < 1.
    """
    if not isinstance(M, int) or isinstance(M, bool) or M < 1:
        raise ValueError(f"M: expected a positive int, got {M!r}")
    if M >= GEMM_MIN_M:
        return "GEMM"
    if M <= GEMV_MAX_M:
        return "GEMV" if layout.is_packed else "GEMV_SPLITK"
    return "GEMM_SPLITK"
