"""harness.gpu: name -> key matching, --gpu acceptance, identify() field mapping (with a faked
torch.cuda, so no GPU is needed), and the datasheet table the reports' roofline columns use."""

from types import SimpleNamespace

import pytest

from harness import gpu


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 SXM5 80GB", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", "h100-nvl"),
        ("NVIDIA H200", "h200"),
        ("NVIDIA H200 NVL", "h200-nvl"),
        ("  nvidia h100 pcie  ", "h100-pcie"),
        ("NVIDIA GH200 480GB", "nvidia-gh200-480gb"),  # a superchip, not an H200
        ("NVIDIA A100-SXM4-80GB", "nvidia-a100-sxm4-80gb"),
        ("NVIDIA H1000", "nvidia-h1000"),
    ],
)
def test_key_for_name(name, key):
    assert gpu.key_for_name(name) == key


def test_key_for_name_rejects_bad_input():
    with pytest.raises(TypeError, match="name"):
        gpu.key_for_name(None)
    with pytest.raises(ValueError, match="name"):
        gpu.key_for_name("   ")


def _info(name: str) -> gpu.GpuInfo:
    return gpu.GpuInfo(name, gpu.key_for_name(name), 132, 50 * 2**20, 80 * 2**30, "580.1", (9, 0))


ACCEPT = {
    "h100": {"NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"},
    "h100-sxm": {"NVIDIA H100 80GB HBM3"},
    "h100-pcie": {"NVIDIA H100 PCIe"},
    "h100-nvl": {"NVIDIA H100 NVL"},
    "h200": {"NVIDIA H200"},
    "h200-nvl": {"NVIDIA H200 NVL"},
}
NAMES = [
    "NVIDIA H100 80GB HBM3",
    "NVIDIA H100 PCIe",
    "NVIDIA H100 NVL",
    "NVIDIA H200",
    "NVIDIA H200 NVL",
    "NVIDIA A100-SXM4-80GB",
]


@pytest.mark.parametrize("expected", sorted(ACCEPT))
@pytest.mark.parametrize("name", NAMES)
def test_check_expected_matrix(expected, name):
    if name in ACCEPT[expected]:
        gpu.check_expected(expected, _info(name))
    else:
        with pytest.raises(gpu.GpuMismatchError, match=f"--gpu {expected}"):
            gpu.check_expected(expected, _info(name))


def test_mismatch_message_says_what_to_do():
    with pytest.raises(gpu.GpuMismatchError, match=r"'NVIDIA H200'.*run with --gpu h200"):
        gpu.check_expected("h100", _info("NVIDIA H200"))
    with pytest.raises(gpu.GpuMismatchError, match="has no suite"):
        gpu.check_expected("h200", _info("NVIDIA A100-SXM4-80GB"))


def test_unknown_expected_is_a_value_error():
    with pytest.raises(ValueError, match="expected: --gpu takes one of"):
        gpu.check_expected("a100", _info("NVIDIA H100 PCIe"))
    with pytest.raises(ValueError, match="expected"):
        gpu.require("h300")


def test_suite_for_key():
    assert gpu.suite_for_key("h100-sxm") == "h100"
    assert gpu.suite_for_key("h100-pcie") == "h100"
    assert gpu.suite_for_key("h200") == "h200"
    with pytest.raises(ValueError, match="no performance suite"):
        gpu.suite_for_key("nvidia-a100-sxm4-80gb")


def test_specs_hold_the_issue_numbers():
    s = gpu.SPECS["h100-sxm"]
    assert (s.bf16_tflops, s.fp8_tflops, s.int8_tops, s.hbm_gbps) == (989, 1979, 1979, 3350)
    s = gpu.SPECS["h100-pcie"]
    assert (s.bf16_tflops, s.fp8_tflops, s.int8_tops, s.hbm_gbps) == (756, 1513, 1513, 2000)
    s = gpu.SPECS["h200"]
    assert (s.bf16_tflops, s.fp8_tflops, s.int8_tops, s.hbm_gbps) == (989, 1979, 1979, 4800)
    assert set(gpu.SPECS) == {k for keys in gpu.ACCEPTS.values() for k in keys}


def _fake_cuda(monkeypatch, *, available=True, name="NVIDIA H100 80GB HBM3", l2=52428800, count=1):
    import torch

    props = SimpleNamespace(name=name, multi_processor_count=132, total_memory=85520809984, major=9, minor=0)
    if l2 is not None:
        props.L2_cache_size = l2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(gpu.shutil, "which", lambda name: None)  # no nvidia-smi; NVML absent or failing
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)


def test_identify_maps_device_properties(monkeypatch):
    _fake_cuda(monkeypatch)
    info = gpu.identify()
    assert info == gpu.GpuInfo(
        "NVIDIA H100 80GB HBM3", "h100-sxm", 132, 52428800, 85520809984, "unknown", (9, 0)
    )
    assert info.spec is gpu.SPECS["h100-sxm"]
    assert info.to_dict()["cc"] == [9, 0]
    assert gpu.require("h100") == info
    with pytest.raises(gpu.GpuMismatchError):
        gpu.require("h200")


def test_identify_falls_back_to_the_datasheet_l2(monkeypatch):
    _fake_cuda(monkeypatch, name="NVIDIA H200", l2=None)
    assert gpu.identify().l2_bytes == gpu.SPECS["h200"].l2_bytes


def test_identify_without_gpu_and_bad_index(monkeypatch):
    _fake_cuda(monkeypatch, available=False)
    with pytest.raises(gpu.NoGpuError, match="no CUDA GPU"):
        gpu.identify()
    _fake_cuda(monkeypatch)
    with pytest.raises(ValueError, match=r"device: expected a CUDA device index in \[0, 1\)"):
        gpu.identify(3)


def test_driver_version_from_nvidia_smi(monkeypatch):
    monkeypatch.setattr(gpu.shutil, "which", lambda name: "/usr/bin/nvidia-smi")

    class Done:
        stdout = "580.159.04\n"

    monkeypatch.setattr(gpu.subprocess, "run", lambda *a, **k: Done())
    assert gpu._driver_version() == "580.159.04"
