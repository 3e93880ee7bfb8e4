"""The eager fast path: a layer's kept launch (`gemlite.kernels.plan.Replay`) per M.

On the GPU: a replayed call gives bitwise the output of a planned one for every family and write
mode, and is really taken; it is dropped or bypassed whenever what it was made from changes. On CPU
the interpreter has no compiled launcher, so nothing is replayed by itself; two stand-ins let the CPU
run judge the same things. A probe put in the layer's cache checks the bypass rules of
`gemlite.matmul.run` (every condition, each of the layer's tensors replaced in turn); and a stand-in
for Triton's compiled kernel whose launcher runs the @triton.jit kernel through the interpreter
(`_interpreted_replays`) lets real `Replay` objects be made and called, so their kept arguments and
per-call output and workspace (zeroed where atomics need it) are compared bitwise with planned calls
in every family, write mode and output dtype. Every comparison is an exact one (`assert_exact`).
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
from gemlite.kernels import plan
from harness.numerics import assert_exact


def _layer(device, helper=A16W4_HQQ_INT, K=256, N=192, **kw):
    torch.manual_seed(0)
    lin = nn.Linear(K, N, bias=True, dtype=torch.float32)
    if helper is A16W4_HQQ_INT:
        kw.setdefault("group_size", 64)
    return helper(device=device, dtype=torch.float16).from_linear(lin, **kw)


def _planned(layer, x, family=None) -> torch.Tensor:
    """The layer's output for x through the checked contract: planned and launched, never replayed."""
    tensors = (layer.W_q, layer.scales, layer.zeros, layer.bias)
    return gm.matmul(x.contiguous(), *tensors, layer.layout, layer._out_dtype, family)


class _Probe:
    """Stands in for a Replay: counts its calls, returns a marker tensor (7 everywhere)."""

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


def _misaligned(x: torch.Tensor) -> torch.Tensor:
    """A contiguous copy of x whose data pointer is 2 bytes past a 16-byte boundary."""
    buf = torch.empty(x.numel() + 1, dtype=x.dtype, device=x.device)
    out = buf[1:].view(x.shape)
    out.copy_(x)
    assert out.data_ptr() % 16 != 0
    return out


def _replace(layer, name: str) -> None:
    """Give the layer a new tensor object for one of the tensors a replay is made from (equal values:
    a replay that is still taken shows as the probe's marker, not as a numerical difference)."""
    setattr(layer, name, getattr(layer, name).clone())


@pytest.mark.interpreter
def test_replay_is_used_only_while_everything_it_was_made_from_is_current(device: str) -> None:
    layer = _layer(device, K=128, N=40)
    x = torch.randn(3, layer.in_features, dtype=torch.float16, device=device)
    probe = _plant(layer, 3)
    assert torch.all(layer(x) == 7) and probe.calls == 1  # taken
    # Each of these calls must bypass the probe and give the planned output.
    assert_exact(layer(x[:2]), _planned(layer, x[:2]), what="another M")
    assert_exact(layer.forward_manual(x, "GEMM"), _planned(layer, x, "GEMM"), what="another family")
    xt = x.t().contiguous().t()
    assert_exact(layer(xt), _planned(layer, x), what="non-contiguous x")
    assert_exact(layer(_misaligned(x)), _planned(layer, x), what="x not 16-byte aligned")
    with autotune.forced_config("GEMM", Config(BLOCK_M=16, BLOCK_N=32, BLOCK_K=32, num_warps=4)):
        _plant(layer, 3, "GEMM")
        assert_exact(layer.forward_manual(x, "GEMM"), _planned(layer, x, "GEMM"), what="a forced config")
    assert probe.calls == 1
    probe = _plant(layer, 3)
    settings.bump_generation()  # set_autotune / load_config / set_deterministic do this
    assert_exact(layer(x), _planned(layer, x), what="a new settings generation")
    assert probe.calls == 0
    # A tensor replaced (load_state_dict(assign=True), a user's assignment, ...): every one of them.
    for name in ("W_q", "scales", "zeros", "bias", "_locks"):
        probe = _plant(layer, 3)
        _replace(layer, name)
        assert_exact(layer(x), _planned(layer, x), what=f"layer.{name} replaced")
        assert probe.calls == 0, name


@pytest.mark.interpreter
def test_replays_are_dropped_on_moves_and_not_copied(device: str) -> None:
    layer = _layer(device, K=128, N=40)
    _plant(layer, 2)
    assert len(copy.deepcopy(layer)._replays) == 0
    assert len(pickle.loads(pickle.dumps(layer))._replays) == 0
    assert len(layer._replays) == 1
    layer.to(device)
    assert len(layer._replays) == 0
    _plant(layer, 2)
    layer.load_state_dict(layer.state_dict())
    x = torch.randn(2, layer.in_features, dtype=torch.float16, device=device)
    assert_exact(layer(x), _planned(layer, x), what="after load_state_dict")


# --------------------------------------------------------------------------------------------
# CPU: real Replay objects, launched through the interpreter
# --------------------------------------------------------------------------------------------


class _InterpretedKernel:
    """Stands in for Triton's compiled kernel of one launch: what `Replay` calls, ``run(gx, gy, gz,
    stream, function, metadata, launch_metadata, enter_hook, exit_hook, *args, *constexprs)``, runs the
    @triton.jit kernel on those arguments through the interpreter."""

    function = None
    packed_metadata = None
    launches = 0  # over every instance: replayed launches

    def __init__(self, step) -> None:
        self.step = step

    def run(self, gx, gy, gz, stream, function, metadata, launch_metadata, enter, exit_hook, *args):
        kernel = self.step.kernel
        runtime, constexprs = plan.kernel_params(kernel)
        named = dict(zip(constexprs, args[len(runtime) :]))
        assert len(args) == len(runtime) + len(constexprs)
        kernel[(gx, gy, gz)](*args[: len(runtime)], **named)
        _InterpretedKernel.launches += 1


def _interpreted_replay(self, x, out):
    """`KernelLaunch.replay` with the interpreter's stand-in as the compiled kernel (the product's own
    rule for the workspace argument)."""
    if self.static is None:
        return None
    runtime = self.static.runtime
    ws = self.args[runtime.index("ws_ptr")] if "ws_ptr" in runtime else out
    return plan.Replay(self, _InterpretedKernel(self), x, out, ws)


@pytest.fixture
def interpreted_replays(device, monkeypatch):
    """Eager calls on CPU make and take real `Replay` objects, launched through the interpreter."""
    if device != "cpu":
        pytest.skip("the GPU makes real replays: test_replayed_calls_equal_planned_calls")
    monkeypatch.setattr(plan, "_raw_stream", lambda index: 0)
    monkeypatch.setattr(plan.KernelLaunch, "replay", _interpreted_replay)


def _with_output(layer, out_dtype, device):
    """`layer`, or the same weight in a layer with that output dtype."""
    if out_dtype == layer._out_dtype:
        return layer
    other = gemlite.GemLiteLinear(
        W_nbits=layer.W_nbits, group_size=layer.group_size, in_features=layer.in_features,
        out_features=layer.out_features, output_dtype=gemlite.DType.from_torch(out_dtype),
    )  # fmt: skip
    other.load_state_dict(layer.state_dict())
    return other.to(device)


_FAMILIES = ("GEMV", "GEMV_SPLITK", "GEMV_REVSPLITK", "GEMM_SPLITK", "GEMM")


@pytest.mark.interpreter
@pytest.mark.parametrize("deterministic", [True, False], ids=["det_on", "det_off"])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.float32], ids=["of16", "of32"])
def test_interpreted_replays_equal_planned_calls(
    deterministic, out_dtype, device, interpreted_replays
) -> None:
    """Every family's default interpreter tile (split K but for GEMM): the fixed-order reduction, and
    with determinism off fp32 atomics into a zeroed workspace (fp16 out) or output (fp32 out). The
    interpreter runs a grid's programs in order, so atomics are bitwise reproducible here too."""
    layer = _with_output(_layer(device, K=128, N=40), out_dtype, device)
    gemlite.set_deterministic(deterministic)
    try:
        for family in (None, *_FAMILIES):
            run = layer if family is None else (lambda t, f=family: layer.forward_manual(t, f))
            for M in (1, 3) if family is None else (3,):  # AUTO: GEMV at M = 1, a tile family at 3
                x = torch.randn(M, layer.in_features, dtype=torch.float16, device=device)
                assert_exact(run(x), _planned(layer, x, family), what=f"{family} M={M} planned")
                assert (M, family) in layer._replays, f"{family} M={M}: no replay kept"
                for _ in range(2):  # the second call finds the counters and buffers as the first left them
                    x = torch.randn(M, layer.in_features, dtype=torch.float16, device=device)
                    before = _InterpretedKernel.launches
                    y = run(x)
                    assert _InterpretedKernel.launches == before + 1, f"{family} M={M}: not replayed"
                    # (bitwise: dtype and shape included, the layer's output dtype)
                    assert_exact(y, _planned(layer, x, family), what=f"{family} M={M} replayed")
    finally:
        gemlite.set_deterministic(True)


@pytest.mark.interpreter
def test_interpreted_replay_follows_the_layers_tensors(device, interpreted_replays) -> None:
    """A replay reads weights changed in place (the same tensor objects), and is not taken once any
    tensor it holds is replaced by one with other values (the planned call then gives their output)."""
    layer = _layer(device, K=128, N=40)
    x = torch.randn(1, layer.in_features, dtype=torch.float16, device=device)
    layer(x)
    assert (1, None) in layer._replays
    layer.scales.mul_(2)  # in place
    before = _InterpretedKernel.launches
    assert_exact(layer(x), _planned(layer, x), what="scales changed in place")
    assert _InterpretedKernel.launches == before + 1
    for name, new in (
        ("bias", lambda t: t * 2 + 1),
        ("scales", lambda t: t * 0.5),
        ("zeros", lambda t: t + 1),
        ("W_q", lambda t: t ^ 1),
    ):
        layer(x)  # a replay of the current tensors is kept
        setattr(layer, name, new(getattr(layer, name)))
        assert_exact(layer(x), _planned(layer, x), what=f"layer.{name} replaced by other values")


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
