"""The config caches shipped in the package (gemlite/configs/<key>.json, `gemlite.autotune`):
chosen by the exact CUDA device name, merged under what is cached already, loaded once on the first
config choice on a CUDA device in mode "fast", and never by the perf harness behind its back."""

from __future__ import annotations

import json
import os

import pytest
import torch

from gemlite import autotune
from gemlite.autotune import Config


@pytest.fixture
def clean_cache(monkeypatch):
    """A process cache and shipped state restored after the test."""
    saved = {f: dict(entries) for f, entries in autotune._CACHE.items()}
    monkeypatch.setattr(autotune, "_SHIPPED_STATE", "pending")
    autotune.reset_config()
    monkeypatch.setattr(autotune, "_SHIPPED_STATE", "pending")
    yield
    autotune.reset_config()
    with autotune._LOCK:
        for f, entries in saved.items():
            autotune._CACHE[f].update(entries)


def _fake_gpu(monkeypatch, name: str) -> list:
    """torch.cuda claims a GPU called `name`; returns the list of device arguments asked for."""
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: asked.append(d) or name)
    return asked


def test_exact_names_only() -> None:
    for name, key in (("NVIDIA H200", "h200"), ("NVIDIA H100 80GB HBM3", "h100-sxm")):
        path = autotune.shipped_config_path(name)
        assert path is not None and os.path.basename(path) == f"{key}.json" and os.path.isfile(path)
    others = ("NVIDIA GH200 480GB", "NVIDIA H200 NVL", "NVIDIA H100 PCIe", "nvidia h200", " NVIDIA H200", "")
    for name in others:
        assert autotune.shipped_config_path(name) is None, name
    with pytest.raises(TypeError, match="device_name"):
        autotune.shipped_config_path(0)


def test_every_shipped_file_is_a_valid_cache() -> None:
    for key in sorted(set(autotune.SHIPPED_CONFIGS.values())):
        path = os.path.join(autotune.SHIPPED_DIR, f"{key}.json")
        parsed = autotune._read_cache(path)  # the schema load_config checks
        assert sum(len(v) for v in parsed.values()) > 0, key
        with open(path) as f:
            assert set(json.load(f)) <= set(autotune._CACHE), key


def test_shipped_entries_go_under_what_is_cached(clean_cache, monkeypatch) -> None:
    asked = _fake_gpu(monkeypatch, "NVIDIA H200")
    shipped = autotune._read_cache(autotune.shipped_config_path("NVIDIA H200"))
    family = next(f for f, entries in shipped.items() if len(entries) >= 2)
    (k_user, cfg_shipped), (k_other, cfg_other) = list(shipped[family].items())[:2]
    mine = Config(BLOCK_M=cfg_shipped.BLOCK_M, BLOCK_N=cfg_shipped.BLOCK_N, BLOCK_K=cfg_shipped.BLOCK_K)
    assert mine != cfg_shipped
    autotune._CACHE[family][k_user] = mine  # as tuned here or loaded by load_config
    assert autotune.load_shipped_configs(3) and asked == [3]
    assert autotune.cached_config(family, k_user) == mine  # what was cached wins
    assert autotune.cached_config(family, k_other) == cfg_other  # the rest comes from the file
    assert autotune._SHIPPED_STATE == "done"


def test_loaded_once_on_a_cuda_device_in_fast_mode(clean_cache, monkeypatch) -> None:
    asked = _fake_gpu(monkeypatch, "NVIDIA H200")
    autotune.maybe_load_shipped(torch.device("cpu"))
    assert asked == [] and autotune._SHIPPED_STATE == "pending"
    autotune.set_autotune("max")
    try:
        autotune.maybe_load_shipped(torch.device("cuda", 0))
        assert asked == []  # a "max" search wants its own winners
    finally:
        autotune.set_autotune("fast")
    autotune.maybe_load_shipped(torch.device("cuda", 0))
    autotune.maybe_load_shipped(torch.device("cuda", 0))
    assert len(asked) == 1 and autotune._SHIPPED_STATE == "done"
    assert sum(len(v) for v in autotune._CACHE.values()) > 0
    autotune.reset_config()  # a reset asks for tuning: nothing comes back by itself
    autotune.maybe_load_shipped(torch.device("cuda", 0))
    assert len(asked) == 1 and sum(len(v) for v in autotune._CACHE.values()) == 0


def test_an_unknown_gpu_or_switched_off_loads_nothing(clean_cache, monkeypatch) -> None:
    _fake_gpu(monkeypatch, "NVIDIA GH200 480GB")
    assert not autotune.load_shipped_configs()
    assert sum(len(v) for v in autotune._CACHE.values()) == 0
    monkeypatch.setattr(autotune, "_SHIPPED_STATE", "pending")
    asked = _fake_gpu(monkeypatch, "NVIDIA H200")
    autotune.use_shipped_configs(False)
    autotune.maybe_load_shipped(torch.device("cuda", 0))
    assert asked == [] and sum(len(v) for v in autotune._CACHE.values()) == 0
    autotune.use_shipped_configs(True)
    assert autotune._SHIPPED_STATE == "pending"
    with pytest.raises(TypeError, match="flag"):
        autotune.use_shipped_configs(1)


def test_the_perf_harness_switches_it_off(clean_cache) -> None:
    from harness.gpu import GpuInfo
    from harness.perf_run import GpuMeasurer, RunSettings

    gpu = GpuInfo("test device", "h200", 1, 1, 0, "n/a", (9, 0))
    m = GpuMeasurer(RunSettings(config_cache=False), gpu, log=lambda s: None, device="cpu")
    m.start()
    try:
        assert autotune._SHIPPED_STATE == "off"  # the run loads (or not) its cache file itself
    finally:
        m.finish()


@pytest.mark.gpu
def test_a_first_forward_on_a_shipped_gpu_loads_its_cache(clean_cache) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    path = autotune.shipped_config_path(torch.cuda.get_device_name())
    if path is None:
        pytest.skip(f"no shipped cache for {torch.cuda.get_device_name()!r}")
    from torch import nn

    from gemlite.helper import A16W4_HQQ_INT

    proc = A16W4_HQQ_INT(device="cuda", dtype=torch.float16)
    layer = proc.from_linear(nn.Linear(4096, 4096), group_size=128)
    layer(torch.randn(1, 4096, dtype=torch.float16, device="cuda"))
    shipped = autotune._read_cache(path)
    # the H200 suite's 4096x4096 M=1 key, tuned by the perf suite, is now in the process cache
    key = next(k for k in shipped["GEMV"] if k.startswith("M=1,N=4096,K=4096,group=128,weight=hqq4"))
    assert autotune.cached_config("GEMV", key) == shipped["GEMV"][key]
