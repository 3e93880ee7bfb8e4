"""The public-GemLite surface (`gemlite.compat`, `gemlite.core`, `gemlite.bitpack`, the helpers' GemLite
signatures): every name its users and clients call exists and means what it means there.

* ``get_meta_args()`` / ``get_tensor_args()`` describe a layer the way GemLite does, and
  `forward_functional` on them gives, bitwise, the layer's own output (it is the same custom op).
* Against public GemLite 0.6.0 itself (`fixtures/gemlite06_state_dicts.pt`, written by GemLite's own
  ``pack`` / ``state_dict`` on CPU, see `fixtures/make_gemlite06_state_dicts.py`): for the same inputs our
  ``meta_args`` and packed tensors equal GemLite's, field by field (the differences are listed and
  explained); GemLite's own tensors run through `forward_functional` within the error bound of
  GemLite's dequantization; GemLite checkpoints load (or are refused with an error naming what differs).

Outputs are judged with `harness.numerics` against a float64 golden of the same quantized operands.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import gemlite
import gemlite.bitpack as bitpack
import gemlite.compat as compat
import gemlite.core as core
import reference as ref
from gemlite import DType, GemLiteLinear
from gemlite.formats import Zeros
from gemlite.helper import (
    A16W2_HQQ_INT,
    A16W4_HQQ_INT,
    A16W8,
    A16W8_FP8,
    A16W8_HQQ_INT,
    A16W8_INT8,
    A16W16,
    A16W158_INT,
    A16Wn,
    A16Wn_HQQ_INT,
    cleanup_linear,
)
from gemlite.packing import pack_codes
from harness.numerics import Precision, compare_output, golden_from_dequantized

pytestmark = pytest.mark.interpreter

K, N, G, M = 128, 48, 64, 3
FIXTURE = Path(__file__).parent / "fixtures" / "gemlite06_state_dicts.pt"
PEER = torch.load(FIXTURE, weights_only=True)["layers"]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _x(dtype=torch.float16, device="cpu", m: int = M, k: int = K, seed: int = 1) -> torch.Tensor:
    return torch.randn(m, k, generator=_gen(seed)).to(device=device, dtype=dtype)


def assert_within_bound(
    y: torch.Tensor, x: torch.Tensor, W64: torch.Tensor, bias=None, what: str = ""
) -> None:
    """y against the float64 golden ``x @ W64.T + bias`` under the element-wise bound."""
    x2, y2 = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
    golden = golden_from_dequantized(x2, W64, None if bias is None else bias.to(x.device))
    cmp = compare_output(y2, golden, Precision(y.dtype, x.dtype), context=what)
    assert cmp.ok, cmp.message()


def hqq_layer(bits=4, g=G, zeros="float", dtype=torch.float16, out=None, word=32, device="cpu", bias=True):
    """(layer, W64) for HQQ codes packed through GemLiteLinear.pack."""
    gen = _gen(bits * 100 + (g or 0))
    codes = torch.randint(0, 1 << bits, (N, K), generator=gen, dtype=torch.uint8)
    groups = 1 if g is None else K // g
    s = (torch.rand(N, groups, generator=gen) * 0.01 + 0.001).to(dtype)
    z = {"float": torch.randint(0, 1 << bits, (N, groups), generator=gen).to(dtype), "int": (1 << bits) // 2,
         "none": None}[zeros]  # fmt: skip
    b = torch.randn(N, generator=gen).to(dtype) if bias else None
    act = DType.from_torch(dtype)
    layer = GemLiteLinear(bits, g, K, N, act, DType.from_torch(out or dtype))
    layer.pack(
        *(t.to(device) if isinstance(t, torch.Tensor) else t for t in (codes, s, z, b)), packing_bitwidth=word
    )
    per = K // groups
    s64 = s.double().repeat_interleave(per, dim=1)
    if isinstance(z, torch.Tensor):
        z64 = z.double().repeat_interleave(per, dim=1)
    else:
        z64 = torch.full((N, K), float(z or 0), dtype=torch.float64)
    W64 = (codes.double() - z64) * s64
    return layer, W64


def float_linear(n=N, k=K, bias=True, dtype=torch.float16, seed=3) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(k, n, bias=bias).to(dtype)


# --------------------------------------------------------------------------------------------
# 1. The names public GemLite's users and clients call (T torchao, H hqq, V hqq's vLLM, R README)
# --------------------------------------------------------------------------------------------

PUBLIC_NAMES = {
    gemlite: """GemLiteLinear GemLiteLinearTriton DType GEMLITE_ACC_DTYPE set_acc_dtype set_autotune
        set_autotune_setting set_packing_bitwidth set_kernel_caching enable_tma enable_warp_specialize
        set_native_atomic_bfp16 set_ptx_fp4_pack set_fast_nvfp4 enable_cudagraph_autotune
        auto_detect_ptx_fp4_pack enable_activation_scaling forward_functional load_config cache_config
        reset_config helper core bitpack""".split(),
    core: """forward_functional TORCH_TO_DTYPE DTYPE_TO_TORCH GemLiteLinearTriton GemLiteLinear DType
        set_autotune set_fast_gemv_acc enable_activation_scaling GEMLITE_ACC_DTYPE""".split(),
    bitpack: """unpack_over_rows unpack_over_rows_triton unpack_over_rows_torch unpack_over_cols_torch
        unpack_over_cols_triton pack_weights_over_rows_triton pack_weights_over_rows_torch
        pack_weights_over_cols_torch pack_weights_over_cols_triton pack_weights_over_rows
        pack_weights_over_cols""".split(),
    gemlite.helper: """A16Wn A16W8 A16W8_INT8 A16W8_FP8 A16Wn_HQQ_INT A16W8_HQQ_INT A16W4_HQQ_INT
        A16W2_HQQ_INT A16W1_HQQ_INT A16W158_INT patch_model warmup cleanup_linear A8W8_dynamic
        A8W8_int8_dynamic A8W8_INT8_dynamic A8W8_fp8_dynamic A8W8_FP8_dynamic A8Wn_HQQ_INT_dynamic
        A8W4_HQQ_INT_dynamic A8W2_HQQ_INT_dynamic A8W158_INT_dynamic A16Wn_MXFP A16W8_MXFP A16W4_MXFP
        A16W4_NVFP A8Wn_MXFP_dynamic A8W8_MXFP_dynamic A8W4_MXFP_dynamic A4W4_MXFP_dynamic
        A4W4_NVFP_dynamic""".split(),
    GemLiteLinear: """pack forward forward_manual forward_auto_no_warmup get_meta_args get_tensor_args
        data_contiguous elements_per_sample W_group_mode channel_scale_mode acc_dtype meta_dtype
        compute_dtype orig_shape meta_scale device unpack_mask signature meta_is_channelwise cache_config
        load_config reset_config PACKING_BITWIDTH""".split(),
}
HELPER_METHODS = {
    A16Wn: ["from_weights", "from_packed_weights", "from_hqqlinear"],
    A16W4_HQQ_INT: ["from_weights", "from_packed_weights", "from_hqqlinear", "from_linear"],
    A16W8: ["from_weights", "from_linear"],
    A16W158_INT: ["from_weights", "from_bitlinear", "from_linear"],
}


def test_every_public_gemlite_name_exists() -> None:
    missing = [
        f"{getattr(owner, '__name__', owner)}.{name}"
        for owner, names in (*PUBLIC_NAMES.items(), *HELPER_METHODS.items())
        for name in names
        if not hasattr(owner, name)
    ]
    assert not missing, missing
    assert gemlite.GemLiteLinearTriton is GemLiteLinear and core.GemLiteLinearTriton is GemLiteLinear
    assert gemlite.forward_functional is core.forward_functional is compat.forward_functional
    assert (
        importlib.import_module("gemlite.core") is core
        and importlib.import_module("gemlite.bitpack") is bitpack
    )
    assert (
        core.TORCH_TO_DTYPE[torch.bfloat16] is DType.BF16 and core.DTYPE_TO_TORCH[12] == torch.float8_e4m3fnuz
    )
    assert core.GEMLITE_MATMUL_TYPES == ("GEMV", "GEMV_REVSPLITK", "GEMV_SPLITK", "GEMM_SPLITK", "GEMM")


def test_gemlite_processor_names_are_there(device) -> None:
    # torchao probes these with hasattr; hqq's vLLM module reads them as attributes.
    assert not hasattr(gemlite.helper, "A8Wn_dynamic")  # absent from GemLite 0.6 too
    for name in ("A4W4_MXFP_dynamic", "A4W4_NVFP_dynamic"):  # the last of GemLite 0.6's, now running
        assert getattr(gemlite.helper, name)(device="cpu").format.name == name
    assert gemlite.helper.A8W8_INT8_dynamic is gemlite.helper.A8W8_int8_dynamic
    # Dynamic activation layers run through GemLite's functional path too (as torchao calls them):
    # scaled_activations=1, FP8 input, modes (1, 3) for channel-wise 4-bit codes with an integer zero.
    proc = gemlite.helper.A8Wn_HQQ_INT_dynamic(device=device, packing_bitwidth=32, W_nbits=4)
    W_q = torch.randint(0, 16, (64, 128), dtype=torch.uint8, device=device)
    layer = proc.from_weights(W_q, torch.ones(64, 1, device=device), 8)
    meta = layer.get_meta_args()
    assert (meta[0], meta[5], meta[9], meta[10]) == (1, DType.FP8.value, 3, 1)
    x = _x(k=128, device=device)
    y = core.forward_functional(x, None, layer.get_tensor_args(), meta)
    assert torch.equal(y, layer(x))


# --------------------------------------------------------------------------------------------
# 2. get_meta_args / get_tensor_args / forward_functional on gemlite's own layers
# --------------------------------------------------------------------------------------------


def _layers(device):
    """name -> packed layer, one per layout family of the compat table."""
    lin = float_linear()
    return {
        "hqq4-g64-float": hqq_layer(4, 64, "float", device=device)[0],
        "hqq2-chan-int-bf16": hqq_layer(2, None, "int", torch.bfloat16, device=device)[0],
        "hqq8-g32-none-word8-f32out": hqq_layer(8, 32, "none", out=torch.float32, word=8, device=device)[0],
        "hqq4-chan-float": hqq_layer(4, None, "float", device=device)[0],
        "int8": A16W8_INT8(device, torch.float16).from_linear(float_linear(), del_orig=False),
        "fp8": A16W8_FP8(device, torch.bfloat16).from_linear(float_linear(dtype=torch.bfloat16)),
        "ternary": A16W158_INT(device, torch.float16).from_linear(lin),
        "w16-bf16": A16W16(device, torch.bfloat16).from_linear(float_linear(dtype=torch.bfloat16)),
    }


EXPECTED_MODES = {  # (W_group_mode, channel_scale_mode, data_contiguous, elements_per_sample)
    "hqq4-g64-float": (3, 0, True, 8),
    "hqq2-chan-int-bf16": (1, 1, True, 16),
    "hqq8-g32-none-word8-f32out": (2, 0, True, 1),
    "hqq4-chan-float": (3, 0, True, 8),
    "int8": (0, 1, False, 1),
    "fp8": (0, 1, False, 1),
    "ternary": (1, 1, True, 16),
    "w16-bf16": (0, 0, False, 1),
}


def test_meta_and_tensor_args_describe_the_layer_and_forward_functional_matches(device: str) -> None:
    for name, layer in _layers(device).items():
        meta, targs = layer.get_meta_args(), layer.get_tensor_args()
        wgm, csm, contiguous, e = EXPECTED_MODES[name]
        modes = (
            layer.W_group_mode,
            layer.channel_scale_mode,
            layer.data_contiguous,
            layer.elements_per_sample,
        )
        assert modes == (wgm, csm, contiguous, e), name
        assert len(meta) == 12 and all(type(v) is int for v in meta), name
        assert meta[1] == layer.W_nbits and meta[4] == e and meta[5] == layer.input_dtype.value, name
        assert meta[6] == layer.output_dtype.value and meta[7] == DType.FP32.value, name
        assert (meta[9], meta[10], meta[11]) == (csm, wgm, int(contiguous)), name
        assert len(targs) == 3 and targs[0].shape[1] == N and targs[0].shape[0] * e == K, name
        x = _x(layer.input_dtype.torch_dtype, device)
        y = layer(x)
        assert torch.equal(core.forward_functional(x, layer.bias, targs, meta), y), name
        # GemLite 0.6's four tensor args (meta_scale appended) and a forced family (GEMM, index 4).
        four = [*targs, layer.meta_scale]
        assert torch.equal(core.forward_functional(x, layer.bias, four, meta, 4), layer.forward_manual(x)), (
            name
        )


def test_tensor_args_are_views_of_the_layer(device: str) -> None:
    layer, _ = hqq_layer(device=device)
    w, s, z = layer.get_tensor_args()
    assert w.data_ptr() == layer.W_q.data_ptr() and s is layer.scales and z is layer.zeros
    int8 = A16W8_INT8(device, torch.float16).from_linear(float_linear())
    w8 = int8.get_tensor_args()[0]
    assert w8.shape == (K, N) and w8.stride() == (1, K) and w8.data_ptr() == int8.W_q.data_ptr()
    zint = hqq_layer(2, None, "int", device=device)[0].get_tensor_args()[2]
    assert zint.dtype == torch.int32 and zint.dim() == 0 and int(zint) == 2


def test_layer_attributes_of_public_gemlite(device: str) -> None:
    layer, _ = hqq_layer(device=device)
    assert layer.unpack_mask == 15 and layer.acc_dtype is DType.FP32 and layer.compute_dtype == torch.float16
    assert layer.meta_dtype is DType.FP16 and not layer.meta_is_channelwise
    assert layer.orig_shape.tolist() == [N, K] and float(layer.meta_scale) == 0.0
    assert layer.device == layer.W_q.device and layer.device.type == torch.device(device).type
    assert layer.signature == (K, N, 4, G)
    assert A16W16(device, torch.float16).from_linear(float_linear()).meta_dtype is DType.INT32
    with pytest.raises(AttributeError, match="W_group_mode"):
        layer.W_group_mode = 4  # behaviour follows from the format, not from a mode integer
    with pytest.raises(RuntimeError, match=r"call pack\(\)"):
        GemLiteLinear(4, G, K, N).get_meta_args()
    x = _x(device=device)
    assert torch.equal(layer.forward_auto_no_warmup(x), layer(x))
    assert GemLiteLinear.load_config is gemlite.autotune.load_config


def test_constructor_and_pack_take_public_gemlite_arguments(device: str) -> None:
    codes = torch.randint(0, 16, (N, K), generator=_gen(), dtype=torch.uint8).to(device)
    s = torch.full((N, K // G), 0.01, dtype=torch.float16, device=device)
    z = torch.full((N, K // G), 7.0, dtype=torch.float16, device=device)
    # GemLite's positional order: (W_nbits, group_size, in, out, input_dtype, output_dtype, acc_dtype, ...)
    a = GemLiteLinear(4, G, K, N, DType.FP16, DType.FP16, DType.FP32, False)
    # pack(W_q, scales, zeros, bias, fma_mode, contiguous, packing_bitwidth, packed)
    a.pack(codes, s, z, None, False, True, 8, False)
    b = GemLiteLinear(4, G, K, N, acc_dtype=None).pack(
        pack_codes(codes, 4, 8), s, z, None, True, None, None, True
    )
    assert a.elements_per_sample == b.elements_per_sample == 2
    assert torch.equal(a.W_q, b.W_q) and a.W_group_mode == 3
    with pytest.raises(NotImplementedError, match="acc_dtype: gemlite's kernels accumulate in fp32 only"):
        GemLiteLinear(4, G, K, N, acc_dtype=DType.FP16)
    with pytest.raises(TypeError, match="fma_mode: expected a bool"):
        GemLiteLinear(4, G, K, N).pack(codes, s, z, fma_mode="yes")


# --------------------------------------------------------------------------------------------
# 3. forward_functional: slices, compile, bad arguments
# --------------------------------------------------------------------------------------------


def test_forward_functional_on_sliced_tensor_args(device: str) -> None:
    # torchao's tensor parallelism slices the [K/e, N] tensors; sizes come from the tensors.
    layer, W64 = hqq_layer(device=device, bias=False)
    w, s, z = layer.get_tensor_args()
    meta = layer.get_meta_args()
    x = _x(device=device)
    full = layer(x)
    cols = core.forward_functional(x, None, [w[:, :16], s[:, :16], z[:, :16]], meta)
    assert torch.equal(cols, full[:, :16])  # an N slice: bitwise the same columns
    e = layer.elements_per_sample
    rows = core.forward_functional(x[:, :G], None, [w[: G // e], s[:1], z[:1]], meta)
    assert_within_bound(rows, x[:, :G], W64[:, :G], what="K slice")


def test_forward_functional_compiles_to_one_graph(device: str) -> None:
    layer, _ = hqq_layer(device=device)
    targs, meta, bias = layer.get_tensor_args(), layer.get_meta_args(), layer.bias

    def f(x):
        return core.forward_functional(x, bias, targs, meta) * 2

    torch._dynamo.reset()
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    x = _x(device=device)
    assert torch.equal(compiled(x), f(x))


def test_forward_functional_rejects_bad_arguments(device: str) -> None:
    layer, _ = hqq_layer(device=device)
    targs, meta = layer.get_tensor_args(), layer.get_meta_args()
    x = _x(device=device)
    bad_meta = lambda i, v: [*meta[:i], v, *meta[i + 1 :]]  # noqa: E731
    cases = [
        (dict(tensor_args=targs[:2]), ValueError, r"tensor_args: expected \[W_q, scales, zeros\]"),
        (
            dict(tensor_args=[targs[0], 1.0, targs[2]]),
            TypeError,
            r"tensor_args\[1\] \(scales\): expected a tensor",
        ),
        (dict(meta_args=meta[:11]), ValueError, "meta_args: expected GemLite's 12 ints"),
        (dict(meta_args=bad_meta(3, "15")), TypeError, r"meta_args\[3\]: expected an int, got str"),
        (
            dict(meta_args=bad_meta(0, 1)),
            ValueError,
            r"meta_args\[0\]: scaled_activations=1 quantizes INT8 or FP8 activations, but .* says FP16",
        ),
        (dict(meta_args=bad_meta(9, 3)), ValueError, r"meta_args\[9\]: channel_scale_mode=3 scales activa"),
        (
            dict(meta_args=bad_meta(5, DType.INT8.value)),
            ValueError,
            r"meta_args\[10\]: INT8 codes given as they are .* multiply int8 weight codes",
        ),
        (
            dict(meta_args=bad_meta(5, 0)),
            ValueError,
            r"meta_args\[5\]: expected FP16, BF16, INT8 or FP8 activations, got FP32",
        ),
        (
            dict(meta_args=bad_meta(6, DType.INT8.value)),
            ValueError,
            r"meta_args\[6\]: expected an FP16, BF16",
        ),
        (dict(meta_args=bad_meta(4, 4)), ValueError, r"meta_args\[4\]: elements_per_sample=4 does not fit"),
        (
            dict(meta_args=bad_meta(10, 2)),
            ValueError,
            r"meta_args\[10\]: W_group_mode=2 takes no zero-points",
        ),
        (dict(matmul_type=5), ValueError, r"matmul_type: expected -1 \(auto\) or 0..4"),
        (
            dict(x=x.float()),
            TypeError,
            r"x: expected dtype torch.float16 \(meta_args\[5\]=FP16\), got torch.float32",
        ),
        (dict(x=x[:, :64]), ValueError, r"x: expected shape \[\.\.\., 128\]"),
        (
            dict(bias=torch.zeros(3, device=device)),
            ValueError,
            r"bias: expected a float tensor of shape \(48,\)",
        ),
        (dict(tensor_args=[targs[0].long(), *targs[1:]]), NotImplementedError, "64-bit packing words"),
    ]
    for kwargs, exc, match in cases:
        args = dict(x=x, bias=None, tensor_args=targs, meta_args=meta, matmul_type=-1) | kwargs
        with pytest.raises(exc, match=match):
            core.forward_functional(**args)


# --------------------------------------------------------------------------------------------
# 4. Against public GemLite 0.6.0 itself (the fixture)
# --------------------------------------------------------------------------------------------

SUPPORTED_PEER = [n for n in PEER if n != "a8w8_int8_dynamic"]
# meta_args fields in which gemlite's description differs from GemLite's for the same inputs, and why:
#   10/9 (W_group_mode / channel_scale_mode): GemLite stores grouped zeros as -z*s (mode 4, fma_mode=True);
#     gemlite keeps z (mode 3). INT8/FP8: GemLite's A16W8 pre-scales (2, 0), gemlite post-scales the
#     fp32 accumulator by the fp32 channel scale (0, 1): the same W = q * s.
#   2 (group_size) of A16W16: GemLite stores group_size=None as 1, gemlite the resolved in_features.
#   4 (elements_per_sample) of 16-bit words: gemlite repacks into 32-bit words.
PEER_META_DIFFERENCES = {
    "hqq4_g64_fma": {10},
    "hqq4_g64_pack16": {4, 10},
    "int8_A16W8": {9, 10},
    "fp8_A16W8": {9, 10},
    "w16": {2},
}


def _peer_layer(name: str, device: str) -> GemLiteLinear:
    c = PEER[name]["ctor"]
    group = None if c["group_size"] in (1, c["in_features"]) else c["group_size"]
    return GemLiteLinear(
        c["W_nbits"],
        group,
        c["in_features"],
        c["out_features"],
        DType[c["input_dtype"]],
        DType[c["output_dtype"]],
    ).to(device)


def _peer_W64(name: str) -> torch.Tensor:
    """GemLite's own dequantized weight [N, K] in float64, from its saved tensors and modes."""
    e = PEER[name]
    sd, meta = e["state_dict"], e["meta_args"]
    bits, wgm = meta[1], meta[10]
    w = sd["W_q"]
    if w.dtype in (torch.int8, torch.float8_e4m3fn, torch.float16, torch.bfloat16):
        q = w.t().double()
    else:
        q = bitpack.unpack_over_rows(w, bits, K).t().double()
    if not sd["scales"].is_floating_point():
        return q
    s = sd["scales"].t().double().repeat_interleave(K // sd["scales"].shape[0], dim=1)
    z = sd["zeros"]
    if z.numel() == 0:
        return q * s
    zz = z.double() if z.dim() == 0 else z.t().double().repeat_interleave(K // z.shape[0], dim=1)
    return q * s + zz if wgm == 4 else (q - zz) * s


def _ours_from_peer_inputs(name: str, device: str) -> GemLiteLinear:
    """Our layer packed from the tensors GemLite's layer was built from."""
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in PEER[name]["inputs"].items()}
    layer = _peer_layer(name, device)
    if "W_q" in inputs:
        word = {"hqq8_g32_pack8_nozero_f32out": 8}.get(name, 32)
        return layer.pack(
            inputs["W_q"], inputs["scales"], inputs.get("zeros"), inputs.get("bias"), packing_bitwidth=word
        )
    if name == "ternary_A16W158":
        return A16W158_INT(device, torch.float16).from_weights(
            inputs["weight"], inputs["weight_scale"], inputs["bias"]
        )
    if name == "w16":
        return layer.pack(inputs["weight"], None, None, inputs["bias"])
    # int8/fp8: GemLite's codes and scales (its A16W8 rounds ties to even; gemlite's quantizer away from zero)
    sd = PEER[name]["state_dict"]
    proc = A16W8(device, torch.float16, fp8=torch.float8_e4m3fn if name.startswith("fp8") else None)
    return proc.from_weights(sd["W_q"].t().to(device), inputs["bias"], sd["scales"].reshape(-1).to(device))


def test_meta_and_tensor_args_equal_public_gemlites(device: str) -> None:
    for name in SUPPORTED_PEER:
        ours = _ours_from_peer_inputs(name, device)
        theirs, sd = PEER[name]["meta_args"], PEER[name]["state_dict"]
        assert PEER[name]["tensor_args_len"] == 4
        differ = {i for i in range(12) if ours.get_meta_args()[i] != theirs[i]}
        assert differ == PEER_META_DIFFERENCES.get(name, set()), (name, ours.get_meta_args(), theirs)
        w, s, z = (t.cpu() for t in ours.get_tensor_args())
        if name != "hqq4_g64_pack16":
            bits_of = lambda t: t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t  # noqa: E731
            assert w.dtype == sd["W_q"].dtype and torch.equal(bits_of(w), bits_of(sd["W_q"])), (
                name
            )  # bit-identical
        if sd["scales"].is_floating_point():
            assert torch.equal(s.to(sd["scales"].dtype), sd["scales"].reshape(s.shape)), name
        if name in ("hqq4_g64_nofma_bf16", "hqq2_chan_A16Wn", "ternary_A16W158"):
            assert torch.equal(z.to(sd["zeros"].dtype), sd["zeros"]), name


def test_public_gemlites_own_tensor_args_run_through_forward_functional(device: str) -> None:
    for name in SUPPORTED_PEER:
        sd, meta = PEER[name]["state_dict"], PEER[name]["meta_args"]
        targs = [sd[k].to(device) for k in ("W_q", "scales", "zeros", "meta_scale")]
        x = _x(DType(meta[5]).torch_dtype, device)
        bias = sd.get("bias")
        if name == "hqq4_g64_pack16":
            with pytest.raises(NotImplementedError, match="16-bit packing words"):
                core.forward_functional(x, None, targs, meta)
            continue
        y = core.forward_functional(x, None if bias is None else bias.to(device), targs, meta)
        assert y.dtype == DType(meta[6]).torch_dtype
        assert_within_bound(y, x, _peer_W64(name), bias, what=f"GemLite 0.6 {name}")


def test_public_gemlite_checkpoints_load(device: str) -> None:
    for name in SUPPORTED_PEER:
        sd = PEER[name]["state_dict"]
        layer = _peer_layer(name, device)
        layer.load_state_dict({k: v.to(device) for k, v in sd.items()})
        assert set(layer.state_dict()) <= {"W_q", "scales", "zeros", "metadata", "bias"}  # saved back as ours
        x = _x(layer.input_dtype.torch_dtype, device)
        y = layer(x)
        assert_within_bound(y, x, _peer_W64(name), sd.get("bias"), what=f"loaded GemLite 0.6 {name}")
        if name not in ("hqq4_g64_fma", "hqq4_g64_pack16"):  # FMA zeros come back as -z'/s: not bitwise z
            assert torch.equal(y, _ours_from_peer_inputs(name, device)(x)), name
    # Through a parent module (the key prefix), strict.
    model = nn.Sequential(_peer_layer("hqq4_g64_nofma_bf16", device))
    model.load_state_dict(
        {f"0.{k}": v.to(device) for k, v in PEER["hqq4_g64_nofma_bf16"]["state_dict"].items()}
    )
    assert model[0].format.label == "A16W4_HQQ_INT/g64" and model[0].format.weight.zeros is Zeros.FLOAT


def test_public_gemlite_checkpoints_refused_clearly(device: str) -> None:
    sd = {k: v.to(device) for k, v in PEER["a8w8_int8_dynamic"]["state_dict"].items()}
    with pytest.raises(RuntimeError, match=r"public-GemLite checkpoint .*input_dtype=INT8 \(layer: FP16\)"):
        GemLiteLinear(8, K, K, N).to(device).load_state_dict(dict(sd))
    hqq = {k: v.to(device) for k, v in PEER["hqq4_g64_fma"]["state_dict"].items()}
    with pytest.raises(RuntimeError, match=r"out_features=48 \(layer: 40\)"):
        GemLiteLinear(4, G, K, 40).to(device).load_state_dict(dict(hqq))
    with pytest.raises(RuntimeError, match=r"group_size=64 \(layer: 32\)"):
        GemLiteLinear(4, 32, K, N).to(device).load_state_dict(dict(hqq))
    no_shape = {k: v for k, v in hqq.items() if k != "orig_shape"}
    with pytest.raises(RuntimeError, match="orig_shape is missing"):
        GemLiteLinear(4, G, K, N).to(device).load_state_dict(no_shape)
    dynamic_meta = dict(
        hqq, metadata=torch.tensor([1, *PEER["hqq4_g64_fma"]["meta_args"][1:]], dtype=torch.int32)
    )
    with pytest.raises(RuntimeError, match="scaled_activations=1"):
        GemLiteLinear(4, G, K, N).to(device).load_state_dict(dynamic_meta)
    fresh = GemLiteLinear(4, G, K, N)
    assert not fresh.is_packed  # a refused load leaves the layer as it was


# --------------------------------------------------------------------------------------------
# 5. gemlite.bitpack
# --------------------------------------------------------------------------------------------


def test_bitpack_matches_gemlites_packing_and_round_trips() -> None:
    for bits in (8, 4, 2, 1):
        codes = torch.randint(0, 1 << bits, (N, K), generator=_gen(bits), dtype=torch.uint8)
        for width in (8, 32):
            words, e = bitpack.pack_weights_over_cols_torch(codes, bits, width, transpose=False)
            assert e == width // bits and torch.equal(words, pack_codes(codes, bits, width))
            rows, _ = bitpack.pack_weights_over_rows_triton(
                codes.t().contiguous(), bits, width, transpose=False
            )
            assert torch.equal(rows, words.t())  # GemLite's physical [K/e, N]
            assert torch.equal(bitpack.unpack_over_rows(rows, bits, K, torch.uint8), codes.t())
            assert torch.equal(bitpack.unpack_over_cols_triton(words, bits, K), codes)
        for width in (16, 64):  # GemLite's other words: same codes, same layout rule
            words, e = bitpack.pack_weights_over_cols(codes, bits, width, transpose=True)
            assert words.dtype == bitpack.PACKING_BITWIDTH_TO_TORCH_DTYPE[width] and words.shape == (
                K // e,
                N,
            )
            assert torch.equal(bitpack.unpack_over_rows_torch(words, bits, K), codes.t())
    layer, _ = hqq_layer()
    assert torch.equal(
        bitpack.unpack_over_rows(layer.W_q, 4, K).t(), ref.unpack(layer.W_q.t().contiguous(), 4)
    )
    # hqq's vLLM module calls them so (keywords included):
    q_w = bitpack.unpack_over_rows_triton(layer.W_q, 4, K, torch.uint8)
    repacked = bitpack.pack_weights_over_rows_triton(q_w, 4, packing_bitwidth=32, transpose=False)[0]
    assert torch.equal(repacked, layer.W_q)
    top = torch.full((2, 32), 15, dtype=torch.uint8)  # every field set: the sign bit of each word
    assert int(bitpack.pack_weights_over_cols_torch(top, 4, 64, False)[0][0, 0]) == -1


def test_bitpack_rejects_bad_input() -> None:
    codes = torch.zeros(4, 32, dtype=torch.uint8)
    cases = [
        (
            lambda: bitpack.pack_weights_over_cols_torch(codes.float(), 4, 32, False),
            TypeError,
            "W_q: expected integer codes",
        ),
        (
            lambda: bitpack.pack_weights_over_cols_torch(codes, 3, 32, False),
            ValueError,
            "W_nbits: expected one of",
        ),
        (
            lambda: bitpack.pack_weights_over_cols_torch(codes, 4, 24, False),
            ValueError,
            "packing_bitwidth: expected 8, 16, 32 or 64",
        ),
        (
            lambda: bitpack.pack_weights_over_rows_torch(codes, 4, 32, False),
            ValueError,
            r"W_q: its rows \(4\) must be a multiple of 8",
        ),
        (
            lambda: bitpack.pack_weights_over_cols_torch(codes + 16, 4, 32, False),
            ValueError,
            r"4-bit codes must lie in \[0, 15\]",
        ),
        (
            lambda: bitpack.unpack_over_rows(torch.zeros(4, 8), 4, 32),
            TypeError,
            "W_q_packed: expected integer words",
        ),
        (
            lambda: bitpack.unpack_over_rows(torch.zeros(4, 8, dtype=torch.int32), 4, 30),
            ValueError,
            "num_output_rows: .* unpack to 32, got 30",
        ),
        (
            lambda: bitpack.unpack_over_cols_torch(torch.zeros(4, 8, dtype=torch.int32), 4, 64, "uint8"),
            TypeError,
            "dtype: expected a torch.dtype",
        ),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()


# --------------------------------------------------------------------------------------------
# 6. Processors with GemLite's signatures
# --------------------------------------------------------------------------------------------


def test_A16Wn_is_the_per_call_bit_width_processor(device: str) -> None:
    gen = _gen(7)
    codes = torch.randint(0, 16, (N, K), generator=gen, dtype=torch.uint8).to(device)
    s = (torch.rand(N * K // G, 1, generator=gen) * 0.01).bfloat16().to(device)
    z = torch.randint(0, 16, (N * K // G, 1), generator=gen).bfloat16().to(device)
    a = A16Wn(device=device).from_weights(codes, s, z, 4, G)  # dtype=None: the scales' bf16
    b = A16W4_HQQ_INT(device=device).from_weights(codes, s, z)
    x = _x(torch.bfloat16, device)
    assert a.input_dtype is DType.BF16 and torch.equal(a(x), b(x))
    c = A16Wn(device=device, packing_bitwidth=8).from_packed_weights(pack_codes(codes, 4, 8), s, z, 4, G)
    d = A16Wn_HQQ_INT(device=device, W_nbits=4).from_packed_weights(pack_codes(codes, 4, 32), s, z)
    assert c.elements_per_sample == 2 and d.elements_per_sample == 8 and c.group_size == d.group_size == G
    assert torch.equal(c(x), a(x)) and torch.equal(d(x), a(x))
    with pytest.raises(ValueError, match=r"group_size: 32 does not match the scales \(.* groups of 64\)"):
        A16Wn(device=device).from_weights(codes, s, z, 4, 32)
    with pytest.raises(TypeError, match="scales: MXFP4 scales are e8m0 bytes"):  # e8m0, not float scales
        A16Wn(device=device).from_weights(codes, s, None, 4, 32, quant_type="MXFP")
    with pytest.raises(
        ValueError, match="packing_bitwidth: gemlite's kernels read 8- or 32-bit words, got 16"
    ):
        A16Wn(device=device, packing_bitwidth=16)
    with pytest.raises(ValueError, match="W_nbits: expected 8, 4, 2 or 1, got 3"):
        A16Wn(device=device).from_weights(codes, s, z, 3, G)


def test_A16W8_takes_gemlites_order_and_quantizes_float_weights(device: str) -> None:
    lin = float_linear(bias=True)
    w, b = lin.weight.detach().to(device), lin.bias.detach().to(device)
    q = A16W8(device=device).from_weights(w, b)  # scales=None: quantize (dtype=None: the weight's fp16)
    assert q.format.name == "A16W8_INT8" and q.input_dtype is DType.FP16
    codes, scales = gemlite.quantize.quantize_int8(w)
    same = A16W8_INT8(device=device).from_weights(codes, b, scales)  # pre-quantized, GemLite's order
    x = _x(device=device)
    assert torch.equal(q(x), same(x)) and torch.equal(
        same(x), A16W8_INT8(device).from_weights(codes, scales=scales, bias=b)(x)
    )
    fp8 = A16W8(device=device).from_weights(codes.float().to(torch.float8_e4m3fn), b, scales.half())
    assert (
        fp8.format.name == "A16W8_FP8" and fp8.input_dtype is DType.FP16
    )  # the base class takes any 8-bit codes
    assert A16W8(device, fp8=torch.float8_e4m3fn).from_linear(float_linear()).format.name == "A16W8_FP8"
    with pytest.raises(
        TypeError, match=r"scales: pre-quantized torch.int8 codes need their scales; GemLite's order"
    ):
        A16W8_INT8(device=device).from_weights(codes, scales)  # the old (weight, scales) order
    with pytest.raises(NotImplementedError, match="fp8: torch.float8_e5m2 weights"):
        A16W8(device, fp8=torch.float8_e5m2)
    with pytest.raises(TypeError, match="post_scale: expected a bool"):
        A16W8_INT8(device, post_scale=1)


def test_dtype_none_is_inferred_and_bitlinear_and_cleanup(device: str) -> None:
    assert (
        A16W4_HQQ_INT(device).from_linear(float_linear(dtype=torch.bfloat16), group_size=G).input_dtype
        is DType.BF16
    )
    assert (
        A16W8_HQQ_INT(device).from_linear(float_linear(dtype=torch.float32), group_size=G).input_dtype
        is DType.FP16
    )

    class BitLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(
                torch.randint(-1, 2, (N, K), generator=_gen(9)).half(), requires_grad=False
            )
            self.weight_scale = torch.tensor(0.03)
            self.bias = None

    bl = BitLinear().to(device)
    t = bl.weight.detach().clone()
    layer = A16W158_INT(device).from_bitlinear(bl)
    assert bl.weight is None and layer.format.name == "A16W158_INT"
    x = _x(device=device)
    assert torch.equal(layer(x), A16W158_INT(device).from_weights(t, 0.03)(x))
    lin = float_linear()
    cleanup_linear(lin, del_orig=False)
    assert lin.weight is not None
    cleanup_linear(lin)
    assert lin.weight is None and lin.bias is None
    two = A16W2_HQQ_INT(device).from_linear(float_linear(), group_size=None)
    assert two.W_nbits == 2 and A16W2_HQQ_INT(device).W_nbits == 2


# --------------------------------------------------------------------------------------------
# 7. Settings
# --------------------------------------------------------------------------------------------


def test_settings_of_public_gemlite(device: str) -> None:
    layer_words = lambda: hqq_layer(device=device, word=None)[0].elements_per_sample  # noqa: E731
    try:
        gemlite.set_packing_bitwidth(8)
        assert GemLiteLinear.PACKING_BITWIDTH == 8 and layer_words() == 2
    finally:
        gemlite.set_packing_bitwidth(32)
    assert layer_words() == 8
    with pytest.raises(ValueError, match=r"packing_bitwidth: expected one of \(8, 32\)"):
        gemlite.set_packing_bitwidth(16)
    setters = ((gemlite.set_kernel_caching, True), (gemlite.enable_tma, True),
               (gemlite.set_native_atomic_bfp16, True), (gemlite.enable_warp_specialize, True),
               (gemlite.set_ptx_fp4_pack, True), (gemlite.enable_cudagraph_autotune, True),
               (gemlite.set_fast_nvfp4, True), (core.set_fast_gemv_acc, True),
               (gemlite.set_acc_dtype, DType.FP16), (gemlite.set_autotune_setting, lambda m: m))  # fmt: skip
    for setter, arg in setters:
        compat._WARNED.discard(setter.__name__)
        with pytest.warns(
            compat.GemLiteCompatWarning, match=f"gemlite.{setter.__name__}.*changes nothing here"
        ):
            setter(arg)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            setter(arg)  # warned once per setter
    assert (
        compat.settings()["set_kernel_caching"] is True and compat.settings()["set_acc_dtype"] is DType.FP16
    )
    gemlite.set_acc_dtype(DType.FP32)
    assert gemlite.GEMLITE_ACC_DTYPE[DType.FP16] is DType.FP32
    with pytest.raises(TypeError):
        gemlite.GEMLITE_ACC_DTYPE[DType.FP16] = DType.FP16  # read-only
    with pytest.raises(TypeError, match="enabled: expected a bool, got int"):
        gemlite.enable_tma(1)
    with pytest.raises(ValueError, match="dtype: expected DType.FP16 or DType.FP32"):
        gemlite.set_acc_dtype(DType.BF16)
    assert gemlite.auto_detect_ptx_fp4_pack() is False and gemlite.enable_activation_scaling(64) is True


def test_set_autotune_takes_public_gemlites_values() -> None:
    before = gemlite.get_autotune()
    try:
        gemlite.set_autotune(True)
        assert gemlite.get_autotune() == "max"
        gemlite.set_autotune("default")
        assert gemlite.get_autotune() is False
        gemlite.set_autotune({"GEMM": "FAST", "GEMV": "fast"})
        assert gemlite.get_autotune() == "fast"
        gemlite.set_autotune("max", use_cuda_graph=False)
        with pytest.raises(ValueError, match="config: gemlite has one autotune mode"):
            gemlite.set_autotune({"GEMM": "max", "GEMV": "fast"})
        with pytest.raises(ValueError, match=r"config: unknown kernel famil\(ies\) \['GEMX'\]"):
            gemlite.set_autotune({"GEMX": "max"})
        with pytest.raises(
            ValueError, match="config: expected 'fast', 'max', 'default', True or False, got 'slow'"
        ):
            gemlite.set_autotune("slow")
        with pytest.raises(
            TypeError, match=r"set_autotune: unexpected keyword argument\(s\) \['cuda_graph'\]"
        ):
            gemlite.set_autotune("fast", cuda_graph=True)
    finally:
        gemlite.autotune.set_autotune(before)
