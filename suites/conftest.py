"""Suite-wide set-up: pick where kernels run before any kernel module is imported.

Without a CUDA GPU the Triton interpreter runs the real kernels on CPU tensors; it must be switched on
before the first ``@triton.jit`` module is imported, which is why this happens here, at collection.
"""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# The correctness harness's options (--correctness-profile/-gpu/-report), profile and report. Loaded
# here, after the interpreter choice above, so any pytest run of the suites knows them.
pytest_plugins = ("harness.pytest_plugin",)


@pytest.fixture
def device() -> str:
    """Where gemlite tensors live in this run: "cuda" on a GPU machine, else "cpu" (interpreter)."""
    return DEVICE
