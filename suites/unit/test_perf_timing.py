"""harness.timing's pure parts: statistics, how many weight copies and calls per replay, knob
validation, nvidia-smi parsing. (The CUDA-graph timer itself needs a GPU; the measurer's CPU path
is exercised in test_perf_measure.py.)"""

import math

import numpy as np
import pytest

from harness.timing import (
    GraphTimer,
    TimingConfig,
    calls_per_replay,
    parse_gpu_state,
    quantile,
    rotation_copies,
    summarize,
)

MB = 2**20


@pytest.mark.parametrize(
    "data", [[3.0], [1.0, 2.0], [5.0, 1.0, 4.0, 2.0, 3.0], list(np.linspace(1, 9, 17) ** 1.5)]
)
def test_summarize_matches_numpy(data):
    s = summarize(data)
    assert s.median == pytest.approx(np.median(data))
    assert s.q1 == pytest.approx(np.percentile(data, 25))
    assert s.q3 == pytest.approx(np.percentile(data, 75))
    assert (s.min, s.max, s.n) == (min(data), max(data), len(data))
    assert s.iqr == pytest.approx(s.q3 - s.q1)
    assert s.rel_iqr == pytest.approx((s.q3 - s.q1) / s.median)


@pytest.mark.parametrize("bad", [[], [1.0, 0.0], [1.0, -2.0], [1.0, math.nan], [math.inf]])
def test_summarize_rejects_non_timings(bad):
    with pytest.raises(ValueError, match="samples"):
        summarize(bad)


def test_quantile_checks():
    assert quantile([1.0, 3.0], 0.5) == 2.0
    with pytest.raises(ValueError):
        quantile([], 0.5)
    with pytest.raises(ValueError, match="q"):
        quantile([1.0], 1.5)


def test_rotation_copies_cover_twice_l2():
    cfg = TimingConfig()
    l2 = 50 * MB
    # A16W4 g128 4096x1024: 2 MiB of codes + 128 KiB of scales and zeros -> 48 copies for 100 MiB.
    small = 4096 * 1024 // 2 + 2 * 1024 * 32 * 2
    n = rotation_copies(small, l2, cfg)
    assert n * small >= 2 * l2 and (n - 1) * small < 2 * l2
    # A weight that dwarfs L2 still gets the minimum, so consecutive calls read different memory.
    assert rotation_copies(512 * MB, l2, cfg) == cfg.min_copies
    # The cap on total bytes wins over L2 coverage (but never below the minimum).
    capped = TimingConfig(max_rotation_bytes=10 * MB)
    assert rotation_copies(MB, l2, capped) == 10
    assert rotation_copies(64 * MB, l2, capped) == capped.min_copies
    with pytest.raises(ValueError, match="bytes_per_copy"):
        rotation_copies(0, l2, cfg)


def test_calls_per_replay():
    cfg = TimingConfig(target_replay_ms=1.0, max_calls_per_replay=2000)
    assert calls_per_replay(10.0, 4, cfg) == 100  # 1 ms / 10 us, a whole number of passes
    assert calls_per_replay(3.0, 48, cfg) == 336  # 334 wanted -> 7 whole passes of 48
    assert calls_per_replay(3000.0, 2, cfg) == 2  # one pass even when it is longer than the target
    assert calls_per_replay(0.01, 3, cfg) == 1998  # capped at the largest whole number of passes
    assert calls_per_replay(1.0, 5000, cfg) == 5000  # one pass is the floor even above the cap
    with pytest.raises(ValueError, match="est_call_us"):
        calls_per_replay(0.0, 2, cfg)
    with pytest.raises(ValueError, match="n_copies"):
        calls_per_replay(1.0, 0, cfg)


def test_calls_per_replay_whole_passes():
    cfg = TimingConfig()
    for est in (0.5, 2.0, 7.0, 40.0, 900.0):
        for n in (1, 2, 3, 48, 100):
            c = calls_per_replay(est, n, cfg)
            assert c % n == 0 and c >= n


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"l2_multiple": 0}, "l2_multiple"),
        ({"min_copies": 0}, "min_copies"),
        ({"replays": 2}, "replays"),
        ({"target_replay_ms": -1}, "target_replay_ms"),
        ({"max_calls_per_replay": 0}, "max_calls"),
        ({"warmup_replays": -1}, "warmup_replays"),
        ({"settle_ms": -1}, "settle_ms"),
        ({"settle_ms": float("nan")}, "settle_ms"),
        ({"max_rotation_bytes": 0}, "max_rotation_bytes"),
    ],
)
def test_timing_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        TimingConfig(**kw)


def test_graph_timer_needs_prepare():
    t = GraphTimer(lambda i: None, 2, TimingConfig())
    with pytest.raises(RuntimeError, match="prepare"):
        t.replay()
    with pytest.raises(ValueError, match="n_copies"):
        GraphTimer(lambda i: None, 0, TimingConfig())


def test_parse_gpu_state():
    assert parse_gpu_state("1980, 2619, 41, 250.31") == {
        "sm_mhz": 1980.0,
        "mem_mhz": 2619.0,
        "temp_c": 41.0,
        "power_w": 250.31,
    }
    assert parse_gpu_state("1755, [N/A], 38, [N/A]") == {
        "sm_mhz": 1755.0,
        "mem_mhz": None,
        "temp_c": 38.0,
        "power_w": None,
    }
