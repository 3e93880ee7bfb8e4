"""Everything a user can pass is validated at the boundary, with an error that names the argument.

Each case asserts the exception type and that the message names the argument at fault (and, where it
matters, shows what was expected). None of these needs a kernel to run, except the few forward checks
that happen on a packed layer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gemlite.matmul
from gemlite import DType, GemLiteLinear
from gemlite.helper import (
    A16W4_HQQ_INT,
    A16W8_FP8,
    A16W8_INT8,
    A16W158_INT,
    patch_model,
    warmup,
)
from gemlite.packing import pack_codes
from gemlite.quantize import quantize_fp8, quantize_hqq, quantize_int8, quantize_ternary

K, N, G = 128, 40, 64


def hqq_operands(bits: int = 4, device: str = "cpu", g: int = G):
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 1 << bits, (N, K), generator=gen, dtype=torch.uint8).to(device)
    scales = (torch.rand(N, K // g, generator=gen) * 0.01 + 0.001).half().to(device)
    zeros = torch.full((N, K // g), (1 << bits) / 2, dtype=torch.float16, device=device)
    return codes, scales, zeros


def layer4(**kw) -> GemLiteLinear:
    args = dict(group_size=G, in_features=K, out_features=N)
    args.update(kw)
    return GemLiteLinear(4, **args)


# --------------------------------------------------------------------------------------------
# Constructor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(W_nbits=3), ValueError, r"W_nbits: expected one of \(8, 4, 2, 1, 16\).*got 3"),
        (dict(W_nbits=True), ValueError, "W_nbits"),
        (dict(in_features=None), ValueError, "in_features: required"),
        (dict(out_features=None), ValueError, "out_features: required"),
        (dict(in_features=-128), ValueError, "in_features: expected a positive int, got -128"),
        (dict(out_features=4.0), TypeError, "out_features: expected a positive int"),
        (
            dict(in_features=100, group_size=None),
            ValueError,
            "in_features: K must be a multiple of 32, got 100",
        ),
        (dict(group_size=48), ValueError, "group_size: must divide in_features=128.*got 48"),
        (dict(W_nbits=2, group_size=16), ValueError, "group_size: HQQ groups must .* multiple of 32"),
        (dict(group_size=0), ValueError, "group_size: expected a positive int, got 0"),
        (dict(group_size="64"), TypeError, "group_size"),
        (dict(input_dtype=DType.FP32), ValueError, "input_dtype: expected one of .*INT8, FP8, got FP32"),
        # 8-bit activation codes meet 8-bit weights (W_nbits=4 here)
        (dict(input_dtype=DType.INT8), NotImplementedError, "W_nbits: INT8 activations .* 8-bit weights"),
        (dict(input_dtype=DType.FP8), NotImplementedError, "W_nbits: FP8 activations .* 8-bit weights"),
        (dict(input_dtype=DType.FP8e5), NotImplementedError, "input_dtype: FP8e5 activations .* later"),
        (dict(input_dtype=DType.MXFP4), NotImplementedError, "input_dtype: MXFP4"),
        (dict(input_dtype="fp16"), TypeError, "input_dtype: expected a gemlite DType"),
        (dict(input_dtype=torch.complex64), TypeError, "input_dtype: gemlite has no DType for torch dtype"),
        (dict(input_dtype=torch.int32), ValueError, "input_dtype: expected one of .*INT8, FP8, got INT32"),
        (
            dict(output_dtype=DType.INT8),
            ValueError,
            "output_dtype: expected one of FP16, BF16, FP32, INT32, got INT8",
        ),
        (dict(output_dtype=DType.INT32), ValueError, "output_dtype: INT32 .* needs input_dtype=INT8"),
        (
            dict(W_nbits=8, input_dtype=DType.INT8, output_dtype=DType.INT32, scaled_activations=True),
            ValueError,
            "output_dtype: INT32 .* without scaled_activations",
        ),
        (
            dict(W_nbits=4, input_dtype=DType.INT8, scaled_activations=True),
            NotImplementedError,
            "W_nbits: INT8 activations with scaled_activations=True multiply 8-bit weights",
        ),
        (dict(scaled_activations=1), TypeError, "scaled_activations: expected a bool"),
    ],
)
def test_constructor_rejects(kwargs, exc, match) -> None:
    args = dict(W_nbits=4, group_size=G, in_features=K, out_features=N)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        GemLiteLinear(**args)


def test_group_16_is_nvfp4s_and_refused_for_hqq_codes() -> None:
    """4 bits in groups of 16 is NVFP4's layout: the constructor takes it, HQQ codes are refused at pack."""
    layer = GemLiteLinear(4, 16, K, N)
    codes = torch.zeros((N, K), dtype=torch.uint8)
    scales = torch.ones((N, K // 16), dtype=torch.float16)
    with pytest.raises(ValueError, match="group_size: HQQ groups must .* multiple of 32"):
        layer.pack(codes, scales, torch.zeros_like(scales))


def test_constructor_accepts_torch_dtypes_and_none_group() -> None:
    layer = GemLiteLinear(4, None, K, N, input_dtype=torch.bfloat16, output_dtype=torch.float32)
    assert layer.input_dtype is DType.BF16 and layer.output_dtype is DType.FP32 and layer.group_size == K
    assert GemLiteLinear(16, 64, K, N).group_size == K  # ignored for unquantized weights


# --------------------------------------------------------------------------------------------
# pack: W_q
# --------------------------------------------------------------------------------------------


def test_pack_w_q_type_shape_dtype_range() -> None:
    codes, scales, zeros = hqq_operands()
    with pytest.raises(TypeError, match="W_q: expected a torch.Tensor, got list"):
        layer4().pack(codes.tolist(), scales, zeros)
    with pytest.raises(
        ValueError, match=r"W_q: expected shape \[out_features, in_features\] = \[40, 128\], got \(128, 40\)"
    ):
        layer4().pack(codes.t().contiguous(), scales, zeros)
    with pytest.raises(ValueError, match=r"W_q: expected shape .* got \(40, 160\)"):
        layer4().pack(torch.zeros(N, K + 32, dtype=torch.uint8), scales, zeros)
    bad = codes.clone()
    bad[3, 7] = 16
    with pytest.raises(ValueError, match=r"W_q: 4-bit codes must lie in \[0, 15\], got a maximum of 16"):
        layer4().pack(bad, scales, zeros)
    with pytest.raises(TypeError, match="W_q: a W_nbits=4 layer takes uint8 .*got torch.int8"):
        layer4().pack(codes.to(torch.int8), scales, zeros)
    with pytest.raises(
        TypeError, match="W_q: a W_nbits=8 layer takes uint8 .*int8 .*float8_e4m3fn.*got torch.int16"
    ):
        GemLiteLinear(8, None, K, N).pack(codes.to(torch.int16), scales[:, :1], None)


def test_pack_16bit_weight() -> None:
    w = torch.randn(N, K)
    with pytest.raises(
        TypeError, match="W_q: a W_nbits=16 weight must have the activation dtype torch.float16"
    ):
        GemLiteLinear(16, None, K, N).pack(w, None, None)
    with pytest.raises(TypeError, match="W_q: .*torch.bfloat16.*got torch.float16"):
        GemLiteLinear(16, None, K, N, input_dtype=DType.BF16).pack(w.half(), None, None)
    with pytest.raises(ValueError, match="scales: a W_nbits=16 weight takes no scales"):
        GemLiteLinear(16, None, K, N).pack(w.half(), torch.ones(N), None)
    with pytest.raises(ValueError, match="zeros: a W_nbits=16 weight takes no zeros"):
        GemLiteLinear(16, None, K, N).pack(w.half(), None, 0)
    nan = w.half()
    nan[0, 0] = float("nan")
    with pytest.raises(ValueError, match="W_q: the 16-bit weight contains NaN or Inf"):
        GemLiteLinear(16, None, K, N).pack(nan, None, None)


# --------------------------------------------------------------------------------------------
# pack: scales, zeros, bias
# --------------------------------------------------------------------------------------------


def test_pack_scales() -> None:
    codes, scales, zeros = hqq_operands()
    with pytest.raises(
        ValueError, match=r"scales: 4-bit HQQ codes need scales \(N \* K / group_size .* = 80 values\)"
    ):
        layer4().pack(codes, None, zeros)
    with pytest.raises(
        ValueError, match=r"scales: expected N \* K / group_size = 40 \* 128 / 64 = 80 values .* got 40"
    ):
        layer4().pack(codes, scales[:, :1], zeros)
    with pytest.raises(ValueError, match=r"scales: expected N \(channel-wise.* = 40.* got 80"):
        layer4(group_size=None).pack(codes, scales, zeros[:, :1])
    with pytest.raises(
        TypeError, match="scales: expected a float16, bfloat16 or float32 tensor, got torch.int32"
    ):
        layer4().pack(codes, scales.int(), zeros)
    with pytest.raises(TypeError, match="scales: expected a torch.Tensor, got float"):
        layer4().pack(codes, 0.01, zeros)
    inf = scales.clone()
    inf[0, 0] = float("inf")
    with pytest.raises(ValueError, match="scales: contains NaN or Inf"):
        layer4().pack(codes, inf, zeros)
    with pytest.raises(ValueError, match="scales: expected a tensor on cpu .*got one on meta"):
        layer4().pack(codes, scales.to("meta"), zeros)


def test_pack_zeros() -> None:
    codes, scales, zeros = hqq_operands()
    with pytest.raises(ValueError, match="zeros: expected .* = 80 values .* got 40"):
        layer4().pack(codes, scales, zeros[:, :1])
    with pytest.raises(
        ValueError, match=r"zeros: an integer zero of 4-bit codes must lie in \[0, 15\], got 16"
    ):
        layer4().pack(codes, scales, 16)
    with pytest.raises(ValueError, match=r"zeros: .* must lie in \[0, 15\], got -1"):
        layer4().pack(codes, scales, -1)
    with pytest.raises(TypeError, match="zeros: expected a tensor, an int or None, got float 7.5"):
        layer4().pack(codes, scales, 7.5)
    with pytest.raises(TypeError, match="zeros: expected a tensor, an int or None, got True"):
        layer4().pack(codes, scales, True)
    with pytest.raises(
        TypeError, match="zeros: expected a float16, bfloat16 or float32 tensor, got torch.uint8"
    ):
        layer4().pack(codes, scales, zeros.to(torch.uint8))
    nan = zeros.clone()
    nan[1, 1] = float("nan")
    with pytest.raises(ValueError, match="zeros: contains NaN or Inf"):
        layer4().pack(codes, scales, nan)


def test_pack_channelwise_8bit() -> None:
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8)
    s = torch.rand(N) * 0.01
    with pytest.raises(
        ValueError, match=r"scales: expected N \(one per output channel\) = 40 values .* got 80"
    ):
        GemLiteLinear(8, 64, K, N).pack(w, torch.rand(N, K // 64), None)  # INT8 is channel-wise
    with pytest.raises(ValueError, match="zeros: INT8 weights are symmetric and take no zeros"):
        GemLiteLinear(8, None, K, N).pack(w, s, 0)
    with pytest.raises(
        ValueError, match=r"scales: expected N \(one per output channel\) = 40 values \(any shape\), got 128"
    ):
        GemLiteLinear(8, None, K, N).pack(w, torch.rand(K), None)
    with pytest.raises(ValueError, match="scales: INT8 weights need one scale per output channel"):
        GemLiteLinear(8, None, K, N).pack(w, None, None)
    f8 = torch.randn(N, K).to(torch.float8_e4m3fn)
    f8[2, 2] = float("nan")
    with pytest.raises(ValueError, match="W_q: the float8_e4m3fn weight contains NaN"):
        GemLiteLinear(8, None, K, N).pack(f8, s, None)


def test_pack_bias() -> None:
    codes, scales, zeros = hqq_operands()
    with pytest.raises(ValueError, match=r"bias: expected shape \(40,\) \(out_features\), got \(1, 40\)"):
        layer4().pack(codes, scales, zeros, torch.zeros(1, N))
    with pytest.raises(ValueError, match=r"bias: expected shape \(40,\) .* got \(128,\)"):
        layer4().pack(codes, scales, zeros, torch.zeros(K))
    with pytest.raises(
        TypeError, match="bias: expected a float16, bfloat16 or float32 tensor, got torch.int64"
    ):
        layer4().pack(codes, scales, zeros, torch.zeros(N, dtype=torch.int64))
    with pytest.raises(ValueError, match="bias: expected a tensor on cpu"):
        layer4().pack(codes, scales, zeros, torch.zeros(N, device="meta"))
    with pytest.raises(ValueError, match="bias: contains NaN or Inf"):
        layer4().pack(codes, scales, zeros, torch.full((N,), float("nan")))


def test_pack_packed_words() -> None:
    codes, scales, zeros = hqq_operands()
    words = pack_codes(codes, 4, 32)
    with pytest.raises(ValueError, match=r"packing_bitwidth: expected one of \(8, 32\) or None, got 16"):
        layer4().pack(codes, scales, zeros, packing_bitwidth=16)
    with pytest.raises(TypeError, match="packed: expected a bool"):
        layer4().pack(words, scales, zeros, packed="yes")
    with pytest.raises(
        ValueError,
        match=r"W_q: packed 4-bit codes in 32-bit words must have shape .* \[40, 16\], got \(40, 17\)",
    ):
        layer4().pack(torch.zeros(N, 17, dtype=torch.int32), scales, zeros, packed=True)
    with pytest.raises(TypeError, match="W_q: packed words must have an integer dtype, got torch.float32"):
        layer4().pack(words.float(), scales, zeros, packed=True)
    with pytest.raises(TypeError, match="W_q: packed words must be 8- or 32-bit integers, got torch.int64"):
        layer4().pack(words.long(), scales, zeros, packed=True)
    with pytest.raises(
        TypeError, match="W_q: packing_bitwidth=32 needs 32-bit integer words, got torch.uint8"
    ):
        layer4().pack(pack_codes(codes, 4, 8), scales, zeros, packed=True, packing_bitwidth=32)
    with pytest.raises(ValueError, match="packed: a W_nbits=16 weight is never packed"):
        GemLiteLinear(16, None, K, N).pack(words, None, None, packed=True)


def test_pack_ternary() -> None:
    t = torch.randint(-1, 2, (N, K), dtype=torch.int8)
    proc = A16W158_INT(device="cpu")
    bad = t.clone()
    bad[0, 0] = 2
    with pytest.raises(ValueError, match=r"weight: ternary weights take values in \{-1, 0, 1\}, got 2"):
        proc.from_weights(bad, 0.5)
    with pytest.raises(ValueError, match="weight_scale: expected a finite number, got nan"):
        proc.from_weights(t, float("nan"))
    with pytest.raises(ValueError, match="weight_scale: expected one real number, got a tensor of shape"):
        proc.from_weights(t, torch.ones(2))
    with pytest.raises(TypeError, match="weight_scale: expected a float or a 1-element tensor, got str"):
        proc.from_weights(t, "0.5")
    with pytest.raises(ValueError, match=r"weight: expected a 2-D tensor \[N, K\]"):
        proc.from_weights(t[0], 0.5)


# --------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------


@pytest.fixture
def packed_layer() -> GemLiteLinear:
    codes, scales, zeros = hqq_operands()
    return layer4().pack(codes, scales, zeros)


def test_forward_before_pack() -> None:
    with pytest.raises(
        RuntimeError, match=r"forward\(\) called before the layer holds a weight; call pack\(\)"
    ):
        layer4()(torch.randn(2, K).half())
    with pytest.raises(RuntimeError, match=r"call pack\(\)"):
        layer4().format  # noqa: B018


def test_forward_checks_x(packed_layer: GemLiteLinear) -> None:
    with pytest.raises(TypeError, match="x: expected a torch.Tensor, got ndarray"):
        packed_layer(torch.randn(2, K).half().numpy())
    with pytest.raises(
        TypeError, match=r"x: expected dtype torch.float16 \(input_dtype=FP16\), got torch.float32"
    ):
        packed_layer(torch.randn(2, K))
    with pytest.raises(TypeError, match="x: expected dtype torch.float16 .*got torch.bfloat16"):
        packed_layer(torch.randn(2, K).bfloat16())
    with pytest.raises(ValueError, match=r"x: expected shape \[\.\.\., 128\] \(in_features\), got \(2, 64\)"):
        packed_layer(torch.randn(2, 64).half())
    with pytest.raises(ValueError, match=r"x: expected shape \[\.\.\., 128\]"):
        packed_layer(torch.tensor(1.0).half())
    with pytest.raises(ValueError, match="x: expected a tensor on cpu .*got one on meta"):
        packed_layer(torch.randn(2, K, device="meta").half())


def test_forward_on_cpu_without_interpreter(packed_layer: GemLiteLinear, monkeypatch) -> None:
    monkeypatch.setattr(gemlite.matmul, "_INTERPRETER", False)
    with pytest.raises(
        RuntimeError, match="need a CUDA GPU .*TRITON_INTERPRET=1 set before gemlite is imported"
    ):
        packed_layer(torch.randn(2, K).half())


@pytest.mark.parametrize("matmul_type", ["GEMM2", "gemv", None, 3])
def test_forward_manual_matmul_type(packed_layer: GemLiteLinear, matmul_type) -> None:
    with pytest.raises(
        ValueError, match="matmul_type: expected one of GEMV, GEMV_REVSPLITK, GEMV_SPLITK, GEMM_SPLITK, GEMM"
    ):
        packed_layer.forward_manual(torch.randn(2, K).half(), matmul_type)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def test_processor_arguments() -> None:
    with pytest.raises(
        ValueError, match="dtype: expected torch.float16 or torch.bfloat16 .*got torch.float32"
    ):
        A16W8_INT8(device="cpu", dtype=torch.float32)
    with pytest.raises(ValueError, match="device: expected a torch device"):
        A16W8_INT8(device="not-a-device")


def test_from_linear_and_from_weights_arguments() -> None:
    with pytest.raises(TypeError, match="linear: expected a torch.nn.Linear, got Conv1d"):
        A16W8_INT8(device="cpu").from_linear(nn.Conv1d(4, 4, 1))
    with pytest.raises(ValueError, match="in_features: K must be a multiple of 32, got 100"):
        A16W8_INT8(device="cpu").from_linear(nn.Linear(100, N))
    with pytest.raises(ValueError, match="group_size: must divide in_features=128"):
        A16W4_HQQ_INT(device="cpu").from_linear(nn.Linear(K, N), group_size=48)
    with pytest.raises(ValueError, match="linear: its weight is on the meta device"):
        A16W4_HQQ_INT(device="cpu").from_linear(nn.Linear(K, N, device="meta"))
    codes, scales, zeros = hqq_operands()
    with pytest.raises(
        ValueError, match=r"scales: the group size is W_q.numel\(\) / scales.numel\(\) and must divide K=128"
    ):
        A16W4_HQQ_INT(device="cpu").from_weights(codes, torch.ones(3), None)
    with pytest.raises(TypeError, match="weight: A16W8_INT8 takes torch.int8 codes, got torch.uint8"):
        A16W8_INT8(device="cpu").from_weights(codes, torch.ones(N))
    with pytest.raises(TypeError, match="weight: A16W8_FP8 takes torch.float8_e4m3fn codes, got torch.int8"):
        A16W8_FP8(device="cpu").from_weights(codes.to(torch.int8), torch.ones(N))
    linear = nn.Linear(K, N)
    A16W8_INT8(device="cpu").from_linear(linear, del_orig=True)
    with pytest.raises(ValueError, match="linear: its weight is None"):
        A16W8_INT8(device="cpu").from_linear(linear)


def test_from_hqqlinear_without_hqq(no_hqq) -> None:
    with pytest.raises(ImportError, match="from_hqqlinear: needs the `hqq` package"):
        A16W4_HQQ_INT(device="cpu").from_hqqlinear(object())


def test_patch_model_arguments() -> None:
    model = nn.Sequential(nn.Linear(K, N))
    with pytest.raises(TypeError, match="processor: expected a gemlite.helper processor class or instance"):
        patch_model(model, "cpu", "A16W8_INT8")
    with pytest.raises(TypeError, match="skip_modules: expected a list of name substrings, got a single str"):
        patch_model(model, "cpu", A16W8_INT8, skip_modules="lm_head")
    with pytest.raises(TypeError, match="processor: 0 has a torch.float32 weight"):
        patch_model(model, "cpu", A16W8_INT8)
    with pytest.raises(TypeError, match="model: expected a torch.nn.Module"):
        patch_model([nn.Linear(K, N)], "cpu", A16W8_INT8)
    odd = nn.Sequential(nn.Linear(K, N), nn.Linear(N, N)).half()  # in_features 40 is not a multiple of 32
    with pytest.raises(
        ValueError, match="patch_model: cannot convert '1' .*in_features.*add it to skip_modules"
    ):
        patch_model(odd, "cpu", A16W8_INT8)


def test_warmup_arguments() -> None:
    with pytest.raises(ValueError, match=r"shapes: expected \(out_features, in_features\) pairs, got 128"):
        warmup(A16W8_INT8, shapes=[128], device="cpu", progress=False)
    with pytest.raises(ValueError, match="batch_sizes: expected positive ints, got 0"):
        warmup(A16W8_INT8, shapes=[(N, K)], batch_sizes=[0], device="cpu", progress=False)
    with pytest.raises(
        ValueError, match="dtype: the processor instance uses torch.float16, got torch.bfloat16"
    ):
        warmup(
            A16W8_INT8(device="cpu", dtype=torch.float16),
            shapes=[(N, K)],
            dtype=torch.bfloat16,
            progress=False,
        )


# --------------------------------------------------------------------------------------------
# Quantizers
# --------------------------------------------------------------------------------------------


def test_quantizer_arguments() -> None:
    w = torch.randn(N, K)
    with pytest.raises(ValueError, match=r"bits: HQQ codes are one of \(8, 4, 2, 1\) bits wide, got 3"):
        quantize_hqq(w, 3, 64)
    with pytest.raises(ValueError, match="group_size: expected a positive divisor of K=128 or None, got 48"):
        quantize_hqq(w, 4, 48)
    with pytest.raises(TypeError, match="scale_dtype: expected float16, bfloat16 or float32, got torch.int8"):
        quantize_hqq(w, 4, 64, scale_dtype=torch.int8)
    for fn in (quantize_int8, quantize_fp8, quantize_ternary, lambda t: quantize_hqq(t, 4)):
        with pytest.raises(
            TypeError, match="weight: expected a float16, bfloat16 or float32 tensor, got torch.int32"
        ):
            fn(w.int())
        with pytest.raises(
            ValueError, match=r"weight: expected a non-empty 2-D tensor \[N, K\], got shape \(128,\)"
        ):
            fn(w[0])
        bad = w.clone()
        bad[0, 0] = float("inf")
        with pytest.raises(ValueError, match="weight: contains NaN or Inf"):
            fn(bad)
