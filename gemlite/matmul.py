"""The matmul: choose a kernel family and config for (layout, M), plan the launch, run it; and the
``torch.library`` custom op ``gemlite::matmul`` that `torch.compile` sees as one node.

Two entry points:

* `matmul(x, W_q, scales, zeros, bias, layout, out_dtype, matmul_type=None)`: the checked kernel
  contract for direct callers (validates every tensor against the layout's scheme).
* `run(...)`: the hot path `GemLiteLinear.forward` uses once it has validated x itself. In eager mode
  it calls the implementation directly (a dispatcher round trip through ``torch.ops`` costs more host
  time than the rest of the call); while `torch.compile`, `torch.export` or any tracer with
  non-plain tensors is at work it calls ``torch.ops.gemlite.matmul``, whose fake implementation gives
  the output's shape and dtype, so the traced graph holds one opaque node. Both run the same code.

Eager calls of a layer go one step further: `run` keeps, in a `ReplayCache` the layer owns, a
`gemlite.kernels.plan.Replay` of each one-launch plan per (M, family); the next call with that M
allocates its output and calls the compiled kernel's launcher with the kept arguments. A replay is
used only while nothing it was made from has changed: the settings generation, the layer's tensors
(the same objects), x's contiguity and 16-byte alignment; and not while a config is forced or a
Triton launch hook (a profiler) is set.

Launch choices are kept per (layout, M bucket, output dtype, scale dtype, forced family), tagged
with the settings generation (`gemlite.settings`), and re-made only when the generation moves on:
the hot path builds no config key string and takes no lock.

Autotuning never runs while a CUDA graph is being captured: there (and for any key met for the
first time without a timer) the cached config is used, or the heuristic one, with a one-time warning
that names `gemlite.helper.warmup`. Under the Triton interpreter nothing is timed either.
"""

from __future__ import annotations

import warnings

import torch

from gemlite import autotune
from gemlite.dispatch import choose_matmul_type
from gemlite.formats import FAMILIES, ActKind, m_bucket
from gemlite.kernels import interpreter_active
from gemlite.kernels.plan import hooks_off, launch, plan
from gemlite.layout import WeightLayout
from gemlite.schemes.base import META_DTYPES
from gemlite.settings import generation

__all__ = ["OUT_DTYPES", "ReplayCache", "launch_choice", "matmul", "out_dtypes_of", "run", "x_dtypes_of"]

OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
#: int32 output: int8 activation codes x int8 weight codes without scales (A8W8_INT8) only.
INT_OUT_DTYPE = torch.int32
_INTERPRETER = interpreter_active()

# (layout, bucket, out dtype, scale dtype, family or None) -> (generation, family, config)
_CHOICES: dict[tuple, tuple] = {}
_MAX_REPLAYS = 64  # per weight: distinct M values kept (a generate() loop meets a handful)


class ReplayCache(dict):
    """The replays a weight's owner keeps for `run` ((M, family) -> entry). Copies and pickles of the
    owner get an empty one: a replay holds the original's tensors and compiled launcher."""

    def __deepcopy__(self, memo) -> ReplayCache:
        return ReplayCache()

    def __reduce__(self):
        return (ReplayCache, ())


_warned_untimed = False


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _choose(x, W_q, scales, zeros, bias, layout: WeightLayout, out_dtype, family, locks=None):
    """(family, config) for this call; see the module docstring."""
    M = x.shape[0]
    scale_dtype = scales.dtype if layout.has_scales else None
    key = (layout, m_bucket(M), out_dtype, scale_dtype, family)
    forcing = autotune.forcing()
    if not forcing:
        hit = _CHOICES.get(key)
        if hit is not None and hit[0] == generation():
            return hit[1], hit[2]
    autotune.maybe_load_shipped(x.device)  # the GPU model's shipped cache, once (it bumps the generation)
    gen = generation()
    fam = family if family is not None else choose_matmul_type(M, layout)
    timer = None
    if not _INTERPRETER and not _capturing(x.device):

        def timer(cfg):
            fn = _timed_call(fam, x, W_q, scales, zeros, bias, layout, out_dtype, cfg, locks)
            return autotune.bench_ms(fn)

    config, source = autotune.choose_config(
        fam, M, layout, out_dtype, scale_dtype, timer=timer, interpreter=_INTERPRETER
    )
    if source == "untimed":
        _warn_untimed(fam, M, layout)
    elif not forcing:
        _CHOICES[key] = (gen, fam, config)
    return fam, config


def _warn_untimed(family: str, M: int, layout: WeightLayout) -> None:
    global _warned_untimed
    if _warned_untimed:
        return
    _warned_untimed = True
    warnings.warn(
        f"gemlite: {family} for M={M}, K={layout.in_features}, N={layout.out_features} "
        f"({layout.format.label}) has no tuned config and cannot be timed now (CUDA graph capture): "
        "using the heuristic one. Tune ahead of time with gemlite.helper.warmup(...) or load a cache "
        "with gemlite.load_config(path). (Shown once.)",
        stacklevel=4,
    )


def launch_choice(x, W_q, scales, zeros, bias, layout: WeightLayout, out_dtype, family=None, locks=None):
    """``(family, config)`` that a call of `run` with this x launches (tuning it first where a call
    would): what the perf harness records per case."""
    return _choose(x.contiguous(), W_q, scales, zeros, bias, layout, out_dtype, family, locks)


def _timed_call(fam, x, W_q, scales, zeros, bias, layout, out_dtype, config, locks):
    """What the autotuner times for one candidate config: after one planned call (which compiles),
    the kernel relaunched through a `Replay` where the plan is one launch; a plan of several steps
    (DEQUANT: dequantize, then cuBLAS) replayed as a CUDA graph of its steps; the planned call on CPU.
    Each returns the output.

    The planned call costs the host tens of microseconds (the plan, Triton's launch path, cuBLAS's);
    timed with ``do_bench``, a kernel of comparable length then measures the host as much as itself,
    and a slow stretch of the host (the H200 VM has them, see harness/baselines.py) picks a config at
    random. A replay costs the host a few microseconds, as an eager forward of a layer does. A
    DEQUANT plan timed as planned lost to slower one-launch tiles whenever the host was slow: on the
    H200, A16W4 4096x4096 at M = 128 was tuned to a 58.5 us tile instead of its 24.7 us DEQUANT plan.
    """
    out, launches = plan(fam, x, W_q, scales, zeros, bias, layout, out_dtype, config, locks)
    for step in launches:
        step.run()
    replay = getattr(launches[0], "replay", None) if len(launches) == 1 else None
    replay = replay(x, out) if replay is not None else None
    if replay is not None:
        return lambda: replay(x)
    if x.is_cuda:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # the steps write the plan's own scratch and output again
            for step in launches:
                step.run()

        def replay_graph():
            graph.replay()
            return out

        return replay_graph
    return lambda: launch(fam, x, W_q, scales, zeros, bias, layout, out_dtype, config, locks)


def _impl(x, W_q, scales, zeros, bias, layout: WeightLayout, out_dtype, family, locks=None, replays=None):
    M = x.shape[0]
    if M == 0:
        return torch.empty((0, layout.out_features), dtype=out_dtype, device=x.device)
    x = x.contiguous()
    if x.dtype == torch.float8_e4m3fn:
        # e4m3 codes given by the caller (A8W8_FP8) reach the kernels as their bytes (a masked fp8 load
        # cannot take other=0). A kept Replay gets the e4m3 tensor itself later: it launches on pointers.
        x = x.view(torch.uint8)
    gen = generation()
    fam, config = _choose(x, W_q, scales, zeros, bias, layout, out_dtype, family, locks)
    out, launches = plan(fam, x, W_q, scales, zeros, bias, layout, out_dtype, config, locks)
    for step in launches:
        step.run()
    if replays is not None and len(launches) == 1 and not autotune.forcing():
        replay = getattr(launches[0], "replay", None)
        replay = replay(x, out) if replay is not None else None
        if replay is not None:
            if len(replays) >= _MAX_REPLAYS:
                replays.clear()
            replays[(M, family)] = (gen, (W_q, scales, zeros, bias, locks), replay)
    return out


# --------------------------------------------------------------------------------------------
# The custom op
# --------------------------------------------------------------------------------------------


@torch.library.custom_op("gemlite::matmul", mutates_args=())
def _matmul_op(
    x: torch.Tensor,
    W_q: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    bias: torch.Tensor | None,
    locks: torch.Tensor | None,
    layout: str,
    out_dtype: torch.dtype,
    family: str,
) -> torch.Tensor:
    """``x[M, K] @ W^T + bias`` for a prepared weight; `layout` is `WeightLayout.key()`, `family` a
    kernel family name or "" (dispatch on M). `locks` (the layer's split-K lock counters) are zero
    before and after the call: a launch uses and resets them, so they are not declared mutated."""
    return _impl(x, W_q, scales, zeros, bias, WeightLayout.from_key(layout), out_dtype, family or None, locks)


@_matmul_op.register_fake
def _matmul_fake(x, W_q, scales, zeros, bias, locks, layout, out_dtype, family):
    return x.new_empty((x.shape[0], WeightLayout.from_key(layout).out_features), dtype=out_dtype)


def run(
    x, W_q, scales, zeros, bias, layout: WeightLayout, layout_key: str, out_dtype, family=None, locks=None,
    replays: dict | None = None,
):  # fmt: skip
    """The hot path: x ``[M, K]`` already valid for `layout` (the caller checked it); see the module
    docstring for when this goes through ``torch.ops.gemlite.matmul``.

    replays: a dict the caller keeps per weight (`GemLiteLinear` does), where eager calls leave a
    `Replay` of their launch per (M, family) and find it again: see the module docstring."""
    if type(x) is torch.Tensor and not torch.compiler.is_compiling():
        if replays is not None:
            hit = replays.get((x.shape[0], family))
            if hit is not None:
                gen, tensors, replay = hit
                if (
                    gen == generation()
                    and tensors[0] is W_q and tensors[1] is scales and tensors[2] is zeros
                    and tensors[3] is bias and tensors[4] is locks
                    and x.is_contiguous()
                    and (x.data_ptr() % 16 == 0) == replay.aligned
                    and not autotune.forcing()
                    and hooks_off()
                ):  # fmt: skip
                    return replay(x)
        return _impl(x, W_q, scales, zeros, bias, layout, out_dtype, family, locks, replays)
    return torch.ops.gemlite.matmul(x, W_q, scales, zeros, bias, locks, layout_key, out_dtype, family or "")


# --------------------------------------------------------------------------------------------
# The checked contract for direct callers
# --------------------------------------------------------------------------------------------


def _check_inputs(x, W_q, scales, zeros, bias, layout, out_dtype, matmul_type) -> None:
    if not isinstance(layout, WeightLayout):
        raise TypeError(f"layout: expected a WeightLayout, got {type(layout).__name__}")
    for name, t in (("x", x), ("W_q", W_q), ("scales", scales), ("zeros", zeros)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a tensor, got {type(t).__name__}")
    K, N = layout.in_features, layout.out_features
    if x.dim() != 2 or x.shape[1] != K:
        raise ValueError(f"x: expected shape [M, {K}], got {tuple(x.shape)}")
    x_dtypes = x_dtypes_of(layout)
    if x.dtype not in x_dtypes:
        raise TypeError(
            f"x: expected dtype {' or '.join(map(str, x_dtypes))} ({layout.format.name}), got {x.dtype}"
        )
    if not x.is_contiguous():
        raise ValueError(f"x: must be contiguous, got strides {x.stride()} for shape {tuple(x.shape)}")
    out_dtypes = out_dtypes_of(layout)
    if out_dtype not in out_dtypes:
        raise TypeError(
            f"out_dtype: {layout.format.name} outputs {' or '.join(map(str, out_dtypes))}, got {out_dtype!r}"
        )
    if matmul_type is not None and matmul_type not in FAMILIES:
        raise ValueError(f"matmul_type: expected None or one of {FAMILIES}, got {matmul_type!r}")
    for name, t in (("W_q", W_q), ("scales", scales), ("zeros", zeros)):
        if t.device != x.device:
            raise ValueError(f"{name}: expected to be on x's device {x.device}, got {t.device}")
    for name, want in layout.scheme.storage(layout).items():
        t = {"W_q": W_q, "scales": scales, "zeros": zeros}[name]
        if want.shape is None:
            continue
        if tuple(t.shape) != want.shape or not t.is_contiguous():
            raise ValueError(
                f"{name}: expected the prepared contiguous shape {want.shape}, got {tuple(t.shape)}"
            )
        dtypes = META_DTYPES if want.dtype is None else (want.dtype,)
        if t.dtype not in dtypes:
            raise TypeError(
                f"{name}: expected the prepared dtype {' or '.join(map(str, dtypes))}, got {t.dtype}"
            )
    if bias is not None:
        int_bias = out_dtype == INT_OUT_DTYPE
        want = "an int32" if int_bias else "a float"
        if (
            not isinstance(bias, torch.Tensor)
            or (bias.dtype != torch.int32 if int_bias else not bias.is_floating_point())
            or tuple(bias.shape) != (N,)
        ):
            got = (
                f"{bias.dtype} {tuple(bias.shape)}" if isinstance(bias, torch.Tensor) else type(bias).__name__
            )
            raise ValueError(f"bias: expected {want} tensor of shape ({N},) or None, got {got}")
        if bias.device != x.device:
            raise ValueError(f"bias: expected to be on x's device {x.device}, got {bias.device}")
    require_runnable(x)


def require_runnable(x: torch.Tensor) -> None:
    """A RuntimeError that says what to do when x is on the CPU and the Triton interpreter is off
    (Triton itself would fail every candidate config with "cannot be accessed from Triton")."""
    if x.device.type != "cuda" and not _INTERPRETER:
        raise RuntimeError(
            f"x: gemlite's kernels need a CUDA GPU (move the layer and x with .cuda()), or, to run them "
            f"on the CPU (slowly), TRITON_INTERPRET=1 set before gemlite is imported; got a tensor on "
            f"{x.device} with the interpreter off"
        )


def x_dtypes_of(layout: WeightLayout) -> tuple[torch.dtype, ...]:
    """The dtypes x may have for `layout`: its compute dtype; fp16 or bf16 for a dynamic activation
    format, whose quantizer reads either (the matmul kernels only see its codes)."""
    if layout.act.is_dynamic:
        return (torch.float16, torch.bfloat16)
    return (layout.compute_dtype,)


def out_dtypes_of(layout: WeightLayout) -> tuple[torch.dtype, ...]:
    """The output dtypes of `layout`: fp16, bf16, fp32; int32 too for int8 codes x int8 codes without
    scales (A8W8_INT8), whose int32 sums it holds exactly."""
    if layout.act.kind is ActKind.INT8_CODES:
        return (INT_OUT_DTYPE, *OUT_DTYPES)
    return OUT_DTYPES


def matmul(x, W_q, scales, zeros, bias, layout: WeightLayout, out_dtype: torch.dtype, matmul_type=None):
    """y = x @ W^T (+ bias) for a weight prepared by its scheme (`gemlite.schemes`).

    x: ``[M, K]`` contiguous, on the weight's device (CUDA, or CPU under TRITON_INTERPRET=1), of a
        dtype of `x_dtypes_of` (layout.compute_dtype; fp16 or bf16 for dynamic activation formats).
    W_q, scales, zeros: the tensors the layout's scheme prepared (`GemLiteLinear` holds them).
    bias: ``[N]`` in any float dtype, or None (added in fp32 in the epilogue); int32 for an int32 output.
    out_dtype: torch.float16, torch.bfloat16 or torch.float32 (`out_dtypes_of`: int32 for A8W8_INT8).
    matmul_type: None (choose by M, `gemlite.dispatch`) or one of `gemlite.formats.FAMILIES`.
    Returns ``[M, N]`` out_dtype. Raises TypeError/ValueError for inputs that do not match the layout,
    RuntimeError for CPU tensors without the interpreter.
    """
    _check_inputs(x, W_q, scales, zeros, bias, layout, out_dtype, matmul_type)
    return _impl(x, W_q, scales, zeros, bias, layout, out_dtype, matmul_type)
