"""What every weight scheme provides, the canonical form it produces, and the checks they share.

A *weight scheme* owns the host rules of one weight encoding (a `gemlite.formats.WeightKind`):

* `canonicalize`: the user's tensors (as `GemLiteLinear.pack` or a helper received them) validated
  and brought to the canonical form `Canonical` (codes ``[N, K]``, scales/zeros ``[N, K // g]``);
* `layout`: the `gemlite.layout.WeightLayout` those canonical tensors get;
* `prepare`: the tensors in the kernels' physical layout (``W_q``, ``scales``, ``zeros``) and
  `storage`: their dtypes and shapes, which `gemlite.matmul` checks direct callers against;
* `constexprs`: the weight-layout constants the kernels are compiled with;
* `weight_bytes`: the bytes a stored weight occupies (the perf report's traffic model).

Kernel-facing ids (`KernelKind`, `ZeroMode`) are plain ints here and become ``tl.constexpr`` in
``gemlite/kernels/common.py``, so the numbering lives in one place and this module needs no Triton.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import torch

from gemlite.formats import Format, WeightKind, WeightSpec, Zeros

META_DTYPES = (torch.float16, torch.bfloat16, torch.float32)  # scales / zeros / bias as users give them
# Every kernel walks K in tiles of at least 32 (16 for GEMV_REVSPLITK's half tiles): K and grouped
# layouts' group sizes must be multiples of it.
K_MULTIPLE = 32
GROUP_MULTIPLE = 32


class KernelKind(enum.IntEnum):
    """How the device code reads a weight element (``W_KIND``)."""

    FLOAT = 0  # fp16/bf16 weight, used as is
    PACKED = 1  # unsigned codes packed in words (HQQ, TERNARY)
    INT8 = 2  # int8 codes, one per byte
    FP8 = 3  # float8_e4m3fn codes, one per byte
    MXFP8 = 4  # e4m3 codes (their bytes), one per byte; e8m0 scale per 32 inputs (gemlite.schemes.mx)
    MXFP4 = 5  # e2m1 codes packed in words; e8m0 scale per 32 inputs
    NVFP4 = 6  # e2m1 codes packed in words; e4m3 scale per 16 inputs and an fp32 tensor scale


class ZeroMode(enum.IntEnum):
    """The zero-point as the device code sees it (``ZERO_MODE``)."""

    NONE = 0
    INT = 1  # one integer for the whole tensor (runtime argument zero_int)
    FLOAT = 2  # a float per group, same layout as the scales


ZERO_MODES = {Zeros.NONE: ZeroMode.NONE, Zeros.INT: ZeroMode.INT, Zeros.FLOAT: ZeroMode.FLOAT}


@dataclass(frozen=True)
class Canonical:
    """Validated user tensors in canonical form, on one device.

    spec: the weight spec they encode (group size None = channel-wise).
    codes: ``[N, K]`` codes (or the fp16/bf16 weight itself for FLOAT).
    scales: ``[N, K // g]`` (``[N, 1]`` channel-wise), or None.
    zeros: ``[N, K // g]`` float tensor, a Python int (integer zero-point), or None.
    tensor_scale: NVFP4 only: the fp32 tensor scale ``ts`` (``W = e2m1(q) * s_g / ts``), a 1-element
        tensor; None for every other kind.
    """

    spec: WeightSpec
    codes: torch.Tensor
    scales: torch.Tensor | None
    zeros: torch.Tensor | int | None
    tensor_scale: torch.Tensor | None = None


@dataclass(frozen=True)
class Storage:
    """Dtype and shape of one prepared tensor (None shape: an empty placeholder)."""

    dtype: torch.dtype
    shape: tuple[int, ...] | None


def empty_placeholder(device) -> torch.Tensor:
    """The stand-in for an absent tensor (no scales, integer or no zeros): a module holds it as a buffer."""
    return torch.empty(0, dtype=torch.float32, device=device)


# --------------------------------------------------------------------------------------------
# Checks shared by the schemes (user-facing messages name the argument)
# --------------------------------------------------------------------------------------------


def check_tensor_on(name: str, t, device: torch.device) -> None:
    """`t` is a tensor on `device` (the device of W_q)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the device of W_q), got one on {t.device}")


def check_meta_tensor(name: str, t, count: int, what: str, device: torch.device) -> torch.Tensor:
    """A scales/zeros tensor: fp16/bf16/fp32, `count` elements, finite. Returns it flattened."""
    check_tensor_on(name, t, device)
    if t.dtype not in META_DTYPES:
        raise TypeError(f"{name}: expected a float16, bfloat16 or float32 tensor, got {t.dtype}")
    if t.numel() != count:
        raise ValueError(
            f"{name}: expected {what} = {count} values (any shape), got {t.numel()} (shape {tuple(t.shape)})"
        )
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name}: contains NaN or Inf")
    return t.detach().reshape(-1)


def check_bias(bias, n: int, device: torch.device) -> torch.Tensor | None:
    """A ``[N]`` fp16/bf16/fp32 finite bias, or None; returned contiguous and detached."""
    if bias is None:
        return None
    check_tensor_on("bias", bias, device)
    if bias.dtype not in META_DTYPES:
        raise TypeError(f"bias: expected a float16, bfloat16 or float32 tensor, got {bias.dtype}")
    if tuple(bias.shape) != (n,):
        raise ValueError(f"bias: expected shape ({n},) (out_features), got {tuple(bias.shape)}")
    if not bool(torch.isfinite(bias).all()):
        raise ValueError("bias: contains NaN or Inf")
    return bias.detach().contiguous()


INT_BIAS_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64)


def check_int_bias(bias, n: int, device: torch.device) -> torch.Tensor | None:
    """The ``[N]`` bias of an int32 output (int8 codes x int8 codes without scales): integers of any
    integer dtype within int32's range, or None; returned as a contiguous int32 tensor, detached."""
    if bias is None:
        return None
    check_tensor_on("bias", bias, device)
    if bias.dtype not in INT_BIAS_DTYPES:
        raise TypeError(
            "bias: an INT32 output adds an integer bias exactly; expected an int8, int16, int32 or int64 "
            f"tensor, got {bias.dtype} (round it first, or choose a float output_dtype)"
        )
    if tuple(bias.shape) != (n,):
        raise ValueError(f"bias: expected shape ({n},) (out_features), got {tuple(bias.shape)}")
    wide = bias.detach().to(torch.int64)
    if bias.numel() and (int(wide.min()) < -(2**31) or int(wide.max()) > 2**31 - 1):
        raise ValueError(
            f"bias: an INT32 output's bias must lie in int32's range, got values in "
            f"[{int(wide.min())}, {int(wide.max())}]"
        )
    return wide.to(torch.int32).contiguous()


# --------------------------------------------------------------------------------------------
# The scheme interface
# --------------------------------------------------------------------------------------------


class WeightScheme:
    """Host rules of one weight encoding; one instance per `WeightKind` (see `gemlite.schemes`).

    Subclasses set `kinds`, `kernel_kind`, `packed` and implement `canonicalize`, `prepare`,
    `storage`; the defaults below fit the channel-wise 8-bit schemes.
    """

    kinds: tuple[WeightKind, ...] = ()
    kernel_kind: KernelKind = KernelKind.FLOAT
    packed: bool = False  # codes are bit-packed into words (then word_bits is 8 or 32)
    takes_group_size: bool = False  # GemLiteLinear's group_size argument applies (else it is ignored)

    # ---- the layout -----------------------------------------------------------------------------

    def zero_mode(self, spec: WeightSpec) -> Zeros:
        return spec.zeros

    def has_scales(self, spec: WeightSpec) -> bool:
        return True

    def post_scale(self, layout) -> bool:
        """Scales multiply the fp32 accumulator per output column instead of each weight (the
        codes reach the dot exactly). Default: yes (symmetric channel-wise codes)."""
        return True

    def word_bits(self, spec: WeightSpec, requested: int) -> int:
        """The layout's word: the packing word for packed codes, else the element width."""
        return requested if self.packed else spec.bits

    def check_spec(self, spec: WeightSpec) -> None:
        """Raise NotImplementedError for a variant of the kind this release has no kernels for
        (block-scaled weights, ``block_n > 1``)."""
        if spec.block_n != 1:
            raise NotImplementedError(
                f"format: {spec.kind.name} weights with {spec.block_n}x{spec.group_size} blocks "
                "(block-scaled) are planned for a later release of gemlite"
            )

    def k_tile_problem(self, layout, block_k: int) -> str | None:
        """Why a K tile of `block_k` inputs cannot run this layout, or None (`gemlite.autotune` legality).

        Default: the kernels read one scale row per K tile, so a tile must not straddle two groups."""
        if layout.is_grouped and layout.group_size % block_k != 0:
            return (
                f"a K step of {block_k} would straddle scale groups of {layout.group_size} "
                "(it must divide the group size)"
            )
        return None

    def check_layout(self, layout) -> None:
        """Raise ValueError for a group size, word or zero-point this scheme's kernels cannot run."""
        k, g = layout.in_features, layout.group_size
        if g != k:
            raise ValueError(
                f"group_size: {layout.spec.kind.name} weights are channel-wise (group_size=None), got {g}"
            )

    # ---- user tensors -> canonical -> kernel layout ---------------------------------------------

    def canonicalize(self, fmt: Format, W_q, scales, zeros, *, n: int, k: int, group_size: int,
                     compute_dtype: torch.dtype) -> Canonical:  # fmt: skip
        raise NotImplementedError

    def prepare(self, layout, canonical: Canonical) -> dict[str, torch.Tensor]:
        """``{"W_q", "scales", "zeros"}`` in the kernels' physical layout, on the codes' device."""
        raise NotImplementedError

    def storage(self, layout) -> dict[str, Storage]:
        """What `prepare` returns, as dtypes and shapes (scales dtype None: any of META_DTYPES)."""
        raise NotImplementedError

    # ---- kernels and reports --------------------------------------------------------------------

    def constexprs(self, layout) -> dict[str, int | bool]:
        """The weight-layout constants every kernel family is compiled with."""
        post = self.post_scale(layout)
        return {
            "W_KIND": int(self.kernel_kind),
            "W_BITS": layout.spec.bits,
            "ELEMS_PER_WORD": layout.elems_per_word,
            # 0 = one scale row for all of K (channel-wise): keeps K out of the compiled constants.
            "GROUP_SIZE": layout.group_size if layout.is_grouped else 0,
            "ZERO_MODE": int(ZERO_MODES[layout.zero_mode]),
            "POST_SCALE": post,
            "PRE_SCALE": layout.has_scales and not post,
        }

    def weight_bytes(self, spec: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
        """Bytes of a stored K x N weight: codes plus scales (and zeros). Default: fp32 channel scales."""
        return math.ceil(N * K * spec.bits / 8) + N * 4


def scales_rows(scales: torch.Tensor) -> torch.Tensor:
    """Canonical ``[N, G]`` scales/zeros -> the physical ``[G, N]`` rows, N contiguous."""
    return scales.t().contiguous()
