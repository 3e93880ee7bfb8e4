"""Weight quantizers: from a float weight ``W[N, K]`` to the codes and scales `GemLiteLinear.pack` takes.

These are the round-to-nearest rules the helpers (`gemlite.helper`) use in ``from_linear``. The
reference (`reference/`) implements the same rules independently; the suite checks that both give the
same codes and scales bit for bit, so a change here must be a change of the format, made in both.

Scales are computed in fp32 (as a kernel would) and stored in the dtype named below; codes are then
computed from the *stored* scales in float64, with one rounding into the code format, so ties are
decided on the exact quotient. Everything runs where the weight lives (CPU or GPU).

* HQQ (`quantize_hqq`): asymmetric min-max per group of ``g`` inputs along K; ``W ~= (q - z) * s``.
* INT8 (`quantize_int8`): symmetric per output channel, ``W ~= q * s``, q in [-128, 127].
* FP8 (`quantize_fp8`): e4m3 per output channel, ``W ~= q * s``.
* Ternary (`quantize_ternary`): BitNet b1.58 absmean, ``W ~= t * s`` with t in {-1, 0, 1}, one s.

One quantizer is not a rule of a format but an optimizer outside gemlite: `quantize_hqq_optimized`
runs the `hqq` package's half-quadratic optimizer (what public GemLite's ``patch_model`` uses through
``HQQLinear``) and returns codes, scales and zeros in the HQQ format; the reference has no golden of
its choices, and needs none: the kernels are judged on whatever codes they are given.
"""

from __future__ import annotations

import importlib.util

import torch

from gemlite.formats import FP8_E4M3_MAX, HQQ_BITS, INT8_MAX, INT8_MIN, SCALE_FLOOR

__all__ = [
    "hqq_optimizer_available",
    "quantize_hqq",
    "quantize_hqq_optimized",
    "quantize_int8",
    "quantize_fp8",
    "quantize_8bit_blocks",
    "quantize_ternary",
    "round_half_away",
    "to_e4m3",
]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def _check_weight(weight: torch.Tensor) -> None:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight: expected a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"weight: expected a float16, bfloat16 or float32 tensor, got {weight.dtype}")
    if weight.dim() != 2 or weight.numel() == 0:
        raise ValueError(f"weight: expected a non-empty 2-D tensor [N, K], got shape {tuple(weight.shape)}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError("weight: contains NaN or Inf; it cannot be quantized")


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (``2.5 -> 3``, ``-2.5 -> -3``), like C's ``round``.

    NOTE: torch.round rounds ties to even; symmetric INT8 follows GemLite (libdevice.round), which
    rounds away from zero, so the two differ exactly at .5.
    """
    # NOTE: floor(|x| + 0.5) is wrong just below .5 (0.49999997 + 0.5 rounds up to 1.0 in fp32);
    # x - trunc(x) is exact, so the tie test below sees the true fraction.
    truncated = torch.trunc(x)
    is_tie = (x - truncated).abs() == 0.5
    return torch.where(is_tie, truncated + torch.sign(x), torch.round(x))


def _check_hqq_args(weight, bits, group_size, scale_dtype) -> tuple[int, int, int, torch.dtype]:
    """The checked arguments of the HQQ quantizers: (N, K, group size, scale dtype)."""
    _check_weight(weight)
    if isinstance(bits, bool) or bits not in HQQ_BITS:
        raise ValueError(f"bits: HQQ codes are one of {HQQ_BITS} bits wide, got {bits!r}")
    n, k = weight.shape
    g = k if group_size is None else group_size
    if isinstance(g, bool) or not isinstance(g, int) or g <= 0 or k % g != 0:
        raise ValueError(f"group_size: expected a positive divisor of K={k} or None, got {group_size!r}")
    scale_dtype = weight.dtype if scale_dtype is None else scale_dtype
    if scale_dtype not in _FLOAT_DTYPES:
        raise TypeError(f"scale_dtype: expected float16, bfloat16 or float32, got {scale_dtype}")
    return n, k, g, scale_dtype


def quantize_hqq(
    weight: torch.Tensor,
    bits: int,
    group_size: int | None = None,
    scale_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric min-max round-to-nearest quantization per group along K (HQQ convention).

    For each group of ``g`` consecutive inputs of one output row, in fp32:
    ``s = (max - min) / (2**bits - 1)``, rounded to `scale_dtype`, then ``z = -min / s`` from the stored
    s, rounded to `scale_dtype`. The codes come from the *stored* s and z,
    ``q = clamp(round(W / s + z), 0, 2**bits - 1)``, evaluated in float64 and rounded half to even (as
    the HQQ library does), so ``(q - z) * s`` is the nearest point of the grid the kernel will see.

    NOTE: a constant group (max == min) would divide by zero; it gets ``s = 1, z = -min`` and
    dequantizes to min (as stored in `scale_dtype`). So does a group whose spread is too small for
    `scale_dtype` (its scale underflows to 0, or its zero ``-min / s`` overflows): its values then all
    dequantize to about min, off by less than the spread, where the plain rule would produce NaN codes.

    Args:
        weight: float weight ``[N, K]`` (fp16, bf16 or fp32), finite.
        bits: code width, one of 8, 4, 2, 1.
        group_size: inputs per group; must divide K. None means channel-wise (one group per row).
        scale_dtype: dtype of the returned scales and zeros (fp16, bf16 or fp32); None: weight's dtype.

    Returns:
        ``(codes, scales, zeros)``: codes uint8 ``[N, K]`` in ``[0, 2**bits - 1]``; scales and zeros
        ``[N, K // g]`` of `scale_dtype`, on weight's device.

    Raises:
        TypeError: weight is not a float tensor, scale_dtype not a float dtype.
        ValueError: bad shape, non-finite values, bits not in (8, 4, 2, 1), group_size not dividing K,
            a group minimum beyond the range of `scale_dtype`.
    """
    n, k, g, scale_dtype = _check_hqq_args(weight, bits, group_size, scale_dtype)

    max_code = (1 << bits) - 1
    groups = weight.float().reshape(n, k // g, g)  # exact: fp16/bf16 values are fp32 values
    w_min = groups.amin(dim=-1)
    w_max = groups.amax(dim=-1)
    scale = ((w_max - w_min) / max_code).to(scale_dtype)
    zero = (-w_min / scale.float()).to(scale_dtype)
    degenerate = (w_max == w_min) | (scale == 0) | ~torch.isfinite(zero)
    scale = torch.where(degenerate, torch.ones_like(scale), scale)
    zero = torch.where(degenerate, (-w_min).to(scale_dtype), zero)
    if not bool(torch.isfinite(zero).all()):
        raise ValueError(f"weight: a group minimum exceeds the range of scale_dtype={scale_dtype}")

    # float64: W / s + z is then rounded once per operation at 53 bits, so round() sees the true tie.
    codes = torch.round(groups.double() / scale.double().unsqueeze(-1) + zero.double().unsqueeze(-1))
    codes = codes.clamp_(0, max_code).to(torch.uint8).reshape(n, k)
    return codes, scale, zero


def hqq_optimizer_available() -> bool:
    """Whether the `hqq` package is installed (found without importing it: importing hqq takes seconds)."""
    return importlib.util.find_spec("hqq") is not None


def quantize_hqq_optimized(
    weight: torch.Tensor,
    bits: int,
    group_size: int | None = None,
    scale_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HQQ's half-quadratic optimizer (the `hqq` package) per group along K, as ``HQQLinear`` runs it.

    Calls ``hqq.core.quantize.Quantizer.quantize`` with the weight settings of hqq's
    ``BaseQuantizeConfig(nbits=bits, group_size=group_size, axis=1)`` (optimize=True, round_zero for
    4-bit), without bit packing; hqq computes in fp32 (fp16 on CUDA) and the scales and zeros are then
    rounded to `scale_dtype`, as ``HQQLinear`` does with its compute dtype. ``W ~= (q - z) * s``.
    Starting from the same min-max grid as `quantize_hqq`, the optimizer moves z (and so the codes) to
    lower the l_p error (p = 0.7) of the group, which helps most at 4 bits and fewer.

    Args, Returns: as `quantize_hqq`.

    Raises:
        ImportError: the `hqq` package is not installed (`hqq_optimizer_available`).
        TypeError / ValueError: as `quantize_hqq`.
    """
    n, k, g, scale_dtype = _check_hqq_args(weight, bits, group_size, scale_dtype)
    try:
        from hqq.core.quantize import Quantizer
    except ImportError:
        raise ImportError(
            "quantize_hqq_optimized: needs the `hqq` package (pip install hqq, or gemlite[hqq]); "
            "quantize_hqq is the round-to-nearest rule without it"
        ) from None
    codes, meta = Quantizer.quantize(
        weight, nbits=bits, channel_wise=True, group_size=g, optimize=True, round_zero=bits == 4,
        axis=1, bitpack=False, compute_dtype=scale_dtype, device=weight.device,
    )  # fmt: skip
    codes = codes.reshape(n, k).round().clamp_(0, (1 << bits) - 1).to(torch.uint8)
    scale = meta["scale"].reshape(n, k // g).to(scale_dtype)
    zero = meta["zero"].reshape(n, k // g).to(scale_dtype)
    if not (bool(torch.isfinite(scale).all()) and bool(torch.isfinite(zero).all())):
        raise ValueError(f"weight: hqq's scales or zeros overflow scale_dtype={scale_dtype}")
    return codes, scale, zero


def _channel_scale(weight: torch.Tensor, qmax: float) -> torch.Tensor:
    """fp32 ``[N, 1]`` scale ``max(amax_k |W[n, k]| / qmax, SCALE_FLOOR)`` (the floor keeps 0-rows finite).

    amax is exact in fp32 and the fp32 division rounds the exact quotient once.
    """
    amax = weight.float().abs().amax(dim=1, keepdim=True)
    return torch.clamp(amax / qmax, min=SCALE_FLOOR)


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric INT8 per output channel: ``s = max(amax / 127, 1e-6)``, ``q = round(W / s)``.

    ``W / s`` is evaluated in float64 and rounded half away from zero (`round_half_away`), then
    clamped to [-128, 127] (only -128 is out of the symmetric range, so nothing clips in practice).

    Args:
        weight: float weight ``[N, K]`` (fp16, bf16 or fp32), finite.

    Returns:
        ``(codes, scales)``: int8 ``[N, K]`` and fp32 ``[N, 1]``.

    Raises:
        TypeError / ValueError: weight is not a finite 2-D float tensor.
    """
    _check_weight(weight)
    scale = _channel_scale(weight, float(INT8_MAX))
    codes = round_half_away(weight.double() / scale.double()).clamp_(INT8_MIN, INT8_MAX).to(torch.int8)
    return codes, scale


def _e4m3_grid(device: torch.device) -> torch.Tensor:
    """The 127 finite non-negative float8_e4m3fn values, ascending, as float64 (index = the code)."""
    # Bit patterns 0x00..0x7E are +0 .. 448 in increasing order; 0x7F is NaN.
    return torch.arange(0, 127, dtype=torch.uint8, device=device).view(torch.float8_e4m3fn).double()


def to_e4m3(x: torch.Tensor) -> torch.Tensor:
    """Round float64 values to float8_e4m3fn: nearest, ties to the even code, saturating at +-448.

    NOTE: torch's float64 -> float8 cast goes through fp32 and so rounds twice (1.0625 + 2**-30
    becomes 1.0 instead of 1.125); rounding on the e4m3 grid directly gives one correct rounding.
    """
    grid = _e4m3_grid(x.device)
    a = x.abs().clamp(max=grid[-1].item()).contiguous()
    hi = torch.searchsorted(grid, a).clamp(max=grid.numel() - 1)  # first grid value >= a
    lo = (hi - 1).clamp(min=0)
    d_lo, d_hi = a - grid[lo], grid[hi] - a
    # The code's last bit is the mantissa's last bit: on a tie keep the even one.
    code = torch.where((d_hi < d_lo) | ((d_hi == d_lo) & (hi % 2 == 0)), hi, lo)
    return torch.copysign(grid[code], x).to(torch.float8_e4m3fn)


def quantize_fp8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FP8 e4m3 per output channel: ``s = max(amax / 448, 1e-6)``, ``q = e4m3(clamp(W / s, -448, 448))``.

    ``W / s`` is evaluated in float64 and rounded once to e4m3, to nearest with ties to even (`to_e4m3`).

    Args:
        weight: float weight ``[N, K]`` (fp16, bf16 or fp32), finite.

    Returns:
        ``(codes, scales)``: float8_e4m3fn ``[N, K]`` and fp32 ``[N, 1]``.

    Raises:
        TypeError / ValueError: weight is not a finite 2-D float tensor.
    """
    _check_weight(weight)
    scale = _channel_scale(weight, FP8_E4M3_MAX)
    codes = to_e4m3((weight.double() / scale.double()).clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX))
    return codes, scale


def quantize_8bit_blocks(
    weight: torch.Tensor, fp8: bool, block: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """INT8 or FP8 e4m3 per ``block x block`` block (DeepSeek-style, the ``_block_dynamic`` formats):
    ``s = max(amax_block / c, 1e-6)`` in fp32 (c = 127 or 448; a ragged last block of rows is padded with
    zeros, which cannot change its amax), then the codes from the stored scale exactly as
    `quantize_int8` / `quantize_fp8` compute them.

    Args:
        weight: float weight ``[N, K]`` (fp16, bf16 or fp32), finite; K a multiple of `block`.
        fp8: e4m3 codes (True) or int8 codes (False).

    Returns:
        ``(codes, scales)``: int8 or float8_e4m3fn ``[N, K]`` and fp32 ``[ceil(N / block), K / block]``.

    Raises:
        TypeError / ValueError: weight is not a finite 2-D float tensor, or K is not a multiple of block.
    """
    _check_weight(weight)
    n, k = weight.shape
    if k % block:
        raise ValueError(
            f"weight: blocks of {block} along K need in_features (K) to be a multiple of {block}, got K={k}"
        )
    nb = -(-n // block)
    padded = torch.zeros((nb * block, k), dtype=torch.float32, device=weight.device)
    padded[:n] = weight.float().abs()
    amax = padded.reshape(nb, block, k // block, block).amax(dim=(1, 3))
    scales = torch.clamp(amax / (FP8_E4M3_MAX if fp8 else float(INT8_MAX)), min=SCALE_FLOOR)
    s_full = scales.double().repeat_interleave(block, dim=0)[:n].repeat_interleave(block, dim=1)
    q = weight.double() / s_full
    if fp8:
        return to_e4m3(q.clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX)), scales
    return round_half_away(q).clamp_(INT8_MIN, INT8_MAX).to(torch.int8), scales


def quantize_ternary(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BitNet b1.58 absmean ternary quantization with one scale for the whole tensor.

    ``s = max(mean |W|, 1e-6)``: the mean taken in float64 and rounded once to fp32;
    ``t = clamp(round(W / s), -1, 1)`` in float64, round half to even (BitNet's ``round``); ``W ~= t * s``.

    Args:
        weight: float weight ``[N, K]`` (fp16, bf16 or fp32), finite.

    Returns:
        ``(weight_t, scale)``: int8 ``[N, K]`` in {-1, 0, 1} and a 0-d fp32 tensor.

    Raises:
        TypeError / ValueError: weight is not a finite 2-D float tensor.
    """
    _check_weight(weight)
    w = weight.double()
    scale = torch.clamp(w.abs().mean().float(), min=SCALE_FLOOR)
    weight_t = torch.round(w / scale.double()).clamp_(-1, 1).to(torch.int8)
    return weight_t, scale
