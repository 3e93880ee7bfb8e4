"""torch.compile sees gemlite's matmul as one custom op (``gemlite::matmul``): no graph break, no
recompilation per M with ``dynamic=True``, outputs bitwise equal to eager; CUDA graphs through
``mode="reduce-overhead"`` on a GPU. On CPU the same kernels run under the Triton interpreter.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gemlite
from gemlite.helper import A16W4_HQQ_INT, A16W8_INT8, A16W16, A16W158_INT

pytestmark = pytest.mark.interpreter


class Block(nn.Module):
    """Two gemlite layers of different formats around a non-linearity, plus a plain op after them."""

    def __init__(self, device: str, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up = A16W4_HQQ_INT(device=device, dtype=dtype).from_linear(
            nn.Linear(64, 96, dtype=torch.float32), group_size=32
        )
        self.down = A16W8_INT8(device=device, dtype=dtype).from_linear(nn.Linear(96, 64))
        self.out = A16W158_INT(device=device, dtype=dtype).from_linear(nn.Linear(64, 32, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.down(torch.relu(self.up(x)))
        return self.out(h * 0.5 + x)


def _compile(model, device, **kw):
    torch._dynamo.reset()
    # Inductor on GPU; on CPU aot_eager keeps the suite fast (the graph is the same; one test runs
    # inductor on CPU too).
    backend = "inductor" if device == "cuda" else "aot_eager"
    return torch.compile(model, backend=kw.pop("backend", backend), **kw)


def test_the_matmul_is_a_custom_op_with_a_fake_implementation(device: str) -> None:
    model = Block(device)
    layer = model.up
    x = torch.randn(5, 64, dtype=torch.float16, device=device)
    torch.library.opcheck(
        torch.ops.gemlite.matmul.default,
        (
            x,
            layer.W_q,
            layer.scales,
            layer.zeros,
            layer.bias,
            layer._locks,
            layer._layout_key,
            torch.float16,
            "",
        ),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"),
    )
    with torch._subclasses.fake_tensor.FakeTensorMode() as mode:
        fx = mode.from_tensor(torch.empty(7, 64, dtype=torch.float16, device=device))
        args = [mode.from_tensor(t) for t in (layer.W_q, layer.scales, layer.zeros)]
        for out_dtype in (torch.float16, torch.bfloat16, torch.float32):
            y = torch.ops.gemlite.matmul(fx, *args, None, None, layer._layout_key, out_dtype, "")
            assert y.shape == (7, 96) and y.dtype == out_dtype


@pytest.mark.parametrize("dynamic", [False, True])
def test_fullgraph_compile_matches_eager_bitwise(device: str, dynamic: bool) -> None:
    model = Block(device)
    compiled = _compile(model, device, fullgraph=True, dynamic=dynamic)
    for M in (3, 4, 9):
        x = torch.randn(M, 64, dtype=torch.float16, device=device)
        assert torch.equal(compiled(x), model(x)), f"M={M}"
    x3 = torch.randn(2, 3, 64, dtype=torch.float16, device=device)  # leading dims
    assert torch.equal(compiled(x3), model(x3))


def test_dynamic_compile_does_not_recompile_per_m(device: str) -> None:
    model = Block(device)
    compiled = _compile(model, device, fullgraph=True, dynamic=True)
    compiled(torch.randn(2, 64, dtype=torch.float16, device=device))
    with torch._dynamo.config.patch(error_on_recompile=True):
        for M in (3, 5, 17, 64):
            x = torch.randn(M, 64, dtype=torch.float16, device=device)
            assert torch.equal(compiled(x), model(x)), f"M={M}"


def test_one_op_node_per_layer_and_no_graph_break(device: str) -> None:
    model = Block(device)
    x = torch.randn(4, 64, dtype=torch.float16, device=device)
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    (graph,) = explanation.graphs
    ops = [n.target for n in graph.graph.nodes if n.op == "call_function"]
    matmul = (torch.ops.gemlite.matmul, torch.ops.gemlite.matmul.default)
    assert sum(op in matmul for op in ops) == 3, ops


def test_inductor_on_cpu_too(device: str) -> None:
    """The default backend (inductor) compiles the graph around the opaque op (C++ on CPU)."""
    model = Block(device)
    compiled = _compile(model, device, fullgraph=True, backend="inductor")
    x = torch.randn(6, 64, dtype=torch.float16, device=device)
    assert torch.equal(compiled(x), model(x))


@pytest.mark.gpu
def test_reduce_overhead_cuda_graphs_match_eager() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (CUDA graphs)")
    model = Block("cuda")
    for M in (1, 8, 32):  # tune every bucket eagerly first: nothing is timed during capture
        model(torch.randn(M, 64, dtype=torch.float16, device="cuda"))
    compiled = _compile(model, "cuda", mode="reduce-overhead", fullgraph=True)
    for _ in range(3):  # warm-up runs, then replays of the captured graph
        for M in (1, 8, 32):
            x = torch.randn(M, 64, dtype=torch.float16, device="cuda")
            assert torch.equal(compiled(x).clone(), model(x)), f"M={M}"


def test_a16w16_and_bf16_compile(device: str) -> None:
    proc = A16W16(device=device, dtype=torch.bfloat16)
    layer = proc.from_linear(nn.Linear(64, 40, dtype=torch.bfloat16))
    compiled = _compile(layer, device, fullgraph=True)
    x = torch.randn(3, 64, dtype=torch.bfloat16, device=device)
    assert torch.equal(compiled(x), layer(x))
    assert gemlite.GemLiteLinear is type(layer)
