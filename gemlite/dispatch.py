"""Which kernel family serves a matmul of M rows.

Measured on an H100 SXM (triton 3.6, `tools/family_sweep.py`, CUDA graph over rotating weight
copies, 2026-11-24), every family forced at each M:

* M = 1: the plain GEMV wins for packed codes (A16W4 g128 8192x28672: GEMV 86.8 us, GEMV_REVSPLITK
  111.0, GEMM_SPLITK 116.0; A16W2 8192x8192: 27.1 vs 39.2 vs 40.3) and GEMV_SPLITK for unpacked
  8/16-bit weights, whose K is contiguous (A16W8_INT8 8192x8192: 27.8 us vs GEMV 40.2, GEMM_SPLITK
  53.3; A16W16: 47.6 vs 57.4 and 49.6).
* M = 2, packed codes (H200, 2026-12-04, `tools/config_sweep.py`, A16W4_HQQ_INT g128): GEMV with two
  rows per program (BLOCK_M = 2, each weight tile unpacked once for both rows) 22.3 / 21.9 / 71.5 /
  71.9 / 5.7 / 9.1 us against GEMM_SPLITK's best of 8 tiles 26.7 / 28.9 / 83.1 / 80.4 / 11.6 / 12.5 on
  4096x14336 / 14336x4096 / 8192x28672 / 28672x8192 / 4096x1024 / 4096x4096. Unpacked A16W8_INT8
  stays on GEMM_SPLITK (22.4 / 22.8 us against GEMV_SPLITK with two rows 29.0 / 25.2).
* 2 <= M < 128 otherwise: GEMM_SPLITK. The GEMV families stream the weight once per row of x, so their time
  grows linearly with M (A16W4 at M = 2: GEMM_SPLITK 113.7 us vs GEMV 142.1; A16W8_INT8 31.5 vs 47.8),
  while a 16-row tensor-core tile reads it once; at M = 64 GEMM_SPLITK still beats GEMM (A16W8_INT8
  59.1 vs 98.1 us, A16W2 72.8 vs 113.5; A16W4 8192x28672 167.2 vs 161.4).
* M >= 128: GEMM (A16W4 8192x28672 at M = 256: 435 us vs GEMM_SPLITK 528). Its space holds large
  tiles, a few of them split over K (for M x N too small to fill the SMs), and dequantize + cuBLAS.
"""

from __future__ import annotations

GEMM_MIN_M = 128  # from here the large tiles of GEMM's space pay (some split over K, autotuned)
# A GEMV family streams the weight once per program row block: for packed codes two rows share each
# weight tile (BLOCK_M = 2), unpacked 8/16-bit weights take GEMM_SPLITK from M = 2.
GEMV_MAX_M = 2
GEMV_SPLITK_MAX_M = 1


def choose_matmul_type(M: int, layout) -> str:
    """The kernel family for an ``[M, K] @ W`` product with weight `layout` (a WeightLayout).

    Raises ValueError for M < 1.
    """
    if not isinstance(M, int) or isinstance(M, bool) or M < 1:
        raise ValueError(f"M: expected a positive int, got {M!r}")
    if M >= GEMM_MIN_M:
        return "GEMM"
    if layout.is_packed and M <= GEMV_MAX_M:
        return "GEMV"
    if not layout.is_packed and M <= GEMV_SPLITK_MAX_M:
        return "GEMV_SPLITK"
    return "GEMM_SPLITK"
