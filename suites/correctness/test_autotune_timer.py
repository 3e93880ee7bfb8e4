"""What the autotuner times for a candidate config (`gemlite.matmul._timed_call`).

The tuner must time the candidate's kernel, not the host's planning of it: on the GPU a one-launch
plan is timed through a `Replay` (a few microseconds of host time) and a plan of several steps
(DEQUANT) as a CUDA graph of its steps, and each computes what the planned call computes. On CPU (no
compiled launchers, no graphs) the planned call is what is timed.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gemlite import matmul as gm
from gemlite.autotune import Config
from gemlite.helper import A16W4_HQQ_INT
from gemlite.kernels.plan import Replay

_TIMED = {  # family -> a legal config for K=1024, group 128 (GEMV reads whole 32-bit words)
    "GEMV": Config(BLOCK_N=64, BLOCK_K=128, SPLIT_K=4, num_warps=4),
    "GEMM_SPLITK": Config(BLOCK_M=16, BLOCK_N=64, BLOCK_K=64, SPLIT_K=2, num_warps=4, num_stages=2),
    "GEMM": Config(BLOCK_M=32, BLOCK_N=64, BLOCK_K=64, GROUP_M=4, num_warps=4, num_stages=2),
    "GEMM_DEQUANT": Config(BLOCK_M=16, BLOCK_N=128, BLOCK_K=64, DEQUANT=1, num_warps=4),
}


def _layer(device: str, K: int = 1024, N: int = 256):
    torch.manual_seed(0)
    lin = nn.Linear(K, N, bias=True, dtype=torch.float32)
    return A16W4_HQQ_INT(device=device, dtype=torch.float16).from_linear(lin, group_size=128)


def _planned(layer, x, family: str, config: Config):
    from gemlite.kernels.plan import launch

    args = (layer.W_q, layer.scales, layer.zeros, layer.bias, layer.layout, layer._out_dtype)
    return launch(family, x, *args, config, layer._locks)


@pytest.mark.interpreter
def test_the_timed_call_computes_the_candidates_product(device: str) -> None:
    layer = _layer(device)
    cases = [("GEMM_SPLITK", 16, _TIMED["GEMM_SPLITK"]), ("GEMM", 32, _TIMED["GEMM"])]
    if device == "cuda":
        cases += [("GEMV", 1, _TIMED["GEMV"]), ("GEMM", 64, _TIMED["GEMM_DEQUANT"])]
    for family, M, config in cases:
        x = torch.randn(M, layer.in_features, dtype=torch.float16, device=device)
        args = (layer.W_q, layer.scales, layer.zeros, layer.bias, layer.layout, layer._out_dtype)
        fn = gm._timed_call(family, x, *args, config, layer._locks)
        got, want = fn(), _planned(layer, x, family, config)
        assert torch.equal(got, want), f"{family} M={M} {config.short()}"
        # What is timed: on a GPU a Replay of the one launch, or a CUDA graph of a DEQUANT plan's two
        # steps; the planned call on CPU.
        held = [c.cell_contents for c in (fn.__closure__ or ())]
        replayed = any(isinstance(c, Replay) for c in held)
        graphed = any(isinstance(c, torch.cuda.CUDAGraph) for c in held)
        assert replayed == (device == "cuda" and not config.DEQUANT), f"{family} M={M} {config.short()}"
        assert graphed == (device == "cuda" and bool(config.DEQUANT)), f"{family} M={M} {config.short()}"
        if graphed:  # a second replay: the graph reads x again (here changed in place) and recomputes
            x.copy_(torch.randn_like(x))
            assert torch.equal(fn(), _planned(layer, x, family, config)), f"{family} M={M} replayed"
