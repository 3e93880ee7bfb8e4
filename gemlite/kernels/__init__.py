"""The kernel contract the API layer codes against.

``prepare_weight`` turns canonical weight tensors into a `WeightLayout` plus the tensors in the
kernels' physical layout; ``matmul`` runs one of the kernel families (`MATMUL_TYPES`) on them.
Families live one per module (gemv, gemv_revsplitk, gemv_splitk, gemm_splitk, gemm); shared device
functions and the split-K reduction in `common`; the config spaces and cache in `gemlite.autotune`;
the family choice by M in `gemlite.dispatch`.
"""

from __future__ import annotations

import torch

from gemlite import autotune
from gemlite.dispatch import choose_matmul_type
from gemlite.formats import WeightKind, Zeros
from gemlite.kernels import gemm, gemm_splitk, gemv, gemv_revsplitk, gemv_splitk
from gemlite.kernels.layout import WeightLayout, prepare_weight

__all__ = ["MATMUL_TYPES", "WeightLayout", "interpreter_active", "matmul", "prepare_weight"]

MATMUL_TYPES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM")
OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)

_LAUNCHERS = {
    "GEMV": gemv.launch,
    "GEMV_REVSPLITK": gemv_revsplitk.launch,
    "GEMV_SPLITK": gemv_splitk.launch,
    "GEMM_SPLITK": gemm_splitk.launch,
    "GEMM": gemm.launch,
}


def interpreter_active() -> bool:
    """True when this process runs the kernels through the Triton interpreter (TRITON_INTERPRET=1).

    Reads what actually happened: `@triton.jit` consults Triton's knob once, when our kernel modules
    were decorated, so setting the environment variable later changes nothing.
    """
    return type(gemm.gemm_kernel).__name__ == "InterpretedFunction"


def _weight_dtype(layout: WeightLayout) -> torch.dtype:
    """The dtype `prepare_weight` stores W_q in for this layout."""
    if layout.is_packed:
        return torch.int32 if layout.word_bits == 32 else torch.uint8
    return {
        WeightKind.FLOAT: layout.compute_dtype,
        WeightKind.INT8: torch.int8,
        WeightKind.FP8: torch.float8_e4m3fn,
    }[layout.spec.kind]


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _check_inputs(x, W_q, scales, zeros, bias, layout, out_dtype, matmul_type) -> None:
    if not isinstance(layout, WeightLayout):
        raise TypeError(f"layout: expected a WeightLayout, got {type(layout).__name__}")
    for name, t in (("x", x), ("W_q", W_q), ("scales", scales), ("zeros", zeros)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    K, N = layout.in_features, layout.out_features
    if x.dim() != 2 or x.shape[1] != K:
        raise ValueError(f"x: expected shape [M, {K}], got {tuple(x.shape)}")
    if x.dtype != layout.compute_dtype:
        raise TypeError(
            f"x: expected dtype {layout.compute_dtype} (the layout's compute dtype), got {x.dtype}"
        )
    if not x.is_contiguous():
        raise ValueError(f"x: must be contiguous, got strides {x.stride()} for shape {tuple(x.shape)}")
    if out_dtype not in OUT_DTYPES:
        raise TypeError(
            f"out_dtype: expected torch.float16, torch.bfloat16 or torch.float32, got {out_dtype!r}"
        )
    if matmul_type is not None and matmul_type not in MATMUL_TYPES:
        raise ValueError(f"matmul_type: expected None or one of {MATMUL_TYPES}, got {matmul_type!r}")
    for name, t in (("W_q", W_q), ("scales", scales), ("zeros", zeros)):
        if t.device != x.device:
            raise ValueError(f"{name}: expected to be on x's device {x.device}, got {t.device}")
    expect = (K // layout.elems_per_word, N) if layout.is_packed else (N, K)
    if tuple(W_q.shape) != expect or not W_q.is_contiguous():
        raise ValueError(f"W_q: expected the prepared contiguous shape {expect}, got {tuple(W_q.shape)}")
    if W_q.dtype != _weight_dtype(layout):
        raise TypeError(f"W_q: expected the prepared dtype {_weight_dtype(layout)}, got {W_q.dtype}")
    meta_shape = (layout.num_groups, N)
    if layout.has_scales and (tuple(scales.shape) != meta_shape or not scales.is_contiguous()):
        raise ValueError(
            f"scales: expected the prepared contiguous shape {meta_shape}, got {tuple(scales.shape)}"
        )
    if layout.zero_mode is Zeros.FLOAT and (tuple(zeros.shape) != meta_shape or not zeros.is_contiguous()):
        raise ValueError(
            f"zeros: expected the prepared contiguous shape {meta_shape}, got {tuple(zeros.shape)}"
        )
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or not bias.is_floating_point() or tuple(bias.shape) != (N,):
            got = (
                f"{bias.dtype} {tuple(bias.shape)}" if isinstance(bias, torch.Tensor) else type(bias).__name__
            )
            raise ValueError(f"bias: expected a float tensor of shape ({N},) or None, got {got}")
        if bias.device != x.device:
            raise ValueError(f"bias: expected to be on x's device {x.device}, got {bias.device}")
    if x.device.type != "cuda" and not interpreter_active():
        raise RuntimeError(
            f"x: the kernels need a CUDA GPU, or TRITON_INTERPRET=1 set before gemlite is imported; "
            f"got a tensor on {x.device} with the interpreter off"
        )


def matmul(
    x: torch.Tensor,
    W_q: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bias: torch.Tensor | None,
    layout: WeightLayout,
    out_dtype: torch.dtype,
    matmul_type: str | None = None,
) -> torch.Tensor:
    """y = x @ W^T (+ bias) for a weight prepared by `prepare_weight`.

    x: ``[M, K]`` contiguous, dtype layout.compute_dtype, on the weight's device (CUDA, or CPU under
        TRITON_INTERPRET=1).
    W_q, scales, zeros: the tensors `prepare_weight` returned.
    bias: ``[N]`` in any float dtype, or None (added in fp32 in the epilogue).
    out_dtype: torch.float16, torch.bfloat16 or torch.float32.
    matmul_type: None (choose by M, `gemlite.dispatch`) or one of MATMUL_TYPES.
    Returns ``[M, N]`` out_dtype. Raises TypeError/ValueError for inputs that do not match the layout,
    RuntimeError for CPU tensors without the interpreter. CUDA-graph capturable once every config it
    needs is tuned (during capture nothing is timed: untuned keys get the default config).
    """
    _check_inputs(x, W_q, scales, zeros, bias, layout, out_dtype, matmul_type)
    M = x.shape[0]
    if M == 0:
        return torch.empty((0, layout.out_features), dtype=out_dtype, device=x.device)
    family = matmul_type if matmul_type is not None else choose_matmul_type(M, layout)
    launch = _LAUNCHERS[family]
    interpreter = interpreter_active()
    timer = None
    if not interpreter and not _capturing(x.device):
        timer = lambda cfg: autotune.bench_ms(
            lambda: launch(x, W_q, scales, zeros, bias, layout, out_dtype, cfg)
        )
    scale_dtype = scales.dtype if layout.has_scales else None
    config = autotune.get_config(
        family, M, layout, out_dtype, scale_dtype, timer=timer, interpreter=interpreter
    )
    rows = _rows_per_launch(family, config, M, layout)
    if rows >= M:
        return launch(x, W_q, scales, zeros, bias, layout, out_dtype, config)
    # A split family forced at prefill sizes: bound the fp32 partial-sum workspace by running row
    # chunks (each chunk is an ordinary launch, so results equal the unchunked ones bit for bit).
    out = torch.empty((M, layout.out_features), dtype=out_dtype, device=x.device)
    for m0 in range(0, M, rows):
        out[m0 : m0 + rows] = launch(x[m0 : m0 + rows], W_q, scales, zeros, bias, layout, out_dtype, config)
    return out


#: Largest fp32 split-K workspace one launch may allocate. GEMV_REVSPLITK splits K as finely as its
#: tile allows (K / (2 * BLOCK_K) partials per output), so forcing it at M = 4096 on an 8192 x 28672
#: weight would ask for 30 GB; such calls run in row chunks instead (H100, 2026-11-24: that launch
#: ran out of memory before this bound existed).
MAX_WORKSPACE_BYTES = 256 * 2**20


def _rows_per_launch(family: str, config, M: int, layout: WeightLayout) -> int:
    """Rows of x one launch may take so its split-K workspace stays under MAX_WORKSPACE_BYTES."""
    K, N = layout.in_features, layout.out_features
    if family == "GEMV_REVSPLITK":
        splits = -(-K // (2 * config.BLOCK_K))
    else:
        splits = getattr(config, "SPLIT_K", 1) or 1
    if splits <= 1:
        return M
    return max(1, min(M, MAX_WORKSPACE_BYTES // (splits * N * 4)))
