"""Microscaling weights: MXFP8, MXFP4 (OCP MX, one e8m0 scale per 32 inputs) and NVFP4 (one e4m3 scale
per 16 inputs and an fp32 tensor scale). Their host rules and their quantizers live here, one home.

==========  =============================  ==============================  ========================
format      codes W_q [N, K]               scales [N, K // g]              value W[n, k]
==========  =============================  ==============================  ========================
A16W8_MXFP  float8_e4m3fn                  e8m0 bytes, g = 32              q * 2**(b - 127)
A16W4_MXFP  uint8 e2m1 indices 0..15       e8m0 bytes, g = 32              e2m1(q) * 2**(b - 127)
A16W4_NVFP  uint8 e2m1 indices 0..15       float8_e4m3fn s_g, g = 16       e2m1(q) * s_g / ts
==========  =============================  ==============================  ========================

(The dynamic formats A8W{8,4}_MXFP_post_scale_dynamic hold the same MXFP8 / MXFP4 weights; so do
A8W{8,4}_MXFP_dynamic, A4W4_MXFP_dynamic and A4W4_NVFP_dynamic, whose ACTIVATIONS are microscaled
too: `MXActQuant` below, the activation half of this module.)

e2m1 index: bit 3 the sign, bits 0..2 index 0, 0.5, 1, 1.5, 2, 3, 4, 6 (`gemlite.formats.E2M1_VALUES`).

User tensors (`GemLiteLinear.pack(W_q, scales, zeros, bias, format=...)` or the helpers):

* W_q: the codes ``[N, K]`` as above. e2m1 codes may come packed two per byte (``[N, K // 2]`` uint8,
  the even k in the low nibble: ``pack(..., packed=True)``, what checkpoints store).
* scales: ``N * K / g`` values in row-major group order, any shape. e8m0 scales are
  ``torch.float8_e8m0fnu`` tensors or raw ``uint8`` bytes; NVFP4 scales ``torch.float8_e4m3fn`` or raw
  ``uint8`` bytes. Either way the BYTES are taken bit for bit (a uint8 127 is the scale 2**0; nothing is
  ever converted numerically, so a float tensor of scale values is refused with TypeError).
* zeros: None for MX. NVFP4 has no zero-point; its third operand is the tensor scale ``ts`` (GemLite's
  ``meta_scale``, ``448 * 6 / amax(W)`` for weights quantized by `quantize_nvfp4`): a positive finite
  Python float or 1-element tensor, stored as fp32.

Kernel layout (what `prepare` returns; ``gemlite/kernels/common.py`` reads it with ``dequantize_mx``):

* MXFP8 codes stay ``[N, K]`` (K contiguous) as their uint8 bytes (the kernels reinterpret them);
  MXFP4/NVFP4 codes are packed 4-bit codes in 8- or 32-bit words, transposed to ``[K // e, N]`` like
  HQQ codes (`gemlite.schemes.hqq`), so every kernel family reads them through the packed path.
* scales ``[K // g, N]`` (N contiguous): uint8 e8m0 bytes, or float8_e4m3fn for NVFP4.
* zeros: NVFP4's tensor scale as an fp32 ``[1]`` tensor; empty otherwise.

The groups (32 or 16 inputs) are smaller than the kernels' K tiles: the kernels take one scale per
(k, n) inside the tile (``common.dequantize_mx``) instead of one scale row per tile, so these layouts
report ``GROUP_SIZE = 0`` and neither pre- nor post-scaling to the kernels' per-tile group machinery.

Quantizers (`quantize_mx`, `quantize_nvfp4`) follow ``reference/scaling.py`` bit for bit: scales in
fp32, codes rounded once (to nearest, ties to even; e2m1 saturates at +-6) from the exact quotient.
"""

from __future__ import annotations

import math
import numbers

import torch

from gemlite.formats import (
    E2M1_MAX,
    E8M0_BIAS,
    FP8_E4M3_MAX,
    MX_GROUP,
    MX_SCALE_FLOOR_EXP,
    NVFP4_GROUP,
    ActKind,
    Format,
    WeightKind,
    WeightSpec,
)
from gemlite.packing import pack_codes
from gemlite.schemes.activation import ActQuant, NoActivationQuant
from gemlite.schemes.base import (
    Canonical,
    KernelKind,
    Storage,
    WeightScheme,
    check_tensor_on,
    empty_placeholder,
    scales_rows,
)

__all__ = [
    "MXFP8", "MXFP4", "NVFP4", "ACT_SCHEMES", "MXActQuant", "e2m1_codes", "quantize_mx", "quantize_nvfp4",
]  # fmt: skip

MX_MAX_EXP = 127  # the largest e8m0 exponent a quantizer writes (byte 254)
E8M0_NAN = 255
NVFP4_TENSOR_NUMERATOR = FP8_E4M3_MAX * E2M1_MAX  # 2688: ts = 448 * 6 / amax
_ROWS_PER_CHUNK = 1024  # float64 rows at a time for NVFP4 codes (a 28672-wide row is 229 KB)


# --------------------------------------------------------------------------------------------
# Element rounding and the quantizers (from a float weight or activation matrix)
# --------------------------------------------------------------------------------------------


def e2m1_codes(v: torch.Tensor) -> torch.Tensor:
    """e2m1 indices (uint8 0..15) of real values `v` (any float dtype, exact inputs): round to nearest,
    ties to the even index, saturating at +-6; a result of magnitude 0 is always index 0 (+0).

    The magnitudes 0, .5, 1, 1.5, 2, 3, 4, 6 have indices 0..7; the index is the number of midpoints
    ``.25 .75 1.25 1.75 2.5 3.5 5`` that |v| passes, a midpoint counting when |v| lies above it, or on it
    when the index above is even (.75, 1.75, 3.5): the ties-to-even rule of ``reference.float_to_e2m1``.
    """
    a = v.abs()
    mag = (
        (a > 0.25).to(torch.uint8)
        + (a >= 0.75)
        + (a > 1.25)
        + (a >= 1.75)
        + (a > 2.5)
        + (a >= 3.5)
        + (a > 5.0)
    )
    negative = (v < 0) & (mag != 0)
    return mag + negative.to(torch.uint8) * 8


def _require_finite(name: str, x: torch.Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or Inf, which no {name} code can hold")


def _float_matrix(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise TypeError(f"{name}: expected a float16, bfloat16 or float32 tensor, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D tensor [rows, K], got shape {tuple(x.shape)}")
    return x.detach()


def mx_exponents(amax: torch.Tensor, max_code: float) -> torch.Tensor:
    """``ceil(log2(amax / max_code))`` per group, exactly (int32), clamped to [-127, 127]; an all-zero
    group takes -127 (byte 0). amax: float tensor of group maxima (exact values).

    The quotient is taken in float64, where it is a power of two only when the exact one is (amax has at
    most 24 significant bits): frexp's mantissa 0.5 marks those, whose log2 is exponent - 1.
    """
    mantissa, exponent = torch.frexp(amax.double() / max_code)
    e = torch.where(mantissa == 0.5, exponent - 1, exponent)
    e = torch.where(amax == 0, torch.full_like(e, MX_SCALE_FLOOR_EXP), e)
    return e.clamp(MX_SCALE_FLOOR_EXP, MX_MAX_EXP)


def quantize_mx(x: torch.Tensor, element: str, group: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """MXFP8 (element "e4m3") or MXFP4 ("e2m1") codes and e8m0 scale bytes of ``x[R, K]``.

    Per group of `group` inputs along K: ``e = ceil(log2(amax / m))`` (m = 448 or 6, clamped to
    [-127, 127], all-zero groups -127), byte ``e + 127``; codes ``element(x / 2**e)`` (e4m3: clamped to
    +-448, to nearest even; e2m1: `e2m1_codes`). Dividing by a power of two is exact in fp32 here (the
    quotients lie within +-6 or +-448, and values small enough to go subnormal round to 0 either way),
    so the one rounding is the element's, as in ``reference.scaling.mx_quantize``.

    x: float16/bfloat16/float32 ``[R, K]``, finite, K a multiple of `group`. Returns (codes
    float8_e4m3fn or uint8 ``[R, K]``, bytes uint8 ``[R, K // group]``).
    Raises TypeError/ValueError naming `x` (dtype, shape, NaN/Inf, K) or `element`.
    """
    x = _float_matrix("x", x)
    if element not in ("e4m3", "e2m1"):
        raise ValueError(f"element: expected 'e4m3' (MXFP8) or 'e2m1' (MXFP4), got {element!r}")
    rows, cols = x.shape
    if cols % group:
        raise ValueError(f"x: K={cols} must be a multiple of the MX group {group}")
    _require_finite("x", x)
    max_code = FP8_E4M3_MAX if element == "e4m3" else E2M1_MAX
    x32 = x.float()
    e = mx_exponents(x32.abs().reshape(rows, cols // group, group).amax(dim=-1), max_code)
    scaled = torch.ldexp(x32, (-e).to(torch.float32).repeat_interleave(group, dim=1))
    if element == "e4m3":
        codes = scaled.clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    else:
        codes = e2m1_codes(scaled)
    return codes, (e + E8M0_BIAS).to(torch.uint8)


def nvfp4_tensor_scale(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``448 * 6 / amax(|x|)`` rounded once to fp32 (1.0 for an all-zero x), as a 1-element fp32 tensor on
    x's device. Raises ValueError naming `name` when amax is so small that no finite fp32 scale exists."""
    amax = x.detach().abs().amax().double() if x.numel() else torch.zeros((), dtype=torch.float64)
    safe = torch.where(amax == 0, torch.ones_like(amax), amax)
    scale = torch.where(amax == 0, torch.ones_like(amax), NVFP4_TENSOR_NUMERATOR / safe).float()
    if not bool(torch.isfinite(scale)):
        raise ValueError(
            f"{name}: amax {float(amax)!r} is too small for a finite fp32 NVFP4 tensor scale (448 * 6 / amax)"
        )
    return scale.reshape(1)


def quantize_nvfp4(x: torch.Tensor, name: str = "x") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NVFP4 codes, group scales and tensor scale of ``x[R, K]`` (K a multiple of 16).

    ``ts = fp32(448 * 6 / amax(|x|))`` (`nvfp4_tensor_scale`); per group of 16,
    ``s_g = e4m3(min(amax_g / 6 * ts, 448))`` in fp32 in that order; codes ``e2m1(x * ts / s_g)`` with
    the product and the quotient taken in float64 (the product is exact, so the e2m1 rounding is the
    one rounding: ``reference.scaling.nvfp4_quantize``), code 0 where ``s_g = 0``.
    Returns (codes uint8 ``[R, K]``, s_g float8_e4m3fn ``[R, K // 16]``, ts fp32 ``[1]``).
    Raises TypeError/ValueError naming `name`.
    """
    x = _float_matrix(name, x)
    rows, cols = x.shape
    if cols % NVFP4_GROUP:
        raise ValueError(f"{name}: K={cols} must be a multiple of the NVFP4 group {NVFP4_GROUP}")
    _require_finite(name, x)
    ts = nvfp4_tensor_scale(x, name)
    amax_g = x.abs().reshape(rows, cols // NVFP4_GROUP, NVFP4_GROUP).amax(dim=-1)
    # fp32(amax) / 6 correctly rounded to fp32 (as the kernels' div_rn) on every device: CUDA torch
    # divides by a Python scalar through its reciprocal, one ulp off at times (the float64 quotient by 6
    # rounds to fp32 exactly once: reference.scaling.nvfp4_group_scale).
    q = (amax_g.float().double() / E2M1_MAX).float()
    s_g = (q * ts).clamp(max=FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    codes = torch.empty((rows, cols), dtype=torch.uint8, device=x.device)
    ts64 = ts.double()
    for r0 in range(0, rows, _ROWS_PER_CHUNK):
        s_full = s_g[r0 : r0 + _ROWS_PER_CHUNK].double().repeat_interleave(NVFP4_GROUP, dim=1)
        zero = s_full == 0
        q = x[r0 : r0 + _ROWS_PER_CHUNK].double() * ts64 / torch.where(zero, torch.ones_like(s_full), s_full)
        codes[r0 : r0 + _ROWS_PER_CHUNK] = torch.where(zero, 0, e2m1_codes(q))
    return codes, s_g, ts


# --------------------------------------------------------------------------------------------
# The scheme
# --------------------------------------------------------------------------------------------

_SCALE_INPUT_DTYPES = {
    WeightKind.MXFP8: (torch.float8_e8m0fnu, torch.uint8),
    WeightKind.MXFP4: (torch.float8_e8m0fnu, torch.uint8),
    WeightKind.NVFP4: (torch.float8_e4m3fn, torch.uint8),
}
_SCALE_WHAT = {
    WeightKind.MXFP8: "e8m0 bytes (torch.float8_e8m0fnu, or uint8 holding its bit pattern)",
    WeightKind.MXFP4: "e8m0 bytes (torch.float8_e8m0fnu, or uint8 holding its bit pattern)",
    WeightKind.NVFP4: "e4m3 values (torch.float8_e4m3fn, or uint8 holding its bit pattern)",
}


def _scale_bytes(kind: WeightKind, scales, count: int, what: str, device) -> torch.Tensor:
    """The user's scales as their raw bytes (uint8, flattened), checked: dtype, count, no NaN byte."""
    if scales is None:
        raise ValueError(f"scales: {kind.name} weights need their scales ({what} = {count} values), got None")
    check_tensor_on("scales", scales, device)
    if scales.dtype not in _SCALE_INPUT_DTYPES[kind]:
        raise TypeError(
            f"scales: {kind.name} scales are {_SCALE_WHAT[kind]}, taken bit for bit; got {scales.dtype} "
            "(float scale values are not converted: pass the bytes)"
        )
    if scales.numel() != count:
        raise ValueError(
            f"scales: expected {what} = {count} values (any shape), got {scales.numel()} "
            f"(shape {tuple(scales.shape)})"
        )
    raw = scales.detach().reshape(-1).contiguous().view(torch.uint8)  # a reinterpretation, never a cast
    nan = (raw == E8M0_NAN) if kind is not WeightKind.NVFP4 else ((raw & 0x7F) == 0x7F)
    if bool(nan.any()):
        at = int(nan.nonzero()[0])
        raise ValueError(
            f"scales: byte {int(raw[at])} (at flat index {at}) is NaN in {kind.name}'s scale format"
        )
    return raw


def _tensor_scale(zeros, device) -> torch.Tensor:
    """NVFP4's tensor scale from `pack`'s third operand: a positive finite number -> fp32 ``[1]``."""
    what = "the fp32 tensor scale ts (W = e2m1(q) * s_g / ts; GemLite's meta_scale) in `zeros`"
    if zeros is None:
        raise ValueError(f"zeros: NVFP4 weights have no zero-point but need {what}, got None")
    if isinstance(zeros, torch.Tensor):
        if zeros.device.type != "cpu":  # a CPU scalar is taken like a Python number, on any device
            check_tensor_on("zeros", zeros, device)
        if zeros.numel() != 1 or not zeros.dtype.is_floating_point:
            raise ValueError(
                f"zeros: NVFP4 takes {what}: one float, got a {zeros.dtype} tensor of shape "
                f"{tuple(zeros.shape)}"
            )
        ts = zeros.detach().reshape(1).float()
    elif isinstance(zeros, numbers.Real) and not isinstance(zeros, bool):
        ts = torch.tensor([float(zeros)], dtype=torch.float32, device=device)
    else:
        raise TypeError(f"zeros: NVFP4 takes {what}, got {type(zeros).__name__} {zeros!r}")
    value = float(ts[0])
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"zeros: NVFP4's tensor scale must be a positive finite fp32 number, got {value!r}")
    return ts.contiguous()


class MXScheme(WeightScheme):
    """One microscaled weight kind (module docstring): MXFP8 (unpacked e4m3 bytes) or MXFP4 / NVFP4
    (packed e2m1 codes)."""

    takes_group_size = False  # the group is fixed by the kind (32 or 16)

    def __init__(self, kind: WeightKind, kernel_kind: KernelKind, packed: bool) -> None:
        self.kinds = (kind,)
        self.kernel_kind = kernel_kind
        self.packed = packed

    @property
    def kind(self) -> WeightKind:
        return self.kinds[0]

    # ---- the layout -----------------------------------------------------------------------------

    def post_scale(self, layout) -> bool:
        return False  # the group scales multiply each weight inside the K tile

    def check_layout(self, layout) -> None:
        g, k = layout.group_size, layout.in_features
        if k % g:
            raise ValueError(f"in_features: {self.kind.name} groups of {g} must divide in_features={k}")

    def k_tile_problem(self, layout, block_k: int) -> str | None:
        """Any K tile that holds whole groups or lies inside one: the kernels read one scale per (k, n)."""
        g = layout.group_size
        if block_k % g and g % block_k:
            return f"a K step of {block_k} must hold whole {self.kind.name} groups of {g} or lie inside one"
        return None

    def constexprs(self, layout) -> dict[str, int | bool]:
        # GROUP_SIZE 0 and no pre/post scale: the per-tile group row of the other schemes does not apply
        # (groups run inside the K tile; common.dequantize_mx reads their scales, its group size fixed by
        # W_KIND).
        return {**super().constexprs(layout), "GROUP_SIZE": 0, "POST_SCALE": False, "PRE_SCALE": False}

    # ---- user tensors -> canonical -> kernel layout ---------------------------------------------

    def canonicalize(self, fmt: Format, W_q, scales, zeros, *, n, k, group_size, compute_dtype) -> Canonical:
        kind = self.kind
        g = fmt.weight.group_size
        device = W_q.device
        if k % g:
            raise ValueError(f"in_features: {kind.name} groups of {g} must divide in_features={k}")
        if kind is WeightKind.MXFP8:
            if W_q.dtype != torch.float8_e4m3fn:
                raise TypeError(f"W_q: MXFP8 weights take float8_e4m3fn codes, got {W_q.dtype}")
            if bool(((W_q.view(torch.uint8) & 0x7F) == 0x7F).any()):
                raise ValueError("W_q: the float8_e4m3fn codes contain NaN")
        else:
            if W_q.dtype != torch.uint8:
                raise TypeError(
                    f"W_q: {kind.name} weights take uint8 e2m1 indices 0..15 ([N, K]; packed two per byte "
                    f"with pack(..., packed=True)), got {W_q.dtype}"
                )
            top = int(W_q.max())
            if top > 15:
                raise ValueError(f"W_q: e2m1 indices must lie in [0, 15], got a maximum of {top}")
        what = f"N * K / {g} = {n} * {k} / {g}"
        raw = _scale_bytes(kind, scales, n * (k // g), what, device).reshape(n, k // g)
        if kind is WeightKind.NVFP4:
            tensor_scale = _tensor_scale(zeros, device)
            raw = raw.view(torch.float8_e4m3fn)
        else:
            tensor_scale = None
            if zeros is not None:
                raise ValueError(f"zeros: {kind.name} weights take no zeros, got {type(zeros).__name__}")
        return Canonical(fmt.weight, W_q.contiguous(), raw, None, tensor_scale)

    def prepare(self, layout, canonical: Canonical) -> dict[str, torch.Tensor]:
        device = canonical.codes.device
        if self.packed:
            w_q = pack_codes(canonical.codes, 4, layout.word_bits).t().contiguous()
        else:
            w_q = canonical.codes.view(torch.uint8)  # the e4m3 bytes (Triton loads them masked, then casts)
        ts = canonical.tensor_scale
        return {
            "W_q": w_q,
            "scales": scales_rows(canonical.scales),
            "zeros": ts.to(device) if ts is not None else empty_placeholder(device),
        }

    def storage(self, layout) -> dict[str, Storage]:
        K, N, G = layout.in_features, layout.out_features, layout.num_groups
        if self.packed:
            words = torch.int32 if layout.word_bits == 32 else torch.uint8
            w_q = Storage(words, (K // layout.elems_per_word, N))
        else:
            w_q = Storage(torch.uint8, (N, K))
        nv = self.kind is WeightKind.NVFP4
        return {
            "W_q": w_q,
            "scales": Storage(torch.float8_e4m3fn if nv else torch.uint8, (G, N)),
            "zeros": Storage(torch.float32, (1,) if nv else None),
        }

    # ---- reports --------------------------------------------------------------------------------

    def weight_bytes(self, spec: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
        """Codes, one scale byte per group (e8m0 or e4m3) and NVFP4's fp32 tensor scale."""
        total = math.ceil(N * K * spec.bits / 8) + N * (K // spec.group_size)
        return total + (4 if spec.kind is WeightKind.NVFP4 else 0)


MXFP8 = MXScheme(WeightKind.MXFP8, KernelKind.MXFP8, packed=False)
MXFP4 = MXScheme(WeightKind.MXFP4, KernelKind.MXFP4, packed=True)
NVFP4 = MXScheme(WeightKind.NVFP4, KernelKind.NVFP4, packed=True)


# --------------------------------------------------------------------------------------------
# Microscaled ACTIVATIONS: MXFP8, MXFP4, NVFP4 quantized at run time (the formats A8W8_MXFP_dynamic,
# A8W4_MXFP_dynamic, A4W4_MXFP_dynamic, A4W4_NVFP_dynamic)
# --------------------------------------------------------------------------------------------


class MXActQuant(NoActivationQuant):
    """Activations quantized at run time per group of 32 (MX) or 16 (NVFP4) inputs of a row of x, by the
    rules of ``reference.quantize_activation`` (the weight rules above, applied to x), bit for bit:

    * MXFP8 / MXFP4: ``e = ceil(log2(amax_g / m))`` (m = 448 / 6; all-zero groups -127), the e8m0 byte
      ``e + 127``, codes ``e4m3(x / 2**e)`` / ``e2m1(x / 2**e)`` rounded once, to nearest even;
    * NVFP4: one fp32 tensor scale ``ts = 448 * 6 / amax(|x|)`` over the WHOLE x of the call (its
      finite values), computed at run time, so no group scale ``e4m3(amax_g / 6 * ts)`` can exceed 448
      and no code saturates, however large x is (fp16's 65504, bf16's 3e38: a fixed tensor scale
      would saturate there); codes ``e2m1(x * ts / s_g)`` rounded once from the exact quotient. The price
      of a per-tensor scale: a row's codes depend on the other rows of the call (as with every
      per-tensor activation scale). ts is clamped to fp32's largest finite value when amax is below
      ``2688 / 3.4e38 ~ 7.9e-36`` (bf16 inputs only; the reference refuses such tensors), 1.0 for an
      all-zero x.

    The quantizer (`gemlite.kernels.act_quant`) writes the codes as bytes (e4m3, or two e2m1 codes per
    byte with the even k in the low nibble), the scales as bytes ``[M, K // g]`` (e8m0; NVFP4 e4m3) and,
    for NVFP4, ``[amax, ts]`` as fp32. The matmul kernels dequantize each K tile of codes with its
    scales into bf16 (exact: at most 4 significant bits times a power of two, or e2m1 x e4m3 = 6 bits,
    within bf16's range; the corners at the ends of that range, bf16 inputs only, are listed in
    ``gemlite/kernels/common.py``) against the weight dequantized the same way (NVFP4: ``e2m1 * s_g``,
    its tensor scale left out), take a bf16 dot with fp32 accumulation, and NVFP4 multiplies the
    accumulator by ``1 / (ts_x * ts_w)`` in fp32 once (``gemlite/kernels/common.py``). A group holding
    NaN or +-Inf gets the NaN scale byte (e8m0 255, e4m3 0x7F) and codes 0: its row of the output is
    NaN, the other rows are untouched (NVFP4's amax skips non-finite values).

    kind: the ActKind. element: "e4m3" or "e2m1". group: inputs per scale. packed: codes two per byte.
    code_dtype / scale_dtype: the codes and scales as users and the reference see them (e4m3 codes or
    uint8 e2m1 indices ``[M, K]``; uint8 e8m0 bytes or float8_e4m3fn). weights: the weight kinds the
    kernels pair these activations with.
    """

    def __init__(self, kind, x_quant, element: str, group: int, scale_dtype, weights: tuple) -> None:
        self.kind = kind
        self.x_quant = x_quant
        self.element = element
        self.group = group
        self.packed = element == "e2m1"
        self.code_dtype = torch.float8_e4m3fn if element == "e4m3" else torch.uint8
        self.kernel_dtype = torch.uint8
        self.scale_dtype = scale_dtype
        self.max_code = FP8_E4M3_MAX if element == "e4m3" else E2M1_MAX
        self.weights = weights

    @property
    def has_tensor_scale(self) -> bool:
        return self.kind is ActKind.NVFP4

    def check_spec(self, act, weight) -> None:
        """The group must be the kind's (32 / 16) and the weight one these kernels pair it with (MX
        activations with MXFP8 / MXFP4 weights, NVFP4 with NVFP4): ValueError naming the format."""
        if act.group_size != self.group:
            raise ValueError(
                f"format: {self.kind.name} activations take scale groups of {self.group}, "
                f"got {act.group_size}"
            )
        if weight.kind not in self.weights:
            raise ValueError(
                f"format: {self.kind.name} activations multiply "
                f"{', '.join(k.name for k in self.weights)} weights; got {weight.kind.name} weights"
            )

    def act_bytes(self, M: int, K: int, x_bytes: int, group: int | None = None) -> int:
        """HBM bytes of the activation path of one call: x read by the quantizer (twice for NVFP4: its
        amax pass), the codes (1 or 1/2 byte each) and the scale bytes written and read back."""
        code_bytes = M * K // (2 if self.packed else 1)
        reads = 2 if self.has_tensor_scale else 1
        return reads * M * K * x_bytes + 2 * code_bytes + 2 * M * (K // self.group)


_MX_WEIGHTS = (WeightKind.MXFP8, WeightKind.MXFP4)
ACT_MXFP8 = MXActQuant(ActKind.MXFP8, ActQuant.MXFP8, "e4m3", MX_GROUP, torch.uint8, _MX_WEIGHTS)
ACT_MXFP4 = MXActQuant(ActKind.MXFP4, ActQuant.MXFP4, "e2m1", MX_GROUP, torch.uint8, _MX_WEIGHTS)
ACT_NVFP4 = MXActQuant(
    ActKind.NVFP4, ActQuant.NVFP4, "e2m1", NVFP4_GROUP, torch.float8_e4m3fn, (WeightKind.NVFP4,)
)
ACT_SCHEMES = (ACT_MXFP8, ACT_MXFP4, ACT_NVFP4)
