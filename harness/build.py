"""The operand builder: from a case to the two things the suite compares, a gemlite layer and the
float64 golden. The correctness suite, the kernel-contract tests and the API tests all build their
operands here.

Three steps, each a function:

1. `make_operands(case)`: draw x, the float weight W and the bias from ``case.seed`` (a
   ``torch.Generator``; the value distribution is ``case.dist``), quantize W with the REFERENCE
   (the registry entry's quantizer, ``reference.quantize_weight`` where it has the rule) into a
   `reference.QuantizedWeight` (codes, scales, zeros).
2. `build_layer(case, ops)`: hand exactly those codes, scales and zeros to gemlite through its PUBLIC
   API (``GemLiteLinear(...).pack(...)``, or the helper a format is normally built with), so the suite
   tests what users call.
3. `golden(case, ops)`: the float64 golden ``reference.linear`` and the magnitudes the error bound
   needs (`harness.numerics.Golden`); `precision(case, layout, config)` the dtypes the run's path
   rounds in, from the family, the config that ran and the layout (`harness.numerics` says why).

A case also names the settings it runs under (`case_settings`: autotune mode, determinism, a forced
tile, a shrunk workspace bound) and whether its layer goes through a state_dict round trip
(`reload_layer`). What may be drawn for a format, and its builder, is the support registry's
(`harness.support`).

Nothing in this module imports gemlite's kernels at import time: callers (the suite's conftest, the
reproducer) first decide whether the Triton interpreter runs, which must happen before that import.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from gemlite.formats import CODE_ACT_KINDS, ActKind, WeightKind, Zeros
from harness.case import Case
from harness.numerics import DEQ_COMPUTE, DEQ_EXACT, Golden, Precision, exact_diff, golden_from_dequantized
from harness.support import (
    AUTO,
    CODE_TOPS,
    DISTRIBUTIONS,
    DTYPES,
    FAMILIES,
    MASSIVE,
    MATMUL_TYPES,
    NEAR_OVERFLOW,
    SUPPORT,
    code_values,
)

# --------------------------------------------------------------------------------------------
# Operands
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operands:
    """The tensors of one case, shared by gemlite and the reference.

    x: [M, K] activations in the case's input dtype (int8 / e4m3 codes for A8W8_INT8 / A8W8_FP8).
    qw: the `reference.QuantizedWeight` (codes, scales, zeros) both sides use.
    bias: [N] in the case's bias dtype, or None.
    W_float: [N, K] float64, the weight before quantization (for the SQNR against the float product).
    """

    x: torch.Tensor
    qw: object
    bias: torch.Tensor | None
    W_float: torch.Tensor


def _randn(shape, g: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=g, dtype=torch.float64)


def _rand(shape, g: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=torch.float64)


def _draw_float(case: Case, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """x [M, K], W [N, K], bias [N] in float64 following ``case.dist``; and, for near_overflow, whether
    x (True) or W (False) is the large side.

    normal: x ~ N(0, 1), W ~ N(0, 1/K) (so |y| ~ |x|), bias ~ N(0, 1/4).
    outliers: normal, with ~3% of the input channels of x scaled by 64 (LLM activation outliers) and
        ~1% of the weights scaled by 16 (groups with one large value quantize coarsely).
    zeros: normal, with ~30% of the rows of x, ~20% of the rows of W and ~20% of W's groups all zero.
    positive: |normal| + an offset, for x and W: no cancellation, so the partial sums grow like K and
        any accumulation or rounding error shows in full.
    massive: positive, with input channel 0 of x at 2**15 (a "massive activation", as LLMs have in a
        few channels) and the other channels scaled so that their products add up to about 1/48 of
        channel 0's. The worst case for a low-precision accumulator: once the leading term is in the
        running sum, each later 32-wide K tile (at K = 2048) adds less than half an fp16 ulp of it and
        is lost: an fp16 accumulator drops the whole remainder, ~9x what the bound allows, while an
        fp32 one keeps it.
    near_overflow: one side scaled so its largest magnitude is 2**15, the other (after quantization,
        see `_fit_near_overflow`) so the largest sum_k |x_k W_k| + |b| is about 2**15.
    """
    M, K, N = case.M, case.K, case.N
    x = _randn((M, K), g)
    W = _randn((N, K), g) / math.sqrt(K)
    bias = _randn((N,), g) * 0.5
    big_x = False
    if case.dist == "outliers":
        x[:, _rand((K,), g) < 0.03] *= 64.0
        W[_rand((N, K), g) < 0.01] *= 16.0
    elif case.dist == "zeros":
        x[_rand((M,), g) < 0.3] = 0.0
        W[_rand((N,), g) < 0.2] = 0.0
        gs = case.resolved_group_size
        grouped = W.view(N, K // gs, gs)
        grouped[_rand((N, K // gs), g) < 0.2] = 0.0
    elif case.dist == "positive":
        x = x.abs() + 0.25
        W = W.abs() + 0.25 / math.sqrt(K)
    elif case.dist == "massive":
        x = x.abs()
        W = W.abs() + 0.25 / math.sqrt(K)
        if K > 1:
            x[:, 0] = MASSIVE
            lead = x[:, :1] @ W[:, :1].T
            rest = x[:, 1:] @ W[:, 1:].T
            x[:, 1:] *= float((lead / (48.0 * rest)).median())
    elif case.dist == "near_overflow":
        big_x = bool(_rand((1,), g) < 0.5)
        bias = bias * 2.0**10
        if big_x:
            x = x * (NEAR_OVERFLOW / x.abs().max())
            reach = (x.abs() @ W.abs().T).max()
            W = W * ((NEAR_OVERFLOW - bias.abs().max()) / reach)
        else:
            W = W * (NEAR_OVERFLOW / W.abs().max())
    elif case.dist != "normal":
        raise ValueError(f"dist: unknown value distribution {case.dist!r}; known: {DISTRIBUTIONS}")
    return x, W, bias, big_x


def _fit_near_overflow(x: torch.Tensor, qw, bias, big_x: bool) -> torch.Tensor:
    """Scale x so the largest ``sum_k |x_k W_k| + |b|`` is about 2**15 (W as quantized): when x is the
    large side only shrink it if needed, otherwise scale it to reach the target."""
    import reference as ref

    W = ref.dequantize_weight(qw).to(x.device)
    bmax = 0.0 if bias is None else float(bias.abs().max())
    reach = float((x.abs() @ W.abs().T).max()) if x.numel() else 0.0
    if reach == 0:
        return x
    factor = (NEAR_OVERFLOW - bmax) / reach
    if big_x:
        factor = min(factor, 1.0)
    return x * factor


def make_operands(case: Case, device: str | torch.device = "cpu") -> Operands:
    """Draw and quantize the tensors of `case` (deterministic in ``case.seed``), on `device`.

    Raises CaseRejected when the reference refuses the drawn weight, ValueError for an illegal case.
    """
    g = torch.Generator().manual_seed(case.seed)
    x, W, bias, big_x = _draw_float(case, g)
    W = case.support.representable(case, W)
    x, W, bias = x.to(device), W.to(device), bias.to(device)
    qw = case.support.quantize(case, W)
    if case.fmt.act.kind in CODE_ACT_KINDS:
        return _code_operands(case, x, qw, bias, W)
    bias_t = None if case.bias == "none" else bias
    if case.dist == "near_overflow":
        x = _fit_near_overflow(x, qw, bias_t, big_x)
    if bias_t is not None:
        bias_t = bias_t.to(DTYPES[case.input_dtype] if case.bias == "input" else torch.float32)
    return Operands(x=x.to(DTYPES[case.input_dtype]), qw=qw, bias=bias_t, W_float=W)


def _code_operands(case: Case, x: torch.Tensor, qw, bias: torch.Tensor, W: torch.Tensor) -> Operands:
    """A8W8_INT8 / A8W8_FP8: x drawn as codes, the drawn x stretched over the codes' range like the
    weight (`harness.support.code_values`), and the bias (``"output"``, of the output dtype) scaled to
    the products' size, rounded to integers for an int32 output. An fp16 output would overflow
    (sums of K products of up to 2**14 or 448**2): there x's range is shrunk until the largest
    ``sum_k |x_k W_k| + |b|`` is about 2**15, as for the near_overflow distribution."""
    import reference as ref

    kind = case.fmt.act.kind
    W_codes = ref.dequantize_weight(qw).to(x.device)
    amax = float(x.abs().max()) if x.numel() else 0.0
    unit = x / amax if amax > 0 else x
    bias_t = None
    if case.bias != "none":
        bias_t = bias * (CODE_TOPS[kind] ** 2)  # the size of one product, so it shows next to the sums
        if case.output_dtype == "int32":
            bias_t = ref.round_half_away_from_zero(bias_t)
    top = CODE_TOPS[kind]
    if case.output_dtype == "float16" and x.numel():
        reach = float((unit.abs() @ W_codes.abs().T).max()) * top
        if bias_t is not None:
            bias_t = bias_t * min(1.0, NEAR_OVERFLOW / 4 / float(bias_t.abs().max().clamp_min(1.0)))
        room = NEAR_OVERFLOW - (0.0 if bias_t is None else float(bias_t.abs().max()))
        if reach > room:
            top *= room / reach
    x_codes = code_values(kind, unit * top)
    if bias_t is not None:
        bias_t = bias_t.to(DTYPES[case.output_dtype])
    return Operands(x=x_codes, qw=qw, bias=bias_t, W_float=W)


def build_layer(case: Case, ops: Operands) -> nn.Module:
    """The gemlite layer of `case`, built from `ops` through the public API (the registry's builder)."""
    return SUPPORT[case.format].build(case, ops)


def run_layer(layer, x: torch.Tensor, family: str) -> torch.Tensor:
    """``layer(x)`` for "AUTO", else ``layer.forward_manual(x, matmul_type=family)``."""
    if family == AUTO:
        return layer(x)
    if family not in MATMUL_TYPES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    return layer.forward_manual(x, matmul_type=family)


#: The families that dequantize in fp32 on CUDA cores (``gemlite/kernels/gemv.py``).
GEMV_FAMILIES = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK")
#: Microscaled activation kinds: the tensor-core families dequantize them (and the weights) into bf16.
_MX_ACTS = (ActKind.MXFP8, ActKind.MXFP4, ActKind.NVFP4)


def launched_family(case: Case, layout) -> str:
    """The kernel family a run of `case` launches (AUTO: gemlite's dispatch on M)."""
    if case.family != AUTO:
        return case.family
    from gemlite.dispatch import choose_matmul_type

    return choose_matmul_type(case.M, layout)


def precision(case: Case, layout=None, config=None) -> Precision:
    """The dtypes a run of `case` rounds in: output, compute (the activation dtype), fp32 accumulator,
    and what the weights are rounded to on the path that ran (`harness.numerics`, the bullets of
    ``u_deq``): none for A16W16; the compute dtype for a DEQUANT=1 config and for pre-scaled layouts on
    the tensor-core families; fp32 for the GEMV families and for post-scaled layouts. Microscaled
    activations (MXFP8 / MXFP4 / NVFP4) and their weights are both dequantized exactly, into bf16 on the
    tensor-core families (its underflow term charged) and fp32 on GEMV (`FormatSupport.exact_weights`).

    layout: the layer's ``WeightLayout`` (default: `Case.layout`). config: the ``gemlite.autotune.Config``
    that ran (`launched_config`); default: the case's forced tile, else unknown, in which case a GEMM
    run on a GPU is charged as if it may have been a DEQUANT=1 config (the autotuner, or a cached
    config, may pick one there; under the interpreter GEMM runs its fused interpreter tile).
    """
    from gemlite.kernels import interpreter_active

    layout = case.layout() if layout is None else layout
    config = case.config if config is None else config
    family = launched_family(case, layout)
    tile_u = 0.0
    if layout.act.kind in CODE_ACT_KINDS:
        return _code_precision(case, layout, config, family)
    if layout.spec.kind is WeightKind.FLOAT:
        deq = DEQ_EXACT
    elif layout.act.is_dynamic:
        # 8-bit activations meet the weights' exact codes and every scale applies in fp32 (DEQUANT=1
        # too: the codes scratch holds the same exact codes); Hopper's fp8 tile sums are charged
        # `tile_u` (harness.numerics).
        deq = torch.float32
        if layout.act.kind is ActKind.FP8 and family not in GEMV_FAMILIES and not interpreter_active():
            # (DEQUANT=1 on `fp8_scaled_mm` layouts is cuBLAS's fp8 GEMM, whose promotion interval is
            # not documented: charged as 128-deep tiles, CUTLASS's default of 4 MMAs of 32)
            cublas = config is not None and config.DEQUANT and layout.fp8_scaled_mm
            tile_u = (128 if config is None or cublas else config.BLOCK_K) * 2.0**-13
        if layout.act.kind in _MX_ACTS and family not in GEMV_FAMILIES:
            deq = torch.bfloat16  # both operands dequantized exactly into bf16 for the dot: its underflow
    elif config is not None and config.DEQUANT:
        deq = DEQ_COMPUTE
    elif config is None and family == "GEMM" and not interpreter_active():
        deq = DEQ_COMPUTE
    elif family in GEMV_FAMILIES or layout.post_scale:
        deq = torch.float32
    else:
        deq = DEQ_COMPUTE
    return Precision(
        out_dtype=DTYPES[case.output_dtype], compute_dtype=DTYPES[case.input_dtype], deq_dtype=deq,
        deq_exact=case.support.exact_weights, tile_u=tile_u,
    )  # fmt: skip


def _code_precision(case: Case, layout, config, family: str) -> Precision:
    """A8W8_INT8 / A8W8_FP8: the weight is its codes (no rounding: `DEQ_EXACT`). An int32 output must be
    the exact integer: it is judged in float64 (the bound, c * (K + 1) * 2**-53 * S with S < 2**31 here,
    stays far below 1, so an output off by one fails), and bitwise (`harness.repro`). Float outputs: an
    int32 (int8) or fp32 (e4m3) sum, one conversion, the fp32 bias, the cast; Hopper's fp8 tile sums are
    charged `tile_u` as for the dynamic FP8 formats."""
    from gemlite.kernels import interpreter_active

    if case.output_dtype == "int32":
        f64 = torch.float64
        return Precision(out_dtype=f64, compute_dtype=f64, acc_dtype=f64, deq_dtype=DEQ_EXACT)
    tile_u = 0.0
    if layout.act.kind is ActKind.FP8_CODES and family not in GEMV_FAMILIES and not interpreter_active():
        tile_u = (128 if config is None else config.BLOCK_K) * 2.0**-13
    return Precision(
        out_dtype=DTYPES[case.output_dtype], compute_dtype=torch.float32, deq_dtype=DEQ_EXACT, tile_u=tile_u
    )


@contextlib.contextmanager
def case_settings(case: Case, autotune: str | bool = False) -> Iterator[None]:
    """Run the block under the settings `case` names, restoring the previous ones afterwards: the
    gemlite autotune mode, ``set_deterministic(case.deterministic)``, ``case.tile`` forced for its family
    (``gemlite.autotune.forced_config``) and ``case.workspace_bytes`` as
    ``gemlite.kernels.plan.MAX_WORKSPACE_BYTES`` (read on every launch; process-wide, like determinism:
    one case at a time per process)."""
    from gemlite import autotune as gl_autotune
    from gemlite import settings
    from gemlite.kernels import plan

    previous = (gl_autotune.get_autotune(), settings.is_deterministic(), plan.MAX_WORKSPACE_BYTES)
    gl_autotune.set_autotune(autotune)
    settings.set_deterministic(case.deterministic)
    if case.workspace_bytes is not None:
        plan.MAX_WORKSPACE_BYTES = case.workspace_bytes
    try:
        if case.tile is None:
            yield
        else:
            with gl_autotune.forced_config(case.family, case.config):
                yield
    finally:
        plan.MAX_WORKSPACE_BYTES = previous[2]
        settings.set_deterministic(previous[1])
        gl_autotune.set_autotune(previous[0])


def launched_config(case: Case, layer):
    """The ``gemlite.autotune.Config`` the last run of `layer` used (call inside `case_settings`): the
    forced tile, the cached or just-tuned one, or the default; never times anything."""
    from gemlite import autotune
    from gemlite.kernels import interpreter_active

    layout = layer.layout
    scale_dtype = layer.scales.dtype if layout.has_scales else None
    family = launched_family(case, layout)
    out = DTYPES[case.output_dtype]
    config, _ = autotune.choose_config(
        family, case.M, layout, out, scale_dtype, timer=None, interpreter=interpreter_active()
    )
    return config


def reload_layer(layer: nn.Module) -> nn.Module:
    """`layer`'s state_dict saved (``torch.save``) and loaded into a fresh ``GemLiteLinear`` built with
    the same constructor arguments, on the same device: what a checkpoint round trip gives a user."""
    from gemlite import GemLiteLinear

    device = layer.W_q.device
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, map_location=device, weights_only=True)
    fresh = GemLiteLinear(
        layer.W_nbits,
        group_size=layer.group_size,
        in_features=layer.in_features,
        out_features=layer.out_features,
        input_dtype=layer.input_dtype,
        output_dtype=layer.output_dtype,
        scaled_activations=layer.scaled_activations,
    ).to(device)
    fresh.load_state_dict(state)
    return fresh


def golden(case: Case, ops: Operands) -> Golden:
    """The float64 golden (``reference.linear``) and the magnitudes of the bound, on x's device."""
    import reference as ref

    y = ref.linear(case.fmt, ops.x, ops.qw, bias=ops.bias)
    W = ref.dequantize_weight(ops.qw)
    x = ops.x
    if case.fmt.act.is_dynamic:
        # The bound's magnitudes are those of what the kernel multiplies: the quantized activations
        # (the reference's codes times its scales; `activation_diff` checks gemlite's are the same).
        x = ref.dequantize_activation(ref.quantize_activation(case.fmt.act, ops.x))
    W_acc = _unfolded_weight(ops.qw) if zeros_apart(case) else None
    return golden_from_dequantized(
        x, W, ops.bias, y=y.to(torch.float64), W_float=ops.W_float, W_acc=W_acc
    )


def zeros_apart(case: Case, layout=None) -> bool:
    """Whether the run of `case` keeps the zero-points apart from the codes, so the bound charges its
    accumulator ``S_acc`` (`harness.numerics`): the GEMV families' grouped sums of pre-scaled packed
    codes with zeros, ``s * (sum x q - z * sum x)`` (``gemlite/kernels/gemv.py``); the tensor-core
    families with 8-bit activations and float zeros (``gemlite/kernels/gemm.py``); and the tensor-core
    and DEQUANT paths of pre-scaled packed codes with fp16/bf16 activations, whose fp32 weight
    ``q * s - z * s`` (one FMA, `gemlite.kernels.common.dequantize_words`) carries the rounding of
    ``z * s``, up to ``u_fp32 |z s|`` per weight: inside ``(K + 1) u_acc S_acc``."""
    layout = case.layout() if layout is None else layout
    if not layout.is_packed or layout.post_scale or layout.zero_mode is Zeros.NONE:
        return False
    if launched_family(case, layout) in GEMV_FAMILIES or not layout.act.is_dynamic:
        return True
    return layout.zero_mode is Zeros.FLOAT


def _unfolded_weight(qw) -> torch.Tensor:
    """``|s| (|q| + |z|)`` per weight element [N, K] (float64) of an HQQ / ternary `QuantizedWeight`."""
    q = qw.codes.double()
    N, K = q.shape
    s = qw.scales.double().reshape(N, -1)
    g = K // s.shape[1]
    z = qw.zeros
    if isinstance(z, torch.Tensor):
        z_full = z.double().reshape(N, -1).abs().repeat_interleave(g, dim=1)
    else:
        z_full = abs(float(z or 0))
    return s.abs().repeat_interleave(g, dim=1) * (q + z_full)


def activation_diff(case: Case, ops: Operands, layer) -> str | None:
    """Dynamic activation formats: gemlite's quantizer (the launch a forward runs before its matmul,
    ``gemlite.kernels.plan.quantize_activation``) on ``ops.x`` against ``reference.quantize_activation``,
    codes and scales compared bitwise (`harness.numerics.exact_diff`: no tie tolerance, the kernel
    rounds the exact quotient). None when both agree or the format has no activation quantization."""
    if not case.fmt.act.is_dynamic:
        return None
    import reference as ref
    from gemlite.kernels.plan import quantize_activation, quantize_activation_mx

    want = ref.quantize_activation(case.fmt.act, ops.x)
    ts_diff = None
    if case.fmt.act.kind in _MX_ACTS:  # codes unpacked as the reference's; NVFP4's tensor scale too
        codes, scales, ts = quantize_activation_mx(ops.x, layer.layout.act_scheme)
        if ts is not None:
            ts_want = torch.tensor([want.tensor_scale], dtype=torch.float32, device=ts.device)
            ts_diff = exact_diff(ts, ts_want, what="activation tensor scale")
    else:
        codes, scales = quantize_activation(ops.x, layer.layout.act_scheme, case.fmt.act.group_size)
    diffs = [
        exact_diff(codes, want.codes.to(codes.device), what="activation codes"),
        exact_diff(
            scales.reshape(want.scales.shape), want.scales.to(scales.device), what="activation scales"
        ),
        ts_diff,
    ]
    diffs = [d for d in diffs if d is not None]
    return "\n".join(diffs) if diffs else None
