"""The public API end to end: GemLiteLinear.pack / forward / forward_manual for every weight format and
every kernel family, judged against the float64 golden of `reference` built from the same codes.

Operands come from the one operand builder: cases written with `harness.case.pinned`, tensors from
`harness.build.make_operands`, layers from `harness.build.build_layer` (``GemLiteLinear(...).pack`` or
the format's helper) or from ``GemLiteLinear.pack`` on those same tensors. Outputs are judged by
`harness.numerics.compare_output` against `harness.build.golden`, under its derived element-wise bound
(c = 2). Shapes are small so the whole file runs in the Triton interpreter on CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import gemlite
import reference as ref
from gemlite import DType, GemLiteLinear
from gemlite.formats import FORMATS, WeightKind
from gemlite.packing import pack_codes
from harness.build import build_layer, golden, make_operands, precision, run_layer
from harness.case import Case, pinned
from harness.numerics import compare_output
from harness.repro import reproducer, run_case
from harness.support import AUTO, DTYPES, MATMUL_TYPES

pytestmark = pytest.mark.interpreter

# Small but awkward: K = 32 * 5 would rule out group sizes; N = 40 is no multiple of any tile.
K, N = 128, 40
DT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}


def case_id(case: Case) -> str:
    """``A16W4_HQQ_INT/g32-zfloat-sbf16-abf16-obf16-bias``."""
    extra = f"-z{case.zeros}-s{DT[case.scale_dtype]}" if case.fmt.weight.kind is WeightKind.HQQ else ""
    bias = "" if case.bias == "none" else "-bias"
    return f"{case.label}{extra}-a{DT[case.input_dtype]}-o{DT[case.output_dtype]}{bias}"


def api_case(format: str, **fields) -> Case:
    """A pinned case of this file's K x N, with a bias in the activation dtype unless told otherwise."""
    return pinned(format, **{"K": K, "N": N, "M": 3, "bias": "input", **fields})


def hqq(bits: int, group_size: int | None, zeros: str, **fields) -> Case:
    return api_case(f"A16W{bits}_HQQ_INT", group_size=group_size, zeros=zeros, **fields)


CASES = [
    api_case("A16W16"),
    api_case("A16W16", input_dtype="bfloat16", output_dtype="float32", bias="none"),
    hqq(8, 64, "float"),
    hqq(4, 32, "float", input_dtype="bfloat16", scale_dtype="bfloat16", output_dtype="bfloat16"),
    hqq(4, None, "int", scale_dtype="float32", bias="none"),
    hqq(2, 64, "float", scale_dtype="float32", output_dtype="float32"),
    hqq(1, 128, "none", input_dtype="bfloat16", output_dtype="bfloat16"),
    api_case("A16W8_INT8"),
    api_case("A16W8_FP8", input_dtype="bfloat16", output_dtype="bfloat16"),
    # Output dtype != activation dtype: GemLiteLinear(2, ...).pack(t + 1, ..., format=A16W158_INT);
    # test_format_and_repr builds the other one through the A16W158_INT helper.
    api_case("A16W158_INT", bias="none", output_dtype="float32"),
]


def reported_format(case: Case):
    """The format a layer packed from `case` reports: a group of all of K is channel-wise (None)."""
    if case.fmt.weight.kind is WeightKind.HQQ and case.group_size == case.K:
        return case.fmt.with_group_size(None)
    return case.fmt


def built(case: Case, device: str):
    """(operands, layer) of `case`, through the harness."""
    ops = make_operands(case, device)
    return ops, build_layer(case, ops)


def assert_matches_reference(y: torch.Tensor, case: Case, ops, context: str) -> None:
    """y (any leading dims) within the bound of the golden of `case`'s operands."""
    assert y.dtype == DTYPES[case.output_dtype]
    result = compare_output(
        y.reshape(-1, N), golden(case, ops), precision(case), repro=reproducer(case), context=context
    )
    assert result.ok, result.message()


def assert_case_passes(case: Case, device: str) -> torch.Tensor:
    """`harness.repro.run_case`: the whole case, end to end; returns y."""
    result = run_case(case, device)
    assert result.comparison.ok, result.comparison.message()
    assert result.y.shape == (case.M, case.N) and result.y.dtype == DTYPES[case.output_dtype]
    return result.y


# --------------------------------------------------------------------------------------------
# Every format x every kernel family
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("matmul_type", MATMUL_TYPES)
def test_every_format_every_family(case: Case, matmul_type: str, device: str) -> None:
    case = case.replace(family=matmul_type)
    ops, layer = built(case, device)
    assert layer.format == reported_format(case)
    y = run_layer(layer, ops.x, matmul_type)  # forward_manual
    assert y.shape == (3, N)
    assert_matches_reference(y, case, ops, f"{case_id(case)} {matmul_type}")


@pytest.mark.parametrize("m", [1, 2, 5, 17])
def test_forward_dispatches_on_m(m: int, device: str) -> None:
    assert_case_passes(hqq(4, 64, "float", M=m, family=AUTO), device)


# --------------------------------------------------------------------------------------------
# Packing: pre-packed input, packing word
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("word_bits", [8, 32])
def test_packed_input_equals_unpacked(bits: int, word_bits: int, device: str) -> None:
    case = hqq(bits, 64, "float", M=2, packing_bitwidth=word_bits)
    ops, layer = built(case, device)  # unpacked codes, packed by gemlite in `word_bits` words
    qw, x = ops.qw, ops.x
    y = layer(x)
    assert layer.layout.word_bits == word_bits
    assert_matches_reference(y, case, ops, f"unpacked codes, word {word_bits}")
    for packed in (pack_codes(qw.codes, bits, word_bits), ref.pack(qw.codes, bits, word_bits)):
        layer = GemLiteLinear(bits, 64, K, N).pack(packed, qw.scales, qw.zeros, ops.bias, packed=True)
        assert layer.layout.word_bits == word_bits  # inferred from the packed dtype
        assert torch.equal(layer(x), y)
    # Other integer dtypes of the same width are the same bits.
    other = pack_codes(qw.codes, bits, word_bits).view(torch.int8 if word_bits == 8 else torch.uint32)
    layer = GemLiteLinear(bits, 64, K, N).pack(
        other, qw.scales, qw.zeros, ops.bias, packed=True, packing_bitwidth=word_bits
    )
    assert torch.equal(layer(x), y)


@pytest.mark.parametrize("bits", [4, 2])
def test_packing_bitwidth_8_and_32_agree(bits: int, device: str) -> None:
    outs = []
    for word_bits in (8, 32):
        case = hqq(bits, 32, "float", packing_bitwidth=word_bits)  # same seed: the same operands
        ops, layer = built(case, device)
        assert layer.layout.word_bits == word_bits
        outs.append(layer(ops.x))
        assert_matches_reference(outs[-1], case, ops, f"word {word_bits}")
    assert torch.equal(outs[0], outs[1])


def test_scales_and_zeros_in_any_shape(device: str) -> None:
    """HQQ hands scales as [N*K/g, 1]; any shape with N*K/g values in row-major group order works."""
    ops, layer = built(hqq(4, 32, "float", M=2), device)
    s, z = ops.qw.scales, ops.qw.zeros
    y = layer(ops.x)
    for shape in [(-1, 1), (-1,), (N, K // 32, 1), (1, -1)]:
        again = GemLiteLinear(4, 32, K, N).pack(ops.qw.codes, s.reshape(shape), z.reshape(shape), ops.bias)
        assert torch.equal(again(ops.x), y), shape


def test_channelwise_takes_n_scales(device: str) -> None:
    case = hqq(4, None, "float", M=2)
    ops, layer = built(case, device)
    assert ops.qw.scales.numel() == N
    assert layer.group_size == K
    assert layer.format.weight.group_size is None
    assert_matches_reference(layer(ops.x), case, ops, "channel-wise")


def test_int8_scales_shapes_dtypes_and_group_size(device: str) -> None:
    """INT8 takes N scales as [N] or [N, 1], fp16/bf16/fp32 (stored as fp32), whatever group_size the
    layer was built with: INT8 weights are channel-wise."""
    ops, layer = built(api_case("A16W8_INT8", M=2), device)  # fp32 scales, group_size=None
    codes, scales, x, bias = ops.qw.codes, ops.qw.scales, ops.x, ops.bias
    assert scales.dtype == torch.float32 and scales.numel() == N
    y = layer(x)
    assert torch.equal(GemLiteLinear(8, None, K, N).pack(codes, scales.reshape(N), None, bias)(x), y)
    assert torch.equal(GemLiteLinear(8, None, K, N).pack(codes, scales.reshape(N, 1), None, bias)(x), y)
    assert torch.equal(GemLiteLinear(8, 64, K, N).pack(codes, scales, None, bias)(x), y)
    for dtype in (torch.float16, torch.bfloat16):
        low = scales.to(dtype)
        from_low = GemLiteLinear(8, None, K, N).pack(codes, low, None, bias)
        assert from_low.scales.dtype == torch.float32
        assert torch.equal(from_low(x), GemLiteLinear(8, None, K, N).pack(codes, low.float(), None, bias)(x))


def test_pack_again_replaces_the_weight(device: str) -> None:
    first_ops, layer = built(hqq(4, 64, "float", M=2, seed=0), device)  # with a bias
    second_ops, second = built(hqq(4, 64, "float", M=2, seed=9, bias="none"), device)  # other codes
    x = first_ops.x
    y_first = layer(x)
    qw = second_ops.qw
    layer.pack(qw.codes, qw.scales, qw.zeros, None)
    assert layer.bias is None
    y = layer(x)
    assert torch.equal(y, second(x)) and not torch.equal(y, y_first)


# --------------------------------------------------------------------------------------------
# forward: shapes, layouts, dtypes
# --------------------------------------------------------------------------------------------


def test_leading_dims_are_flattened_and_restored(device: str) -> None:
    ops, layer = built(hqq(4, 64, "float", M=6), device)
    x = ops.x.reshape(2, 3, K)
    y = layer(x)
    assert y.shape == (2, 3, N)
    assert torch.equal(y, layer(ops.x).reshape(2, 3, N))
    assert layer(ops.x[0]).shape == (N,)  # a single vector [K]


def test_non_contiguous_input(device: str) -> None:
    ops, layer = built(api_case("A16W8_INT8", M=4), device)
    x = ops.x.repeat(1, 2)[:, ::2]  # [4, K] with a stride of 2 along K
    assert not x.is_contiguous()
    assert torch.equal(layer(x), layer(x.contiguous()))
    xt = ops.x.t().contiguous().t()  # [4, K], column-major
    assert not xt.is_contiguous()
    assert torch.equal(layer(xt), layer(ops.x))


@pytest.mark.parametrize("shape", [(0, K), (2, 0, K)])
def test_empty_batch(shape: tuple[int, ...], device: str) -> None:
    _, layer = built(hqq(4, 64, "float", output_dtype="float32"), device)
    y = layer(torch.empty(shape, dtype=torch.float16, device=device))
    assert (
        y.shape == (*shape[:-1], N)
        and y.dtype == torch.float32
        and y.device.type == torch.device(device).type
    )


@pytest.mark.parametrize("out", ["float16", "bfloat16", "float32"])
def test_output_dtypes(out: str, device: str) -> None:
    y = assert_case_passes(hqq(2, 32, "float", M=2, output_dtype=out, family=AUTO), device)
    assert y.dtype == DTYPES[out]


def test_same_input_same_output(device: str) -> None:
    """Deterministic by default: two calls give bitwise the same result."""
    ops, layer = built(hqq(4, 32, "float", M=5), device)
    for matmul_type in MATMUL_TYPES:
        first = layer.forward_manual(ops.x, matmul_type)
        assert torch.equal(layer.forward_manual(ops.x, matmul_type), first), matmul_type


# --------------------------------------------------------------------------------------------
# What the layer reports about itself; the package surface
# --------------------------------------------------------------------------------------------


def test_format_and_repr(device: str) -> None:
    _, layer = built(hqq(4, 64, "float"), device)
    assert layer.format.name == "A16W4_HQQ_INT"
    assert layer.format.label == "A16W4_HQQ_INT/g64"
    text = repr(layer)
    for piece in ("A16W4_HQQ_INT/g64", f"in_features={K}", f"out_features={N}", "FP16", "bias=True"):
        assert piece in text, (piece, text)
    names = {
        api_case("A16W16"): "A16W16",
        api_case("A16W8_INT8"): "A16W8_INT8",
        api_case("A16W8_FP8"): "A16W8_FP8",
        api_case("A16W158_INT"): "A16W158_INT",  # output = activation dtype: the helper builds it
        hqq(8, 64, "int"): "A16W8_HQQ_INT",
    }
    for case, name in names.items():
        assert built(case, device)[1].format.name == name
    fresh = GemLiteLinear(4, 64, K, N)
    assert "not packed" in repr(fresh)
    assert not fresh.is_packed and layer.is_packed


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
