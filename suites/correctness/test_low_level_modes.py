"""GemLite's lower-level 8-bit modes, spelled as public GemLite spells them (issue 10, Kernels II):

* INT8 x INT8 and FP8 x FP8 without scales: ``GemLiteLinear(8, ..., input_dtype=DType.INT8 / DType.FP8,
  output_dtype=...)`` then ``pack(W_q, None, None, bias)``; x is int8 / e4m3 CODES, multiplied as they
  are: ``y = x @ W_q.T + bias`` (formats A8W8_INT8, A8W8_FP8). An INT32 output (int8 only) is the exact
  integer on every kernel family, split-K, atomics and row chunks included; FP32/FP16/BF16 outputs are
  within the bound of `harness.numerics`.
* ``scaled_activations=True`` with channel scales: ``pack(W_q, scales[N], None, bias)``; x is fp16/bf16
  and the layer quantizes it per token, so it is the same layer as the A8W8_INT8_dynamic /
  A8W8_FP8_dynamic helpers build, bit for bit (and GemLite's saved A8W8_INT8_dynamic layer loads into it).
* GemLite's functional path (``get_meta_args`` / ``get_tensor_args`` / ``forward_functional``) runs these
  layers and the dynamic formats, as public GemLite's does; and every bad input is refused naming the
  argument.

The drawn cases of these formats are ``test_formats.py``'s (``test_A8W8_INT8``, ``test_A8W8_FP8``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import gemlite.core as core
from gemlite import DType, GemLiteLinear, helper
from harness.case import pinned
from harness.numerics import assert_exact
from harness.strategies import PATH_TILES

pytestmark = pytest.mark.interpreter

K, N, M = 160, 40, 3
FIXTURE = Path(__file__).parent / "fixtures" / "gemlite06_state_dicts.pt"
_SPLIT = ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK")
# Per format: the output dtypes that every path takes, and those rotated through the paths.
_OUTS = {
    "A8W8_INT8": (("int32",), ("float32", "float16", "bfloat16")),
    "A8W8_FP8": ((), ("float32", "bfloat16", "float16")),
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _int8(shape, seed: int, lo: int = -128, hi: int = 128) -> torch.Tensor:
    return torch.randint(lo, hi, shape, generator=_gen(seed), dtype=torch.int8)


def _fp8(shape, seed: int, scale: float = 4.0) -> torch.Tensor:
    return (torch.randn(shape, generator=_gen(seed)) * scale).to(torch.float8_e4m3fn)


def _assert_meta(got: list[int], want: list[int], what: str) -> None:
    """meta_args compared exactly (`harness.numerics.ExactMismatch` names the differing fields)."""
    assert_exact(torch.tensor(got), torch.tensor(want), what=f"meta_args of {what}")


def _path_cases():
    """Every kernel path (each split-K family with determinism on and off, GEMM with a K tail) of both
    codes-in formats, INT8's int32 output on each of them; the float output dtypes, the bias, row-chunked
    launches (one row per launch) and state_dict round trips rotated through them. M = 2, K = 160
    (2.5 tiles of 64), N = 24."""
    m, n = 2, 24
    out = []
    for name, (every, rotated) in _OUTS.items():
        rows = [(fam, det) for fam in _SPLIT for det in (True, False)] + [("GEMM", True)]
        for f, (family, det) in enumerate(rows):
            for o, out_dtype in enumerate((*every, rotated[f % len(rotated)])):
                t = f + o
                split = family in _SPLIT
                case = pinned(
                    name, M=m, K=K, N=n, family=family, output_dtype=out_dtype,
                    bias=("output", "none")[t % 2], seed=100 * f + o, deterministic=det,
                    tile=PATH_TILES[family].as_dict(),
                    workspace_bytes=2 * n * 4 if split and t % 3 == 0 else None,
                    state_dict=t % 3 == 1, dist=("normal", "positive")[t % 2],
                )  # fmt: skip
                det_id = "det_on" if det else "det_off"
                out.append(pytest.param(case, id=f"{name}-{family}-{det_id}-{out_dtype}"))
    return out


@pytest.mark.parametrize("case", _path_cases())
def test_every_path_and_output_dtype(case, judge):
    judge(case)


# --------------------------------------------------------------------------------------------
# INT8 x INT8 without scales: int32 output, bit-exact
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["AUTO", "GEMV", "GEMM_SPLITK", "GEMM"])
@pytest.mark.parametrize("deterministic", [True, False])
def test_int32_output_is_the_exact_integer(family, deterministic, device):
    """Same-sign sums of K = 2048 products near 2**14 each pass 2**24 (where fp32 stops holding every
    integer): the int32 output equals the int64 product exactly, with the int32 bias; -128 included."""
    k, n = 2048, 16
    W = _int8((n, k), 1, 90, 128)
    W[:, 0] = -128
    x = _int8((4, k), 2, 90, 128)
    x[:, 0] = -128
    bias = torch.randint(-(2**20), 2**20, (n,), generator=_gen(3), dtype=torch.int32)
    layer = GemLiteLinear(8, k, k, n, input_dtype=DType.INT8, output_dtype=DType.INT32)
    layer.pack(W.to(device), None, None, bias.to(device))
    want = (x.long() @ W.long().T + bias.long()).to(torch.int32)
    assert int(want.abs().max()) > 2**24
    from gemlite.settings import is_deterministic, set_deterministic

    saved = is_deterministic()
    set_deterministic(deterministic)
    try:
        rows = x[:1] if family == "GEMV" else x
        y = layer(rows.to(device)) if family == "AUTO" else layer.forward_manual(rows.to(device), family)
    finally:
        set_deterministic(saved)
    assert y.dtype == torch.int32
    assert_exact(y.cpu(), want[: rows.shape[0]], what=f"int32 output ({family})")


def test_int8_layer_is_gemlites_spelling(device):
    """Public GemLite's int8 x int8 layer: W_nbits=8, group_size=in_features, codes without scales; its
    attributes and meta_args say what GemLite's say; bias of any integer dtype (int32-range) works."""
    W, x = _int8((N, K), 4), _int8((2, 3, K), 5)
    bias = torch.arange(N, dtype=torch.int64) * 1000 - 7
    layer = GemLiteLinear(
        W_nbits=8, group_size=K, in_features=K, out_features=N, input_dtype=DType.INT8,
        output_dtype=DType.INT32,
    ).pack(W.to(device), scales=None, zeros=None, bias=bias.to(device))  # fmt: skip
    assert layer.format.name == "A8W8_INT8" and layer.bias.dtype == torch.int32
    assert (layer.W_group_mode, layer.channel_scale_mode, layer.acc_dtype) == (0, 0, DType.INT32)
    _assert_meta(layer.get_meta_args(), [0, 8, K, 255, 1, 4, 6, 6, 6, 0, 0, 0], "int8 codes layer")
    y = layer(x.to(device))
    assert y.shape == (2, 3, N)
    assert_exact(y.cpu(), (x.long() @ W.long().T + bias).to(torch.int32), what="int32 output [2, 3, N]")


def test_fp8_codes_layer(device):
    """FP8 x FP8 without scales, fp32 output: the e4m3 products (exact) summed in fp32."""
    W, x = _fp8((N, K), 6), _fp8((M, K), 7)
    bias = torch.randn(N, generator=_gen(8))
    layer = GemLiteLinear(8, K, K, N, input_dtype=DType.FP8, output_dtype=DType.FP32)
    layer.pack(W.to(device), None, None, bias.to(device))
    assert layer.format.name == "A8W8_FP8" and layer.acc_dtype is DType.FP32
    want = x.double() @ W.double().T + bias.double()
    y = layer(x.to(device))
    assert y.dtype == torch.float32
    err = (y.cpu().double() - want).abs().max().item()
    assert err <= 2 * (K + 1) * 2.0**-24 * float((x.double().abs() @ W.double().abs().T).max() + 3), err


# --------------------------------------------------------------------------------------------
# scaled_activations=True with channel scales: the dynamic formats, GemLite's way
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["INT8", "FP8"])
def test_scaled_activations_layer_is_the_dynamic_helpers(kind, device):
    codes = _int8((N, K), 9) if kind == "INT8" else _fp8((N, K), 9)
    scales = (torch.rand(N, 1, generator=_gen(10)) * 0.01 + 0.001).to(device)
    bias = torch.randn(N, generator=_gen(11)).half().to(device)
    layer = GemLiteLinear(
        8, K, K, N, input_dtype=DType[kind], output_dtype=DType.FP16, scaled_activations=True
    ).pack(codes.to(device), scales, None, bias)
    assert layer.format.name == f"A8W8_{kind}_dynamic" and layer.scaled_activations
    proc = helper.A8W8_INT8_dynamic if kind == "INT8" else helper.A8W8_FP8_dynamic
    twin = proc(device=device, dtype=torch.float16).from_weights(codes.to(device), bias, scales)
    x = torch.randn(M, K, generator=_gen(12)).half().to(device)
    assert_exact(layer(x), twin(x), what=f"{kind} scaled_activations layer vs the helper's")
    assert layer(x.bfloat16()).dtype == torch.float16  # bf16 x is quantized too; the output is FP16
    meta = layer.get_meta_args()
    acc = DType.INT32 if kind == "INT8" else DType.FP32
    # GemLite's A8W8 dynamic layer: scaled_activations=1, its 8-bit input dtype, modes (0, 3).
    _assert_meta(meta, [1, 8, K, 255, 1, DType[kind].value, 1, acc.value, 0, 3, 0, 0], f"{kind} scaled layer")
    assert_exact(
        core.forward_functional(x, layer.bias, layer.get_tensor_args(), meta), layer(x),
        what="forward_functional of a scaled_activations layer",
    )  # fmt: skip


def test_gemlites_saved_dynamic_int8_layer_loads(device):
    """GemLite 0.6's own A8W8_INT8_dynamic checkpoint (fixture): its meta_args are ours, and it loads
    into ``GemLiteLinear(8, ..., input_dtype=INT8, scaled_activations=True)``, which then computes what
    our layer packed from the same codes and scales computes."""
    peer = torch.load(FIXTURE, weights_only=True)["layers"]["a8w8_int8_dynamic"]
    c, sd = peer["ctor"], {k: v.to(device) for k, v in peer["state_dict"].items()}
    ctor = dict(
        W_nbits=8, group_size=c["group_size"], in_features=c["in_features"], out_features=c["out_features"],
        input_dtype=DType.INT8, output_dtype=DType.FP16, scaled_activations=True,
    )  # fmt: skip
    loaded = GemLiteLinear(**ctor).to(device)
    loaded.load_state_dict(dict(sd))
    ours = GemLiteLinear(**ctor).pack(sd["W_q"].t().contiguous(), sd["scales"].reshape(-1), None, sd["bias"])
    _assert_meta(ours.get_meta_args(), peer["meta_args"], "GemLite's A8W8_INT8_dynamic")
    _assert_meta(loaded.get_meta_args(), peer["meta_args"], "GemLite's A8W8_INT8_dynamic, loaded")
    x = torch.randn(M, c["in_features"], generator=_gen(13)).half().to(device)
    assert_exact(loaded(x), ours(x), what="GemLite's A8W8_INT8_dynamic checkpoint, loaded")


# --------------------------------------------------------------------------------------------
# GemLite's functional path runs every 8-bit mode
# --------------------------------------------------------------------------------------------


def _functional_layers(device):
    W8, F8 = _int8((N, K), 14), _fp8((N, K), 15)
    s = (torch.rand(N, generator=_gen(16)) * 0.01 + 0.001).to(device)
    yield (
        "int8 codes",
        GemLiteLinear(8, K, K, N, DType.INT8, DType.INT32).pack(
            W8.to(device), None, None, torch.arange(N, dtype=torch.int32, device=device)
        ),
        _int8((M, K), 17).to(device),
    )
    yield (
        "fp8 codes",
        GemLiteLinear(8, K, K, N, DType.FP8, DType.BF16).pack(
            F8.to(device), None, None, torch.randn(N, device=device)
        ),
        _fp8((M, K), 18).to(device),
    )
    x = torch.randn(M, 256, generator=_gen(19)).half().to(device)
    blocks = torch.rand(1, 2, generator=_gen(20)).to(device) * 0.01 + 0.001
    yield (
        "int8 blocks",
        helper.A8W8_INT8_block_dynamic(device, torch.float16).from_weights(
            _int8((N, 256), 21).to(device), None, blocks
        ),
        x,
    )
    yield (
        "ternary",
        helper.A8W158_INT_dynamic(device, torch.float16).from_weights(
            torch.randint(-1, 2, (N, K), generator=_gen(22)).to(device), 0.02
        ),
        x[:, :K],
    )
    yield (
        "fp8 x hqq4",
        helper.A8W4_HQQ_INT_dynamic(device, dtype=torch.float16).from_weights(
            torch.randint(0, 16, (N, K), generator=_gen(23), dtype=torch.uint8).to(device),
            s.half().repeat_interleave(K // 32).reshape(N, K // 32),
            torch.full((N, K // 32), 7.0).half().to(device),
        ),
        x[:, :K],
    )


def test_forward_functional_runs_every_8bit_mode(device):
    for what, layer, x in _functional_layers(device):
        y = core.forward_functional(x, layer.bias, layer.get_tensor_args(), layer.get_meta_args())
        assert_exact(y, layer(x), what=f"forward_functional of {what} ({layer.format.name})")


# --------------------------------------------------------------------------------------------
# Bad input: refused, naming the argument
# --------------------------------------------------------------------------------------------


def test_bad_inputs_of_the_8bit_modes(device):
    W8, F8 = _int8((N, K), 24).to(device), _fp8((N, K), 25).to(device)
    ones = torch.ones(N, device=device)
    raw = GemLiteLinear(8, K, K, N, DType.INT8, DType.INT32).pack(W8, None, None)
    fp8 = GemLiteLinear(8, K, K, N, DType.FP8, DType.FP32).pack(F8, None, None)
    scaled = GemLiteLinear(8, K, K, N, DType.INT8, DType.FP16, scaled_activations=True).pack(W8, ones, None)
    xh = torch.randn(M, K, device=device).half()
    with pytest.raises(
        TypeError, match=r"x: expected dtype torch.int8 \(input_dtype=INT8: .*got torch.float16"
    ):
        raw(xh)
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float8_e4m3fn .*got torch.int8"):
        fp8(_int8((M, K), 26).to(device))
    with pytest.raises(
        TypeError, match=r"x: expected dtype torch.float16 or torch.bfloat16 .*got torch.int8"
    ):
        scaled(_int8((M, K), 27).to(device))
    layer = GemLiteLinear(8, K, K, N, DType.INT8, DType.INT32)
    with pytest.raises(
        TypeError, match=r"W_q: a W_nbits=8 layer with input_dtype=INT8 takes torch.int8 codes"
    ):
        layer.pack(F8, None, None)
    with pytest.raises(
        ValueError, match="scales: A8W8_INT8 multiplies INT8 codes as they are and takes no scales"
    ):
        layer.pack(W8, ones, None)
    with pytest.raises(ValueError, match="zeros: INT8 weights are symmetric and take no zeros"):
        layer.pack(W8, None, 3)
    with pytest.raises(TypeError, match="bias: an INT32 output adds an integer bias exactly"):
        layer.pack(W8, None, None, torch.ones(N, device=device))
    with pytest.raises(ValueError, match="bias: an INT32 output's bias must lie in int32's range"):
        layer.pack(W8, None, None, torch.full((N,), 2**40, device=device))
    with pytest.raises(
        TypeError, match="bias: expected a float16, bfloat16 or float32 tensor, got torch.int32"
    ):
        GemLiteLinear(8, K, K, N, DType.INT8, DType.FP32).pack(
            W8, None, None, torch.ones(N, dtype=torch.int32, device=device)
        )
    with pytest.raises(
        ValueError, match=r"scales: INT8 weights need one scale per output channel .*torch.ones"
    ):
        GemLiteLinear(8, K, K, N, DType.INT8, DType.FP16, scaled_activations=True).pack(W8, None, None)
    with pytest.raises(ValueError, match="format: A16W8_INT8 takes NONE activations"):
        GemLiteLinear(8, K, K, N, DType.INT8, DType.FP32).pack(
            W8, ones, None, format=helper.A16W8_INT8.format
        )
    with pytest.raises(ValueError, match="output_dtype: INT32 .* needs input_dtype=INT8"):
        GemLiteLinear(8, K, K, N, DType.FP8, DType.INT32)
    with pytest.raises(NotImplementedError, match="W_nbits: INT8 activations without scaled_activations"):
        GemLiteLinear(4, 32, K, N, DType.INT8, DType.FP32)
    with pytest.raises(ValueError, match="in_features: int8 x int8 sums .* overflow .* K = 131072"):
        GemLiteLinear(8, None, 131072, N, DType.INT8, DType.INT32)
    with pytest.raises(NotImplementedError, match="acc_dtype: .*fp32 only"):
        GemLiteLinear(8, K, K, N, DType.FP16, DType.FP16, acc_dtype=DType.INT32)
    assert GemLiteLinear(8, K, K, N, DType.INT8, DType.INT32, acc_dtype=DType.INT32).acc_dtype is DType.INT32
    # As in public GemLite, scaled_activations only applies to 8-bit input dtypes.
    assert not GemLiteLinear(8, K, K, N, DType.FP16, DType.FP16, scaled_activations=True).scaled_activations
    # The functional path checks x against what meta_args say.
    with pytest.raises(
        TypeError, match=r"x: expected dtype torch.int8 \(meta_args\[5\]=INT8\), got torch.float16"
    ):
        core.forward_functional(xh, None, raw.get_tensor_args(), raw.get_meta_args())
    with pytest.raises(
        TypeError, match=r"x: scaled_activations=1 \(meta_args\[0\]\) quantizes fp16 or bf16 x"
    ):
        core.forward_functional(
            _int8((M, K), 28).to(device), None, scaled.get_tensor_args(), scaled.get_meta_args()
        )
    with pytest.raises(TypeError, match=r"bias: an INT32 output \(meta_args\[6\]\) adds an integer bias"):
        core.forward_functional(
            _int8((M, K), 29).to(device), ones, raw.get_tensor_args(), raw.get_meta_args()
        )


def test_state_dict_round_trip_of_a_scaled_activations_layer(device):
    from harness.build import reload_layer

    W8 = _int8((N, K), 30).to(device)
    layer = GemLiteLinear(8, K, K, N, DType.INT8, DType.BF16, scaled_activations=True)
    layer.pack(W8, torch.rand(N, device=device) * 0.01, None, torch.randn(N, device=device))
    again = reload_layer(layer)
    assert again.scaled_activations and again.format.name == "A8W8_INT8_dynamic"
    x = torch.randn(M, K, device=device).bfloat16()
    assert_exact(again(x), layer(x), what="scaled_activations layer after a state_dict round trip")


def test_torch_compile_traces_an_int32_layer(device):
    layer = GemLiteLinear(8, K, K, N, DType.INT8, DType.INT32).pack(_int8((N, K), 31).to(device), None, None)
    x = _int8((M, K), 32).to(device)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    assert_exact(compiled(x), layer(x), what="torch.compile'd int32 layer")
