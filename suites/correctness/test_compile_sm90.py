"""Kernel configs compile for sm_90 (H100) on a machine without a GPU, fit the H100's shared memory,
and the tensor-core families lower to wgmma/mma.

Which configs: the covering selection of `gemlite.kernels.compile_check.all_jobs` (every config of
every family and mode on the `COVER_LAYOUTS`, one per kind of shared-memory tile, with a two-row
GEMV config per GEMV family, and each other layout's default configs: ~460 kernels, ~4 minutes cold
on 2 cores), so that CI stays under 20 minutes; ``GEMLITE_COMPILE_ALL=1`` compiles every config on
every layout (~1080 jobs; 988 before the two-row configs took 579 s cold on 2 cores), as a kernel
change that touches tile shapes should before it lands.

Why a subprocess: the suite's conftest turns the Triton interpreter on (no GPU here) before any kernel
module is imported, and ``@triton.jit`` then returns interpreter objects, which cannot be compiled.
The interpreter is chosen once per process, at import, so the compile runs in a child process with
``TRITON_INTERPRET=0`` (``python -m gemlite.kernels.compile_check``), which prints one JSON entry per
compiled kernel. Set ``GEMLITE_COMPILE_REPORT=<path>`` to also get a (family, config, shared bytes,
wgmma/mma/none) table there.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gemlite import autotune
from gemlite.kernels import compile_check

pytestmark = pytest.mark.compile_only

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 1800  # the full set (GEMLITE_COMPILE_ALL=1): 579 s cold on 2 cores, alone
EVERY = os.environ.get("GEMLITE_COMPILE_ALL", "0") not in ("", "0")


@pytest.fixture(scope="module")
def results() -> list[dict]:
    env = dict(os.environ)
    env["TRITON_INTERPRET"] = "0"
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # as the nox sessions pin it
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "gemlite.kernels.compile_check", "--jobs", str(min(os.cpu_count() or 1, 8))]
    if not EVERY:
        cmd.append("--cover")
    report = os.environ.get("GEMLITE_COMPILE_REPORT")
    if report:
        cmd += ["--report", report]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"compile_check failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def test_every_config_of_every_family_compiled(results):
    failed = [f"{r['family']} {r['layout']} {r['config']}: {r['error']}" for r in results if not r["ok"]]
    assert not failed, "\n".join(failed[:10])
    expected = {
        (name, family, autotune.Config.from_dict(cfg).short())
        for name, family, cfg in compile_check.all_jobs(autotune.FAMILIES, compile_check.LAYOUTS, EVERY)
    }
    got = {(r["layout"], r["family"], r["config"]) for r in results}
    assert got == expected
    for name in compile_check.LAYOUTS:
        for family in autotune.FAMILIES:
            assert any(r["layout"] == name and r["family"] == family for r in results), (name, family)


def test_shared_memory_fits_h100(results):
    over = [r for r in results if r["ok"] and r["shared"] > compile_check.H100_MAX_SHARED]
    assert not over, [(r["family"], r["layout"], r["config"], r["shared"]) for r in over]


@pytest.mark.parametrize("family", ["GEMM", "GEMM_SPLITK"])
def test_tensor_core_families_use_mma(results, family):
    # DEQUANT=1 configs compile only the dequantization kernel (the product is cuBLAS's); dynamic
    # activation layouts also compile their activation quantizer: only the matmul kernel must use MMA.
    rows = [r for r in results if r["family"] == family and r["kernel"] == "gemm_kernel"]
    assert rows
    plain = [(r["layout"], r["config"]) for r in rows if r["tensor_core"] not in ("wgmma", "mma")]
    assert not plain, f"{family} configs without tensor-core instructions: {plain}"
    # Hopper's warpgroup MMA takes 64 rows per warpgroup of 4 warps: tiles that big must get it.
    big = [r for r in rows if _block_m(r) >= 64 * (_warps(r) // 4)]
    assert big and all(r["tensor_core"] == "wgmma" for r in big), [r["config"] for r in big]


def _block_m(r) -> int:
    return int(re.search(r"BM(\d+)_", r["config"]).group(1))


def _warps(r) -> int:
    return int(re.search(r"_w(\d+)_", r["config"]).group(1))


def test_layouts_cover_the_required_formats():
    names = set(compile_check.LAYOUTS)
    assert {
        "hqq4_g128_fp16",
        "hqq2_g64_bf16",
        "hqq1_g32_fp16_int",
        "int8_fp16",
        "fp8_bf16",
        "a16w16_fp16",
        "a8w8_int8_dyn_fp16",
        "a8w8_fp8_dyn_bf16",
        "a8w8_int8_block_fp16",
        "a8w8_fp8_block_bf16",
        "a8w4_g128_dyn_fp16",
        "a8w158_dyn_fp16",
    } <= names
