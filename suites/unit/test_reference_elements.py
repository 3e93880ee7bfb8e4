"""reference.elements: e2m1, e4m3 and e8m0 against hand-computed values and independent oracles."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from gemlite.formats import E2M1_VALUES

F64 = torch.float64


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


# --------------------------------------------------------------------------------------------
# e2m1
# --------------------------------------------------------------------------------------------


def test_e2m1_table_decodes_every_code():
    decoded = ref.e2m1_to_float(torch.arange(16, dtype=torch.uint8))
    assert decoded.dtype == F64
    assert decoded.tolist() == list(E2M1_VALUES)
    assert decoded[8].item() == 0.0 and math.copysign(1.0, decoded[8].item()) == -1.0


def test_e2m1_encodes_every_table_value_to_its_code():
    for code, value in enumerate(E2M1_VALUES[:8]):
        assert ref.float_to_e2m1(f64([value])).item() == code
        if value:
            assert ref.float_to_e2m1(f64([-value])).item() == code + 8


@pytest.mark.parametrize(
    ("x", "value"),
    # Ties go to the even mantissa (even code): 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2,
    # 3.5 -> 4, 5 -> 4; the same mirrored for negatives.
    [
        (0.25, 0.0),
        (0.75, 1.0),
        (1.25, 1.0),
        (1.75, 2.0),
        (2.5, 2.0),
        (3.5, 4.0),
        (5.0, 4.0),
        (-0.75, -1.0),
        (-1.25, -1.0),
        (-3.5, -4.0),
        (-5.0, -4.0),
        # just off the ties, plain nearest
        (0.2500001, 0.5),
        (0.7499999, 0.5),
        (4.9999, 4.0),
        (5.0001, 6.0),
        # saturation and zeros
        (6.0, 6.0),
        (7.0, 6.0),
        (1e30, 6.0),
        (-1e30, -6.0),
        (math.inf, 6.0),
        (-math.inf, -6.0),
        (0.0, 0.0),
        (-0.0, 0.0),
        (-0.1, 0.0),
    ],
)
def test_e2m1_rounding(x, value):
    code = ref.float_to_e2m1(f64([x]))
    assert code.dtype == torch.uint8
    assert ref.e2m1_to_float(code).item() == value


def test_e2m1_zero_is_always_code_0():
    # The documented choice: -0.0 and negatives rounding to zero give code 0, never 8.
    assert ref.float_to_e2m1(f64([-0.0, -0.25, -1e-9, 0.0])).tolist() == [0, 0, 0, 0]


def _nearest_e2m1_brute_force(x: float) -> int:
    """Independent oracle: scan the table; ties to the even magnitude code; zero results are code 0."""
    a = min(abs(x), 6.0)
    best = min(range(8), key=lambda c: (abs(E2M1_VALUES[c] - a), c % 2))
    return best + 8 if x < 0 and best else best


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.5, 2.0, 8.0]))
def test_e2m1_matches_brute_force_nearest(seed, scale):
    gen = torch.Generator().manual_seed(seed)
    # quarters hit every tie exactly; the random part fills in between
    x = torch.cat([torch.arange(-32, 33, dtype=F64) / 4, torch.randn(200, generator=gen, dtype=F64) * scale])
    got = ref.float_to_e2m1(x).tolist()
    assert got == [_nearest_e2m1_brute_force(v) for v in x.tolist()]


def test_e2m1_rejects_nan_and_bad_codes():
    with pytest.raises(ValueError, match="x: contains NaN"):
        ref.float_to_e2m1(f64([1.0, math.nan]))
    with pytest.raises(ValueError, match=r"codes: codes must lie in \[0, 15\], found 16"):
        ref.e2m1_to_float(torch.tensor([16], dtype=torch.uint8))
    with pytest.raises(TypeError, match="codes: expected dtype torch.uint8, got torch.int64"):
        ref.e2m1_to_float(torch.tensor([1]))
    with pytest.raises(TypeError, match="x: expected a floating-point tensor"):
        ref.float_to_e2m1(torch.tensor([1]))


# --------------------------------------------------------------------------------------------
# e4m3fn
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "value"),
    [
        (17.0, 16.0),  # tie between 16 (mantissa 000) and 18 (001): even
        (19.0, 20.0),  # tie between 18 (001) and 20 (010): even
        (0.1, 0.1015625),  # binade [2**-4, 2**-3), step 2**-7: 12.8 steps -> 13
        (3 * 2.0**-10, 2.0**-8),  # subnormal tie between 2**-9 and 2 * 2**-9: even
        (2.0**-11, 0.0),  # below half the smallest subnormal
        (448.0, 448.0),
        (460.0, 448.0),  # above the top: saturates
        (1e9, 448.0),
        (-1e9, -448.0),
        (math.inf, 448.0),
    ],
)
def test_e4m3_known_values(x, value):
    out = ref.float_to_e4m3(f64([x]))
    assert out.dtype == torch.float8_e4m3fn
    assert ref.e4m3_to_float(out).item() == value


def test_e4m3_matches_torch_cast_on_every_fp16_value():
    # Independent oracle: torch's own RNE cast, single rounding from fp16/fp32.
    every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.float16)
    every = every[torch.isfinite(every)]
    ours = ref.float_to_e4m3(every).view(torch.uint8)
    theirs = every.float().clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
    assert torch.equal(ours, theirs)


def test_e4m3_matches_torch_cast_on_exact_ties_in_fp32():
    grid = torch.arange(0, 127, dtype=torch.uint8).view(torch.float8_e4m3fn).float()  # 0 .. 448
    ties = (grid[:-1] + grid[1:]) / 2  # exact in fp32
    x = torch.cat([ties, -ties])
    assert torch.equal(ref.float_to_e4m3(x).view(torch.uint8), x.to(torch.float8_e4m3fn).view(torch.uint8))


# --------------------------------------------------------------------------------------------
# e8m0
# --------------------------------------------------------------------------------------------


def test_e8m0_decode():
    out = ref.e8m0_to_float(torch.tensor([127, 0, 128, 126, 254, 255], dtype=torch.uint8))
    assert out.dtype == F64
    assert out[:5].tolist() == [1.0, 2.0**-127, 2.0, 0.5, 2.0**127]
    assert math.isnan(out[5].item())


def test_e8m0_encode():
    out = ref.float_to_e8m0(f64([1.0, 2.0**-127, 2.0, 0.5, 2.0**127, math.nan]))
    assert out.dtype == torch.uint8
    assert out.tolist() == [127, 0, 128, 126, 254, 255]


def test_e8m0_round_trips_every_byte():
    every = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    assert torch.equal(ref.float_to_e8m0(ref.e8m0_to_float(every)), every)


def test_e8m0_reads_float8_e8m0fnu_as_its_bit_pattern():
    # Public GemLite bug: a numeric .to(e8m0) turns byte 127 into 2**7; the byte means 2**0.
    as_e8m0 = torch.tensor([127, 130], dtype=torch.uint8).view(torch.float8_e8m0fnu)
    assert ref.e8m0_to_float(as_e8m0).tolist() == [1.0, 8.0]


@pytest.mark.parametrize("bad", [3.0, 0.0, -2.0, 2.0**-128, 2.0**128, math.inf])
def test_e8m0_encode_rejects_values_off_its_grid(bad):
    with pytest.raises(ValueError, match="power_of_two: expected powers of two"):
        ref.float_to_e8m0(f64([1.0, bad]))


def test_e8m0_rejects_wrong_dtypes():
    with pytest.raises(TypeError, match="scales: expected dtype torch.uint8 or torch.float8_e8m0fnu"):
        ref.e8m0_to_float(torch.tensor([127], dtype=torch.int32))
    with pytest.raises(TypeError, match="power_of_two: expected a floating-point tensor"):
        ref.float_to_e8m0(torch.tensor([1]))


# --------------------------------------------------------------------------------------------
# Integer rounding
# --------------------------------------------------------------------------------------------


def test_round_half_away_from_zero():
    x = f64([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994, -0.49999999999999994, 2.4, -2.6, 0.0])
    assert ref.round_half_away_from_zero(x).tolist() == [1, 2, 3, -1, -2, -3, 0, 0, 2, -3, 0]
    # torch.round would give the even neighbours instead
    assert ref.round_half_to_even(x[:6]).tolist() == [0, 2, 2, -0.0, -2, -2]
