"""When is a kernel output right? The element-wise error bound, exact comparisons, and report figures.

A kernel is judged against the float64 golden ``y*`` computed by ``reference`` from the *same* quantized
operands (same codes, scales, zeros): quantization error is therefore not part of the tolerance, and what
is left is rounding inside the kernel, which can be bounded element by element (DESIGN.md, "Numerics")::

    |y - y*| <= c * ( u_out * |y*| + eta_out
                      + u_deq * S_W  +  eta_deq * sum_k |x_k|
                      + (K + 1) * u_acc * (S_W + |b|) )          S_W = sum_k |x_k| |W_k|

* ``u_out``: unit roundoff of the output dtype (one rounding when the fp32 result is cast; fp32 output:
  2**-24, not the activation dtype's).
* ``u_acc``: unit roundoff of the accumulator (fp32): a sum of K products computed in any order has a
  relative error of at most ``gamma_K ~= K * u_acc`` of ``sum_k |x_k W_k|`` (Higham, Accuracy and
  Stability of Numerical Algorithms, 2nd ed., eq. 3.5; the product roundings are included). The bias
  (``b``, added once in fp32 in the epilogue) is one more term of that sum and one more rounding, hence
  ``K + 1`` and ``S_W + |b|``: a bias is never dequantized, so it is charged fp32 and nothing else. A
  split-K reduction adds its partials in fp32 too; every term then passes through at most
  ``K / splits + splits <= K + 1`` additions, inside the same term.
* ``u_deq``: what rounding the weights cost on the way to the products, which depends on the path
  (`Precision.deq_dtype`; `harness.build.precision` picks it per case from the family, the config and
  the layout, following the kernels' own arithmetic, ``gemlite/kernels/common.py``):

  - tensor-core families (GEMM, GEMM_SPLITK) on pre-scaled layouts (grouped HQQ; channel-wise HQQ with
    float zeros): ``q * s - z * s`` is computed in fp32 (one FMA; ``z * s`` rounded first, see
    "Zero-points" below) and rounded ONCE to the compute dtype (fp16/bf16) for ``tl.dot``:
    ``u_deq = u_compute``;
  - the DEQUANT=1 GEMM path (dequantize into a [K, N] scratch of the compute dtype, then cuBLAS / an fp32
    matmul on CPU) rounds every weight to the compute dtype, post-scaled layouts included (the channel
    scale is applied before that rounding): ``u_deq = u_compute``;
  - the GEMV families dequantize in fp32 and never round a weight to fp16/bf16: ``(q - z)`` and ``* s``
    are two fp32 roundings, ``u_deq = u_fp32`` (the second one fits in the slack of ``c``, see below);
  - post-scaled layouts (INT8, FP8, ternary, channel-wise HQQ with integer or no zeros) feed the exact
    codes ``q`` / ``q - z`` (integers below 256, exact in fp16, bf16 and fp32) to the dot and multiply the
    fp32 accumulator by the fp32 channel scale once: ``u_deq = u_fp32``, on every family but DEQUANT;
  - A16W16 feeds the stored fp16/bf16 weight itself: no rounding at all, ``u_deq = eta_deq = 0``.
  - MXFP8 / MXFP4 weights are ``value(q) * 2**(b - 127)`` with a value of at most 4 significant bits
    (e4m3, e2m1): every path computes that product exactly in fp32 and it stays exact when rounded to
    fp16/bf16, as long as it lies in the dtype's normal range. So ``u_deq = 0`` on every path and only
    the underflow term ``eta_deq`` of the dtype the path rounds to remains (`Precision.deq_exact`).
    NVFP4's ``e2m1(q) * s_g * (1 / ts)`` is not exact (ts is no power of two: ``1 / ts`` and the product
    are two fp32 roundings, then the one to the dot dtype): it is charged like a pre-scaled weight
    (``u_compute`` on tensor-core paths, ``u_fp32`` on GEMV, where the third fp32 rounding fits in
    the slack of ``c`` as for HQQ's ``(q - z) * s``).

  So fp32 scales and an fp32 bias that the README says are kept are checked at fp32 precision wherever
  the arithmetic keeps them (GEMV, post-scaled layouts, fp32 output): a kernel or a `pack` that rounds
  them to fp16 costs ``u_fp16 = 2**13 u_fp32`` and fails; where the arithmetic itself rounds the weight to
  fp16/bf16 (pre-scaled tensor-core paths) such a rounding is indistinguishable from that one and the
  bound, rightly, cannot tell.
* ``eta_out`` / ``eta_deq``: half the subnormal spacing of the output / ``deq_dtype``. A relative bound
  says nothing when a value underflows (a dequantized weight of 1e-6 in fp16 is subnormal and keeps
  only an absolute accuracy of 2**-25), so each rounding is ``u * |v| + eta``.
* Zero-points accumulated apart: a kernel that sums ``s * (sum_k x_k q_k - z * sum_k x_k)`` instead of
  ``sum_k x_k (q_k - z) s`` (the GEMV families' grouped sums of pre-scaled packed codes; the tensor-core
  families with 8-bit activations and float zeros, ``gemlite/kernels/gemm.py``) rounds sums whose terms
  are ``|x_k| |q_k| |s|`` and ``|x_k| |z| |s|``, which cancel in the result: its fp32 accumulation error
  is bounded by the same ``(K + 1) u_acc`` times ``S_acc = sum_k |x_k| (|q_k| + |z|) |s| + |b|``
  (`Golden.acc_magnitude`, >= S) instead of S. Every product stays exact (codes of at most 8 bits
  times an fp16/bf16/e4m3 x), so no other term changes. The pre-scaled tensor-core and DEQUANT paths
  (fp16/bf16 x) keep the zero-point apart inside each weight instead: ``q * s - round(z * s)`` is off by
  at most ``u_fp32 |z s|``, i.e. ``u_fp32 sum_k |x_k| |z| |s|`` in the sum, well inside the extra
  ``(K + 1) u_acc (S_acc - S)`` that charging ``S_acc`` adds (`harness.build.zeros_apart`).

The safety factor ``c`` (`SAFETY`) is 2, which makes the bound rigorous to first order whether the
hardware truncates or rounds:

* on a GPU, conversions round to nearest (dequantized weight, output: ``u`` each) but NVIDIA tensor
  cores align the products of an MMA and add them in fp32 with truncation (Fasi, Higham, Mikaitis,
  Pranesh, "Numerical behavior of NVIDIA tensor cores", PeerJ CS 2021): each addition may lose a whole
  ulp and, all errors having the same sign, the accumulation error reaches ``2 * K * u_acc * S_W``.
  Total: ``u_out |y*| + u_deq S_W + 2 (K + 1) u_acc S`` (the epilogue's scale and bias roundings
  included), within ``c = 2`` times the bracket. The GEMV families use CUDA-core FMAs that round to
  nearest: ``u_out |y*| + 2 u_fp32 S_W + (K + 1) u_acc S``, again inside;
* under the Triton interpreter (CPU), fp32 arithmetic rounds to nearest but the fp32 -> bf16 cast
  truncates (``triton/runtime/interpreter.py``: ``cast_impl`` calls ``_convert_float`` without a
  rounding mode), so a bf16 weight or output may be off by almost a whole ulp, ``2 u``, and when one
  term dominates these errors do not average out. Total: ``2 u_out |y*| + 2 u_deq S_W + (K + 3) u_acc S``
  (the ``+ 2``: the fp32 roundings of ``q - z`` and ``* s`` before the cast), again within ``c = 2``
  times the bracket. On CPU the passing cases closest to the bound reach ~0.99 of it: bf16 outputs with
  a dominant ``|y*|`` term, truncated by almost a whole ulp. They cannot pass 1: the truncation error of
  the fp32 result ``v`` is below ``ulp(v) <= 2 u_out |v| <= 2 u_out (|y*| + |v - y*|)``, and ``|v - y*|``
  is charged twice by the other terms (see the report's "closest to the bound" list).

What the formula leaves out is second order (the ``(1 + u)`` products) and fits in the slack of the
terms that are not at their worst case.

A larger c would let real bugs through: an fp16 accumulator over K = 4096 produces about 6 x u_fp16 x |y|
(a random walk of K / 32 roundings), only 0.7 x the bound with c = 4 (see the unit tests). Most bugs (a
wrong group index, a dropped bias, a skipped K tail, a wrong zero-point sign) land orders of magnitude
above the bound; fp16 accumulation only a few times above it, which is why the suite pins a long
reduction led by a "massive activation" (`harness.build`); an fp32 scale or bias rounded to fp16 lands
~10**2-10**3 times above it on the fp32 paths. The mutation session (`harness.mutation`) is the proof
that the suite catches them.

Dynamic 8-bit activations (``harness.build.golden``: x is the reference's dequantized activation codes,
so the magnitudes are those of what the kernel multiplies). INT8 x INT8 accumulates exactly in int32:
only the conversion to fp32 and the two scales round, inside the ``(K + 1) u_acc S`` term. An e4m3 x e4m3
(or e4m3 x HQQ code) dot has exact products; under the interpreter it sums them in fp32. Hopper's fp8
tensor cores do not: each k = 32 MMA step aligns its addends (the 32 products and the running partial)
to the largest and keeps about 13 bits below it, truncating (DeepSeek-V3 technical report, section
3.3.2: "around 14 bits"; Fasi, Higham, Mikaitis, Pranesh 2021 for the truncating alignment). gemlite
promotes each ``tl.dot`` tile of BLOCK_K products to the fp32 accumulator (``max_num_imprecise_acc =
BLOCK_K``, ``gemlite/kernels/common.py``), so a tile's sum is off by at most BLOCK_K / 32 steps x 33
truncations x ``2**-13`` of its largest partial, below ``BLOCK_K * 2**-13 * sum_tile |x w|``; summed over
the tiles, ``tile_u * S`` with ``tile_u = BLOCK_K * 2**-13`` (`Precision.tile_u`, set by
``harness.build.precision`` for fp8 dots on a GPU only). Loose (2**-6 of S at BLOCK_K = 128), but the
bugs of this path (a scale applied twice or per tensor, a wrong rounding mode) are caught on CPU, where
``tile_u = 0``, and by the exact comparison of the activation codes.

Pack/unpack, codes and scales are not rounded anywhere and are compared exactly (`exact_diff`,
`assert_exact`, which raises `ExactMismatch`). A broken bound raises `BoundViolation` (`check_output`):
the mutation session counts those two, and a case that raises, as catches. For reports, `compare_output`
also computes aggregate figures a human reads quickly: the worst bound ratio, the max relative error
(normalised by ``max |y*|``), the mean absolute error and the SQNR in dB against the golden and against
the unquantized float product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

#: The safety factor ``c`` of the bound; see the module docstring for why 2.
SAFETY = 2.0

#: How many of the worst elements a failure message lists.
WORST_SHOWN = 8

_FLOAT_DTYPES = (
    torch.float64,
    torch.float32,
    torch.float16,
    torch.bfloat16,
    torch.float8_e4m3fn,
    torch.float8_e5m2,
)


def unit_roundoff(dtype: torch.dtype) -> float:
    """The unit roundoff ``u = 2**-p`` (half the machine epsilon) of a floating-point dtype.

    dtype: a torch floating-point dtype (fp64, fp32, fp16, bf16, fp8 e4m3fn / e5m2).
    Returns 2**-53, 2**-24, 2**-11, 2**-8, 2**-4, 2**-3 respectively.
    Raises TypeError for non-float dtypes.
    """
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"dtype: expected a floating-point dtype ({_names(_FLOAT_DTYPES)}), got {dtype}")
    return torch.finfo(dtype).eps / 2


def underflow_unit(dtype: torch.dtype) -> float:
    """Half the subnormal spacing of a float dtype: the absolute error of rounding a tiny value to it.

    dtype: as for `unit_roundoff`. fp16: 2**-25, bf16: 2**-134, fp32: 2**-150.
    """
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"dtype: expected a floating-point dtype ({_names(_FLOAT_DTYPES)}), got {dtype}")
    info = torch.finfo(dtype)
    return info.smallest_normal * info.eps / 2


class BoundViolation(AssertionError):
    """A kernel output outside the error bound (`check_output`); the message is `Comparison.message`."""


class ExactMismatch(AssertionError):
    """Two tensors that must be bitwise equal are not (`assert_exact`); the message is `exact_diff`'s."""


def _names(dtypes) -> str:
    return ", ".join(str(d).removeprefix("torch.") for d in dtypes)


def _u_label(dtype: torch.dtype, u: float) -> str:
    return f"2^{round(math.log2(u))} ({str(dtype).removeprefix('torch.')})"


# --------------------------------------------------------------------------------------------
# The bound
# --------------------------------------------------------------------------------------------


#: `Precision.deq_dtype` values that are not a dtype: the compute dtype (tensor-core operands), or
#: weights that reach the products unrounded (A16W16).
DEQ_COMPUTE = "compute"
DEQ_EXACT = "exact"


@dataclass(frozen=True)
class Precision:
    """The dtypes one kernel run rounds in, which fix the constants of the bound.

    out_dtype: the dtype of the kernel output (fp16, bf16 or fp32).
    compute_dtype: the activation dtype, the tensor-core operand dtype (fp16 or bf16).
    acc_dtype: the accumulator dtype (fp32 for every weight-only format).
    safety: the factor ``c`` (default `SAFETY`).
    deq_dtype: what the dequantized weights are rounded to on their way to the products (module
        docstring): `DEQ_COMPUTE` (default: the compute dtype, tensor-core pre-scaled and DEQUANT paths),
        torch.float32 (GEMV's fp32 dequantization; post-scaled layouts, whose only weight rounding is
        the fp32 channel scale), or `DEQ_EXACT` (A16W16: no rounding).
    deq_exact: the dequantized weights are exact in `weight_dtype` within its normal range (MXFP8,
        MXFP4): ``u_deq = 0``, ``eta_deq`` kept.
    tile_u: relative error of a tensor-core tile sum that is not fp32 (Hopper fp8 MMA: ``BLOCK_K *
        2**-13``, module docstring), charged once on the accumulator's magnitude; 0 for exact or fp32 sums.
    """

    out_dtype: torch.dtype
    compute_dtype: torch.dtype
    acc_dtype: torch.dtype = torch.float32
    safety: float = SAFETY
    deq_dtype: torch.dtype | str = DEQ_COMPUTE
    deq_exact: bool = False
    tile_u: float = 0.0

    def __post_init__(self) -> None:
        for name in ("out_dtype", "compute_dtype", "acc_dtype"):
            dtype = getattr(self, name)
            if dtype not in _FLOAT_DTYPES:
                expected = _names(_FLOAT_DTYPES)
                raise TypeError(f"{name}: expected a floating-point dtype ({expected}), got {dtype}")
        if self.deq_dtype not in (DEQ_COMPUTE, DEQ_EXACT) and self.deq_dtype not in _FLOAT_DTYPES:
            raise TypeError(
                f"deq_dtype: expected {DEQ_COMPUTE!r}, {DEQ_EXACT!r} or a floating-point dtype, "
                f"got {self.deq_dtype!r}"
            )
        if not (0.0 <= self.tile_u < 1.0):
            raise ValueError(f"tile_u: expected a relative error in [0, 1), got {self.tile_u}")
        if not (1.0 <= self.safety <= 16.0):
            raise ValueError(f"safety: expected a small factor in [1, 16], got {self.safety}")

    @property
    def weight_dtype(self) -> torch.dtype | None:
        """The dtype weights are rounded to (None: not rounded)."""
        if self.deq_dtype == DEQ_EXACT:
            return None
        return self.compute_dtype if self.deq_dtype == DEQ_COMPUTE else self.deq_dtype

    @property
    def u_out(self) -> float:
        return unit_roundoff(self.out_dtype)

    @property
    def u_deq(self) -> float:
        dtype = self.weight_dtype
        return 0.0 if dtype is None or self.deq_exact else unit_roundoff(dtype)

    @property
    def eta_deq(self) -> float:
        dtype = self.weight_dtype
        return 0.0 if dtype is None else underflow_unit(dtype)

    @property
    def u_acc(self) -> float:
        return unit_roundoff(self.acc_dtype)

    def describe(self, K: int) -> str:
        """The bound in words, with its constants: what a failure message prints."""
        dtype = self.weight_dtype
        if dtype is None:
            u_deq = "0 (weights exact)"
        elif self.deq_exact:
            u_deq = f"0 (weights exact in {str(dtype).removeprefix('torch.')} within its normal range)"
        else:
            u_deq = _u_label(dtype, self.u_deq)
        text = (
            f"|y - y*| <= {self.safety:g} * (u_out*|y*| + eta_out + u_deq * S_W + eta_deq * sum_k|x_k| "
            f"+ (K+1)*u_acc * (S_W + |b|)) with S_W = sum_k|x_k W_k|, "
            f"u_out={_u_label(self.out_dtype, self.u_out)}, u_deq={u_deq}, "
            f"u_acc={_u_label(self.acc_dtype, self.u_acc)}, K={K}"
        )
        if self.tile_u:
            text += f", + tile_u * S_acc, tile_u={self.tile_u:.3g} (fp8 tensor-core tile sums)"
        return text


@dataclass(frozen=True)
class Golden:
    """Everything the bound needs from the golden side, all float64 and on one device.

    y: the golden output ``y*`` [M, N] (``reference.linear`` in float64).
    magnitude: ``S = sum_k |x_k| |W_k| + |b|`` [M, N].
    x_abs_sum: ``sum_k |x_k|`` [M, 1].
    K: the reduction length.
    y_float: the UNQUANTIZED float product ``x @ W_float.T + b`` [M, N], or None when there is no float
        weight the quantized one came from.
    bias_abs: ``|b|`` [1, N], or None without a bias: the part of `magnitude` that no weight rounding
        touches (``S_W = magnitude - bias_abs``).
    acc_magnitude: ``S_acc`` [M, N] for kernels that accumulate zero-points apart (module docstring):
        ``sum_k |x_k| |W_acc,k| + |b|`` with ``|W_acc| = |s| (|q| + |z|)``; None: the accumulator's terms
        are those of `magnitude`.
    """

    y: torch.Tensor
    magnitude: torch.Tensor
    x_abs_sum: torch.Tensor
    K: int
    y_float: torch.Tensor | None = None
    bias_abs: torch.Tensor | None = None
    acc_magnitude: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("y", "magnitude", "x_abs_sum", "y_float", "bias_abs", "acc_magnitude"):
            t = getattr(self, name)
            if t is None:
                continue
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float64 or t.dim() != 2:
                raise TypeError(f"{name}: expected a 2-D float64 tensor, got {_describe(t)}")
        shape = tuple(self.y.shape)
        if tuple(self.magnitude.shape) != shape:
            raise ValueError(f"magnitude: expected shape {shape}, got {tuple(self.magnitude.shape)}")
        if tuple(self.x_abs_sum.shape) != (shape[0], 1):
            raise ValueError(f"x_abs_sum: expected shape ({shape[0]}, 1), got {tuple(self.x_abs_sum.shape)}")
        if self.y_float is not None and tuple(self.y_float.shape) != shape:
            raise ValueError(f"y_float: expected shape {shape}, got {tuple(self.y_float.shape)}")
        if self.acc_magnitude is not None and tuple(self.acc_magnitude.shape) != shape:
            raise ValueError(f"acc_magnitude: expected shape {shape}, got {tuple(self.acc_magnitude.shape)}")
        if self.bias_abs is not None and tuple(self.bias_abs.shape) != (1, shape[1]):
            raise ValueError(f"bias_abs: expected shape (1, {shape[1]}), got {tuple(self.bias_abs.shape)}")
        if self.K < 1:
            raise ValueError(f"K: expected a positive reduction length, got {self.K}")


def golden_from_dequantized(
    x: torch.Tensor,
    W: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    y: torch.Tensor | None = None,
    W_float: torch.Tensor | None = None,
    W_acc: torch.Tensor | None = None,
) -> Golden:
    """Build a `Golden` from the activations and the DEQUANTIZED weight (both taken exactly in float64).

    x: [M, K] activations as the kernel sees them (fp16/bf16/fp32; converted exactly to float64).
    W: [N, K] dequantized weight (``reference.dequantize_weight``, float64).
    bias: [N] or None.
    y: the golden output if already computed (``reference.linear``); else ``x @ W.T + b`` in float64.
    W_float: [N, K] the float weight before quantization, for the SQNR against the unquantized product.
    W_acc: [N, K] ``|s| (|q| + |z|)`` when the kernel accumulates the zero-points apart (module
        docstring), for `Golden.acc_magnitude`; None otherwise.
    Raises ValueError on shape mismatches.
    """
    if x.dim() != 2 or W.dim() != 2 or x.shape[1] != W.shape[1]:
        raise ValueError(f"x, W: expected [M, K] and [N, K], got {tuple(x.shape)} and {tuple(W.shape)}")
    N = W.shape[0]
    if bias is not None and tuple(bias.shape) != (N,):
        raise ValueError(f"bias: expected shape ({N},), got {tuple(bias.shape)}")
    x64 = x.to(torch.float64)
    W64 = W.to(device=x.device, dtype=torch.float64)
    b64 = None if bias is None else bias.to(device=x.device, dtype=torch.float64)
    magnitude = x64.abs() @ W64.abs().T
    if y is None:
        y = x64 @ W64.T
        if b64 is not None:
            y = y + b64
    if b64 is not None:
        magnitude = magnitude + b64.abs()
    acc_magnitude = None
    if W_acc is not None:
        acc_magnitude = x64.abs() @ W_acc.to(device=x.device, dtype=torch.float64).abs().T
        if b64 is not None:
            acc_magnitude = acc_magnitude + b64.abs()
    y_float = None
    if W_float is not None:
        y_float = x64 @ W_float.to(device=x.device, dtype=torch.float64).T
        if b64 is not None:
            y_float = y_float + b64
    return Golden(
        y=y.to(torch.float64),
        magnitude=magnitude,
        x_abs_sum=x64.abs().sum(dim=1, keepdim=True),
        K=x.shape[1],
        y_float=y_float,
        bias_abs=None if b64 is None else b64.abs().reshape(1, N),
        acc_magnitude=acc_magnitude,
    )


def error_bound(golden: Golden, precision: Precision) -> torch.Tensor:
    """The element-wise bound [M, N] (float64) of the module docstring."""
    p = precision
    S = golden.magnitude
    S_w = S if golden.bias_abs is None else (S - golden.bias_abs).clamp_min(0.0)
    S_acc = S if golden.acc_magnitude is None else golden.acc_magnitude
    inner = p.u_deq * S_w + ((golden.K + 1) * p.u_acc + p.tile_u) * S_acc + p.eta_deq * golden.x_abs_sum
    return p.safety * (p.u_out * golden.y.abs() + underflow_unit(p.out_dtype) + inner)


# --------------------------------------------------------------------------------------------
# Comparing one output
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorstElement:
    """One badly-off output element, as a failure message lists it."""

    index: tuple[int, int]
    y: float
    y_star: float
    error: float
    bound: float

    @property
    def ratio(self) -> float:
        return _ratio(self.error, self.bound)


@dataclass(frozen=True)
class Comparison:
    """The verdict on one kernel output and the aggregate figures the report shows.

    n_elements / n_failed / n_nonfinite: element counts (nonfinite: NaN/Inf in y where the golden,
        rounded to the output dtype, is finite; these are counted in n_failed too).
    bound_ratio: max |y - y*| / bound over finite elements (<= 1 passes); inf if any non-finite failure.
    max_rel_error: max |y - y*| / max |y*| (normalised by the largest golden magnitude).
    mae: mean |y - y*|.
    sqnr_golden_db: 20 log10(||y*|| / ||y - y*||); inf when y equals the golden exactly.
    sqnr_float_db: the same against the unquantized float product, or None when not available.
    worst: the worst elements, by bound ratio.
    """

    n_elements: int
    n_failed: int
    n_nonfinite: int
    bound_ratio: float
    max_rel_error: float
    mae: float
    sqnr_golden_db: float
    sqnr_float_db: float | None
    worst: tuple[WorstElement, ...]
    precision: Precision
    K: int
    repro: str | None = None
    context: str = ""
    nonfinite_examples: tuple[WorstElement, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.n_failed == 0

    def message(self) -> str:
        """A multi-line failure (or success) report: the bound, the worst elements, the reproducer."""
        lines = []
        verdict = "within" if self.ok else "OUTSIDE"
        head = f"kernel output {verdict} the error bound"
        if self.context:
            head += f" [{self.context}]"
        lines.append(
            f"{head}: {self.n_failed} of {self.n_elements} elements fail, worst bound ratio "
            f"{self.bound_ratio:.3g}, max rel error {self.max_rel_error:.3g}, SQNR vs golden "
            f"{_db(self.sqnr_golden_db)}"
        )
        lines.append("bound: " + self.precision.describe(self.K))
        if self.nonfinite_examples:
            lines.append(f"non-finite outputs where the golden is finite: {self.n_nonfinite}")
            lines.extend(_table(self.nonfinite_examples))
        if self.worst:
            lines.append("worst elements (by |y - y*| / bound):")
            lines.extend(_table(self.worst))
        if self.repro:
            lines.append(f"reproduce: {self.repro}")
        return "\n".join(lines)


def _db(v: float | None) -> str:
    if v is None:
        return "n/a"
    return "inf dB" if math.isinf(v) else f"{v:.1f} dB"


def _table(rows) -> list[str]:
    out = [f"  {'(m, n)':>12} {'y':>13} {'y*':>13} {'|y-y*|':>11} {'bound':>11} {'ratio':>9}"]
    for w in rows:
        out.append(
            f"  {str(w.index):>12} {w.y:>13.6g} {w.y_star:>13.6g} {w.error:>11.4g} {w.bound:>11.4g} "
            f"{w.ratio:>9.3g}"
        )
    return out


def _ratio(error: float, bound: float) -> float:
    if error == 0:
        return 0.0
    if bound == 0 or math.isnan(error):
        return math.inf
    return error / bound


def _sqnr_db(signal: torch.Tensor, noise: torch.Tensor) -> float:
    s = float(torch.linalg.vector_norm(signal))
    n = float(torch.linalg.vector_norm(noise))
    if not math.isfinite(n):
        return -math.inf  # NaN/Inf in the output: no signal left
    if n == 0:
        return math.inf
    if s == 0:
        return -math.inf
    return 20 * math.log10(s / n)


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 20 log10(||reference|| / ||approx - reference||).

    Both tensors are compared in float64; inf when they are equal, -inf when the reference is all zero
    and approx is not. Raises ValueError on a shape mismatch.
    """
    if reference.shape != approx.shape:
        raise ValueError(f"approx: expected shape {tuple(reference.shape)}, got {tuple(approx.shape)}")
    r = reference.to(torch.float64)
    return _sqnr_db(r, approx.to(device=r.device, dtype=torch.float64) - r)


def compare_output(
    y: torch.Tensor,
    golden: Golden,
    precision: Precision,
    *,
    repro: str | None = None,
    context: str = "",
) -> Comparison:
    """Judge a kernel output against the golden under the bound; never raises on a bad output.

    y: [M, N] kernel output, any float dtype (normally precision.out_dtype).
    golden: the float64 golden side (`golden_from_dequantized`).
    precision: the dtypes of the run.
    repro: the one-line reproducer a failure message prints.
    context: a short label (format, family) for the message.
    Raises ValueError if y's shape differs from the golden's, TypeError if y is not floating point.
    """
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise TypeError(f"y: expected a floating-point tensor, got {_describe(y)}")
    if tuple(y.shape) != tuple(golden.y.shape):
        raise ValueError(f"y: expected shape {tuple(golden.y.shape)} (the golden's), got {tuple(y.shape)}")
    y64 = y.detach().to(device=golden.y.device, dtype=torch.float64)
    y_star = golden.y
    bound = error_bound(golden, precision)

    # The golden as the output dtype can hold it: where it overflows (strategies avoid this), the
    # right answer is that infinity; elsewhere any NaN/Inf in y is a failure.
    y_star_out = y_star.to(precision.out_dtype).to(torch.float64)
    golden_inf = torch.isinf(y_star_out)
    y_finite = torch.isfinite(y64)
    nonfinite = ~y_finite & ~golden_inf
    inf_wrong = golden_inf & (y64 != y_star_out) & ~((y64 - y_star).abs() <= bound)

    err = (y64 - y_star).abs()
    err_finite = torch.where(y_finite, err, torch.zeros_like(err))
    ratio = torch.where(
        err_finite == 0,
        torch.zeros_like(err_finite),
        err_finite / bound.clamp_min(torch.finfo(torch.float64).tiny),
    )
    ratio = torch.where(golden_inf, torch.zeros_like(ratio), ratio)
    over = (ratio > 1.0) & y_finite
    failed = over | nonfinite | inf_wrong

    n_nonfinite = int(nonfinite.sum())
    n_failed = int(failed.sum())
    bound_ratio = float(ratio.max()) if ratio.numel() else 0.0
    if n_nonfinite or int(inf_wrong.sum()):
        bound_ratio = math.inf

    scale = float(y_star.abs().max()) if y_star.numel() else 0.0
    max_err = float(err_finite.max()) if err.numel() else 0.0
    max_rel = max_err / scale if scale > 0 else (0.0 if max_err == 0 else math.inf)
    if n_nonfinite:
        max_rel = math.inf
    mae = float(err.mean()) if err.numel() else 0.0

    worst = _worst(ratio, y64, y_star, err, bound, WORST_SHOWN)
    nonfinite_examples = _pick(nonfinite | inf_wrong, y64, y_star, err, bound, WORST_SHOWN)
    sqnr_float = None
    if golden.y_float is not None:
        sqnr_float = _sqnr_db(golden.y_float, y64 - golden.y_float)
    return Comparison(
        n_elements=y_star.numel(),
        n_failed=n_failed,
        n_nonfinite=n_nonfinite,
        bound_ratio=bound_ratio,
        max_rel_error=max_rel,
        mae=mae,
        sqnr_golden_db=_sqnr_db(y_star, y64 - y_star),
        sqnr_float_db=sqnr_float,
        worst=worst,
        precision=precision,
        K=golden.K,
        repro=repro,
        context=context,
        nonfinite_examples=nonfinite_examples,
    )


def _worst(ratio, y, y_star, err, bound, k) -> tuple[WorstElement, ...]:
    if ratio.numel() == 0:
        return ()
    flat = ratio.flatten()
    k = min(k, flat.numel())
    vals, idx = torch.topk(flat, k)
    N = ratio.shape[1]
    out = []
    for v, i in zip(vals.tolist(), idx.tolist()):
        if v <= 0:
            break
        out.append(_element(divmod(i, N), y, y_star, err, bound))
    return tuple(out)


def _element(index, y, y_star, err, bound) -> WorstElement:
    m, n = index
    return WorstElement((m, n), float(y[m, n]), float(y_star[m, n]), float(err[m, n]), float(bound[m, n]))


def _pick(mask, y, y_star, err, bound, k) -> tuple[WorstElement, ...]:
    pos = mask.nonzero()[:k].tolist()
    return tuple(_element(index, y, y_star, err, bound) for index in pos)


def check_output(
    y: torch.Tensor,
    golden: Golden,
    precision: Precision,
    *,
    repro: str | None = None,
    context: str = "",
) -> Comparison:
    """`compare_output`, raising `BoundViolation` (an AssertionError) with `Comparison.message` when the
    bound is broken."""
    result = compare_output(y, golden, precision, repro=repro, context=context)
    if not result.ok:
        raise BoundViolation(result.message())
    return result


# --------------------------------------------------------------------------------------------
# Exact comparisons: codes, packed words, scales
# --------------------------------------------------------------------------------------------

_BITS_VIEW = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float8_e4m3fn: torch.uint8,
    torch.float8_e5m2: torch.uint8,
}


def exact_diff(
    actual: torch.Tensor, expected: torch.Tensor, *, what: str = "tensor", shown: int = 8
) -> str | None:
    """None when `actual` equals `expected` exactly, else a summary of the difference.

    Equality is bitwise: same dtype, same shape, same bits (so -0.0 differs from 0.0 and NaNs with the
    same payload are equal), which is what codes, packed words and stored scales must satisfy.
    actual, expected: tensors of any dtype (compared on the CPU).
    what: a name for the message ("packed W_q", "scales").
    shown: how many mismatching elements to list.
    """
    if not isinstance(actual, torch.Tensor) or not isinstance(expected, torch.Tensor):
        raise TypeError(f"{what}: expected two tensors, got {_describe(actual)} and {_describe(expected)}")
    if actual.dtype != expected.dtype:
        return f"{what}: dtype {actual.dtype} != expected {expected.dtype}"
    if actual.shape != expected.shape:
        return f"{what}: shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
    a = actual.detach().cpu()
    e = expected.detach().cpu()
    view = _BITS_VIEW.get(a.dtype)
    a_bits = a.contiguous().view(view) if view is not None else a
    e_bits = e.contiguous().view(view) if view is not None else e
    if a_bits.dtype == torch.bool:
        mismatch = a_bits != e_bits
    else:
        mismatch = a_bits.to(torch.int64) != e_bits.to(torch.int64)
    n = int(mismatch.sum())
    if n == 0:
        return None
    lines = [f"{what}: {n} of {a.numel()} elements differ ({100.0 * n / max(a.numel(), 1):.3g}%)"]
    hexed = not a.is_floating_point() and a.dtype != torch.bool
    for index in mismatch.nonzero()[:shown].tolist():
        ix = tuple(index)
        av, ev = a[ix].item(), e[ix].item()
        if hexed:
            width = a.element_size() * 2
            mask = (1 << (8 * a.element_size())) - 1
            lines.append(f"  {ix}: {av} (0x{av & mask:0{width}x}) != expected {ev} (0x{ev & mask:0{width}x})")
        else:
            lines.append(f"  {ix}: {av!r} != expected {ev!r}")
    return "\n".join(lines)


def assert_exact(actual: torch.Tensor, expected: torch.Tensor, *, what: str = "tensor") -> None:
    """Raise `ExactMismatch` (an AssertionError) with `exact_diff`'s summary unless the tensors are
    bitwise equal."""
    diff = exact_diff(actual, expected, what=what)
    if diff is not None:
        raise ExactMismatch(diff)


def _describe(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor(shape={tuple(v.shape)}, dtype={v.dtype})"
    return type(v).__name__
