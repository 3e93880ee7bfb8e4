"""The eager fast path: a layer's kept launch (`gemlite.kernels.plan.Replay`) per M.

On the GPU: a replayed call gives bitwise the output of a planned one for every family and write
mode, and is really taken; it is dropped or bypassed whenever what it was made from changes. On CPU
(where nothing is replayed: the interpreter has no compiled launcher) the bypass rules are checked
with a probe put in the layer's cache.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import gemlite
from gemlite import autotune, settings
from gemlite import matmul as gm
from gemlite.autotune import Config
from gemlite.helper import A16W4_HQQ_INT, A16W8_INT8, A16W16, A16W158_INT


def _layer(device, helper=A16W4_HQQ_INT, K=256, N=192, **kw):
    torch.manual_seed(0)
    lin = nn.Linear(K, N, bias=True, dtype=torch.float32)
    if helper is A16W4_HQQ_INT:
        kw.setdefault("group_size", 64)
    return helper(device=device, dtype=torch.float16).from_linear(lin, **kw)


class _Probe:
    """Stands in for a Replay: counts its calls, returns a marker tensor."""

    aligned = True

    def __init__(self, N: int) -> None:
        self.calls = 0
        self.N = N

    def __call__(self, x):
        self.calls += 1
        return torch.full((x.shape[0], self.N), 7.0, dtype=torch.float16, device=x.device)


def _plant(layer, M: int, family=None) -> _Probe:
    probe = _Probe(layer.out_features)
    b = layer._buffers
    tensors = (b["W_q"], b["scales"], b["zeros"], b["bias"], b["_locks"])
    layer._replays[(M, family)] = (settings.generation(), tensors, probe)
    return probe


@pytest.mark.interpreter
def test_replay_is_used_only_while_everything_it_was_made_from_is_current(device: str) -> None:
    layer = _layer(device)
    x = torch.randn(3, layer.in_features, dtype=torch.float16, device=device)
    probe = _plant(layer, 3)
    assert torch.all(layer(x) == 7) and probe.calls == 1  # taken
    assert not torch.all(layer(x[:2]) == 7)  # another M: not this replay
    assert not torch.all(layer.forward_manual(x, "GEMM") == 7)  # another family
    xt = torch.randn(layer.in_features, 3, dtype=torch.float16, device=device).t()
    assert not torch.all(layer(xt) == 7)  # non-contiguous x
    with autotune.forced_config("GEMM", Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, num_warps=4)):
        assert not torch.all(layer.forward_manual(x, "GEMM") == 7)  # a forced config
        _plant(layer, 3, "GEMM")
        assert not torch.all(layer.forward_manual(x, "GEMM") == 7)
    probe = _plant(layer, 3)
    settings.bump_generation()  # set_autotune / load_config / set_deterministic do this
    assert not torch.all(layer(x) == 7) and probe.calls == 0
    probe = _plant(layer, 3)
    layer.scales = layer.scales.clone()  # a tensor replaced (load_state_dict(assign=True), ...)
    assert not torch.all(layer(x) == 7) and probe.calls == 0


@pytest.mark.interpreter
def test_replays_are_dropped_on_moves_and_not_copied(device: str) -> None:
    layer = _layer(device)
    _plant(layer, 2)
    assert len(copy.deepcopy(layer)._replays) == 0
    assert len(pickle.loads(pickle.dumps(layer))._replays) == 0
    assert len(layer._replays) == 1
    layer.to(device)
    assert len(layer._replays) == 0
    _plant(layer, 2)
    layer.load_state_dict(layer.state_dict())
    y = layer(torch.randn(2, layer.in_features, dtype=torch.float16, device=device))
    assert not torch.all(y == 7)


# --------------------------------------------------------------------------------------------
# GPU: the real replays
# --------------------------------------------------------------------------------------------

_GPU_FAMILIES = ("GEMV", "GEMV_SPLITK", "GEMV_REVSPLITK", "GEMM_SPLITK", "GEMM")


@pytest.mark.gpu
@pytest.mark.parametrize("helper", [A16W4_HQQ_INT, A16W8_INT8, A16W158_INT, A16W16], ids=lambda h: h.__name__)
@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.float32])
def test_replayed_calls_equal_planned_calls(helper, deterministic: bool, out_dtype) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (compiled launchers)")
    torch.manual_seed(1)
    K, N = 1024, 384
    lin = nn.Linear(K, N, bias=True, dtype=torch.float32)
    kw = {"group_size": 128} if helper is A16W4_HQQ_INT else {}
    proc = helper(device="cuda", dtype=torch.float16)
    layer = proc.from_linear(lin, **kw)
    if out_dtype == torch.float32:  # the same weight in a layer with fp32 output
        fp32 = gemlite.GemLiteLinear(
            W_nbits=layer.W_nbits, group_size=layer.group_size, in_features=K, out_features=N,
            output_dtype=gemlite.DType.FP32,
        )  # fmt: skip
        fp32.load_state_dict(layer.state_dict())
        layer = fp32.cuda()
    gemlite.set_deterministic(deterministic)
    try:
        for family in (None, *_GPU_FAMILIES):
            for M in (1, 3, 16, 40):
                if family is not None and family.startswith("GEMV") and M > 16:
                    continue
                x = torch.randn(M, K, dtype=torch.float16, device="cuda")
                run = layer if family is None else (lambda t, f=family: layer.forward_manual(t, f))
                planned = run(x)
                tensors = (layer.W_q, layer.scales, layer.zeros, layer.bias, layer.layout, layer._out_dtype)
                _, config = gm._choose(x, *tensors, family)
                # A DEQUANT plan (dequantize, then cuBLAS) is two steps: not replayed.
                assert ((M, family) in layer._replays) != bool(config.DEQUANT), f"{family} M={M}"
                replayed = run(x)
                direct = gm.matmul(x, *tensors, family)
                if deterministic:
                    assert torch.equal(replayed, planned), f"{family} M={M}"
                    assert torch.equal(replayed, direct), f"{family} M={M}"
                else:  # atomics: the order of the fp32 additions may differ
                    torch.testing.assert_close(replayed, planned, rtol=1e-3, atol=1e-3)
                # Misaligned x (16-byte alignment is part of the kernel's specialization): bypassed.
                buf = torch.empty(M * K + 1, dtype=torch.float16, device="cuda")
                xm = buf[1:].view(M, K)
                xm.copy_(x)
                got = run(xm)  # its own compiled kernel (another specialization: the order of
                # its sums may differ from the aligned one's), not the aligned replay
                if deterministic:
                    assert torch.equal(got, gm.matmul(xm, *tensors, family)), f"{family} M={M} misaligned"
                    assert torch.equal(run(xm), got), f"{family} M={M} misaligned, again"
                else:
                    torch.testing.assert_close(got, planned, rtol=1e-3, atol=1e-3)
    finally:
        gemlite.set_deterministic(True)


@pytest.mark.gpu
def test_a_replay_reads_weights_changed_in_place() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (compiled launchers)")
    layer = _layer("cuda", K=512, N=256)
    x = torch.randn(1, 512, dtype=torch.float16, device="cuda")
    layer(x)
    assert layer._replays
    layer.scales.mul_(2)  # in place: the same tensor objects, new values
    replayed = layer(x)
    planned = gm.matmul(x, layer.W_q, layer.scales, layer.zeros, layer.bias, layer.layout, torch.float16)
    assert torch.equal(replayed, planned)
    layer.cpu().cuda()  # moved away and back: new tensors, the replays dropped and re-made
    assert not layer._replays
    assert torch.equal(layer(x), planned) and torch.equal(layer(x), planned)
