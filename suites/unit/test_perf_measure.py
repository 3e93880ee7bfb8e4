"""The real measurer's path through gemlite's public API, on tiny shapes.

Without a GPU it runs on CPU tensors through the Triton interpreter with a host-clock timer
(``GpuMeasurer(device="cpu")``): building layers with the helpers, deep-copied rotating copies,
warm-up, output checks, skips and errors are the same code the GPU runs; only the CUDA-graph timer
differs. On a GPU machine the same test runs on "cuda" and exercises the graph timer too.
"""

import gc
import json

import pytest
import torch

from gemlite.formats import FAMILIES
from harness.gpu import GpuInfo
from harness.perf_cases import Case, FormatEntry
from harness.perf_run import FakeMeasurer, GpuMeasurer, Measurement, RunSettings, eager_host_us, fake_gpu
from harness.timing import TimingConfig

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
W4 = FormatEntry("A16W4_HQQ_INT/g64", "A16W4_HQQ_INT", {"group_size": 64})
BAD = FormatEntry("A16W8_INT8", "A16W8_INT8", {"group_size": 3})  # from_linear takes no group_size
W16 = FormatEntry("A16W16", "A16W16", {})
HOST_CALLS = 4  # the interpreter runs a forward in milliseconds; a GPU run makes 10,000


@pytest.fixture(scope="module")
def measurer():
    # An L2 of one byte: the rotation needs only its minimum of 2 copies, which keeps this quick.
    gpu = GpuInfo("test device", "h100-sxm", 1, 1, 0, "n/a", (9, 0))
    settings = RunSettings(
        timing=TimingConfig(replays=3, warmup_replays=0, target_replay_ms=0.01),
        config_cache=False,
        host_calls=HOST_CALLS,
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
        assert m.host_us is None and m.host_calls == 0  # not in the host subset
        assert m.n_copies == 2 and m.replays == 3 and len(m.samples_us) == 3
        assert m.us > 0 and m.q1_us <= m.us <= m.q3_us and m.warm_s is not None
        assert m.rotation_bytes >= 2 * (128 * 64 // 2)
    assert first.build_s is not None and second.build_s is None  # built once for every M of the shape
    # what each M launched, as gemlite chose it (the interpreter's configs here)
    from gemlite.dispatch import choose_matmul_type

    for m in (first, second):
        launched = [n for n in m.notes if n.startswith("launch: ")]
        assert len(launched) == 1, m.notes
        family = launched[0].split()[1]
        assert family in FAMILIES and "_BN" in launched[0], launched
    built = measurer._get_built(Case("gemlite", W4.label, 128, 64, 1, W4))
    assert family == choose_matmul_type(2, built.copies[0].layout)


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
    retune = RunSettings(retune_m=(1, 2))
    assert RunSettings.from_dict(retune.to_dict()) == retune
    with pytest.raises(ValueError, match="retune_m"):
        RunSettings(retune_m=(0,))
    with pytest.raises(ValueError, match="autotune"):
        RunSettings(autotune="none")
    with pytest.raises(TypeError, match="force_config"):
        RunSettings(force_config=["GEMM"])


def test_retune_m_loads_the_cache_without_those_batch_sizes(tmp_path):
    # After a kernel change the cached winners of the named M are left out (so they are tuned again);
    # the other entries load, and the file itself is untouched until the run writes it.
    from gemlite import autotune

    cfg = {"BLOCK_M": 1, "BLOCK_N": 64, "BLOCK_K": 32, "SPLIT_K": 16, "GROUP_M": 1, "num_warps": 1,
           "num_stages": 2}  # fmt: skip
    tail = ",N=64,K=128,group=64,weight=hqq4,word=32,zeros=float,scales=float16,act=float16,out=float16,det=1"
    cache = {"GEMV": {f"M=1{tail}": cfg, f"M=2{tail}": {**cfg, "BLOCK_M": 2}, f"M=16{tail}": cfg},
             "GEMM_SPLITK": {f"M=128{tail}": cfg}}  # M=1 must not take M=128 (a prefix) with it
    path = tmp_path / "h100-sxm.json"
    path.write_text(json.dumps(cache))
    gpu = GpuInfo("test device", "h100-sxm", 1, 1, 0, "n/a", (9, 0))
    settings = RunSettings(config_dir=str(tmp_path), retune_m=(1, 16), write_config_cache=False)
    autotune.reset_config()
    m = GpuMeasurer(settings, gpu, log=lambda s: None, device=DEVICE)
    try:
        m.start()
        assert set(autotune._CACHE["GEMV"]) == {f"M=2{tail}"}
        assert set(autotune._CACHE["GEMM_SPLITK"]) == {f"M=128{tail}"}
        assert "less its 2 entries of M in [1, 16]" in m.cache_note
        assert json.loads(path.read_text()) == cache
    finally:
        m.finish()
        autotune.reset_config()


def test_tune_builds_one_copy_and_times_nothing(measurer):
    t = measurer.tune(Case("gemlite", W4.label, 128, 64, 4, W4))
    assert t.status == "ok" and t.us is None and t.warm_s is not None and t.build_s is not None
    assert measurer._built.n == 1
    m = measurer.measure(Case("gemlite", W4.label, 128, 64, 4, W4))  # rebuilt with the rotation
    assert m.status == "ok" and m.n_copies == 2


def test_eager_host_time_through_the_real_measurer(measurer):
    """A case of the host subset gets host_us after its kernel time, from the same layer's eager calls
    (gemlite's module, F.linear for the reference); the rest of the measurement is unchanged."""
    for case in (
        Case("gemlite", W16.label, 128, 64, 1, W16, host=True),
        Case("gemlite", W4.label, 128, 64, 4, W4, host=True),
        Case("ref", "cublas_fp16", 128, 64, 4, host=True),
    ):
        m = measurer.measure(case)
        assert m.status == "ok", m.reason + m.detail
        assert m.host_us is not None and m.host_us > 0 and m.host_calls == HOST_CALLS
        assert m.us > 0 and m.replays == 3
        back = Measurement.from_dict(m.to_dict())
        assert (back.host_us, back.host_calls, back.case.host) == (m.host_us, HOST_CALLS, True)


def test_eager_host_us_counts_and_syncs_once():
    calls, syncs = [], []

    def fn(a, b):
        calls.append((a, b, gc.isenabled()))

    t = eager_host_us(fn, (1, 2), 50, lambda: syncs.append(len(calls)))
    assert t > 0
    assert len(calls) == 5 + 50 and {c[:2] for c in calls} == {(1, 2)}  # warm-up (calls // 10), timed
    assert syncs == [5, 55]  # after the warm-up and once at the end, never in between
    assert [c[2] for c in calls] == [True] * 5 + [False] * 50  # no garbage collection while timed
    assert gc.isenabled()
    eager_host_us(lambda: None, (), 3, lambda: None)  # fewer than 10 calls still warm up once
    with pytest.raises(ZeroDivisionError):
        eager_host_us(lambda: 1 / 0 if not gc.isenabled() else None, (), 3, lambda: None)
    assert gc.isenabled()  # turned back on when a call raises


def test_fake_measurer_models_host_times(monkeypatch):
    monkeypatch.setenv("GEMLITE_PERF_FAKE_HOST_SLOWDOWN", "A16W16=2")
    monkeypatch.setenv("GEMLITE_PERF_FAKE_HOST_TRANSIENT", "M4=3")
    fm = FakeMeasurer(RunSettings(dry_run=True, host_calls=123), fake_gpu("h100"), log=lambda s: None)
    ref = fm.measure(Case("ref", "cublas_fp16", 4096, 4096, 1, host=True))
    w4 = fm.measure(Case("gemlite", W4.label, 4096, 4096, 1, W4, host=True))
    w16 = fm.measure(Case("gemlite", W16.label, 4096, 4096, 1, W16, host=True))
    plain = fm.measure(Case("gemlite", W4.label, 4096, 4096, 1, W4))
    assert ref.host_us == pytest.approx(FakeMeasurer.HOST_US["ref"], rel=0.1) and ref.host_calls == 123
    assert w4.host_us == pytest.approx(FakeMeasurer.HOST_US["gemlite"], rel=0.1)
    assert w16.host_us == pytest.approx(2 * FakeMeasurer.HOST_US["gemlite"], rel=0.1)
    assert plain.host_us is None and plain.host_calls == 0
    m4 = Case("gemlite", W4.label, 4096, 4096, 4, W4, host=True)
    first, again = fm.measure(m4), fm.measure(m4)  # a transient: only the first measurement
    assert first.host_us == pytest.approx(3 * again.host_us, rel=0.2)
    with pytest.raises(ValueError, match="host_calls"):
        RunSettings(host_calls=0)
    assert RunSettings.from_dict(RunSettings(host_calls=7).to_dict()).host_calls == 7
    assert RunSettings.from_dict({}).host_calls == 10_000  # settings written before the host subset
