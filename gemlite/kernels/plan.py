"""The launch plan of every kernel family, in one place, and the launch next to it.

`plan(family, x, W_q, scales, zeros, bias, layout, out_dtype, config)` describes a matmul as a list
of `KernelLaunch` (one per row chunk; usually one) and the output tensor they write;
`KernelLaunch.run` launches one. What differs between families is data (`_FAMILIES`): the kernel
(two: `gemv` for the three GEMV families, `gemm` for GEMM and GEMM_SPLITK), how K is split, whether
the grid tiles M. Everything else is shared: the arguments (every kernel takes a subset of one named
argument set, selected by its own parameter names), the constexprs (the layout's, from its scheme,
plus the tile), the output, workspace and lock-counter allocation, the write mode, and the row chunks
that bound the workspace.

Write modes (`write_mode`; ``gemlite/kernels/common.py`` says what each does on the device):
one K split -> WRITE_FINAL; several -> WRITE_PARTIAL, partials reduced in a fixed order by the last
program of each tile (deterministic, the default) or, after ``gemlite.set_deterministic(False)``,
WRITE_ATOMIC (fp16/bf16 output, through an fp32 buffer) / WRITE_ATOMIC_FINAL (fp32 output, atomics
straight into it). Every mode is one launch.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field

import torch

from gemlite.kernels import act_quant, dequant, gemm, gemv
from gemlite.kernels.common import (
    SUM_CHUNK,
    WRITE_ATOMIC,
    WRITE_ATOMIC_FINAL,
    WRITE_FINAL,
    WRITE_PARTIAL,
)
from gemlite.schemes.activation import ActQuant
from gemlite.schemes.base import KernelKind
from gemlite.settings import is_deterministic

#: Largest fp32 split-K workspace one launch may allocate. GEMV_REVSPLITK splits K as finely as its
#: tile allows (K / (2 * BLOCK_K) partials per output), so forcing it at M = 4096 on an 8192 x 28672
#: weight would ask for 30 GB; such calls run in row chunks instead (H100, 2026-11-24: that launch
#: ran out of memory before this bound existed). Tests shrink it to reach the chunked path on CPU.
MAX_WORKSPACE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class _Family:
    """What one family's launch looks like.

    kernel: the @triton.jit kernel. split: how K is cut, ``(config, K) -> (splits, k_per_split)``.
    Every family tiles M by the config's BLOCK_M (the GEMV families by 1 or 2 rows per program).
    """

    kernel: object
    split: object


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)  # host-side ceil division (triton.cdiv is a JIT callable: slow from Python)


def _split_contiguous(config, K: int) -> tuple[int, int]:
    """Each split walks a contiguous K range, a whole number of BLOCK_K tiles; no empty splits."""
    k_per_split = _cdiv(_cdiv(K, config.BLOCK_K), config.SPLIT_K) * config.BLOCK_K
    return _cdiv(K, k_per_split), k_per_split


def _split_pairs(config, K: int) -> tuple[int, int]:
    """GEMV_REVSPLITK: one program per 2 * BLOCK_K of K (as finely as its tile allows)."""
    return _cdiv(K, 2 * config.BLOCK_K), 2 * config.BLOCK_K


def _split_interleaved(config, K: int) -> tuple[int, int]:
    """GEMM_SPLITK / GEMM: split s takes K tiles s, s + SPLIT_K, ...; no empty splits."""
    return max(1, min(config.SPLIT_K, _cdiv(K, config.BLOCK_K))), config.BLOCK_K


_FAMILIES = {
    "GEMV": _Family(gemv.gemv_kernel, _split_contiguous),
    "GEMV_REVSPLITK": _Family(gemv.gemv_kernel, _split_pairs),
    "GEMV_SPLITK": _Family(gemv.gemv_kernel, _split_contiguous),
    "GEMM_SPLITK": _Family(gemm.gemm_kernel, _split_interleaved),
    "GEMM": _Family(gemm.gemm_kernel, _split_interleaved),
}


@functools.cache
def _param_order(kernel) -> tuple[tuple[bool, str], ...]:
    """Every parameter of a @triton.jit kernel in signature order, as (is_constexpr, name)."""
    fn = getattr(kernel, "fn", kernel)
    return tuple(
        ("constexpr" in str(p.annotation), p.name) for p in inspect.signature(fn).parameters.values()
    )


@functools.cache
def kernel_params(kernel) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(runtime parameter names in order, constexpr parameter names) of a @triton.jit kernel."""
    order = _param_order(kernel)
    return tuple(n for c, n in order if not c), tuple(n for c, n in order if c)


try:
    from triton import knobs as _knobs
except ImportError:  # pragma: no cover - a Triton without knobs: always launch through Triton
    _knobs = None
try:
    from torch._C import _cuda_getCurrentRawStream as _raw_stream  # what Triton's own launch uses
except ImportError:  # pragma: no cover - a CPU-only torch
    _raw_stream = None


def _no_hook(hook) -> bool:
    # Triton 3.6+ keeps each hook as a HookChain (an empty chain: no hook); older ones None or a callable.
    return hook is None or (type(getattr(hook, "calls", None)) is list and not hook.calls)


def hooks_off() -> bool:
    """No launch hooks are set (profilers set them and need Triton's own launch path)."""
    if _knobs is None:
        return False
    runtime = _knobs.runtime
    return _no_hook(runtime.launch_enter_hook) and _no_hook(runtime.launch_exit_hook)


@dataclass(eq=False)
class _Static:
    """What every launch of one (family, layout, config, output dtype, bias, determinism) shares.

    runtime: the kernel's runtime parameter names; meta: its constexprs. Every kernel here declares
    its runtime parameters before its constexprs, so Triton's launcher takes ``(*args, *const_values)``.
    Of the runtime arguments only the tensors and M / MN change between calls (N, K, K_PER_SPLIT,
    zero_int and the strides follow from the layout and config): `compiled` maps their
    specialization (dtype and 16-byte alignment of each tensor; M and MN equal to 1, multiples of 16,
    within int32) to the compiled kernel.
    """

    kernel: object
    runtime: tuple[str, ...]
    meta: dict
    splits: int
    k_per_split: int
    mode: int
    const_values: tuple = ()
    tensor_pos: tuple[int, ...] = ()
    m_pos: tuple[int, ...] = ()
    compiled: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        order = _param_order(self.kernel)
        n_runtime = len(self.runtime)
        if any(is_const for is_const, _ in order[:n_runtime]) or not all(c for c, _ in order[n_runtime:]):
            raise AssertionError(f"{self.kernel}: runtime parameters must come before constexprs")
        self.const_values = tuple(self.meta[name] for _, name in order[n_runtime:])
        self.tensor_pos = tuple(i for i, name in enumerate(self.runtime) if name.endswith("_ptr"))
        self.m_pos = tuple(i for i, name in enumerate(self.runtime) if name in ("M", "MN"))


def _spec(args: tuple, static: _Static) -> tuple:
    """The part of Triton's specialization key that can change between calls of one `_Static`."""
    key = [(a.dtype, a.data_ptr() % 16 == 0) for a in (args[i] for i in static.tensor_pos)]
    key += [(v == 1, v % 16 == 0, v < 2**31) for v in (args[i] for i in static.m_pos)]
    return tuple(key)


@dataclass
class KernelLaunch:
    """One kernel launch, described before it runs (`run` launches it; the compile-only check
    compiles exactly the same signature for sm_90 from it).

    On a GPU, `run` launches an already compiled kernel through its launcher directly: Triton's
    ``kernel[grid](...)`` rebuilds its specialization key from every argument on every call, which
    costs several times the rest of a forward's host time. The first launch of each specialization
    goes through Triton (which compiles it) and keeps the compiled kernel in its `_Static`; a Triton
    with launch hooks set (profilers) always goes through Triton.
    """

    kernel: object  # a @triton.jit function
    grid: tuple[int, ...]
    args: tuple  # runtime arguments in signature order
    constexprs: dict = field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2
    static: _Static | None = None

    def run(self) -> None:
        first = self.args[0]
        static = self.static
        if (
            static is None
            or _raw_stream is None
            or not (isinstance(first, torch.Tensor) and first.is_cuda)
            or not hooks_off()
        ):
            self._run_triton()
            return
        device = first.device.index
        spec = (device, _spec(self.args, static))
        compiled = static.compiled.get(spec)
        if compiled is None:
            compiled = self._run_triton()
            if hasattr(compiled, "result"):  # an asynchronous compile's future
                compiled = compiled.result()
            static.compiled[spec] = compiled
            return
        grid = self.grid
        compiled.run(
            grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1, _raw_stream(device),
            compiled.function, compiled.packed_metadata, None, None, None, *self.args, *static.const_values,
        )  # fmt: skip

    def _run_triton(self):
        return self.kernel[self.grid](
            *self.args, **self.constexprs, num_warps=self.num_warps, num_stages=self.num_stages
        )

    def replay(self, x: torch.Tensor, out: torch.Tensor) -> Replay | None:
        """A `Replay` of this launch (which has run) for new x of the same shape; None when it is not
        replayable: not on a GPU, launch hooks set, or its compiled kernel not kept."""
        static = self.static
        if static is None or _raw_stream is None or not x.is_cuda or not hooks_off():
            return None
        compiled = static.compiled.get((x.device.index, _spec(self.args, static)))
        if compiled is None:
            return None
        runtime = static.runtime
        ws = self.args[runtime.index("ws_ptr")] if "ws_ptr" in runtime else out
        return Replay(self, compiled, x, out, ws)


_X, _OUT, _WS = 0, 1, 2  # the per-call tensors of a Replay


class Replay:
    """A layer's one-launch plan for one M, launched again for each new x: the eager hot path.

    Everything but x, the output and the split-K workspace is the same on every call of a layer
    with the same M (the weight tensors, the lock counters, sizes, strides, grid, compiled kernel), so
    a call allocates out (and the workspace), puts the three into the kept argument list and calls
    the compiled kernel's launcher: no plan, no launch choice, no specialization key. The caller
    (`gemlite.matmul.run`) keeps replays per layer and M and uses one only while its settings
    generation is current, the layer's tensors are the same objects, x is contiguous with the same
    16-byte alignment, no config is forced and no launch hook is set.
    """

    __slots__ = (
        "args", "slots", "launch", "prefix", "shape", "out_dtype", "out_zeroed", "ws_shape",
        "ws_zeroed", "device", "aligned",
    )  # fmt: skip

    def __init__(self, step: KernelLaunch, compiled, x: torch.Tensor, out: torch.Tensor, ws: torch.Tensor):
        static = step.static
        roles = {id(x): _X, id(out): _OUT}
        if ws is not out:
            roles[id(ws)] = _WS
        self.slots = tuple((i, roles[id(a)]) for i, a in enumerate(step.args) if id(a) in roles)
        self.args = [*step.args, *static.const_values]
        self.device = x.device
        self.aligned = x.data_ptr() % 16 == 0
        self.shape = tuple(out.shape)
        self.out_dtype = out.dtype
        self.out_zeroed = static.mode == WRITE_ATOMIC_FINAL.value
        self.ws_shape = tuple(ws.shape) if ws is not out else None
        self.ws_zeroed = static.mode == WRITE_ATOMIC.value
        grid = (*step.grid, 1, 1)[:3]
        run = compiled.run
        meta = (compiled.packed_metadata, None, None, None)  # metadata, launch metadata, hooks
        # Triton's CUDA launcher object only allocates scratch memory (none for these kernels) before
        # calling its C entry point; call that directly when there is nothing to allocate.
        launcher = getattr(run, "launch", None)
        if (
            launcher is not None
            and getattr(run, "global_scratch_size", 1) == 0
            and getattr(run, "profile_scratch_size", 1) == 0
            and hasattr(run, "launch_cooperative_grid")
            and hasattr(run, "launch_pdl")
        ):
            self.launch = launcher
            flags = (run.launch_cooperative_grid, run.launch_pdl, None, None)  # + no scratch buffers
            self.prefix = (*grid, (compiled.function, *flags, *meta))
        else:
            self.launch = run
            self.prefix = (*grid, (compiled.function, *meta))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        device = self.device
        out = (torch.zeros if self.out_zeroed else torch.empty)(
            self.shape, dtype=self.out_dtype, device=device
        )
        per_call = [x, out, out]
        if self.ws_shape is not None:
            per_call[_WS] = (torch.zeros if self.ws_zeroed else torch.empty)(
                self.ws_shape, dtype=torch.float32, device=device
            )
        args = self.args.copy()
        for i, role in self.slots:
            args[i] = per_call[role]
        gx, gy, gz, tail = self.prefix
        self.launch(gx, gy, gz, _raw_stream(device.index), *tail, *args)
        return out


def lock_count(N: int) -> int:
    """Lock counters a layer of N outputs keeps (`GemLiteLinear` holds them as a buffer): enough for
    every split-K launch of up to 8 row tiles (GEMV rows, or BLOCK_M >= 16 tiles of M < 128) over
    column tiles of BLOCK_N >= 16. A launch that needs more gets counters of its own."""
    return 8 * _cdiv(N, 16)


def _counters(locks: torch.Tensor | None, count: int, device) -> torch.Tensor:
    """Zeroed int32 lock counters for a split-K launch (one per output tile).

    Counters are zero between launches: each split-K launch's last programs reset the ones they used.
    So a layer's own buffer (`lock_count`), allocated with its weight, serves every call, eager or
    captured in a CUDA graph (a module buffer is a static input to CUDA-graph trees). Launches on two
    streams at once of the same layer would share it: replay one layer on one stream at a time. Without
    a large enough buffer (direct callers of the kernel contract, very large forced tiles) a launch
    gets fresh zeroed counters.
    """
    if locks is not None and locks.numel() >= count and locks.device == device:
        return locks
    return torch.zeros(count, dtype=torch.int32, device=device)


def write_mode(num_splits: int, out_dtype: torch.dtype) -> int:
    """The write mode for a launch with `num_splits` K splits (module docstring). An int32 output
    (int8 codes without scales) takes its atomics straight into the output too: integer sums are exact
    in any order."""
    if num_splits == 1:
        return WRITE_FINAL.value
    if is_deterministic():
        return WRITE_PARTIAL.value
    return WRITE_ATOMIC_FINAL.value if out_dtype in (torch.float32, torch.int32) else WRITE_ATOMIC.value


def rows_per_launch(family: str, config, M: int, K: int, N: int) -> int:
    """Rows of x one launch may take so its split-K workspace stays under MAX_WORKSPACE_BYTES."""
    return _rows(M, N, _FAMILIES[family].split(config, K)[0])


def _rows(M: int, N: int, splits: int) -> int:
    return M if splits <= 1 else max(1, min(M, MAX_WORKSPACE_BYTES // (splits * N * 4)))


def _weight_strides(layout, W_q: torch.Tensor) -> tuple[int, int]:
    """(stride along K rows/words, stride along N) of the physical weight (gemlite/layout.py)."""
    if layout.is_packed:
        return W_q.stride(0), W_q.stride(1)  # [K // e, N]
    return W_q.stride(1), W_q.stride(0)  # [N, K]


#: The weight constants of a GEMM on the codes scratch (`_codes_scratch`): e4m3 codes, one per byte.
_SCRATCH_WEIGHT = {"W_KIND": int(KernelKind.FP8), "W_BITS": 8, "ELEMS_PER_WORD": 1}


@functools.lru_cache(maxsize=8192)
def _static(family: str, layout, config, out_dtype: torch.dtype, has_bias: bool, deterministic: bool):
    """The `_Static` of a launch of (family, layout, config): what does not depend on M or the tensors."""
    fam = _FAMILIES[family]
    K = layout.in_features
    splits, k_per_split = fam.split(config, K)
    mode = write_mode(splits, out_dtype)  # reads is_deterministic(), part of the cache key
    meta = dict(
        layout.constexprs,
        **(_SCRATCH_WEIGHT if config.DEQUANT else {}),  # (only codes-scratch layouts reach here with it)
        HAS_BIAS=has_bias,
        EVEN_K=K % config.BLOCK_K == 0,
        EVEN_PAIRS=k_per_split % (2 * config.BLOCK_K) == 0,
        TILE_PAIRS=K % (2 * splits * config.BLOCK_K) == 0,
        WRITE_MODE=mode,
        BLOCK_M=config.BLOCK_M,
        BLOCK_N=config.BLOCK_N,
        BLOCK_K=config.BLOCK_K,
        SPLIT_K=splits,
        GROUP_M=config.GROUP_M,
    )
    runtime, constexprs = kernel_params(fam.kernel)
    return _Static(fam.kernel, runtime, {name: meta[name] for name in constexprs}, splits, k_per_split, mode)


def plan(family, x, W_q, scales, zeros, bias, layout, out_dtype: torch.dtype, config, locks=None):
    """(out, launches) computing ``x @ W^T + bias`` with `family` and `config`; inputs already valid.

    x is ``[M, K]`` contiguous; M > 0. locks: the layer's zeroed int32 lock counters, or None
    (`_counters`). Above MAX_WORKSPACE_BYTES of partial sums the rows run in chunks (each an
    ordinary launch on a slice of x and of out, so results equal the unchunked ones bit for bit).
    """
    pre = []
    if config.DEQUANT and layout.fp8_scaled_mm:
        return _scaled_mm_plan(x, W_q, scales, bias, layout, out_dtype)
    if config.DEQUANT and not layout.codes_scratch:
        return _dequant_plan(x, W_q, scales, zeros, bias, layout, out_dtype, config)
    if config.DEQUANT:  # the exact codes into an [N, K] e4m3 scratch, read as an FP8 weight below
        W_q, pre = _codes_scratch(W_q, scales, zeros, layout)
    x_tensor = None
    x_sums = None
    if layout.act.is_dynamic:  # the matmul reads codes and row scales instead of x
        x, x_scales, x_tensor, x_sums, act_pre = _act_quant_plan(
            x, layout.act_scheme, layout.act.group_size, sums=_needs_sums(family, layout)
        )
        pre = pre + act_pre
    static = _static(family, layout, config, out_dtype, bias is not None, is_deterministic())
    kernel, runtime, meta = static.kernel, static.runtime, static.meta
    splits, k_per_split, mode = static.splits, static.k_per_split, static.mode
    M, K = x.shape[0], layout.in_features  # (x may be e2m1 codes now, two per byte)
    N = layout.out_features
    device = x.device
    rows = _rows(M, N, splits)
    out = (torch.zeros if mode == WRITE_ATOMIC_FINAL.value else torch.empty)(
        (M, N), dtype=out_dtype, device=device
    )
    if mode == WRITE_PARTIAL.value:
        ws = torch.empty((splits, rows, N), dtype=torch.float32, device=device)
    elif mode == WRITE_ATOMIC.value:
        ws = torch.zeros((M, N), dtype=torch.float32, device=device)  # one fp32 sum per output
    else:
        ws = out  # not read (WRITE_FINAL, WRITE_ATOMIC_FINAL)
    n_tiles = _cdiv(N, config.BLOCK_N)
    if mode in (WRITE_PARTIAL.value, WRITE_ATOMIC.value):
        locks = _counters(locks, _cdiv(rows, config.BLOCK_M) * n_tiles, device)
    else:
        locks = ws
    stride_wk, stride_wn = (1, K) if config.DEQUANT else _weight_strides(layout, W_q)
    launches = []
    for m0 in range(0, M, rows):
        x_rows, out_rows = (x, out) if rows == M else (x[m0 : m0 + rows], out[m0 : m0 + rows])
        m = x_rows.shape[0]
        whole = rows == M
        xs_rows = out_rows if not layout.act.is_dynamic else x_scales if whole else x_scales[m0 : m0 + rows]
        sums_rows = out_rows if x_sums is None else x_sums if whole else x_sums[m0 : m0 + rows]
        ws_rows = ws[m0 : m0 + rows] if mode == WRITE_ATOMIC.value and rows != M else ws
        # Axis 0: one program per output tile (GEMV families: per BLOCK_M rows and BLOCK_N columns,
        # rows fastest, so the rows of one column block share its weight in L2); axis 1: one per K split.
        # Row chunks run one after another on the stream, so they share the lock counters.
        grid = (_cdiv(m, config.BLOCK_M) * n_tiles, splits)
        named = {
            "x_ptr": x_rows, "xs_ptr": xs_rows, "xt_ptr": out_rows if x_tensor is None else x_tensor,
            "xsum_ptr": sums_rows,
            "w_ptr": W_q, "s_ptr": scales, "z_ptr": zeros,
            "b_ptr": bias if bias is not None else out_rows, "out_ptr": out_rows, "ws_ptr": ws_rows,
            "lock_ptr": locks, "M": m, "N": N, "K": K, "MN": m * N, "K_PER_SPLIT": k_per_split,
            "zero_int": layout.zero_int or 0,
            # x's row stride: K, or K / 2 for e2m1 activation codes (two per byte)
            "stride_xm": x.shape[1], "stride_wk": stride_wk, "stride_wn": stride_wn, "stride_sg": N,
        }  # fmt: skip
        args = tuple([named[name] for name in runtime])
        launches.append(KernelLaunch(kernel, grid, args, meta, config.num_warps, config.num_stages, static))
    return out, pre + launches


#: Where dynamic activation quantization runs, the one switch: "separate", a launch of
#: `gemlite.kernels.act_quant` before the matmul's that writes int8 / e4m3 codes and fp32 row scales
#: (``M * K`` bytes written and read back). The matmul kernels take codes + scales (``x_ptr``,
#: ``xs_ptr``), so a quantizer fused into them would replace `_act_quant_plan` and nothing else.
ACT_QUANT = "separate"
_ACT_BLOCK_K = 1024  # K per step of the quantizer's two passes over a row (4 warps: 8 values a thread)


def _needs_sums(family: str, layout) -> bool:
    """Whether the matmul reads the quantizer's code sums (`WeightLayout.zero_sums`, tensor-core
    families only: the GEMV families add up their own x)."""
    return family in ("GEMM", "GEMM_SPLITK") and layout.zero_sums


_SCRATCH_TILE = {"BLOCK_N": 128, "BLOCK_K": 64}  # the codes scratch's dequantization tile (4 warps)


def _codes_scratch(W_q, scales, zeros, layout):
    """(e4m3 view of an ``[N, K]`` scratch, [the launch writing the layout's exact codes into it as e4m3
    bytes]) for a `WeightLayout.codes_scratch` layout (`gemlite.kernels.dequant`, CODES_NK)."""
    K, N = layout.in_features, layout.out_features
    scratch = torch.empty((N, K), dtype=torch.uint8, device=W_q.device)
    stride_wk, stride_wn = _weight_strides(layout, W_q)
    runtime, constexprs = kernel_params(dequant.dequant_kernel)
    meta = dict(layout.constexprs, EVEN_K=K % _SCRATCH_TILE["BLOCK_K"] == 0, CODES_NK=True, **_SCRATCH_TILE)
    named = {
        "w_ptr": W_q, "s_ptr": scales, "z_ptr": zeros, "out_ptr": scratch, "N": N, "K": K,
        "zero_int": 0, "stride_wk": stride_wk, "stride_wn": stride_wn, "stride_sg": N,
    }  # fmt: skip
    grid = (_cdiv(K, _SCRATCH_TILE["BLOCK_K"]), _cdiv(N, _SCRATCH_TILE["BLOCK_N"]))
    launch = KernelLaunch(dequant.dequant_kernel, grid, tuple(named[n] for n in runtime),
                          {n: meta[n] for n in constexprs}, 4, 2)  # fmt: skip
    return scratch.view(torch.float8_e4m3fn), [launch]


@functools.lru_cache(maxsize=1024)
def _act_static(x_quant: int, K: int, group: int, sums: bool) -> _Static:
    if group:  # one program per 1 x group block
        kernel = act_quant.quantize_groups_kernel
        meta = {"X_QUANT": x_quant, "GROUP": group}
    else:  # one program per row
        kernel = act_quant.quantize_rows_kernel
        block_k = min(_ACT_BLOCK_K, 1 << (K - 1).bit_length())
        block_k = max(block_k, SUM_CHUNK.value) if sums else block_k  # whole chunks per step
        meta = {"X_QUANT": x_quant, "SUMS": sums, "BLOCK_K": block_k}
    runtime, constexprs = kernel_params(kernel)
    return _Static(kernel, runtime, {n: meta[n] for n in constexprs}, 1, K, WRITE_FINAL.value)


_MX_ACT = (int(ActQuant.MXFP8), int(ActQuant.MXFP4), int(ActQuant.NVFP4))


def _act_quant_plan(x, scheme, group: int | None = None, sums: bool = False):
    """(codes [M, K], fp32 scales [M] (per token) or [M, K // group], None, fp32 sums of SUM_CHUNK codes
    [M, cdiv(K, SUM_CHUNK)] (sums, per token only) or None, [the quantizer's launch]) for x ``[M, K]``
    contiguous and an activation scheme of `gemlite.schemes.activation` (`ACT_QUANT`): one program per
    row of x, or per 1 x group block (`gemlite.kernels.act_quant`). e4m3 codes are uint8 bytes (what
    the matmul kernels read). Microscaled schemes: `_mx_act_quant_plan`."""
    if int(scheme.x_quant) in _MX_ACT:
        codes, x_scales, x_tensor, steps = _mx_act_quant_plan(x, scheme)
        return codes, x_scales, x_tensor, None, steps
    M, K = x.shape
    if sums and group:
        raise ValueError(f"sums: only the per-token quantizer sums its codes, got group={group}")
    codes = torch.empty((M, K), dtype=scheme.kernel_dtype, device=x.device)
    x_scales = torch.empty((M, K // group) if group else (M,), dtype=torch.float32, device=x.device)
    x_sums = None
    if sums:
        x_sums = torch.empty((M, _cdiv(K, SUM_CHUNK.value)), dtype=torch.float32, device=x.device)
    static = _act_static(int(scheme.x_quant), K, group or 0, sums)
    named = {"x_ptr": x, "codes_ptr": codes, "scales_ptr": x_scales, "K": K, "stride_xm": K,
             "sums_ptr": x_scales if x_sums is None else x_sums}  # fmt: skip
    args = tuple(named[n] for n in static.runtime)
    grid = (M, K // group) if group else (M,)
    launch = KernelLaunch(static.kernel, grid, args, static.meta, 4, 2, static)
    return codes, x_scales, None, x_sums, [launch]


@functools.lru_cache(maxsize=1024)
def _mx_act_static(kernel_name: str, x_quant: int, K: int) -> _Static:
    kernel = getattr(act_quant, kernel_name)
    meta = {"X_QUANT": x_quant, "BLOCK_K": min(_ACT_BLOCK_K, 1 << (K - 1).bit_length())}
    runtime, constexprs = kernel_params(kernel)
    return _Static(kernel, runtime, {n: meta[n] for n in constexprs}, 1, K, WRITE_FINAL.value)


def _mx_act_quant_plan(x, scheme):
    """(codes, scale bytes ``[M, K // g]``, NVFP4's fp32 ``[amax, ts]`` or None, [launches]) of a
    microscaled activation scheme (`gemlite.schemes.mx.MXActQuant`) for x ``[M, K]`` contiguous: codes
    are e4m3 bytes ``[M, K]`` or two e2m1 codes per byte ``[M, K // 2]``. One program per 1024 inputs of
    a row (`gemlite.kernels.act_quant.quantize_mx_kernel`); NVFP4 first takes the amax of all of x
    (`amax_kernel`, one program per row, into a zeroed cell)."""
    M, K = x.shape
    device = x.device
    codes = torch.empty((M, K // 2 if scheme.packed else K), dtype=torch.uint8, device=device)
    x_scales = torch.empty((M, K // scheme.group), dtype=torch.uint8, device=device)
    x_tensor = torch.zeros(2, dtype=torch.float32, device=device) if scheme.has_tensor_scale else None
    x_quant = int(scheme.x_quant)
    named = {
        "x_ptr": x, "codes_ptr": codes, "scales_ptr": x_scales,
        "xt_ptr": x_scales if x_tensor is None else x_tensor, "K": K, "stride_xm": K,
    }  # fmt: skip
    steps = []
    if x_tensor is not None:
        static = _mx_act_static("amax_kernel", x_quant, K)
        args = tuple(named[n] for n in static.runtime)
        steps.append(KernelLaunch(static.kernel, (M,), args, static.meta, 4, 2, static))
    static = _mx_act_static("quantize_mx_kernel", x_quant, K)
    args = tuple(named[n] for n in static.runtime)
    grid = (M, _cdiv(K, static.meta["BLOCK_K"]))
    steps.append(KernelLaunch(static.kernel, grid, args, static.meta, 4, 2, static))
    return codes, x_scales, x_tensor, steps


def quantize_activation(x: torch.Tensor, scheme, group: int | None = None, sums: bool = False):
    """Run the dynamic activation quantizer alone (what a dynamic format's forward runs first):
    x ``[M, K]`` fp16/bf16 -> (codes ``[M, K]`` in ``scheme.code_dtype``, fp32 scales ``[M]``, or
    ``[M, K // group]`` per 1 x group block), and with sums=True (per token only) a third tensor, the
    fp32 sums of each SUM_CHUNK (32) codes' values ``[M, cdiv(K, 32)]``; scheme is
    ``gemlite.schemes.act_scheme(kind)`` of a dynamic kind. For tests, tools and the harness."""
    if int(scheme.x_quant) in _MX_ACT:
        raise TypeError(
            f"scheme: {scheme.kind.name} activations have byte scales (and NVFP4 a tensor scale): use "
            "quantize_activation_mx"
        )
    x = x.contiguous()
    codes, x_scales, _, x_sums, steps = _act_quant_plan(x, scheme, group, sums)
    if x.shape[0] > 0:
        for step in steps:
            step.run()
    if sums:
        return codes.view(scheme.code_dtype), x_scales, x_sums
    return codes.view(scheme.code_dtype), x_scales


def quantize_activation_mx(x: torch.Tensor, scheme):
    """Run a microscaled activation quantizer alone (what an MX / NVFP4 dynamic format's forward runs
    first): x ``[M, K]`` fp16/bf16 -> (codes ``[M, K]`` as the reference has them: float8_e4m3fn, or
    uint8 e2m1 indices 0..15 unpacked from the kernel's two-per-byte layout, the even k in the low
    nibble; scales ``[M, K // g]``: uint8 e8m0 bytes or float8_e4m3fn; NVFP4's fp32 tensor scale ``[1]``,
    else None). scheme: ``gemlite.schemes.act_scheme(kind)`` of kind MXFP8, MXFP4 or NVFP4. For tests,
    tools and the harness."""
    if int(scheme.x_quant) not in _MX_ACT:
        raise TypeError(
            f"scheme: expected an MXFP8, MXFP4 or NVFP4 activation scheme, got {scheme.kind.name}"
        )
    x = x.contiguous()
    codes, x_scales, x_tensor, _, steps = _act_quant_plan(x, scheme)
    if x.shape[0] > 0:
        for step in steps:
            step.run()
    elif x_tensor is not None:
        x_tensor[1] = 1.0  # no rows: the all-zero rule
    if scheme.packed:
        codes = torch.stack((codes & 15, codes >> 4), dim=-1).reshape(x.shape)
    else:
        codes = codes.view(torch.float8_e4m3fn)
    ts = None if x_tensor is None else x_tensor[1:].clone()
    return codes, x_scales.view(scheme.scale_dtype), ts


@dataclass
class TorchStep:
    """A step of a plan that is a torch call, not a Triton kernel (compile checks skip it)."""

    call: object
    kernel: object = None

    def run(self) -> None:
        self.call()


def _scaled_mm_plan(x, W_q, scales, bias, layout, out_dtype):
    """GEMM with DEQUANT=1 on a `WeightLayout.fp8_scaled_mm` layout (A8W8_FP8_dynamic): the per-token
    quantizer, then cuBLAS's fp8 GEMM on its codes and the weight's (`_scaled_mm`)."""
    M, N = x.shape[0], layout.out_features
    codes, x_scales, _, _, steps = _act_quant_plan(x, layout.act_scheme)
    out = torch.empty((M, N), dtype=out_dtype, device=x.device)
    call = functools.partial(
        _scaled_mm, codes.view(torch.float8_e4m3fn), W_q.view(torch.float8_e4m3fn), x_scales.view(M, 1),
        scales.view(1, N), bias, out,
    )  # fmt: skip
    return out, steps + [TorchStep(call)]


def _scaled_mm(a, w, scale_a, scale_b, bias, out) -> None:
    """out = (a @ w^T) * scale_a * scale_b + bias for e4m3 codes a ``[M, K]`` and w ``[N, K]`` with fp32
    scales ``[M, 1]`` and ``[1, N]``: `torch._scaled_mm` (cuBLAS on a GPU; row-wise scales; fp32
    accumulation, not the fast one), whose fp32 epilogue applies both scales and adds a bias of the output
    dtype before the one rounding. A bias of another dtype (an fp32 bias is kept at fp32 precision) or an
    fp32 output with a bias (cuBLAS takes none there): the fp32 product, the bias added in fp32, then
    the one rounding to out's dtype."""
    if bias is None or (bias.dtype == out.dtype and out.dtype != torch.float32):
        torch._scaled_mm(a, w.t(), scale_a=scale_a, scale_b=scale_b, bias=bias, out_dtype=out.dtype, out=out)
        return
    f32 = torch.float32
    acc = out if out.dtype == f32 else torch.empty(out.shape, dtype=f32, device=out.device)
    torch._scaled_mm(a, w.t(), scale_a=scale_a, scale_b=scale_b, out_dtype=f32, out=acc)
    torch.add(acc, bias, out=out)  # in fp32 (a 16-bit bias widens exactly), then the one cast to out


def _dequant_plan(x, W_q, scales, zeros, bias, layout, out_dtype, config):
    """GEMM with DEQUANT=1: dequantize W into a ``[K, N]`` scratch tensor, then ``x @ W`` by cuBLAS
    (fp32 accumulation; one rounding to the output dtype, the bias added in fp32 before it). On
    `WeightLayout.operands_scratch` layouts x is quantized first and its codes dequantized too (both
    operands bf16, exact), and `dequant.scale_cast_kernel` gives cuBLAS's fp32 product the row scales
    or NVFP4's tensor scales, the bias and the cast."""
    M, K = x.shape
    N = layout.out_features
    steps, x_scales, x_tensor = [], None, None
    if layout.operands_scratch:
        x, x_scales, x_tensor, steps = _dequant_act_plan(x, layout)
    w_dtype = x.dtype if layout.operands_scratch else layout.compute_dtype  # (x: the codes as bf16 now)
    w = torch.empty((K, N), dtype=w_dtype, device=x.device)
    out = torch.empty((M, N), dtype=out_dtype, device=x.device)
    stride_wk, stride_wn = _weight_strides(layout, W_q)
    runtime, constexprs = kernel_params(dequant.dequant_kernel)
    meta = dict(
        layout.constexprs, EVEN_K=K % config.BLOCK_K == 0, CODES_NK=False, BLOCK_N=config.BLOCK_N,
        BLOCK_K=config.BLOCK_K,
    )
    named = {
        "w_ptr": W_q, "s_ptr": scales, "z_ptr": zeros, "out_ptr": w, "N": N, "K": K,
        "zero_int": layout.zero_int or 0, "stride_wk": stride_wk, "stride_wn": stride_wn, "stride_sg": N,
    }  # fmt: skip
    grid = (_cdiv(K, config.BLOCK_K), _cdiv(N, config.BLOCK_N))
    steps.append(
        KernelLaunch(
            dequant.dequant_kernel, grid, tuple(named[n] for n in runtime),
            {n: meta[n] for n in constexprs}, config.num_warps, config.num_stages,
        )
    )  # fmt: skip
    if not layout.operands_scratch:
        return out, steps + [TorchStep(functools.partial(_cublas_mm, x, w, bias, out))]
    acc = torch.empty((M, N), dtype=torch.float32, device=x.device)
    meta = {"X_QUANT": int(layout.act_scheme.x_quant), "HAS_BIAS": bias is not None, **_EPILOGUE_TILE}
    named = {
        "acc_ptr": acc, "xs_ptr": x_scales,  # (always given: act dynamic; read for per-token codes)
        "xt_ptr": acc if x_tensor is None else x_tensor, "z_ptr": zeros,
        "b_ptr": acc if bias is None else bias, "out_ptr": out, "M": M, "N": N,
    }  # fmt: skip
    runtime, constexprs = kernel_params(dequant.scale_cast_kernel)
    grid = (_cdiv(M, _EPILOGUE_TILE["BLOCK_M"]), _cdiv(N, _EPILOGUE_TILE["BLOCK_N"]))
    steps += [
        TorchStep(functools.partial(_cublas_mm, x, w, None, acc)),  # fp32 out: no rounding
        KernelLaunch(dequant.scale_cast_kernel, grid, tuple(named[n] for n in runtime),
                     {n: meta[n] for n in constexprs}, 4, 1),
    ]  # fmt: skip
    return out, steps


_ACT_TILE = {"BLOCK_M": 16, "BLOCK_K": 256}  # dequant_act_kernel's tile (4 warps)
_EPILOGUE_TILE = {"BLOCK_M": 32, "BLOCK_N": 128}  # scale_cast_kernel's tile (4 warps)


def _dequant_act_plan(x, layout):
    """(bf16 ``[M, K]`` of x's dequantized codes, the quantizer's scales (fp32 per row for per-token
    codes, bytes for microscaled ones), NVFP4's fp32 ``[amax, ts]`` or None, [launches]) for an
    `WeightLayout.operands_scratch` layout: the quantizer's launches, then `dequant.dequant_act_kernel`."""
    M, K = x.shape
    codes, x_scales, x_tensor, _, steps = _act_quant_plan(x, layout.act_scheme, layout.act.group_size)
    x_deq = torch.empty((M, K), dtype=torch.bfloat16, device=x.device)
    meta = {"X_QUANT": int(layout.act_scheme.x_quant), **_ACT_TILE}
    named = {
        "x_ptr": codes, "xs_ptr": x_scales, "out_ptr": x_deq, "M": M, "K": K, "stride_xm": codes.shape[1],
    }  # fmt: skip
    runtime, constexprs = kernel_params(dequant.dequant_act_kernel)
    grid = (_cdiv(M, _ACT_TILE["BLOCK_M"]), _cdiv(K, _ACT_TILE["BLOCK_K"]))
    steps.append(
        KernelLaunch(dequant.dequant_act_kernel, grid, tuple(named[n] for n in runtime),
                     {n: meta[n] for n in constexprs}, 4, 1)  # fmt: skip
    )
    return x_deq, x_scales, x_tensor, steps


def _cublas_mm(x, w, bias, out) -> None:
    """out = x @ w + bias with fp32 accumulation and a single rounding to out's dtype."""
    if x.is_cuda and out.dtype == x.dtype and (bias is None or bias.dtype == x.dtype):
        # cuBLAS(Lt) adds the bias in its fp32 epilogue before the one conversion to out's dtype. PyTorch
        # lets cuBLAS reduce split-K partials in fp16/bf16 by default; our contract is fp32
        # accumulation, so that is switched off for this call (a process-wide flag, read when the GEMM
        # is issued; restored at once).
        matmul = torch.backends.cuda.matmul
        saved = matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction
        matmul.allow_fp16_reduced_precision_reduction = False
        matmul.allow_bf16_reduced_precision_reduction = False
        try:
            if bias is None:
                torch.mm(x, w, out=out)
            else:
                torch.addmm(bias, x, w, out=out)
        finally:
            matmul.allow_fp16_reduced_precision_reduction, matmul.allow_bf16_reduced_precision_reduction = (
                saved
            )
        return
    if x.is_cuda and out.dtype == torch.float32 and x.dtype in (torch.float16, torch.bfloat16):
        # The fp32 product written in place (the `mm.dtype_out` overload: CUDA only): against a product
        # into a new tensor then copied, 89 / 111 us less at 8192x28672 / 4096x14336 M = 4096 on the H100
        # (bitwise the same; suites/perf/NOTES.md, 2026-12-07).
        torch.mm(x, w, out_dtype=torch.float32, out=out)
        if bias is not None:
            out += bias.float()
        return
    acc = torch.mm(x, w, out_dtype=torch.float32) if x.is_cuda else x.float() @ w.float()
    if bias is not None:
        acc += bias.float()
    out.copy_(acc)


def launch(family, x, W_q, scales, zeros, bias, layout, out_dtype: torch.dtype, config, locks=None):
    """Run `family` with `config` (its plan, in order); returns the ``[M, N]`` output."""
    out, launches = plan(family, x, W_q, scales, zeros, bias, layout, out_dtype, config, locks)
    for step in launches:
        step.run()
    return out
