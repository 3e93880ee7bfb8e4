"""Suite-wide set-up: pick where kernels run before any kernel module is imported (and leave the
shipped config caches off).

Without a CUDA GPU the Triton interpreter runs the real kernels on CPU tensors; it must be switched on
before the first ``@triton.jit`` module is imported, which is why this happens here, at collection.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# Tests choose their configs (forced, tuned, or the defaults); a shipped cache loaded on the first CUDA
# call would make what they run depend on that file. test_shipped_configs.py switches it back on.
os.environ.setdefault("GEMLITE_SHIPPED_CONFIGS", "0")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# The correctness harness's options (--correctness-profile/-gpu/-report), profile and report. Loaded
# here, after the interpreter choice above, so any pytest run of the suites knows them.
pytest_plugins = ("harness.pytest_plugin",)


@pytest.fixture
def device() -> str:
    """Where gemlite tensors live in this run: "cuda" on a GPU machine, else "cpu" (interpreter)."""
    return DEVICE


@pytest.fixture
def no_hqq(monkeypatch) -> None:
    """Imports of the ``hqq`` package fail in this test, as on a machine without it."""
    import builtins

    real_import = builtins.__import__

    def import_without_hqq(name, *args, **kwargs):
        if name == "hqq" or name.startswith("hqq."):
            raise ImportError("No module named 'hqq'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", import_without_hqq)
