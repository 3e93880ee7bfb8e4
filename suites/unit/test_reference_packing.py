"""reference.packing: bit layout against hand-computed words, exact round trips, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref

U8 = torch.uint8


def codes_of(values: list[list[int]]) -> torch.Tensor:
    return torch.tensor(values, dtype=U8)


# --------------------------------------------------------------------------------------------
# Hand-computed words: least significant bits first, code k in word k // e at offset (k % e) * bits
# --------------------------------------------------------------------------------------------


def test_4bit_codes_one_to_eight_make_0x87654321():
    packed = ref.pack(codes_of([[1, 2, 3, 4, 5, 6, 7, 8]]), bits=4, word_bits=32)
    assert packed.dtype == torch.int32
    assert packed.shape == (1, 1)
    # 0x87654321 has its top bit set: the int32 holding that bit pattern is negative.
    assert packed.item() == 0x87654321 - 2**32
    assert packed.item() < 0


@pytest.mark.parametrize(
    ("bits", "word_bits", "codes", "words"),
    [
        (4, 8, [1, 2], [0x21]),
        (4, 8, [0xF, 0x0, 0x3, 0xC], [0x0F, 0xC3]),
        (2, 8, [1, 2, 3, 0], [0b00_11_10_01]),
        (1, 8, [1, 0, 1, 1, 0, 0, 0, 1], [0b1000_1101]),
        (8, 8, [7, 255], [7, 255]),
        (8, 32, [0x01, 0x02, 0x03, 0xFF], [0xFF030201]),
        (2, 32, [3] + [0] * 15, [0x00000003]),
        (1, 32, [1] * 32, [0xFFFFFFFF]),
    ],
)
def test_hand_computed_words(bits, word_bits, codes, words):
    """``words`` are the unsigned bit patterns; int32 words hold them as two's complement."""
    packed = ref.pack(codes_of([codes]), bits=bits, word_bits=word_bits)
    expected_dtype = torch.uint8 if word_bits == 8 else torch.int32
    assert packed.dtype == expected_dtype
    as_int = [int(w) for w in packed[0].tolist()]
    if word_bits == 32:
        words = [w - 2**32 if w >= 2**31 else w for w in words]
    assert as_int == words
    assert ref.unpack(packed, bits).tolist() == [codes]


def test_2bit_top_code_is_int32_min():
    packed = ref.pack(codes_of([[0] * 15 + [2]]), bits=2, word_bits=32)
    assert packed.item() == -(2**31)


def test_rows_pack_independently_along_k():
    codes = codes_of([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0], [0] * 16])
    packed = ref.pack(codes, bits=4, word_bits=32)
    assert packed.shape == (2, 2)
    assert packed[0].tolist() == [0x87654321 - 2**32, 0x0FEDCBA9]
    assert packed[1].tolist() == [0, 0]


def test_e2m1_pairs_put_even_k_in_the_low_nibble():
    # codes [3, 12] -> byte 0xC3: code 3 (k = 0) low, code 12 (k = 1) high.
    packed = ref.pack_e2m1(codes_of([[3, 12, 0, 15]]))
    assert packed.dtype == torch.uint8
    assert packed.tolist() == [[0xC3, 0xF0]]
    assert ref.unpack_e2m1(packed).tolist() == [[3, 12, 0, 15]]


def test_unpack_accepts_int8_words_as_bit_patterns():
    packed = torch.tensor([[-1, 0x21]], dtype=torch.int8)  # 0xFF, 0x21
    assert ref.unpack(packed, 4).tolist() == [[15, 15, 1, 2]]


def test_pack_supports_leading_dims():
    codes = torch.arange(16, dtype=U8).reshape(2, 1, 8)
    packed = ref.pack(codes, 4, word_bits=8)
    assert packed.shape == (2, 1, 4)
    assert torch.equal(ref.unpack(packed, 4), codes)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@settings(deadline=None, max_examples=60)
@given(
    bits=st.sampled_from([8, 4, 2, 1]),
    word_bits=st.sampled_from([8, 32]),
    n=st.integers(1, 5),
    words=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_is_exact(bits, word_bits, n, words, seed):
    per_word = word_bits // bits
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 1 << bits, (n, words * per_word), generator=gen).to(U8)
    packed = ref.pack(codes, bits, word_bits)
    assert packed.shape == (n, words)
    assert packed.dtype == (torch.uint8 if word_bits == 8 else torch.int32)
    assert torch.equal(ref.unpack(packed, bits), codes)
    assert torch.equal(ref.unpack(packed, bits, word_bits), codes)
    # Words round-trip too: every bit pattern of a word is some list of codes.
    assert torch.equal(ref.pack(ref.unpack(packed, bits), bits, word_bits), packed)


@settings(deadline=None, max_examples=30)
@given(n=st.integers(1, 4), pairs=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_e2m1_round_trip_matches_generic_packing(n, pairs, seed):
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (n, 2 * pairs), generator=gen).to(U8)
    packed = ref.pack_e2m1(codes)
    assert torch.equal(packed, codes[:, 0::2] | (codes[:, 1::2] << 4))
    assert torch.equal(ref.unpack_e2m1(packed), codes)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_unknown_bits_is_rejected():
    with pytest.raises(ValueError, match=r"bits: expected one of \(8, 4, 2, 1\), got 3"):
        ref.pack(codes_of([[1, 2, 3, 4]]), bits=3)
    with pytest.raises(ValueError, match="bits: expected one of"):
        ref.unpack(torch.zeros(1, 1, dtype=torch.int32), bits=16)
    with pytest.raises(TypeError, match="bits: expected a Python int"):
        ref.pack(codes_of([[1, 2]]), bits=4.0)


def test_unknown_word_bits_is_rejected():
    with pytest.raises(ValueError, match=r"word_bits: expected one of \(8, 32\), got 16"):
        ref.pack(codes_of([[1, 2, 3, 4]]), bits=4, word_bits=16)


def test_k_not_a_multiple_of_the_packing_factor():
    with pytest.raises(ValueError, match=r"codes: K=6 .* multiple of 8"):
        ref.pack(codes_of([[1] * 6]), bits=4, word_bits=32)
    with pytest.raises(ValueError, match=r"codes: K=3 .* multiple of 2"):
        ref.pack_e2m1(codes_of([[1, 2, 3]]))


def test_codes_out_of_range():
    with pytest.raises(ValueError, match=r"codes: codes must lie in \[0, 3\], found 4 at index \[0, 2\]"):
        ref.pack(codes_of([[0, 1, 4, 2]]), bits=2, word_bits=8)
    with pytest.raises(ValueError, match=r"codes: codes must lie in \[0, 15\]"):
        ref.pack_e2m1(codes_of([[16, 0]]))


def test_wrong_dtypes():
    with pytest.raises(TypeError, match=r"codes: expected dtype torch.uint8, got torch.int32"):
        ref.pack(torch.zeros(1, 8, dtype=torch.int32), bits=4)
    with pytest.raises(TypeError, match="codes: expected a torch.Tensor, got list"):
        ref.pack([[1, 2]], bits=4, word_bits=8)
    with pytest.raises(TypeError, match="packed: expected dtype torch.uint8 or torch.int8 or torch.int32"):
        ref.unpack(torch.zeros(1, 1, dtype=torch.int64), bits=4)


def test_word_bits_must_agree_with_the_packed_dtype():
    with pytest.raises(ValueError, match=r"word_bits: 32 contradicts packed.dtype torch.uint8"):
        ref.unpack(torch.zeros(1, 1, dtype=torch.uint8), bits=4, word_bits=32)
