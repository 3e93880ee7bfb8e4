"""Public GemLite's ``gemlite.bitpack``: packing unsigned codes into integer words, over rows or columns.

``e = packing_bitwidth // W_nbits`` codes share one word, least significant bits first. "Over columns"
packs along the last axis (``[R, C] -> [R, C / e]``, code ``c`` in word ``c // e`` at bit offset
``(c % e) * W_nbits``): that is `gemlite.packing.pack_codes` on a ``[N, K]`` weight. "Over rows" packs
along the first axis (``[R, C] -> [R / e, C]``), which is the same words as packing the transpose over
columns: GemLite's physical ``[K / e, N]`` weight is the rows-packing of ``W_q.T``.

Words: ``packing_bitwidth`` 8 -> uint8, 16 -> int16, 32 -> int32, 64 -> int64 (a signed word holds the
same bits as an unsigned one; the top code may make it negative). gemlite's kernels read 8- and 32-bit
words; the 16- and 64-bit forms are here for GemLite's callers.

GemLite has ``_torch`` and ``_triton`` variants of each function (the latter for CUDA tensors); here
both names run the same vectorized PyTorch code on any device, with identical results. Functions that
pack return ``(words, elements_per_sample)`` as GemLite's do; unpacking returns the codes.
"""

from __future__ import annotations

import torch

__all__ = [
    "PACKING_BITWIDTH_TO_TORCH_DTYPE",
    "pack_weights_over_cols",
    "pack_weights_over_cols_torch",
    "pack_weights_over_cols_triton",
    "pack_weights_over_rows",
    "pack_weights_over_rows_torch",
    "pack_weights_over_rows_triton",
    "unpack_over_cols_torch",
    "unpack_over_cols_triton",
    "unpack_over_rows",
    "unpack_over_rows_torch",
    "unpack_over_rows_triton",
]

#: GemLite's word dtype per packing width.
PACKING_BITWIDTH_TO_TORCH_DTYPE = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64}
_WORD_WIDTH = {torch.uint8: 8, torch.int8: 8, torch.int16: 16, torch.uint16: 16, torch.int32: 32,
               torch.uint32: 32, torch.int64: 64}  # fmt: skip
_NBITS = (8, 4, 2, 1)


def _check_pack_args(W_q, W_nbits, packing_bitwidth, axis_len: int, axis: str) -> int:
    if not isinstance(W_q, torch.Tensor):
        raise TypeError(f"W_q: expected a torch.Tensor, got {type(W_q).__name__}")
    if W_q.dim() != 2:
        raise ValueError(f"W_q: expected a 2-D tensor, got shape {tuple(W_q.shape)}")
    if W_q.dtype.is_floating_point or W_q.dtype.is_complex or W_q.dtype == torch.bool:
        raise TypeError(f"W_q: expected integer codes (uint8), got {W_q.dtype}")
    if isinstance(W_nbits, bool) or W_nbits not in _NBITS:
        raise ValueError(f"W_nbits: expected one of {_NBITS}, got {W_nbits!r}")
    if isinstance(packing_bitwidth, bool) or packing_bitwidth not in PACKING_BITWIDTH_TO_TORCH_DTYPE:
        raise ValueError(f"packing_bitwidth: expected 8, 16, 32 or 64, got {packing_bitwidth!r}")
    if packing_bitwidth < W_nbits:
        raise ValueError(f"packing_bitwidth: {packing_bitwidth}-bit words cannot hold {W_nbits}-bit codes")
    e = packing_bitwidth // W_nbits
    if axis_len % e != 0:
        raise ValueError(
            f"W_q: its {axis} ({axis_len}) must be a multiple of {e} ({packing_bitwidth}-bit words of "
            f"{W_nbits}-bit codes)"
        )
    if W_q.numel() > 0:
        lo, hi = int(W_q.min()), int(W_q.max())
        if lo < 0 or hi > (1 << W_nbits) - 1:
            raise ValueError(
                f"W_q: {W_nbits}-bit codes must lie in [0, {(1 << W_nbits) - 1}], got [{lo}, {hi}]"
            )
    return e


def _pack_last_axis(codes: torch.Tensor, W_nbits: int, packing_bitwidth: int) -> torch.Tensor:
    """[R, C] codes -> [R, C / e] words of `packing_bitwidth` bits (LSB first along C)."""
    e = packing_bitwidth // W_nbits
    r, c = codes.shape
    shifts = torch.arange(e, device=codes.device, dtype=torch.int64) * W_nbits
    fields = codes.to(torch.int64).view(r, c // e, e) << shifts
    if packing_bitwidth == 64:
        # Fields are disjoint: OR them (int64 sums could overflow past the sign bit, ORs cannot).
        words = fields[..., 0]
        for i in range(1, e):
            words = words | fields[..., i]
        return words
    words = fields.sum(dim=-1)  # disjoint fields: the sum is the OR, below 2**32 in int64
    if packing_bitwidth in (16, 32):
        words = torch.where(words >= 2 ** (packing_bitwidth - 1), words - 2**packing_bitwidth, words)
    return words.to(PACKING_BITWIDTH_TO_TORCH_DTYPE[packing_bitwidth])


def _unpack_last_axis(words: torch.Tensor, W_nbits: int, num_output: int, dtype: torch.dtype) -> torch.Tensor:
    """[R, C / e] words -> [R, num_output] codes (the inverse of `_pack_last_axis`)."""
    e = num_output // words.shape[1]
    # Sign extension to int64 keeps the word's low bits; each field is masked after its shift.
    shifts = torch.arange(e, device=words.device, dtype=torch.int64) * W_nbits
    codes = (words.to(torch.int64).unsqueeze(-1) >> shifts) & ((1 << W_nbits) - 1)
    return codes.reshape(words.shape[0], num_output).to(dtype)


def _check_unpack_args(W_q_packed, W_nbits, num_output, dtype, axis: str) -> None:
    if not isinstance(W_q_packed, torch.Tensor) or W_q_packed.dtype not in _WORD_WIDTH:
        got = W_q_packed.dtype if isinstance(W_q_packed, torch.Tensor) else type(W_q_packed).__name__
        raise TypeError(f"W_q_packed: expected integer words (uint8, int16, int32, int64), got {got}")
    if W_q_packed.dim() != 2:
        raise ValueError(f"W_q_packed: expected a 2-D tensor, got shape {tuple(W_q_packed.shape)}")
    if isinstance(W_nbits, bool) or W_nbits not in _NBITS:
        raise ValueError(f"W_nbits: expected one of {_NBITS}, got {W_nbits!r}")
    width = _WORD_WIDTH[W_q_packed.dtype]
    packed_len = W_q_packed.shape[0 if axis == "rows" else 1]
    e = width // W_nbits
    if isinstance(num_output, bool) or not isinstance(num_output, int) or num_output != packed_len * e:
        raise ValueError(
            f"num_output_{axis}: {W_q_packed.dtype} words hold {e} {W_nbits}-bit codes, so {packed_len} "
            f"packed {axis} unpack to {packed_len * e}, got {num_output!r}"
        )
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype: expected a torch.dtype, got {type(dtype).__name__}")


def pack_weights_over_cols_torch(
    W_q: torch.Tensor, W_nbits: int, packing_bitwidth: int, transpose: bool
) -> tuple[torch.Tensor, int]:
    """Pack ``[R, C]`` codes along C into ``[R, C / e]`` words (``[C / e, R]`` with `transpose`, a view).

    Returns ``(words, e)``. Raises TypeError / ValueError for non-integer codes, codes out of range,
    a width not in 8/16/32/64, or C not a multiple of e.
    """
    _check_pack_args(
        W_q, W_nbits, packing_bitwidth, W_q.shape[1] if isinstance(W_q, torch.Tensor) else 0, "columns"
    )
    words = _pack_last_axis(W_q, W_nbits, packing_bitwidth)
    return (words.t() if transpose else words), packing_bitwidth // W_nbits


def pack_weights_over_rows_torch(
    W_q: torch.Tensor, W_nbits: int, packing_bitwidth: int, transpose: bool
) -> tuple[torch.Tensor, int]:
    """Pack ``[R, C]`` codes along R into ``[R / e, C]`` words (``[C, R / e]`` with `transpose`, a view).

    Returns ``(words, e)``; raises as `pack_weights_over_cols_torch`.
    """
    _check_pack_args(
        W_q, W_nbits, packing_bitwidth, W_q.shape[0] if isinstance(W_q, torch.Tensor) else 0, "rows"
    )
    words = _pack_last_axis(W_q.t(), W_nbits, packing_bitwidth).t().contiguous()
    return (words.t() if transpose else words), packing_bitwidth // W_nbits


def unpack_over_cols_torch(
    W_q_packed: torch.Tensor, W_nbits: int, num_output_cols: int, dtype: torch.dtype = torch.uint8
) -> torch.Tensor:
    """Inverse of `pack_weights_over_cols_torch`: ``[R, C / e]`` words -> ``[R, num_output_cols]`` codes
    of `dtype`. e follows from the words' dtype."""
    _check_unpack_args(W_q_packed, W_nbits, num_output_cols, dtype, "cols")
    return _unpack_last_axis(W_q_packed, W_nbits, num_output_cols, dtype)


def unpack_over_rows_torch(
    W_q_packed: torch.Tensor, W_nbits: int, num_output_rows: int, dtype: torch.dtype = torch.uint8
) -> torch.Tensor:
    """Inverse of `pack_weights_over_rows_torch`: ``[R / e, C]`` words -> ``[num_output_rows, C]`` codes
    of `dtype` (torchao's ``dequantize()`` calls it on GemLite's ``[K / e, N]`` weight)."""
    _check_unpack_args(W_q_packed, W_nbits, num_output_rows, dtype, "rows")
    return _unpack_last_axis(W_q_packed.t(), W_nbits, num_output_rows, dtype).t().contiguous()


# GemLite's Triton variants and default names: the same functions here.
pack_weights_over_cols_triton = pack_weights_over_cols_torch
pack_weights_over_rows_triton = pack_weights_over_rows_torch
unpack_over_cols_triton = unpack_over_cols_torch
unpack_over_rows_triton = unpack_over_rows_torch
pack_weights_over_rows = pack_weights_over_rows_torch
pack_weights_over_cols = pack_weights_over_cols_torch
unpack_over_rows = unpack_over_rows_torch
