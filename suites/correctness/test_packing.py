"""`gemlite.packing` is exact: round trips, GemLite's bit layout, agreement with `reference.pack`."""

from __future__ import annotations

import pytest
import torch

import reference as ref
from gemlite.packing import pack_codes, unpack_codes

BITS = (1, 2, 4, 8)
WORDS = (8, 32)
CASES = [(b, w) for b in BITS for w in WORDS]


def _codes(bits: int, N: int = 5, K: int = 96, seed: int = 0, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << bits, (N, K), generator=g, dtype=torch.uint8)
    codes[0, :] = (1 << bits) - 1  # a row of top codes: sets every bit, incl. the int32 sign bit
    return codes.to(device)


@pytest.mark.parametrize("bits,word_bits", CASES)
def test_round_trip(bits, word_bits, device):
    codes = _codes(bits, device=device)
    packed = pack_codes(codes, bits, word_bits)
    per_word = word_bits // bits
    assert packed.shape == (5, 96 // per_word)
    assert packed.dtype == (torch.uint8 if word_bits == 8 else torch.int32)
    assert packed.device == codes.device
    assert torch.equal(unpack_codes(packed, bits, 96), codes)


@pytest.mark.parametrize("bits,word_bits", CASES)
def test_matches_reference_pack(bits, word_bits):
    """Our packer and the reference's agree bit for bit, both ways."""
    codes = _codes(bits, N=7, K=128, seed=bits * word_bits)
    ours, theirs = pack_codes(codes, bits, word_bits), ref.pack(codes, bits, word_bits)
    assert torch.equal(ours, theirs)
    assert torch.equal(unpack_codes(theirs, bits, 128), codes)
    assert torch.equal(ref.unpack(ours, bits), codes)


def test_bit_layout_least_significant_first():
    """Code k sits in word k // e at bit offset (k % e) * bits (GemLite's layout)."""
    nibbles = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]], dtype=torch.uint8)
    word = pack_codes(nibbles, 4, 32)
    assert word.item() == 0x87654321 - 2**32  # top nibble 8 sets the sign bit of the int32
    pairs = torch.tensor([[3, 0, 1, 2]], dtype=torch.uint8)
    assert pack_codes(pairs, 2, 8).item() == 3 | (0 << 2) | (1 << 4) | (2 << 6)
    bits = torch.tensor([[1, 0, 0, 0, 0, 0, 0, 1]], dtype=torch.uint8)
    assert pack_codes(bits, 1, 8).item() == 0b10000001
    assert torch.equal(pack_codes(_codes(8), 8, 8), _codes(8))  # one 8-bit code per byte: identity


def test_unpack_accepts_same_width_views():
    """int8 views of 8-bit words and uint32 views of 32-bit words hold the same bits."""
    codes = _codes(4, K=64)
    w8, w32 = pack_codes(codes, 4, 8), pack_codes(codes, 4, 32)
    assert torch.equal(unpack_codes(w8.view(torch.int8), 4, 64), codes)
    assert torch.equal(unpack_codes(w32.view(torch.uint32), 4, 64), codes)


def test_pack_refuses_bad_input():
    codes = _codes(4, K=64)
    with pytest.raises(ValueError, match="bits"):
        pack_codes(codes, 3)
    with pytest.raises(ValueError, match="word_bits"):
        pack_codes(codes, 4, 16)
    with pytest.raises(TypeError, match="codes"):
        pack_codes(codes.to(torch.int8), 4)
    with pytest.raises(ValueError, match="codes"):
        pack_codes(codes[0], 4)
    with pytest.raises(ValueError, match=r"K = 36"):
        pack_codes(codes[:, :36], 4, 32)
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        pack_codes(codes + 16, 4)


def test_unpack_refuses_bad_input():
    packed = pack_codes(_codes(2, K=64), 2, 32)
    with pytest.raises(TypeError, match="packed"):
        unpack_codes(packed.float(), 2, 64)
    with pytest.raises(ValueError, match="K"):
        unpack_codes(packed, 2, 96)
    with pytest.raises(ValueError, match="packed"):
        unpack_codes(packed[0], 2, 64)
    with pytest.raises(ValueError, match="bits"):
        unpack_codes(packed, 5, 64)
