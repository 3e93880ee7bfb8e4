"""`gemlite.autotune` and `gemlite.dispatch`: modes, M buckets, cache keys, legality of tiles, the
tuner's choice and its JSON cache, forced configs, and the family chosen for each M."""

from __future__ import annotations

import json

import pytest
import torch

from gemlite import autotune
from gemlite.autotune import FAMILIES, Config
from gemlite.dispatch import choose_matmul_type
from gemlite.formats import FORMATS, Zeros
from gemlite.layout import WeightLayout
from gemlite.settings import set_deterministic


def _layout(bits=4, group=128, K=4096, N=4096, zeros=Zeros.FLOAT, dtype=torch.float16, word_bits=32):
    fmt = FORMATS[f"A16W{bits}_HQQ_INT"].with_group_size(group).with_zeros(zeros)
    zero_int = 1 if zeros is Zeros.INT else None
    return WeightLayout(fmt, K, N, K if group is None else group, word_bits, dtype, zero_int)


LAYOUT = _layout()


@pytest.fixture(autouse=True)
def _clean_state():
    """Every test starts from an empty cache in "fast" mode, and leaves it so."""
    mode = autotune.get_autotune()
    autotune.reset_config()
    autotune.set_autotune("fast")
    yield
    autotune.reset_config()
    autotune.set_autotune(mode)
    set_deterministic(True)


class FakeTimer:
    """Times candidates by a table (ms), counting calls; a config not in the table raises."""

    def __init__(self, times: dict[Config, float] | None = None, default: float = 10.0):
        self.times, self.default, self.calls = times or {}, default, []

    def __call__(self, cfg: Config) -> float:
        self.calls.append(cfg)
        return self.times.get(cfg, self.default)


# ------------------------------------------------------------------------------------------------
# Modes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "max", False])
def test_set_autotune_reads_back(mode):
    autotune.set_autotune(mode)
    assert autotune.get_autotune() == mode


@pytest.mark.parametrize("bad", ["default", "MAX", None, 1, "slow"])
def test_set_autotune_rejects_unknown_modes(bad):
    with pytest.raises(ValueError, match="mode"):
        autotune.set_autotune(bad)
    assert autotune.get_autotune() == "fast"


def test_set_autotune_true_means_max():
    autotune.set_autotune(True)  # public GemLite's spelling of "max"
    assert autotune.get_autotune() == "max"


# ------------------------------------------------------------------------------------------------
# M buckets and keys
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "M,bucket",
    [(1, 1), (2, 2), (3, 4), (5, 8), (16, 16), (17, 24), (33, 48), (64, 64), (65, 96), (129, 192),
     (2049, 3072), (4096, 4096), (4097, 4096), (100_000, 4096)],
)  # fmt: skip
def test_m_bucket(M, bucket):
    assert autotune.m_bucket(M) == bucket


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_m_bucket_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="M"):
        autotune.m_bucket(bad)


def test_key_holds_everything_that_changes_the_best_config():
    base = autotune.config_key(3, LAYOUT, torch.float16, torch.float16)
    for part in ("M=4", "N=4096", "K=4096", "group=128", "weight=hqq4", "word=32", "zeros=float",
                 "scales=float16", "act=float16", "out=float16", "det=1"):  # fmt: skip
        assert part in base, f"{part} missing from {base}"
    assert autotune.config_key(4, LAYOUT, torch.float16, torch.float16) == base  # same bucket
    variants = [
        autotune.config_key(5, LAYOUT, torch.float16, torch.float16),
        autotune.config_key(3, _layout(N=2048), torch.float16, torch.float16),
        autotune.config_key(3, _layout(K=8192), torch.float16, torch.float16),
        autotune.config_key(3, _layout(group=64), torch.float16, torch.float16),
        autotune.config_key(3, _layout(bits=2), torch.float16, torch.float16),
        autotune.config_key(3, _layout(word_bits=8), torch.float16, torch.float16),
        autotune.config_key(3, _layout(zeros=Zeros.INT), torch.float16, torch.float16),
        autotune.config_key(3, _layout(dtype=torch.bfloat16), torch.float16, torch.float16),
        autotune.config_key(3, LAYOUT, torch.float32, torch.float16),
        autotune.config_key(3, LAYOUT, torch.float16, torch.bfloat16),
    ]
    set_deterministic(False)
    variants.append(autotune.config_key(3, LAYOUT, torch.float16, torch.float16))
    assert len(set(variants + [base])) == len(variants) + 1


# ------------------------------------------------------------------------------------------------
# Config spaces and legality
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_spaces_nest_and_are_small(family):
    fast, full, default = (autotune.configs(family, m) for m in ("fast", "max", False))
    assert fast and default and set(fast) <= set(full) and set(default) <= set(full)
    # GEMM: 12, and 2 legal only for the codes scratch layouts (A8W4 / A8W2 HQQ dynamic).
    limit = 14 if family == "GEMM" else 12
    assert len(full) <= limit, "the compile-only suite compiles every config: keep the spaces moderate"
    assert len(set(full)) == len(full)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("group", [32, 64, 96, 128, 256, None])
def test_every_layout_has_legal_tiles_in_every_mode(family, group):
    K = 768 if group == 96 else 4096
    layout = _layout(group=group, K=K)
    for mode in ("fast", "max", False):
        legal = autotune.legal_configs(family, layout, mode)
        assert legal, f"{family} has no legal {mode} config for group {group}"
        for cfg in legal:
            assert group is None or group % cfg.BLOCK_K == 0  # one scale group per K step
            if family.startswith("GEMV"):
                assert cfg.BLOCK_K % layout.elems_per_word == 0  # whole packed words per K step
    assert autotune.default_config(family, layout, interpreter=True) in autotune.interpreter_configs(family)


def test_illegal_tiles_are_named():
    g32 = _layout(group=32)
    assert "straddle" in autotune.illegal_reason("GEMM", Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=64), g32)
    assert "straddle" in autotune.illegal_reason("GEMV_REVSPLITK", Config(BLOCK_N=64, BLOCK_K=64), g32)
    # A GEMV_REVSPLITK program takes two K steps of BLOCK_K, each reading its own scale group.
    assert autotune.illegal_reason("GEMV_REVSPLITK", Config(BLOCK_N=64, BLOCK_K=32), g32) is None
    assert autotune.illegal_reason("GEMV_REVSPLITK", Config(BLOCK_N=64, BLOCK_K=16), g32) is None
    # GEMV families read whole packed words: 1-bit codes in 32-bit words need BLOCK_K % 32 == 0.
    assert "whole words" in autotune.illegal_reason("GEMV", Config(BLOCK_N=64, BLOCK_K=16), _layout(bits=1))
    assert "BLOCK_M" in autotune.illegal_reason("GEMV", Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32), g32)
    assert "<= 2" in autotune.illegal_reason("GEMV_SPLITK", Config(BLOCK_M=4, BLOCK_N=64, BLOCK_K=32), g32)
    assert autotune.illegal_reason("GEMV", Config(BLOCK_M=2, BLOCK_N=64, BLOCK_K=32), g32) is None
    assert ">= 16" in autotune.illegal_reason("GEMM_SPLITK", Config(BLOCK_M=8, BLOCK_N=64, BLOCK_K=32), g32)
    rev_split = Config(BLOCK_N=64, BLOCK_K=32, SPLIT_K=2)
    assert "SPLIT_K" in autotune.illegal_reason("GEMV_REVSPLITK", rev_split, g32)
    assert "SPLIT_K" in autotune.illegal_reason(
        "GEMM", Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=2, DEQUANT=1), g32
    )
    assert autotune.illegal_reason("GEMM", Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=2), g32) is None
    # Channel-wise: no group to straddle, any K tile is fine.
    assert (
        autotune.illegal_reason("GEMM", Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128), _layout(group=None))
        is None
    )


def test_dequant_tiles_follow_the_layout():
    """DEQUANT=1: cuBLAS's tiles on weight-only layouts (the codes scratch's tiles are legal there but
    not candidates); the codes scratch's 8-bit GEMM tiles (BLOCK_M >= 64) on A8W4 / A8W2 HQQ dynamic;
    one cuBLAS fp8 candidate on A8W8_FP8_dynamic; none on the other per-token dynamic formats."""
    dq16 = Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, DEQUANT=1)
    dq64 = Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, DEQUANT=1)
    a16 = _layout(group=32)
    a8w4 = WeightLayout(FORMATS["A8W4_HQQ_INT_dynamic"].with_group_size(128), 4096, 4096, 128, 32,
                        torch.float16)  # fmt: skip
    a8w8 = WeightLayout(FORMATS["A8W8_INT8_dynamic"], 4096, 4096, 4096, 8, torch.float16)
    fp8 = WeightLayout(FORMATS["A8W8_FP8_dynamic"], 4096, 4096, 4096, 8, torch.float16)
    assert not a16.codes_scratch and a8w4.codes_scratch and not a8w8.codes_scratch and not fp8.codes_scratch
    assert fp8.fp8_scaled_mm and not (a8w8.fp8_scaled_mm or a8w4.fp8_scaled_mm or a16.fp8_scaled_mm)
    assert [c for c in autotune.legal_configs("GEMM", fp8, "max") if c.DEQUANT] == [dq for dq in
            autotune.configs("GEMM", "max") if dq.DEQUANT][:1]  # fmt: skip
    assert autotune.illegal_reason("GEMM", dq16, a16) is None
    assert autotune.illegal_reason("GEMM", dq64, a16) is None
    scratch_tiles = [c for c in autotune.configs("GEMM", "max") if c.DEQUANT and c.BLOCK_M >= 64]
    assert scratch_tiles and not set(scratch_tiles) & set(autotune.legal_configs("GEMM", a16, "max"))
    assert set(scratch_tiles) <= set(autotune.legal_configs("GEMM", a8w4, "max"))
    assert autotune.illegal_reason("GEMM", dq64, a8w4) is None
    assert ">= 64" in autotune.illegal_reason("GEMM", dq16, a8w4)
    assert "would not multiply" in autotune.illegal_reason("GEMM", dq16, a8w8)
    assert "would not multiply" in autotune.illegal_reason("GEMM", dq64, a8w8)
    assert any(c.DEQUANT for c in autotune.legal_configs("GEMM", a8w4, "fast"))
    assert not any(c.DEQUANT for c in autotune.legal_configs("GEMM", a8w8, "max"))
    # microscaled dynamic formats: both operands dequantized for cuBLAS (cuBLAS's tiles, not the scratch's)
    nvfp4 = WeightLayout(FORMATS["A4W4_NVFP_dynamic"], 4096, 4096, 16, 32, torch.float16)
    assert nvfp4.operands_scratch and not nvfp4.codes_scratch and not a8w8.operands_scratch
    assert not a16.operands_scratch and not a8w4.operands_scratch
    nv_dequant = [c for c in autotune.legal_configs("GEMM", nvfp4, "max") if c.DEQUANT]
    assert nv_dequant and not set(nv_dequant) & set(scratch_tiles)


def test_config_validation():
    with pytest.raises(ValueError, match="BLOCK_N"):
        Config(BLOCK_N=48)
    with pytest.raises(ValueError, match="num_stages"):
        Config(num_stages=0)
    with pytest.raises(ValueError, match="unknown field"):
        Config.from_dict({"BLOCK_N": 64, "BLOCK_SIZE_K": 32})
    cfg = Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, SPLIT_K=2, num_warps=8)
    assert Config.from_dict(cfg.as_dict()) == cfg
    with pytest.raises(ValueError, match="family"):
        autotune.configs("GEMV2", "fast")
    with pytest.raises(ValueError, match="mode"):
        autotune.configs("GEMV", "slow")


# ------------------------------------------------------------------------------------------------
# Choosing a config: forced > cached > (interpreter | mode False | no timer: default) > tuned
# ------------------------------------------------------------------------------------------------


def test_tuner_picks_the_fastest_legal_candidate_once():
    layout = _layout(group=32)  # rules out the 64-wide K tiles: they must not even be timed
    candidates = autotune.legal_configs("GEMM", layout, "fast")
    fastest = candidates[-1]
    timer = FakeTimer({fastest: 1.0})
    got = autotune.get_config("GEMM", 100, layout, torch.float16, torch.float16, timer=timer)
    assert got == fastest
    assert timer.calls == candidates
    again = autotune.get_config("GEMM", 120, layout, torch.float16, torch.float16, timer=timer)  # same bucket
    assert again == fastest and len(timer.calls) == len(candidates), "a cached key is not re-timed"
    key = autotune.config_key(100, layout, torch.float16, torch.float16)
    assert autotune.cached_config("GEMM", key) == fastest


def test_max_mode_times_the_larger_space():
    autotune.set_autotune("max")
    timer = FakeTimer()
    autotune.get_config("GEMV", 1, LAYOUT, torch.float16, torch.float16, timer=timer)
    assert timer.calls == autotune.legal_configs("GEMV", LAYOUT, "max", M=1)
    assert len(timer.calls) > len(autotune.legal_configs("GEMV", LAYOUT, "fast", M=1))


@pytest.mark.parametrize("M", [1, 2, 3])
def test_gemv_candidates_and_defaults_suit_the_rows(M):
    # A second row per program at M = 1 is wasted work, one row per program at M >= 2 streams the
    # weight once per row: the tuner times only the tiles with BLOCK_M = min(M, 2), and the heuristic
    # and the interpreter pick one.
    timer = FakeTimer()
    got = autotune.get_config("GEMV", M, LAYOUT, torch.float16, torch.float16, timer=timer)
    assert timer.calls and {c.BLOCK_M for c in timer.calls} == {min(M, 2)} and got in timer.calls
    fast = autotune.legal_configs("GEMV", LAYOUT, "fast")
    assert set(timer.calls) == {c for c in fast if c.BLOCK_M == min(M, 2)}
    assert autotune.default_config("GEMV", LAYOUT, M=M).BLOCK_M == min(M, 2)
    autotune.reset_config()
    autotune.set_autotune(False)
    assert autotune.get_config("GEMV", M, LAYOUT, torch.float16, None).BLOCK_M == min(M, 2)
    interp = autotune.get_config("GEMV", M, LAYOUT, torch.float16, None, interpreter=True)
    assert interp in autotune.interpreter_configs("GEMV") and interp.BLOCK_M == min(M, 2)
    # A family whose interpreter tiles all take one row serves any M with them.
    assert autotune.get_config("GEMV_SPLITK", M, LAYOUT, torch.float16, None, interpreter=True).BLOCK_M == 1


def test_failing_candidates_are_skipped_and_all_failing_raises():
    cands = autotune.legal_configs("GEMV", LAYOUT, "fast", M=1)

    def timer(cfg):
        if cfg != cands[2]:
            raise RuntimeError("out of resources")
        return 5.0

    with pytest.warns(UserWarning, match="GEMV autotune skipped .* out of resources"):
        assert autotune.get_config("GEMV", 1, LAYOUT, torch.float16, None, timer=timer) == cands[2]

    def broken(cfg):
        raise RuntimeError("no GPU")

    with pytest.raises(RuntimeError, match="every GEMM candidate config failed"):
        autotune.get_config("GEMM", 100, LAYOUT, torch.float16, None, timer=broken)


@pytest.mark.parametrize("how", ["mode-false", "interpreter", "no-timer"])
def test_no_timing_gives_the_default_and_caches_nothing(how):
    timer = FakeTimer()
    kwargs = {"timer": timer}
    if how == "mode-false":
        autotune.set_autotune(False)
    elif how == "interpreter":
        kwargs["interpreter"] = True
    else:
        kwargs["timer"] = None
    got = autotune.get_config("GEMM_SPLITK", 8, LAYOUT, torch.float16, torch.float16, **kwargs)
    expected = autotune.default_config("GEMM_SPLITK", LAYOUT, interpreter=how == "interpreter")
    assert got == expected and timer.calls == []
    assert (
        autotune.cached_config("GEMM_SPLITK", autotune.config_key(8, LAYOUT, torch.float16, torch.float16))
        is None
    )


def test_forced_config_wins_and_nests():
    a = Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, GROUP_M=2)
    b = Config(BLOCK_M=32, BLOCK_N=32, BLOCK_K=32)
    timer = FakeTimer()
    with autotune.forced_config("GEMM", a):
        assert autotune.get_config("GEMM", 100, LAYOUT, torch.float16, None, timer=timer) == a
        with autotune.forced_config("GEMM", b.as_dict()):
            assert autotune.get_config("GEMM", 100, LAYOUT, torch.float16, None, timer=timer) == b
        assert autotune.get_config("GEMM", 100, LAYOUT, torch.float16, None, timer=timer) == a
        # Other families are unaffected.
        other = autotune.get_config("GEMV", 1, LAYOUT, torch.float16, None, interpreter=True)
        assert other == autotune.default_config("GEMV", LAYOUT, interpreter=True)
    assert timer.calls == []
    with autotune.forced_config("GEMM", Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=256)):
        with pytest.raises(ValueError, match="illegal"):
            autotune.get_config("GEMM", 100, LAYOUT, torch.float16, None)
    with pytest.raises(ValueError, match="family"):
        with autotune.forced_config("GEMX", a):
            pass


# ------------------------------------------------------------------------------------------------
# The JSON cache
# ------------------------------------------------------------------------------------------------


def test_cache_round_trip_through_a_file(tmp_path):
    path = tmp_path / "configs.json"
    timer = FakeTimer()
    tuned = {
        family: autotune.get_config(family, M, LAYOUT, torch.float16, torch.float16, timer=timer)
        for family, M in (("GEMV_REVSPLITK", 1), ("GEMM_SPLITK", 16), ("GEMM", 256))
    }
    autotune.cache_config(path)
    data = json.loads(path.read_text())
    assert set(data) == set(FAMILIES)
    for family, cfg in tuned.items():
        key = autotune.config_key({"GEMV_REVSPLITK": 1, "GEMM_SPLITK": 16, "GEMM": 256}[family], LAYOUT,
                                  torch.float16, torch.float16)  # fmt: skip
        assert data[family] == {key: cfg.as_dict()}
    assert data["GEMV"] == {}

    autotune.reset_config()
    assert autotune.cached_config("GEMM", next(iter(data["GEMM"]))) is None
    autotune.load_config(path)

    def must_not_time(cfg):
        raise AssertionError("a loaded key must be used without timing")

    for family, cfg in tuned.items():
        M = {"GEMV_REVSPLITK": 1, "GEMM_SPLITK": 16, "GEMM": 256}[family]
        assert (
            autotune.get_config(family, M, LAYOUT, torch.float16, torch.float16, timer=must_not_time) == cfg
        )


def test_cache_config_merges_with_the_existing_file(tmp_path):
    path = tmp_path / "configs.json"
    foreign = {"GEMV": {"someone-else's-key": Config(BLOCK_N=128, BLOCK_K=64, SPLIT_K=4).as_dict()}}
    path.write_text(json.dumps(foreign))
    autotune.get_config("GEMM", 256, LAYOUT, torch.float16, torch.float16, timer=FakeTimer())
    autotune.cache_config(path)
    data = json.loads(path.read_text())
    assert data["GEMV"] == foreign["GEMV"] and len(data["GEMM"]) == 1


def test_load_config_rejects_malformed_files(tmp_path):
    cases = {
        "not-json.json": "{",
        "list.json": "[]",
        "family.json": json.dumps({"GEMV2": {}}),
        "entries.json": json.dumps({"GEMV": []}),
        "field.json": json.dumps({"GEMV": {"k": {"BLOCK_SIZE_N": 64}}}),
        "value.json": json.dumps({"GEMV": {"k": {"BLOCK_N": 48}}}),
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ValueError, match="path"):
            autotune.load_config(path, strict=True)
    with pytest.raises(FileNotFoundError):
        autotune.load_config(tmp_path / "missing.json", strict=True)
    assert all(autotune.cached_config(f, "k") is None for f in FAMILIES)


def test_illegal_cached_config_is_ignored_with_a_warning(tmp_path):
    layout = _layout(group=32)
    key = autotune.config_key(256, layout, torch.float16, None)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"GEMM": {key: Config(BLOCK_M=64, BLOCK_N=64, BLOCK_K=128).as_dict()}}))
    autotune.load_config(path)
    with pytest.warns(UserWarning, match="ignoring cached GEMM config"):
        got = autotune.get_config("GEMM", 256, layout, torch.float16, None, timer=FakeTimer())
    assert autotune.illegal_reason("GEMM", got, layout) is None


# ------------------------------------------------------------------------------------------------
# Dispatch
# ------------------------------------------------------------------------------------------------


def test_dispatch_thresholds():
    hqq4 = _layout()
    hqq8 = _layout(bits=8)
    int8 = WeightLayout(FORMATS["A16W8_INT8"], 4096, 4096, 4096, 8, torch.float16)
    a16w16 = WeightLayout(FORMATS["A16W16"], 4096, 4096, 4096, 16, torch.bfloat16)
    # The plain GEMV for one or two rows of packed codes, GEMV_SPLITK for one row of K-contiguous
    # 8/16-bit weights; then GEMM_SPLITK up to M = 127 and GEMM from 128 (the measurements are in
    # gemlite/dispatch.py).
    for packed in (hqq4, hqq8):
        assert [choose_matmul_type(M, packed) for M in (1, 2, 3, 127, 128, 5000)] == [
            "GEMV", "GEMV", "GEMM_SPLITK", "GEMM_SPLITK", "GEMM", "GEMM"]  # fmt: skip
    for unpacked in (int8, a16w16):
        assert [choose_matmul_type(M, unpacked) for M in (1, 2, 127, 128)] == [
            "GEMV_SPLITK", "GEMM_SPLITK", "GEMM_SPLITK", "GEMM"]  # fmt: skip
    with pytest.raises(ValueError, match="M"):
        choose_matmul_type(0, hqq4)
