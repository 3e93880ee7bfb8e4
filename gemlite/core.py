"""Public GemLite's ``gemlite.core``: the names its clients import from there.

torchao's ``UIntxBitPackedTensor`` calls ``gemlite.core.forward_functional``; hqq's vLLM module imports
``TORCH_TO_DTYPE``; older torchao imported ``DType``, ``GemLiteLinearTriton`` and ``set_autotune``. Each
name is gemlite's own object (`gemlite.compat`, `gemlite.linear`), nothing is re-implemented here.
Importing it imports the kernels (set ``TRITON_INTERPRET=1`` first to run them on the CPU).
"""

from __future__ import annotations

from gemlite.compat import (
    DTYPE_TO_TORCH,
    GEMLITE_ACC_DTYPE,
    GEMLITE_MATMUL_TYPES,
    GEMLITE_MATMUL_TYPES_MAPPING,
    TORCH_TO_DTYPE,
    auto_detect_ptx_fp4_pack,
    enable_activation_scaling,
    enable_cudagraph_autotune,
    enable_tma,
    enable_warp_specialize,
    forward_functional,
    set_acc_dtype,
    set_autotune,
    set_autotune_setting,
    set_fast_gemv_acc,
    set_fast_nvfp4,
    set_kernel_caching,
    set_native_atomic_bfp16,
    set_ptx_fp4_pack,
)
from gemlite.formats import DType
from gemlite.linear import PACKING_BITWIDTHS, GemLiteLinear, GemLiteLinearTriton

__all__ = [
    "DTYPE_TO_TORCH",
    "DType",
    "GEMLITE_ACC_DTYPE",
    "GEMLITE_MATMUL_TYPES",
    "GEMLITE_MATMUL_TYPES_MAPPING",
    "GemLiteLinear",
    "GemLiteLinearTriton",
    "TORCH_TO_DTYPE",
    "auto_detect_ptx_fp4_pack",
    "enable_activation_scaling",
    "enable_cudagraph_autotune",
    "enable_tma",
    "enable_warp_specialize",
    "forward_functional",
    "set_acc_dtype",
    "set_autotune",
    "set_autotune_setting",
    "set_fast_gemv_acc",
    "set_fast_nvfp4",
    "set_kernel_caching",
    "set_native_atomic_bfp16",
    "set_packing_bitwidth",
    "set_ptx_fp4_pack",
]


def set_packing_bitwidth(packing_bitwidth: int) -> None:
    """Public GemLite's default packing word: what `GemLiteLinear.pack` uses when it is not told
    (``GemLiteLinear.PACKING_BITWIDTH``, 32 until changed; read it back there). 8 or 32: gemlite's
    kernels read 8- and 32-bit words (GemLite's 16 and 64 raise ValueError)."""
    if isinstance(packing_bitwidth, bool) or packing_bitwidth not in PACKING_BITWIDTHS:
        raise ValueError(
            f"packing_bitwidth: expected one of {PACKING_BITWIDTHS} (gemlite's kernels read 8- and 32-bit "
            f"words), got {packing_bitwidth!r}"
        )
    GemLiteLinear.PACKING_BITWIDTH = int(packing_bitwidth)
