"""The launch plan of every kernel family, in one place, and the launch next to it.

`plan(family, x, W_q, scales, zeros, bias, layout, out_dtype, config)` describes a matmul as a list
of `KernelLaunch` (the family kernel, then the split-K reduction when partial sums need one) and the
output tensor they write; `KernelLaunch.run` launches one. What differs between families is data
(`_FAMILIES`): the kernel, how K is split, the grid, the K span a masked tail is measured against.
Everything else is shared: the arguments (every kernel takes a subset of one named argument set,
selected by its own parameter names), the constexprs (the layout's, from its scheme, plus the tile),
the output and workspace allocation, the write mode, the reduction, and the row chunks that bound the
workspace.

Write modes (`write_mode`; ``gemlite/kernels/common.py`` says what each does on the device):
one K split -> WRITE_FINAL; several -> WRITE_PARTIAL + a fixed-order reduction (deterministic, the
default) or, after ``gemlite.set_deterministic(False)``, WRITE_ATOMIC (fp16/bf16 output, reduced from
an fp32 buffer) / WRITE_ATOMIC_FINAL (fp32 output, atomics straight into it).
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch
import triton

from gemlite.kernels import gemm, gemm_splitk, gemv, gemv_revsplitk, gemv_splitk
from gemlite.kernels.common import (
    WRITE_ATOMIC,
    WRITE_ATOMIC_FINAL,
    WRITE_FINAL,
    WRITE_PARTIAL,
    splitk_reduce_kernel,
)
from gemlite.settings import is_deterministic

REDUCE_BLOCK = 1024  # elements per program of splitk_reduce_kernel: a memory-bound copy-like pass

#: Largest fp32 split-K workspace one launch may allocate. GEMV_REVSPLITK splits K as finely as its
#: tile allows (K / (2 * BLOCK_K) partials per output), so forcing it at M = 4096 on an 8192 x 28672
#: weight would ask for 30 GB; such calls run in row chunks instead (H100, 2026-11-24: that launch
#: ran out of memory before this bound existed). Tests shrink it to reach the chunked path on CPU.
MAX_WORKSPACE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class _Family:
    """What one family's launch looks like.

    kernel: the @triton.jit kernel. split: how K is cut, ``(config, K) -> (splits, k_per_split)``.
    tile_m: the family tiles M by BLOCK_M (tensor cores) rather than one row per program.
    k_span: ``config -> K per masked step``: EVEN_K means K is a multiple of it.
    """

    kernel: object
    split: object
    tile_m: bool
    k_span: object = lambda c: c.BLOCK_K


def _split_contiguous(config, K: int) -> tuple[int, int]:
    """Each split walks a contiguous K range, a whole number of BLOCK_K tiles; no empty splits."""
    k_per_split = triton.cdiv(triton.cdiv(K, config.BLOCK_K), config.SPLIT_K) * config.BLOCK_K
    return triton.cdiv(K, k_per_split), k_per_split


def _split_pairs(config, K: int) -> tuple[int, int]:
    """GEMV_REVSPLITK: one program per 2 * BLOCK_K of K."""
    return triton.cdiv(K, 2 * config.BLOCK_K), 2 * config.BLOCK_K


def _split_interleaved(config, K: int) -> tuple[int, int]:
    """GEMM_SPLITK: split s takes K tiles s, s + SPLIT_K, ...; no empty splits."""
    return max(1, min(config.SPLIT_K, triton.cdiv(K, config.BLOCK_K))), config.BLOCK_K


_FAMILIES = {
    "GEMV": _Family(gemv.gemv_kernel, _split_contiguous, tile_m=False),
    "GEMV_REVSPLITK": _Family(
        gemv_revsplitk.gemv_revsplitk_kernel, _split_pairs, tile_m=False, k_span=lambda c: 2 * c.BLOCK_K
    ),
    "GEMV_SPLITK": _Family(gemv_splitk.gemv_splitk_kernel, _split_contiguous, tile_m=False),
    "GEMM_SPLITK": _Family(gemm_splitk.gemm_splitk_kernel, _split_interleaved, tile_m=True),
    "GEMM": _Family(gemm.gemm_kernel, lambda config, K: (1, K), tile_m=True),
}


@functools.cache
def kernel_params(kernel) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(runtime parameter names in order, constexpr parameter names) of a @triton.jit kernel."""
    fn = getattr(kernel, "fn", kernel)
    runtime, constexprs = [], []
    for p in inspect.signature(fn).parameters.values():
        (constexprs if "constexpr" in str(p.annotation) else runtime).append(p.name)
    return tuple(runtime), tuple(constexprs)


@dataclass
class KernelLaunch:
    """One kernel launch, described before it runs (`run` launches it; the compile-only check
    compiles exactly the same signature for sm_90 from it)."""

    kernel: object  # a @triton.jit function
    grid: tuple[int, ...]
    args: tuple  # runtime arguments in signature order
    constexprs: dict = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2

    def run(self) -> None:
        self.kernel[self.grid](
            *self.args, **self.constexprs, num_warps=self.num_warps, num_stages=self.num_stages
        )


def write_mode(num_splits: int, out_dtype: torch.dtype) -> int:
    """The write mode for a launch with `num_splits` K splits (module docstring)."""
    if num_splits == 1:
        return WRITE_FINAL.value
    if is_deterministic():
        return WRITE_PARTIAL.value
    return WRITE_ATOMIC_FINAL.value if out_dtype == torch.float32 else WRITE_ATOMIC.value


def rows_per_launch(family: str, config, M: int, K: int, N: int) -> int:
    """Rows of x one launch may take so its split-K workspace stays under MAX_WORKSPACE_BYTES."""
    splits, _ = _FAMILIES[family].split(config, K)
    if splits <= 1:
        return M
    return max(1, min(M, MAX_WORKSPACE_BYTES // (splits * N * 4)))


def _weight_strides(layout, W_q: torch.Tensor) -> tuple[int, int]:
    """(stride along K rows/words, stride along N) of the physical weight (gemlite/layout.py)."""
    if layout.is_packed:
        return W_q.stride(0), W_q.stride(1)  # [K // e, N]
    return W_q.stride(1), W_q.stride(0)  # [N, K]


def plan(family, x, W_q, scales, zeros, bias, layout, out_dtype: torch.dtype, config):
    """(out, launches) computing ``x @ W^T + bias`` with `family` and `config`; inputs already valid.

    x is ``[M, K]`` contiguous; M > 0. Above MAX_WORKSPACE_BYTES of partial sums the rows run in
    chunks (each an ordinary launch on a slice of x and of out, so results equal the unchunked ones
    bit for bit).
    """
    fam = _FAMILIES[family]
    M, K = x.shape
    N = layout.out_features
    splits, k_per_split = fam.split(config, K)
    mode = write_mode(splits, out_dtype)
    rows = rows_per_launch(family, config, M, K, N)
    out = torch.zeros if mode == WRITE_ATOMIC_FINAL.value else torch.empty
    out = out((M, N), dtype=out_dtype, device=x.device)
    if mode == WRITE_PARTIAL.value:
        ws = torch.empty((splits, rows, N), dtype=torch.float32, device=x.device)
    elif mode == WRITE_ATOMIC.value:
        ws = torch.zeros((M, N), dtype=torch.float32, device=x.device)  # one fp32 sum per output
    else:
        ws = torch.empty((1,), dtype=torch.float32, device=x.device)
    stride_wk, stride_wn = _weight_strides(layout, W_q)
    meta = dict(
        layout.constexprs,
        HAS_BIAS=bias is not None,
        EVEN_K=K % fam.k_span(config) == 0,
        WRITE_MODE=mode,
        BLOCK_M=config.BLOCK_M,
        BLOCK_N=config.BLOCK_N,
        BLOCK_K=config.BLOCK_K,
        SPLIT_K=splits,
        GROUP_M=config.GROUP_M,
    )
    runtime, constexprs = kernel_params(fam.kernel)
    meta = {name: meta[name] for name in constexprs}
    launches = []
    for m0 in range(0, M, rows):
        x_rows, out_rows = x[m0 : m0 + rows], out[m0 : m0 + rows]
        m = x_rows.shape[0]
        ws_rows = ws[m0 : m0 + rows] if mode == WRITE_ATOMIC.value else ws
        # Axis 0: one program per output tile (GEMV families: per row and BLOCK_N columns, rows
        # fastest, so the rows of one column block share its weight in L2); axis 1: one per K split.
        m_tiles = triton.cdiv(m, config.BLOCK_M) if fam.tile_m else m
        grid = (m_tiles * triton.cdiv(N, config.BLOCK_N), splits)
        named = {
            "x_ptr": x_rows, "w_ptr": W_q, "s_ptr": scales, "z_ptr": zeros,
            "b_ptr": bias if bias is not None else out_rows, "out_ptr": out_rows, "ws_ptr": ws_rows,
            "M": m, "N": N, "K": K, "MN": m * N, "K_PER_SPLIT": k_per_split,
            "zero_int": layout.zero_int or 0,
            "stride_xm": x_rows.stride(0), "stride_wk": stride_wk, "stride_wn": stride_wn, "stride_sg": N,
        }  # fmt: skip
        args = tuple(named[name] for name in runtime)
        launches.append(KernelLaunch(fam.kernel, grid, args, meta, config.num_warps, config.num_stages))
        launches += _reduce_plan(ws_rows, scales, bias, out_rows, splits, mode, layout)
    return out, launches


def _reduce_plan(ws, scales, bias, out, num_splits: int, mode: int, layout) -> list[KernelLaunch]:
    """The second pass of WRITE_PARTIAL / WRITE_ATOMIC (sum the workspace, epilogue, cast), if any."""
    if mode not in (WRITE_PARTIAL.value, WRITE_ATOMIC.value):
        return []
    M, N = out.shape
    splits = num_splits if mode == WRITE_PARTIAL.value else 1
    # One program per REDUCE_BLOCK contiguous outputs of the flat [M * N] output.
    grid = (triton.cdiv(M * N, REDUCE_BLOCK),)
    # Partial sums of split s sit at s * M * N, as the family kernel wrote them (a row chunk's own M).
    args = (ws, scales, bias if bias is not None else ws, out, M * N, N, splits)
    meta = {"POST_SCALE": layout.post_scale, "HAS_BIAS": bias is not None, "BLOCK": REDUCE_BLOCK}
    return [KernelLaunch(splitk_reduce_kernel, grid, args, meta, num_warps=4, num_stages=1)]


def launch(family, x, W_q, scales, zeros, bias, layout, out_dtype: torch.dtype, config) -> torch.Tensor:
    """Run `family` with `config` (its plan, in order); returns the ``[M, N]`` output."""
    out, launches = plan(family, x, W_q, scales, zeros, bias, layout, out_dtype, config)
    for step in launches:
        step.run()
    return out
