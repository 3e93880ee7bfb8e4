"""The real measurer's path through gemlite's public API, on tiny shapes.

Without a GPU it runs on CPU tensors through the Triton interpreter with a host-clock timer
(``GpuMeasurer(device="cpu")``): building layers with the helpers, deep-copied rotating copies,
warm-up, output checks, skips and errors are the same code the GPU runs; only the CUDA-graph timer
differs. On a GPU machine the same test runs on "cuda" and exercises the graph timer too.
"""

import pytest
import torch

from harness.gpu import GpuInfo
from harness.perf_cases import Case, FormatEntry
from harness.perf_run import GpuMeasurer, RunSettings
from harness.timing import TimingConfig

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
W4 = FormatEntry("A16W4_HQQ_INT/g64", "A16W4_HQQ_INT", {"group_size": 64})
BAD = FormatEntry("A16W8_INT8", "A16W8_INT8", {"group_size": 3})  # from_linear takes no group_size


@pytest.fixture(scope="module")
def measurer():
    # An L2 of one byte: the rotation needs only its minimum of 2 copies, which keeps this quick.
    gpu = GpuInfo("test device", "h100-sxm", 1, 1, 0, "n/a", (9, 0))
    settings = RunSettings(
        timing=TimingConfig(replays=3, warmup_replays=0, target_replay_ms=0.01), config_cache=False
    )
    m = GpuMeasurer(settings, gpu, log=lambda s: None, device=DEVICE)
    m.start()
    yield m
    m.finish()


def test_gemlite_cases_through_the_helpers(measurer):
    first = measurer.measure(Case("gemlite", W4.label, 128, 64, 1, W4))
    second = measurer.measure(Case("gemlite", W4.label, 128, 64, 2, W4))
    for m in (first, second):
        assert m.status == "ok", m.reason + m.detail
        assert m.n_copies == 2 and m.replays == 3 and len(m.samples_us) == 3
        assert m.us > 0 and m.q1_us <= m.us <= m.q3_us and m.warm_s is not None
        assert m.rotation_bytes >= 2 * (128 * 64 // 2)
    assert first.build_s is not None and second.build_s is None  # built once for every M of the shape


def test_references(measurer):
    fp16 = measurer.measure(Case("ref", "cublas_fp16", 128, 64, 2))
    assert fp16.status == "ok", fp16.reason
    small = measurer.measure(Case("ref", "cublas_int8_int_mm", 128, 64, 2))
    assert small.status == "skipped" and "M > 16" in small.reason
    big = measurer.measure(Case("ref", "cublas_int8_int_mm", 128, 64, 32))
    assert big.status in ("ok", "error")  # torch may lack a CPU int8 GEMM; the case must not raise
    if big.status == "error":
        assert "_int_mm" in big.reason or "int" in big.reason


def test_a_failing_case_is_a_result(measurer):
    m = measurer.measure(Case("gemlite", BAD.label, 128, 64, 1, BAD))
    assert m.status == "error" and "group_size" in m.reason and m.detail
    again = measurer.measure(Case("gemlite", BAD.label, 128, 64, 2, BAD))  # not rebuilt for every M
    assert again.status == "error" and "failed earlier" in again.reason and "group_size" in again.reason
    after = measurer.measure(Case("gemlite", W4.label, 128, 64, 1, W4))  # the measurer carries on
    assert after.status == "ok"


def test_unknown_helper_is_reported(measurer):
    e = FormatEntry("A16W4_HQQ_INT/g64", "NoSuchHelper", {})
    m = measurer.measure(Case("gemlite", e.label, 128, 64, 1, e))
    assert m.status == "error" and "NoSuchHelper" in m.reason


def test_meta_and_device_check(measurer):
    meta = measurer.meta()
    assert meta["gpu_key"] == "h100-sxm" and "config cache not used" in meta["config_cache"]
    with pytest.raises(ValueError, match="device"):
        GpuMeasurer(RunSettings(), measurer.gpu, device="mps")


def test_config_cache_policy():
    s = RunSettings()
    assert s.loads_config_cache and s.writes_config_cache
    off = RunSettings(autotune="off")  # no tuned config at all: neither read nor written
    assert not off.loads_config_cache and not off.writes_config_cache
    forced = RunSettings(force_config={"GEMM": {"BLOCK_M": 16}})  # other families keep their tuned configs
    assert forced.loads_config_cache and not forced.writes_config_cache
    ab = RunSettings(write_config_cache=False)
    assert ab.loads_config_cache and not ab.writes_config_cache
    assert RunSettings.from_dict(forced.to_dict()) == forced
    with pytest.raises(ValueError, match="autotune"):
        RunSettings(autotune="none")
    with pytest.raises(TypeError, match="force_config"):
        RunSettings(force_config=["GEMM"])


def test_tune_builds_one_copy_and_times_nothing(measurer):
    t = measurer.tune(Case("gemlite", W4.label, 128, 64, 4, W4))
    assert t.status == "ok" and t.us is None and t.warm_s is not None and t.build_s is not None
    assert measurer._built.n == 1
    m = measurer.measure(Case("gemlite", W4.label, 128, 64, 4, W4))  # rebuilt with the rotation
    assert m.status == "ok" and m.n_copies == 2
