"""Bit packing of unsigned integer weight codes, in public GemLite's layout.

``e = word_bits // bits`` codes share one word, packed along K (the input-feature axis) with the least
significant bits first: code ``k`` of a row sits in word ``k // e`` at bit offset ``(k % e) * bits``.
A ``[N, K]`` code matrix packs to ``[N, K // e]`` words: uint8 for 8-bit words, int32 for 32-bit words
(an int32 holds the same 32 bits a uint32 would; the top code may make it negative).

These functions run in plain PyTorch on any device; they are used at pack time, not in the forward
pass. The kernels' own physical layout (transposed, see ``gemlite/kernels/layout.py``) is derived
from this one.
"""

from __future__ import annotations

import torch

PACK_BITS = (1, 2, 4, 8)
WORD_BITS = (8, 32)
_WORD_DTYPES = {8: torch.uint8, 32: torch.int32}
# Integer dtypes accepted as packed words, by width (a uint32 or int8 view holds the same bits).
_PACKED_DTYPES = {torch.uint8: 8, torch.int8: 8, torch.int32: 32, torch.uint32: 32}


def _check_bits(bits: int, word_bits: int) -> int:
    """Validate (bits, word_bits); return codes per word."""
    if not isinstance(bits, int) or bits not in PACK_BITS:
        raise ValueError(f"bits: expected one of {PACK_BITS}, got {bits!r}")
    if not isinstance(word_bits, int) or word_bits not in WORD_BITS:
        raise ValueError(f"word_bits: expected one of {WORD_BITS}, got {word_bits!r}")
    return word_bits // bits


def pack_codes(codes: torch.Tensor, bits: int, word_bits: int = 32) -> torch.Tensor:
    """Pack unsigned `bits`-bit codes along K into words of `word_bits` bits.

    codes: uint8 ``[N, K]``, every value in ``[0, 2**bits - 1]``; K must be a multiple of
        ``word_bits // bits``.
    bits: 1, 2, 4 or 8.  word_bits: 8 (uint8 words) or 32 (int32 words).
    Returns ``[N, K // (word_bits // bits)]`` uint8 or int32, on codes' device.
    Raises TypeError for a non-uint8 `codes`, ValueError for a bad shape, bit width or code range.
    """
    per_word = _check_bits(bits, word_bits)
    if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8:
        got = codes.dtype if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise TypeError(f"codes: expected a uint8 tensor, got {got}")
    if codes.dim() != 2:
        raise ValueError(f"codes: expected a 2-D [N, K] tensor, got shape {tuple(codes.shape)}")
    n, k = codes.shape
    if k % per_word != 0:
        raise ValueError(
            f"codes: K = {k} must be a multiple of {per_word} ({word_bits}-bit words of {bits}-bit codes)"
        )
    if codes.numel() > 0 and int(codes.max()) > (1 << bits) - 1:
        raise ValueError(
            f"codes: {bits}-bit codes must lie in [0, {(1 << bits) - 1}], got max {int(codes.max())}"
        )
    # Fields are disjoint, so summing the shifted codes is a bitwise OR; int64 holds a full 32-bit word.
    shifts = torch.arange(per_word, device=codes.device, dtype=torch.int64) * bits
    words = (codes.view(n, k // per_word, per_word).to(torch.int64) << shifts).sum(dim=-1)
    if word_bits == 32:
        words = torch.where(words >= 2**31, words - 2**32, words)  # the uint32 bit pattern as an int32
    return words.to(_WORD_DTYPES[word_bits])


def unpack_codes(packed: torch.Tensor, bits: int, K: int) -> torch.Tensor:
    """Inverse of `pack_codes`: recover the uint8 ``[N, K]`` codes from packed words.

    packed: ``[N, K // e]`` words; uint8/int8 means 8-bit words, int32/uint32 means 32-bit words.
    bits: the code width (1, 2, 4 or 8).  K: the number of codes per row.
    Raises TypeError for another dtype, ValueError when the shape does not match K.
    """
    if not isinstance(packed, torch.Tensor) or packed.dtype not in _PACKED_DTYPES:
        got = packed.dtype if isinstance(packed, torch.Tensor) else type(packed).__name__
        raise TypeError(f"packed: expected uint8, int8, int32 or uint32 words, got {got}")
    word_bits = _PACKED_DTYPES[packed.dtype]
    per_word = _check_bits(bits, word_bits)
    if packed.dim() != 2:
        raise ValueError(
            f"packed: expected a 2-D [N, K // {per_word}] tensor, got shape {tuple(packed.shape)}"
        )
    if not isinstance(K, int) or K <= 0 or K % per_word != 0 or packed.shape[1] != K // per_word:
        raise ValueError(
            f"K: {K!r} does not match packed shape {tuple(packed.shape)} "
            f"({per_word} {bits}-bit codes per {word_bits}-bit word)"
        )
    if packed.dtype == torch.uint32:
        packed = packed.view(torch.int32)
    words = packed.to(torch.int64) & ((1 << word_bits) - 1)  # undo sign extension of int8/int32 words
    shifts = torch.arange(per_word, device=packed.device, dtype=torch.int64) * bits
    codes = (words.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(packed.shape[0], K).to(torch.uint8)
