"""Which GPU is this, and what can it do on paper.

`identify()` reads the visible CUDA device (name, multiprocessors, L2, memory, driver, compute
capability) and gives it a short *key* (``h100-sxm``, ``h100-pcie``, ``h100-nvl``, ``h200``,
``h200-nvl``); `require(expected)` refuses to go on when the GPU found is not the one a suite or a
baseline was written for. `SPECS` holds each known GPU's datasheet peaks, the ceilings of the
report's roofline columns.

Keys name one physical product (one baseline file, one report). The names a user passes to ``--gpu``
may also be a *family*: ``h100`` accepts an H100 SXM or PCIe. Baselines, tuned configs and reports are
filed under the exact key, because an SXM and a PCIe card differ by 1.7x in memory bandwidth.

Importing this module does not import torch: the report renderer uses `SPECS` on machines without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass

__all__ = [
    "ACCEPTS",
    "SPECS",
    "GpuInfo",
    "GpuMismatchError",
    "GpuSpec",
    "NoGpuError",
    "check_expected",
    "identify",
    "key_for_name",
    "require",
    "suite_for_key",
]


# --------------------------------------------------------------------------------------------
# Datasheet peaks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSpec:
    """Vendor datasheet peaks of one GPU product, dense (no 2:4 sparsity).

    fp16_tflops / bf16_tflops: tensor-core TFLOP/s with fp32 accumulation.
    fp8_tflops: e4m3/e5m2 tensor-core TFLOP/s. int8_tops: int8 tensor-core TOP/s.
    hbm_gbps: memory bandwidth in GB/s (1e9 bytes/s). l2_bytes: L2 size, used only when the driver
    does not report it. Datasheet numbers are leads, not measurements: reports also show the copy
    bandwidth measured in the same run.
    """

    key: str
    product: str
    fp16_tflops: float
    bf16_tflops: float
    fp8_tflops: float
    int8_tops: float
    hbm_gbps: float
    l2_bytes: int


_MB = 1024 * 1024

# NVIDIA datasheets quote sparse rates for the tensor cores ("with sparsity"); dense is half of those.
# H100 SXM / PCIe and H200 rows are the numbers given in the performance-harness issue; the NVL rows
# are halved from the H100 NVL and H200 NVL datasheets (1671 / 3341 / 3341 sparse).
SPECS: dict[str, GpuSpec] = {
    s.key: s
    for s in (
        GpuSpec("h100-sxm", "H100 SXM", 989, 989, 1979, 1979, 3350, 50 * _MB),
        GpuSpec("h100-pcie", "H100 PCIe", 756, 756, 1513, 1513, 2000, 50 * _MB),
        GpuSpec("h100-nvl", "H100 NVL", 835, 835, 1671, 1671, 3900, 50 * _MB),
        GpuSpec("h200", "H200 SXM", 989, 989, 1979, 1979, 4800, 60 * _MB),
        GpuSpec("h200-nvl", "H200 NVL", 835, 835, 1671, 1671, 4800, 60 * _MB),
    )
}

#: What each ``--gpu`` value accepts: a family name accepts several keys, a key only itself.
ACCEPTS: dict[str, tuple[str, ...]] = {
    "h100": ("h100-sxm", "h100-pcie"),
    "h100-sxm": ("h100-sxm",),
    "h100-pcie": ("h100-pcie",),
    "h100-nvl": ("h100-nvl",),
    "h200": ("h200",),
    "h200-nvl": ("h200-nvl",),
}


# --------------------------------------------------------------------------------------------
# Names -> keys
# --------------------------------------------------------------------------------------------


def key_for_name(name: str) -> str:
    """The key of a CUDA device name, e.g. ``"NVIDIA H100 80GB HBM3" -> "h100-sxm"``.

    Names seen: "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200",
    "NVIDIA H200 NVL". An H100 whose name says neither PCIe nor NVL is an SXM part (its names carry
    "HBM3" or "SXM"). A GH200 superchip is not an H200 (different memory system): it, and any GPU not
    in `SPECS`, gets a slug of its name (``"nvidia-a100-sxm4-80gb"``), which no suite accepts.

    Raises TypeError if name is not a string, ValueError if it is empty.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected the device name as a str, got {type(name).__name__}")
    low = name.strip().lower()
    if not low:
        raise ValueError("name: empty device name")
    # Word boundaries keep "gh200" (and "h1000", should it ever exist) out.
    if re.search(r"\bh100\b", low):
        if "pcie" in low:
            return "h100-pcie"
        if "nvl" in low:
            return "h100-nvl"
        return "h100-sxm"
    if re.search(r"\bh200\b", low):
        return "h200-nvl" if "nvl" in low else "h200"
    return re.sub(r"[^a-z0-9]+", "-", low).strip("-")


def suite_for_key(key: str) -> str:
    """The suite file stem that serves a key: ``h100-pcie -> "h100"``, ``h200 -> "h200"``.

    Raises ValueError for keys of GPUs that have no suite.
    """
    family = key.split("-")[0]
    if family not in ("h100", "h200") or key not in SPECS:
        raise ValueError(f"key: no performance suite for GPU key {key!r}; suites exist for {sorted(SPECS)}")
    return family


# --------------------------------------------------------------------------------------------
# The device at hand
# --------------------------------------------------------------------------------------------


class NoGpuError(RuntimeError):
    """No CUDA GPU is visible to this process."""


class GpuMismatchError(RuntimeError):
    """The GPU found is not the one asked for."""


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as found.

    name: the driver's name ("NVIDIA H100 80GB HBM3"). key: `key_for_name(name)`.
    sm_count: streaming multiprocessors. l2_bytes: L2 cache size in bytes (from the driver, else the
    datasheet). memory_bytes: device memory in bytes. driver: the NVIDIA driver release
    ("580.159.04"), or "unknown". cc: compute capability (9, 0).
    """

    name: str
    key: str
    sm_count: int
    l2_bytes: int
    memory_bytes: int
    driver: str
    cc: tuple[int, int]

    @property
    def spec(self) -> GpuSpec | None:
        """Datasheet peaks of this product, or None for a GPU not in `SPECS`."""
        return SPECS.get(self.key)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cc"] = list(self.cc)
        return d


def _driver_version() -> str:
    """The NVIDIA driver release, from nvidia-smi or NVML; "unknown" when neither answers."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = (
                subprocess.run(
                    [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=True,
                )
                .stdout.strip()
                .splitlines()
            )
            if out and out[0].strip():
                return out[0].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import pynvml  # nvidia-ml-py

        pynvml.nvmlInit()
        try:
            v = pynvml.nvmlSystemGetDriverVersion()
            return v.decode() if isinstance(v, bytes) else str(v)
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - NVML is optional; any failure means "unknown"
        return "unknown"


def identify(device: int | None = None) -> GpuInfo:
    """Describe the CUDA device `device` (default: the current one).

    Raises NoGpuError when torch sees no CUDA device (no GPU, a CPU build of torch, or
    CUDA_VISIBLE_DEVICES empty), ValueError for a device index that does not exist.
    """
    import torch

    if not torch.cuda.is_available():
        cuda = torch.version.cuda
        build = "a CPU-only build of torch" if cuda is None else f"torch built for CUDA {cuda}"
        raise NoGpuError(
            f"no CUDA GPU is visible to this process ({build}; "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): "
            "the performance suite and --gpu checks need an NVIDIA GPU"
        )
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if device is None else device
    if not isinstance(index, int) or not 0 <= index < count:
        raise ValueError(f"device: expected a CUDA device index in [0, {count}), got {device!r}")
    props = torch.cuda.get_device_properties(index)
    key = key_for_name(props.name)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    if l2 <= 0:  # older torch does not expose it
        spec = SPECS.get(key)
        l2 = spec.l2_bytes if spec else 0
    return GpuInfo(
        name=props.name,
        key=key,
        sm_count=int(props.multi_processor_count),
        l2_bytes=l2,
        memory_bytes=int(props.total_memory),
        driver=_driver_version(),
        cc=(int(props.major), int(props.minor)),
    )


def check_expected(expected: str, found: GpuInfo) -> None:
    """Raise GpuMismatchError unless `found` is a GPU that `expected` accepts (see `ACCEPTS`).

    Raises ValueError when `expected` is not a known ``--gpu`` value. Pure: no device is touched.
    """
    if not isinstance(expected, str) or expected.lower() not in ACCEPTS:
        raise ValueError(f"expected: --gpu takes one of {', '.join(ACCEPTS)}; got {expected!r}")
    accepted = ACCEPTS[expected.lower()]
    if found.key not in accepted:
        hint = f"run with --gpu {found.key}" if found.key in ACCEPTS else "this GPU has no suite here"
        what = " or ".join(SPECS[k].product for k in accepted)
        raise GpuMismatchError(
            f"--gpu {expected} asks for an {what}, but this machine's GPU is {found.name!r} "
            f"(key {found.key!r}): {hint}, or run on the GPU the suite and baseline were made for"
        )


def require(expected: str, device: int | None = None) -> GpuInfo:
    """Identify the GPU and refuse (GpuMismatchError) unless it is the one `expected` names.

    expected: a ``--gpu`` value: ``h100`` (H100 SXM or PCIe), ``h100-sxm``, ``h100-pcie``,
    ``h100-nvl``, ``h200``, ``h200-nvl``. Returns the GpuInfo found. Raises ValueError for an unknown
    `expected`, NoGpuError when no CUDA GPU is visible.
    """
    if not isinstance(expected, str) or expected.lower() not in ACCEPTS:
        raise ValueError(f"expected: --gpu takes one of {', '.join(ACCEPTS)}; got {expected!r}")
    found = identify(device)
    check_expected(expected, found)
    return found
