"""The public API end to end: GemLiteLinear.pack / forward / forward_manual for every weight format and
every kernel family, judged against the float64 golden of `reference` built from the same codes.

Bound (harness.numerics, c = 4): |y - y*| <= 4 (u_out |y*| + (u_dot + K u_acc) sum_k |x_k W_k| + tiny
underflow terms). Shapes are small so the whole file runs in the Triton interpreter on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

import gemlite
import reference as ref
from gemlite import DType, GemLiteLinear
from gemlite.formats import FORMATS, Format, Zeros
from gemlite.helper import A16W158_INT
from gemlite.kernels import MATMUL_TYPES
from gemlite.packing import pack_codes
from harness.numerics import Precision, compare_output, golden_from_dequantized

pytestmark = pytest.mark.interpreter

# Small but awkward: K = 32 * 5 would rule out group sizes; N = 40 is no multiple of any tile.
K, N = 128, 40
_ZEROS = {"float": Zeros.FLOAT, "int": Zeros.INT, "none": Zeros.NONE}


@dataclass(frozen=True)
class Case:
    """One layer configuration: the weight format and the dtypes around it."""

    kind: str  # "float", "hqq", "int8", "fp8", "ternary"
    bits: int = 16
    group_size: int | None = None  # None: channel-wise
    zeros: str = "none"
    act: torch.dtype = torch.float16
    meta: torch.dtype = torch.float16  # HQQ scales/zeros dtype
    out: torch.dtype = torch.float16
    bias: bool = True

    @property
    def id(self) -> str:
        dt = {torch.float16: "f16", torch.bfloat16: "bf16", torch.float32: "f32"}
        g = "chan" if self.group_size is None else f"g{self.group_size}"
        name = f"{self.kind}{self.bits}" if self.kind == "hqq" else self.kind
        extra = f"-{g}-z{self.zeros}-s{dt[self.meta]}" if self.kind == "hqq" else ""
        return f"{name}{extra}-a{dt[self.act]}-o{dt[self.out]}{'-bias' if self.bias else ''}"


CASES = [
    Case("float"),
    Case("float", act=torch.bfloat16, out=torch.float32, bias=False),
    Case("hqq", 8, 64, "float"),
    Case("hqq", 4, 32, "float", act=torch.bfloat16, meta=torch.bfloat16, out=torch.bfloat16),
    Case("hqq", 4, None, "int", meta=torch.float32, bias=False),
    Case("hqq", 2, 64, "float", meta=torch.float32, out=torch.float32),
    Case("hqq", 1, 128, "none", act=torch.bfloat16, out=torch.bfloat16),
    Case("int8"),
    Case("fp8", act=torch.bfloat16, out=torch.bfloat16),
    Case("ternary", bias=False, out=torch.float32),
]


@dataclass
class Built:
    layer: GemLiteLinear
    fmt: Format
    qw: ref.QuantizedWeight
    bias: torch.Tensor | None


def _dtype(t: torch.dtype) -> DType:
    return DType.from_torch(t)


def random_codes(case: Case, gen: torch.Generator, device: str) -> dict:
    """Random canonical operands of `case` (CPU generator, then moved), plus the reference's view."""
    n, k = N, K
    g = k if case.group_size is None else case.group_size
    if case.kind == "float":
        w = (torch.randn(n, k, generator=gen) * 0.05).to(case.act)
        fmt = FORMATS["A16W16"]
        return dict(W_q=w, scales=None, zeros=None, fmt=fmt, qw=ref.QuantizedWeight(fmt, w, None, None))
    if case.kind == "hqq":
        max_code = (1 << case.bits) - 1
        codes = torch.randint(0, max_code + 1, (n, k), generator=gen, dtype=torch.uint8)
        scales = (torch.rand(n, k // g, generator=gen) * 0.02 + 0.005).to(case.meta)
        if case.zeros == "float":
            zeros = (max_code / 2 + torch.randn(n, k // g, generator=gen) * 0.5).to(case.meta)
        elif case.zeros == "int":
            zeros = (max_code + 1) // 2
        else:
            zeros = None
        fmt = (
            FORMATS[f"A16W{case.bits}_HQQ_INT"]
            .with_group_size(None if g == k else g)  # group_size = K is channel-wise: reported as None
            .with_zeros(_ZEROS[case.zeros])
        )
        return dict(
            W_q=codes, scales=scales, zeros=zeros, fmt=fmt, qw=ref.QuantizedWeight(fmt, codes, scales, zeros)
        )
    if case.kind in ("int8", "fp8"):
        scales = torch.rand(n, 1, generator=gen) * 0.002 + 0.0005
        if case.kind == "int8":
            codes = torch.randint(-128, 128, (n, k), generator=gen, dtype=torch.int8)
            fmt = FORMATS["A16W8_INT8"]
        else:
            codes = (torch.randn(n, k, generator=gen) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
            fmt = FORMATS["A16W8_FP8"]
        return dict(
            W_q=codes, scales=scales, zeros=None, fmt=fmt, qw=ref.QuantizedWeight(fmt, codes, scales, None)
        )
    if case.kind == "ternary":
        t = torch.randint(-1, 2, (n, k), generator=gen, dtype=torch.int8)
        scale = 0.0123
        fmt = FORMATS["A16W158_INT"]
        qw = ref.QuantizedWeight(fmt, (t + 1).to(torch.uint8), torch.full((n, 1), scale), 1)
        return dict(W_q=t, scales=scale, zeros=None, fmt=fmt, qw=qw)
    raise AssertionError(case.kind)


def build(case: Case, device: str, seed: int = 0) -> Built:
    gen = torch.Generator().manual_seed(seed)
    ops = random_codes(case, gen, device)
    bias = (torch.randn(N, generator=gen) * 0.1).to(case.act).to(device) if case.bias else None
    to = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    if case.kind == "ternary":
        layer = A16W158_INT(device=device, dtype=case.act).from_weights(to(ops["W_q"]), ops["scales"], bias)
        if case.out != case.act:  # the helper's output dtype is the activation dtype; rebuild by hand
            layer = GemLiteLinear(
                2, None, K, N, input_dtype=_dtype(case.act), output_dtype=_dtype(case.out)
            )._pack_ternary(to(ops["W_q"]), ops["scales"], bias)
    else:
        bits = 8 if case.kind in ("int8", "fp8") else case.bits
        layer = GemLiteLinear(
            bits,
            group_size=case.group_size,
            in_features=K,
            out_features=N,
            input_dtype=_dtype(case.act),
            output_dtype=_dtype(case.out),
        ).pack(to(ops["W_q"]), to(ops["scales"]), to(ops["zeros"]), bias)
    qw = ops["qw"]
    qw = ref.QuantizedWeight(
        qw.fmt, to(qw.codes), to(qw.scales), to(qw.zeros) if isinstance(qw.zeros, torch.Tensor) else qw.zeros
    )
    return Built(layer, ops["fmt"], qw, bias)


def activations(
    m: int, dtype: torch.dtype, device: str, seed: int = 1, lead: tuple[int, ...] = ()
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*lead, m, K, generator=gen).to(dtype).to(device)


def assert_matches_reference(y: torch.Tensor, b: Built, x: torch.Tensor, case: Case, context: str) -> None:
    x2 = x.reshape(-1, K)
    y_star = ref.linear(b.fmt, x2, b.qw, b.bias)
    golden = golden_from_dequantized(x2, ref.dequantize_weight(b.qw), b.bias, y=y_star)
    assert y.dtype == case.out
    cmp = compare_output(y.reshape(-1, N), golden, Precision(case.out, case.act), context=context)
    assert cmp.ok, cmp.message()


# --------------------------------------------------------------------------------------------
# Every format x every kernel family
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("matmul_type", MATMUL_TYPES)
def test_every_format_every_family(case: Case, matmul_type: str, device: str) -> None:
    b = build(case, device)
    assert b.layer.format == b.fmt
    x = activations(3, case.act, device)
    y = b.layer.forward_manual(x, matmul_type=matmul_type)
    assert y.shape == (3, N)
    assert_matches_reference(y, b, x, case, f"{case.id} {matmul_type}")


@pytest.mark.parametrize("m", [1, 2, 5, 17])
def test_forward_dispatches_on_m(m: int, device: str) -> None:
    case = Case("hqq", 4, 64, "float")
    b = build(case, device)
    x = activations(m, case.act, device)
    assert_matches_reference(b.layer(x), b, x, case, f"forward M={m}")


# --------------------------------------------------------------------------------------------
# Packing: pre-packed input, packing word
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("word_bits", [8, 32])
def test_packed_input_equals_unpacked(bits: int, word_bits: int, device: str) -> None:
    case = Case("hqq", bits, 64, "float")
    b = build(case, device)
    ops = random_codes(case, torch.Generator().manual_seed(0), device)
    codes = ops["W_q"].to(device)
    x = activations(2, case.act, device)
    y = GemLiteLinear(bits, 64, K, N).pack(
        codes, ops["scales"].to(device), ops["zeros"].to(device), b.bias, packing_bitwidth=word_bits
    )(x)
    for packed in (pack_codes(codes, bits, word_bits), ref.pack(codes, bits, word_bits)):
        layer = GemLiteLinear(bits, 64, K, N).pack(
            packed, ops["scales"].to(device), ops["zeros"].to(device), b.bias, packed=True
        )
        assert layer.layout.word_bits == word_bits  # inferred from the packed dtype
        assert torch.equal(layer(x), y)
    # Other integer dtypes of the same width are the same bits.
    other = pack_codes(codes, bits, word_bits).view(torch.int8 if word_bits == 8 else torch.uint32)
    layer = GemLiteLinear(bits, 64, K, N).pack(
        other,
        ops["scales"].to(device),
        ops["zeros"].to(device),
        b.bias,
        packed=True,
        packing_bitwidth=word_bits,
    )
    assert torch.equal(layer(x), y)


@pytest.mark.parametrize("bits", [4, 2])
def test_packing_bitwidth_8_and_32_agree(bits: int, device: str) -> None:
    case = Case("hqq", bits, 32, "float")
    b = build(case, device)
    ops = random_codes(case, torch.Generator().manual_seed(0), device)
    x = activations(3, case.act, device)
    outs = []
    for word_bits in (8, 32):
        layer = GemLiteLinear(bits, 32, K, N).pack(
            ops["W_q"].to(device),
            ops["scales"].to(device),
            ops["zeros"].to(device),
            b.bias,
            packing_bitwidth=word_bits,
        )
        assert layer.layout.word_bits == word_bits
        outs.append(layer(x))
        assert_matches_reference(outs[-1], b, x, case, f"word {word_bits}")
    assert torch.equal(outs[0], outs[1])


def test_scales_and_zeros_in_any_shape(device: str) -> None:
    """HQQ hands scales as [N*K/g, 1]; any shape with N*K/g values in row-major group order works."""
    case = Case("hqq", 4, 32, "float")
    b = build(case, device)
    ops = random_codes(case, torch.Generator().manual_seed(0), device)
    s, z = ops["scales"].to(device), ops["zeros"].to(device)
    x = activations(2, case.act, device)
    y = b.layer(x)
    for shape in [(-1, 1), (-1,), (N, K // 32, 1), (1, -1)]:
        layer = GemLiteLinear(4, 32, K, N).pack(
            ops["W_q"].to(device), s.reshape(shape), z.reshape(shape), b.bias
        )
        assert torch.equal(layer(x), y), shape


def test_channelwise_takes_n_scales(device: str) -> None:
    case = Case("hqq", 4, None, "float")
    b = build(case, device)
    assert b.layer.group_size == K
    assert b.layer.format.weight.group_size is None
    x = activations(2, case.act, device)
    assert_matches_reference(b.layer(x), b, x, case, "channel-wise")


def test_int8_scales_shapes_dtypes_and_group_size(device: str) -> None:
    """INT8 takes N scales as [N] or [N, 1], fp16/bf16/fp32 (stored as fp32), whatever group_size the
    layer was built with: INT8 weights are channel-wise."""
    case = Case("int8")
    b = build(case, device)  # scales [N, 1] fp32, layer built with group_size=None
    ops = random_codes(case, torch.Generator().manual_seed(0), device)
    codes, scales = ops["W_q"].to(device), ops["scales"].to(device)
    x = activations(2, case.act, device)
    y = b.layer(x)
    assert torch.equal(GemLiteLinear(8, None, K, N).pack(codes, scales.reshape(N), None, b.bias)(x), y)
    assert torch.equal(GemLiteLinear(8, 64, K, N).pack(codes, scales, None, b.bias)(x), y)
    half = scales.to(torch.float16)
    from_half = GemLiteLinear(8, None, K, N).pack(codes, half, None, b.bias)
    assert from_half.scales.dtype == torch.float32
    assert torch.equal(from_half(x), GemLiteLinear(8, None, K, N).pack(codes, half.float(), None, b.bias)(x))


def test_pack_again_replaces_the_weight(device: str) -> None:
    first = build(Case("hqq", 4, 64, "float"), device, seed=0)  # with a bias
    second = build(Case("hqq", 4, 64, "float", bias=False), device, seed=9)  # other codes, no bias
    layer = first.layer
    x = activations(2, torch.float16, device)
    y_first = layer(x)
    layer.pack(second.qw.codes, second.qw.scales, second.qw.zeros, None)
    assert layer.bias is None
    y = layer(x)
    assert torch.equal(y, second.layer(x)) and not torch.equal(y, y_first)


# --------------------------------------------------------------------------------------------
# forward: shapes, layouts, dtypes
# --------------------------------------------------------------------------------------------


def test_leading_dims_are_flattened_and_restored(device: str) -> None:
    case = Case("hqq", 4, 64, "float")
    b = build(case, device)
    x = activations(3, case.act, device, lead=(2,))
    y = b.layer(x)
    assert y.shape == (2, 3, N)
    assert torch.equal(y, b.layer(x.reshape(6, K)).reshape(2, 3, N))
    x1 = activations(1, case.act, device)[0]  # a single vector [K]
    assert b.layer(x1).shape == (N,)


def test_non_contiguous_input(device: str) -> None:
    case = Case("int8")
    b = build(case, device)
    wide = activations(4, case.act, device).repeat(1, 2)  # [4, 2K]
    x = wide[:, ::2]
    assert not x.is_contiguous()
    assert torch.equal(b.layer(x), b.layer(x.contiguous()))
    xt = activations(K, case.act, device)[:, :4].t()  # [4, K] transposed view
    assert not xt.is_contiguous()
    assert torch.equal(b.layer(xt), b.layer(xt.contiguous()))


@pytest.mark.parametrize("shape", [(0, K), (2, 0, K)])
def test_empty_batch(shape: tuple[int, ...], device: str) -> None:
    case = Case("hqq", 4, 64, "float", out=torch.float32)
    b = build(case, device)
    y = b.layer(torch.empty(shape, dtype=case.act, device=device))
    assert (
        y.shape == (*shape[:-1], N)
        and y.dtype == torch.float32
        and y.device.type == torch.device(device).type
    )


@pytest.mark.parametrize("out", [torch.float16, torch.bfloat16, torch.float32])
def test_output_dtypes(out: torch.dtype, device: str) -> None:
    case = Case("hqq", 2, 32, "float", out=out)
    b = build(case, device)
    x = activations(2, case.act, device)
    y = b.layer(x)
    assert y.dtype == out
    assert_matches_reference(y, b, x, case, f"out {out}")


def test_same_input_same_output(device: str) -> None:
    """Deterministic by default: two calls give bitwise the same result."""
    b = build(Case("hqq", 4, 32, "float"), device)
    x = activations(5, torch.float16, device)
    for matmul_type in MATMUL_TYPES:
        assert torch.equal(b.layer.forward_manual(x, matmul_type), b.layer.forward_manual(x, matmul_type))


# --------------------------------------------------------------------------------------------
# What the layer reports about itself; the package surface
# --------------------------------------------------------------------------------------------


def test_format_and_repr(device: str) -> None:
    b = build(Case("hqq", 4, 64, "float"), device)
    assert b.layer.format.name == "A16W4_HQQ_INT"
    assert b.layer.format.label == "A16W4_HQQ_INT/g64"
    text = repr(b.layer)
    for piece in ("A16W4_HQQ_INT/g64", f"in_features={K}", f"out_features={N}", "FP16", "bias=True"):
        assert piece in text, (piece, text)
    names = {
        Case("float"): "A16W16",
        Case("int8"): "A16W8_INT8",
        Case("fp8"): "A16W8_FP8",
        Case("ternary"): "A16W158_INT",
        Case("hqq", 8, 64, "int"): "A16W8_HQQ_INT",
    }
    for case, name in names.items():
        assert build(case, device).layer.format.name == name
    fresh = GemLiteLinear(4, 64, K, N)
    assert "not packed" in repr(fresh)
    assert not fresh.is_packed and b.layer.is_packed


def test_package_surface() -> None:
    assert gemlite.__version__ == "0.1.0"
    for name in (
        "DType",
        "GemLiteLinear",
        "set_autotune",
        "get_autotune",
        "cache_config",
        "load_config",
        "reset_config",
        "set_deterministic",
        "is_deterministic",
        "Format",
        "FORMATS",
        "get_format",
        "helper",
    ):
        assert hasattr(gemlite, name), name
    assert gemlite.DType is DType and gemlite.get_format("A16W8_INT8") is FORMATS["A16W8_INT8"]
    from gemlite.helper import (  # noqa: F401
        A16W1_HQQ_INT,
        A16W2_HQQ_INT,
        A16W4_HQQ_INT,
        A16W8_FP8,
        A16W8_HQQ_INT,
        A16W8_INT8,
        A16W158_INT,
    )


def test_import_without_gpu_or_interpreter() -> None:
    """`import gemlite` needs no GPU and queries no CUDA; CPU tensors without the interpreter get a
    clear error at forward. Run in a fresh interpreter, since TRITON_INTERPRET is read at import."""
    script = (
        "import torch, gemlite\n"
        "assert not torch.cuda.is_initialized(), 'import gemlite initialised CUDA'\n"
        "layer = gemlite.helper.A16W8_INT8(device='cpu').from_linear(torch.nn.Linear(64, 32).half())\n"
        "try:\n"
        "    layer(torch.randn(2, 64).half())\n"
        "except RuntimeError as e:\n"
        "    assert 'TRITON_INTERPRET=1' in str(e) and 'CUDA GPU' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('forward on CPU without the interpreter did not raise')\n"
        "assert not torch.cuda.is_initialized()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
