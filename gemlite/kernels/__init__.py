"""Device code and launch plans.

One module per kernel family (gemv, gemv_revsplitk, gemv_splitk, gemm_splitk, gemm), their shared
``@triton.jit`` device functions and the split-K reduction kernel in `common`, and `plan`, which
builds and runs the launches of every family. Choosing a family and config is `gemlite.matmul`'s
job; the weight encodings' host rules are `gemlite.schemes`'.
"""

from __future__ import annotations

from gemlite.kernels import gemm

__all__ = ["interpreter_active"]


def interpreter_active() -> bool:
    """True when this process runs the kernels through the Triton interpreter (TRITON_INTERPRET=1).

    Reads what actually happened: `@triton.jit` consults Triton's knob once, when our kernel modules
    were decorated, so setting the environment variable later changes nothing.
    """
    return type(gemm.gemm_kernel).__name__ == "InterpretedFunction"
