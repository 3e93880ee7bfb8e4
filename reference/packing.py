"""Bit packing of integer codes along K, public GemLite's layout, written as plainly as possible.

``e = word_bits // bits`` codes share one word; code ``k`` of a row goes to word ``k // e`` at bit offset
``(k % e) * bits``, least significant bits first. The e2m1 pair packing of the FP4 formats is the
``bits=4, word_bits=8`` case: the even k in the low nibble.
"""

from __future__ import annotations

import torch

from ._checks import require_code_range, require_dtype, require_tensor

__all__ = ["pack", "unpack", "pack_e2m1", "unpack_e2m1", "PACK_BITS", "WORD_BITS"]

PACK_BITS = (8, 4, 2, 1)
WORD_BITS = (8, 32)
_WORD_DTYPE = {8: torch.uint8, 32: torch.int32}
_DTYPE_WORD_BITS = {torch.uint8: 8, torch.int8: 8, torch.int32: 32}


def _check_bits(bits: object) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"bits: expected a Python int, got {type(bits).__name__}")
    if bits not in PACK_BITS:
        raise ValueError(f"bits: expected one of {PACK_BITS}, got {bits}")
    return bits


def _check_word_bits(word_bits: object) -> int:
    if isinstance(word_bits, bool) or not isinstance(word_bits, int):
        raise TypeError(f"word_bits: expected a Python int, got {type(word_bits).__name__}")
    if word_bits not in WORD_BITS:
        raise ValueError(f"word_bits: expected one of {WORD_BITS}, got {word_bits}")
    return word_bits


def pack(codes: torch.Tensor, bits: int, word_bits: int = 32) -> torch.Tensor:
    """Pack unsigned ``bits``-bit codes along the last dimension into 8- or 32-bit words.

    codes: uint8 [..., K] (normally [N, K]) with values in [0, 2**bits - 1].
    bits: 8, 4, 2 or 1. word_bits: 8 (uint8 words) or 32 (int32 words).
    Returns [..., K // e] with e = word_bits // bits, dtype uint8 or int32. An int32 word holds the bit
    pattern, so a top code with its high bit set makes the int32 negative (code 8 in the last nibble of
    a 4-bit word gives a word < 0).
    Raises TypeError for a non-uint8 ``codes`` or a non-int ``bits``/``word_bits``; ValueError for
    unknown ``bits``/``word_bits``, a code out of range, a 0-D ``codes`` or K not a multiple of e.
    """
    bits = _check_bits(bits)
    word_bits = _check_word_bits(word_bits)
    require_tensor("codes", codes)
    require_dtype("codes", codes, (torch.uint8,))
    if codes.dim() == 0:
        raise ValueError("codes: expected at least one dimension (the K axis to pack), got a 0-D tensor")
    per_word = word_bits // bits
    k = codes.shape[-1]
    if k % per_word:
        raise ValueError(
            f"codes: K={k} (last dimension) must be a multiple of {per_word} "
            f"({per_word} {bits}-bit codes per {word_bits}-bit word)"
        )
    require_code_range("codes", codes, 0, (1 << bits) - 1)

    grouped = codes.to(torch.int64).reshape(*codes.shape[:-1], k // per_word, per_word)
    shifts = torch.arange(per_word, device=codes.device, dtype=torch.int64) * bits
    words = (grouped << shifts).sum(dim=-1)  # disjoint bit fields: the sum is the bitwise or
    if word_bits == 32:
        words = torch.where(words >= 2**31, words - 2**32, words)  # the same bits read as int32
    return words.to(_WORD_DTYPE[word_bits])


def unpack(packed: torch.Tensor, bits: int, word_bits: int | None = None) -> torch.Tensor:
    """Inverse of `pack`: split each word of the last dimension into ``e = word_bits // bits`` codes.

    packed: [..., W] words, uint8 or int8 (8-bit words) or int32 (32-bit words).
    bits: 8, 4, 2 or 1. word_bits: None reads it from the dtype; if given it must agree with the dtype.
    Returns uint8 [..., W * e], code k taken from word k // e at bit offset (k % e) * bits.
    Raises TypeError for another dtype, ValueError for unknown ``bits`` or a ``word_bits`` that
    contradicts the dtype.
    """
    bits = _check_bits(bits)
    require_tensor("packed", packed)
    require_dtype("packed", packed, tuple(_DTYPE_WORD_BITS))
    if packed.dim() == 0:
        raise ValueError("packed: expected at least one dimension (the packed K axis), got a 0-D tensor")
    dtype_bits = _DTYPE_WORD_BITS[packed.dtype]
    if word_bits is None:
        word_bits = dtype_bits
    word_bits = _check_word_bits(word_bits)
    if word_bits != dtype_bits:
        raise ValueError(
            f"word_bits: {word_bits} contradicts packed.dtype {packed.dtype} ({dtype_bits}-bit words)"
        )

    per_word = word_bits // bits
    words = packed.to(torch.int64) & ((1 << word_bits) - 1)  # the unsigned bit pattern of each word
    shifts = torch.arange(per_word, device=packed.device, dtype=torch.int64) * bits
    codes = (words.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(*packed.shape[:-1], packed.shape[-1] * per_word).to(torch.uint8)


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """Pack unpacked e2m1 codes (0..15) two per byte, the even k in the low nibble.

    codes: uint8 [..., K], K even. Returns uint8 [..., K // 2]: byte j = codes[2j] | codes[2j + 1] << 4.
    Raises as `pack` (this is ``pack(codes, 4, word_bits=8)``).
    """
    return pack(codes, 4, word_bits=8)


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of `pack_e2m1`. packed: uint8 [..., W]. Returns uint8 codes [..., 2 * W]."""
    require_tensor("packed", packed)
    require_dtype("packed", packed, (torch.uint8,))
    return unpack(packed, 4, word_bits=8)
