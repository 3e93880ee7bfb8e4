"""What gemlite does with awkward but legal input, and with broken files and arguments.

* x: NaN and Inf stay in the rows that hold them (every kernel family); M = 0; non-contiguous,
  strided, broadcast and 3-D/4-D x give bitwise the output of the same values in a contiguous [M, K].
* The config cache: a corrupted, truncated, non-UTF-8 or wrong-schema file, or one in public GemLite's
  own layout, gives a warning naming the file and a fallback (`load_config` returns False, as
  GemLite's does; `cache_config` moves the unreadable file aside), never a crash; ``strict=True``
  raises instead. Two processes writing one cache file lose nothing (a file lock).
* Bad arguments to the public entry points raise errors that name the argument, what was expected
  and what was given; a processor left at its default CUDA device on a machine without CUDA says
  ``device:``.
* A reduction whose running sum passes fp16's range (K = 1024) is exact in every family; 10,000
  forward calls over 40 distinct M hold no more memory than the first; four threads calling forward
  (and autotuning, on a GPU) at once get outputs within the bound, and the configs they settled.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time

import pytest
import torch
from torch import nn

import gemlite
from gemlite import DType, GemLiteLinear, autotune
from gemlite.autotune import Config, ConfigCacheWarning
from gemlite.formats import FAMILIES
from gemlite.helper import A16W4_HQQ_INT, A16W8, A16W8_INT8, A16W16, A16Wn, warmup
from harness.numerics import assert_exact

pytestmark = pytest.mark.interpreter

K, N, G = 128, 48, 64


def _layer(device, bits=4, bias=True) -> GemLiteLinear:
    gen = torch.Generator().manual_seed(11)
    codes = torch.randint(0, 1 << bits, (N, K), generator=gen, dtype=torch.uint8)
    s = (torch.rand(N, K // G, generator=gen) * 0.01 + 0.001).half()
    z = torch.randint(0, 1 << bits, (N, K // G), generator=gen).half()
    b = torch.randn(N, generator=gen).half() if bias else None
    return GemLiteLinear(bits, G, K, N).pack(
        *(t.to(device) if t is not None else t for t in (codes, s, z, b))
    )


def _x(m, device, seed=12) -> torch.Tensor:
    return torch.randn(m, K, generator=torch.Generator().manual_seed(seed)).half().to(device)


# --------------------------------------------------------------------------------------------
# x: non-finite values, M = 0, strides, leading dims
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_nan_and_inf_stay_in_their_rows(family: str, device: str) -> None:
    layer = _layer(device)
    x = _x(5, device)
    clean = layer.forward_manual(x, family)
    bad = x.clone()
    bad[1, 7] = float("nan")
    bad[3, 100] = float("inf")
    bad[4, 0] = -float("inf")
    y = layer.forward_manual(bad, family)
    assert bool(torch.isnan(y[1]).all()), "a NaN input row gives a NaN output row"
    assert not bool(torch.isfinite(y[3]).any()) and not bool(torch.isfinite(y[4]).any())
    assert bool(torch.isfinite(y[[0, 2]]).all()) and torch.equal(y[[0, 2]], clean[[0, 2]])


def test_nan_rows_of_8bit_and_16bit_layers(device: str) -> None:
    torch.manual_seed(0)
    for layer in (
        A16W8_INT8(device, torch.float16).from_linear(nn.Linear(K, N)),
        A16W16(device, torch.float16).from_linear(nn.Linear(K, N).half()),
    ):
        x = _x(3, device)
        clean = layer(x)
        x[1, 5] = float("nan")
        y = layer(x)
        assert bool(torch.isnan(y[1]).all()) and torch.equal(y[[0, 2]], clean[[0, 2]])


def test_no_rows(device: str) -> None:
    layer = _layer(device)
    for shape in ((0, K), (2, 0, K), (0, 3, K)):
        y = layer(torch.empty(shape, dtype=torch.float16, device=device))
        assert y.shape == (*shape[:-1], N) and y.dtype == torch.float16
    for family in FAMILIES:
        assert layer.forward_manual(torch.empty(0, K, dtype=torch.float16, device=device), family).shape == (
            0,
            N,
        )
    empty = torch.empty(0, K, dtype=torch.float16, device=device)
    assert gemlite.forward_functional(
        empty, layer.bias, layer.get_tensor_args(), layer.get_meta_args()
    ).shape == (0, N)


def test_strided_and_multi_dim_x_equal_contiguous(device: str) -> None:
    layer = _layer(device)
    base = _x(6, device)
    ref = layer(base)
    wide = torch.zeros(6, 2 * K, dtype=torch.float16, device=device)
    wide[:, K:] = base
    column_major = base.t().contiguous().t()
    stepped = torch.zeros(12, K, dtype=torch.float16, device=device)
    stepped[::2] = base
    variants = {
        "row stride 2K, storage offset K": wide[:, K:],
        "column-major": column_major,
        "every other row": stepped[::2],
    }
    for what, x in variants.items():
        assert not x.is_contiguous(), what
        for family in (None, "GEMV", "GEMM"):  # one row per program, and a tile of rows
            y = layer(x) if family is None else layer.forward_manual(x, family)
            want = ref if family is None else layer.forward_manual(base, family)
            assert_exact(y, want, what=f"{what}, {family or 'AUTO'}")
    broadcast = base[:1].expand(4, K)  # stride 0 along M
    assert_exact(layer(broadcast), ref[:1].expand(4, N).contiguous(), what="broadcast x")
    three = layer(base.reshape(2, 3, K))
    assert three.shape == (2, 3, N)
    assert_exact(three.reshape(6, N), ref, what="3-D x")
    four = layer(base.reshape(1, 2, 3, K).transpose(1, 2))  # 4-D and non-contiguous
    assert four.shape == (1, 3, 2, N)
    assert_exact(four.transpose(1, 2).reshape(6, N), ref, what="4-D non-contiguous x")


# --------------------------------------------------------------------------------------------
# The config cache file
# --------------------------------------------------------------------------------------------


@pytest.fixture
def clean_cache():
    mode = autotune.get_autotune()
    autotune.reset_config()
    yield
    autotune.reset_config()
    autotune.set_autotune(mode)


def _cache_text(keys=("k1", "k2")) -> str:
    return json.dumps(
        {"GEMV": {k: Config(BLOCK_N=64, BLOCK_K=32, SPLIT_K=2).as_dict() for k in keys}}, indent=1
    )


_GEMV_REV = dict(BLOCK_SIZE_M=1, BLOCK_SIZE_N=128, BLOCK_SIZE_K=8, A_load_order=1, dot_prod_mode=0)
_GEMM = dict(BLOCK_SIZE_M=128, BLOCK_SIZE_N=128, BLOCK_SIZE_K=32, GROUP_SIZE_M=8, A_load_order=2)
_RUN = dict(num_warps=8, num_ctas=1, num_stages=1)
GEMLITE_06_CACHE = {  # two entries in public GemLite 0.6's own layout (its configs/h100.json)
    "GEMV_REVSPLITK": {"(1, 4096, 4096, 64, 8, 104)": {**_GEMV_REV, **_RUN}},
    "GEMM": {"(4096, 4096, 4096, 64, 8, 104)": {**_GEMM, **_RUN}},
}
BAD_FILES = {
    "corrupted.json": b'{"GEMV": {"k": {"BLOCK_N": 64,,}}}',
    "truncated.json": _cache_text().encode()[:37],
    "latin1.json": '{"GEMV": {"clé": {}}}'.encode("latin-1"),
    "binary.json": bytes(range(256)),
    "empty.json": b"",
    "list.json": b"[1, 2]",
    "unknown-family.json": json.dumps({"GEMV2": {}}).encode(),
    "bad-config.json": json.dumps({"GEMV": {"k": {"BLOCK_N": 48}}}).encode(),
    "gemlite-0.6-layout.json": json.dumps(GEMLITE_06_CACHE).encode(),
}
BAD_REASONS = {
    "corrupted.json": "is not valid JSON",
    "truncated.json": "is not valid JSON",
    "latin1.json": "is not UTF-8 text",
    "binary.json": "is not UTF-8 text",
    "empty.json": "is not valid JSON",
    "list.json": "does not hold a JSON object of families",
    "unknown-family.json": "has unknown family 'GEMV2'",
    "bad-config.json": "bad GEMV config for 'k'",
    "gemlite-0.6-layout.json": "public GemLite's cache layout",
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_load_config_warns_and_falls_back_on_a_bad_file(name: str, tmp_path, clean_cache) -> None:
    good = tmp_path / "good.json"
    good.write_text(_cache_text(["kept"]))
    assert autotune.load_config(good) is True and autotune.cached_config("GEMV", "kept") is not None
    path = tmp_path / name
    path.write_bytes(BAD_FILES[name])
    with pytest.warns(ConfigCacheWarning, match=re.escape(str(path)) + ".*" + re.escape(BAD_REASONS[name])):
        assert autotune.load_config(path) is False
    assert autotune.cached_config("GEMV", "kept") is not None  # the process cache is unchanged
    assert autotune.cached_config("GEMV", "k") is None
    with pytest.raises(ValueError, match=re.escape(f"path: {path}")):
        autotune.load_config(path, strict=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gemlite.load_config(str(path), print_error=False) is False  # GemLite's quiet mode


def test_load_config_missing_file_none_and_overwrite(tmp_path, clean_cache) -> None:
    missing = tmp_path / "missing.json"
    with pytest.warns(ConfigCacheWarning, match=re.escape(f"cannot read {missing}")):
        assert gemlite.load_config(missing) is False
    with pytest.raises(FileNotFoundError):
        gemlite.load_config(missing, strict=True)
    assert gemlite.load_config(None) is False
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(_cache_text(["a"]))
    b.write_text(_cache_text(["b"]))
    assert gemlite.load_config(a) and gemlite.load_config(b)
    assert autotune.cached_config("GEMV", "a") and autotune.cached_config("GEMV", "b")
    assert gemlite.load_config(b, True, True)  # GemLite's positional (filename, print_error, overwrite)
    assert autotune.cached_config("GEMV", "a") is None and autotune.cached_config("GEMV", "b")


def test_cache_config_moves_an_unreadable_file_aside(tmp_path, clean_cache) -> None:
    autotune.load_config(_write(tmp_path / "src.json", _cache_text(["mine"])))
    for name in ("latin1.json", "truncated.json", "gemlite-0.6-layout.json"):
        path = tmp_path / name
        path.write_bytes(BAD_FILES[name])
        with pytest.raises(ValueError, match=re.escape(f"path: {path}")):
            autotune.cache_config(path, strict=True)
        assert path.read_bytes() == BAD_FILES[name]  # strict: nothing written
        with pytest.warns(ConfigCacheWarning, match=re.escape(f"moved it to {path}.unreadable")):
            autotune.cache_config(path)
        assert (tmp_path / f"{name}.unreadable").read_bytes() == BAD_FILES[name]  # nothing lost
        assert "mine" in json.loads(path.read_text())["GEMV"]
    autotune.reset_config()
    assert autotune.load_config(tmp_path / "latin1.json") is True and autotune.cached_config("GEMV", "mine")


def _write(path, text):
    path.write_text(text)
    return path


def _writer(path: str, tag: str, rounds: int, start) -> None:
    """A child process: add one config per round to its own cache and write the shared file each time."""
    start.wait()
    autotune.reset_config()
    for i in range(rounds):
        with autotune._LOCK:  # test-only: put a distinct key in this process's cache
            autotune._CACHE["GEMV"][f"{tag}-{i}"] = Config(BLOCK_N=64, BLOCK_K=32, SPLIT_K=2)
        autotune.cache_config(path)
    os._exit(0)


def test_two_processes_writing_one_cache_file_lose_nothing(tmp_path, clean_cache) -> None:
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "shared.json")
    start = ctx.Event()
    rounds = 25
    procs = [ctx.Process(target=_writer, args=(path, tag, rounds, start)) for tag in ("a", "b", "c")]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    keys = set(json.loads(open(path).read())["GEMV"])
    assert keys == {f"{tag}-{i}" for tag in ("a", "b", "c") for i in range(rounds)}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".gemlite-config-")]  # no temp file left


def _blocked_writer(path: str, done) -> None:
    autotune.reset_config()
    autotune._CACHE["GEMV"]["child"] = Config(BLOCK_N=64, BLOCK_K=32, SPLIT_K=2)
    autotune.cache_config(path)
    done.value = time.monotonic()
    os._exit(0)


def test_cache_config_waits_for_the_file_lock(tmp_path, clean_cache) -> None:
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "locked.json")
    done = ctx.Value("d", 0.0)
    with autotune._file_lock(path):
        child = ctx.Process(target=_blocked_writer, args=(path, done))
        child.start()
        time.sleep(0.5)
        assert done.value == 0.0 and not os.path.exists(path)  # the writer waits for the lock
        with open(path, "w") as f:  # what another writer holding the lock wrote meanwhile
            f.write(_cache_text(["holder"]))
        released = time.monotonic()
    child.join(30)
    assert child.exitcode == 0 and done.value >= released
    assert set(json.loads(open(path).read())["GEMV"]) == {"holder", "child"}


# --------------------------------------------------------------------------------------------
# Devices and bad arguments
# --------------------------------------------------------------------------------------------


def test_pack_refuses_meta_tensors() -> None:
    codes = torch.zeros(N, K, dtype=torch.uint8)
    s = torch.ones(N, K // G, dtype=torch.float16)
    with pytest.raises(ValueError, match="W_q: expected a tensor with data, got one on the meta device"):
        GemLiteLinear(4, G, K, N).pack(codes.to("meta"), s, None)
    with pytest.raises(ValueError, match="scales: expected a tensor on cpu .*got one on meta"):
        GemLiteLinear(4, G, K, N).pack(codes, s.to("meta"), None)
    with pytest.raises(ValueError, match="device: a gemlite layer needs real tensors, got the meta device"):
        A16W4_HQQ_INT(device="meta").from_weights(codes, s, None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_default_cuda_device_without_cuda_says_device() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(K, N).half()
    codes = torch.zeros(N, K, dtype=torch.uint8)
    s = torch.ones(N, K // G, dtype=torch.float16)
    match = r"device: the processor's device is cuda:0, but this machine has no CUDA GPU .*device='cpu'"
    for call in (
        lambda: A16W4_HQQ_INT().from_linear(lin, del_orig=False),
        lambda: A16W4_HQQ_INT().from_weights(codes, s, None),
        lambda: A16W8().from_weights(lin.weight),
        lambda: A16W8_INT8().from_linear(lin, del_orig=False),
        lambda: A16W16().from_linear(lin, del_orig=False),
        lambda: A16Wn().from_weights(codes, s, None, 4, G),
        lambda: warmup(A16W8_INT8, shapes=[(N, K)], batch_sizes=[1], progress=False),
    ):
        with pytest.raises(ValueError, match=match):
            call()
    assert lin.weight is not None  # nothing was freed on the way


def test_public_entry_points_name_the_bad_argument(tmp_path) -> None:
    layer = _layer("cpu")
    cases = [
        (lambda: gemlite.load_config(123), TypeError, "path: expected a file path .*got int"),
        (
            lambda: gemlite.load_config(tmp_path / "x.json", print_error="yes"),
            TypeError,
            "print_error: expected a bool, got str",
        ),
        (
            lambda: gemlite.load_config(tmp_path / "x.json", strict=1),
            TypeError,
            "strict: expected a bool, got int",
        ),
        (lambda: gemlite.cache_config(None), TypeError, "path: expected a file path .*got NoneType"),
        (
            lambda: gemlite.cache_config(tmp_path / "x.json", strict="no"),
            TypeError,
            "strict: expected a bool, got str",
        ),
        (
            lambda: gemlite.set_autotune("slowest"),
            ValueError,
            "config: expected 'fast', 'max', 'default', True or False, got 'slowest'",
        ),
        (
            lambda: gemlite.set_packing_bitwidth(64),
            ValueError,
            r"packing_bitwidth: expected one of \(8, 32\) .*got 64",
        ),
        (lambda: gemlite.set_kernel_caching("on"), TypeError, "enable: expected a bool, got str"),
        (
            lambda: gemlite.enable_activation_scaling(-1),
            ValueError,
            "batch_size: expected a non-negative int, got -1",
        ),
        (lambda: gemlite.set_autotune_setting(3), TypeError, "fct: expected a callable M -> bucket, got int"),
        (
            lambda: GemLiteLinear(4, G, K, N, acc_dtype="fp32"),
            ValueError,
            "acc_dtype: expected None or DType.FP32, got 'fp32'",
        ),
        (
            lambda: GemLiteLinear(4, G, K, N).pack(
                torch.zeros(N, K, dtype=torch.uint8), None, None, contiguous="x"
            ),
            TypeError,
            "contiguous: expected None or a bool, got str",
        ),
        (
            lambda: layer.forward_manual(_x(2, "cpu"), "GEMM2"),
            ValueError,
            "matmul_type: expected one of GEMV, .*got 'GEMM2'",
        ),
        (
            lambda: A16Wn(device="cpu", packing_bitwidth=12),
            ValueError,
            "packing_bitwidth: expected 8, 32 or None, got 12",
        ),
        (lambda: A16Wn(device="cpu", post_scale="no"), TypeError, "post_scale: expected a bool, got str"),
        (
            lambda: A16Wn(device="cpu").from_weights(
                torch.zeros(N, K, dtype=torch.uint8), torch.ones(N), None, 4, -1
            ),
            ValueError,
            "group_size: expected a positive int .*got -1",
        ),
        (
            lambda: A16Wn(device="cpu").from_hqqlinear(object()),
            TypeError,
            "hqq_layer: expected an hqq HQQLinear .*got object",
        ),
        (
            lambda: A16W8(device="cpu", fp8=torch.int8),
            TypeError,
            "fp8: expected None or torch.float8_e4m3fn, got torch.int8",
        ),
        (
            lambda: A16W8(device="cpu").from_weights("w"),
            TypeError,
            "weight: expected a torch.Tensor, got str",
        ),
        (
            lambda: A16W8(device="cpu").from_weights(
                torch.zeros(N, K, dtype=torch.int32), None, torch.ones(N)
            ),
            TypeError,
            "weight: A16W8_INT8 takes torch.int8 codes, got torch.int32",
        ),
        (
            lambda: A16W4_HQQ_INT(device="cpu").from_packed_weights(
                torch.zeros(N, 16, dtype=torch.int64), torch.ones(N), None
            ),
            TypeError,
            "W_q_packed: expected 2-D uint8/int8 .*got torch.int64",
        ),
        (
            lambda: A16W4_HQQ_INT(device="cpu", dtype=torch.float32),
            ValueError,
            "dtype: expected torch.float16 or torch.bfloat16 .*got torch.float32",
        ),
        (
            lambda: gemlite.helper.cleanup_linear(nn.Linear(4, 4), del_orig="yes"),
            TypeError,
            "del_orig: expected a bool, got str",
        ),
        (
            lambda: gemlite.helper.A16W158_INT(device="cpu").from_bitlinear(nn.Linear(K, N)),
            ValueError,
            "linear_layer: expected a BitLinear with .weight_scale",
        ),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()
    with pytest.raises(ValueError, match="dtype: expected torch.float16 or torch.bfloat16"):
        gemlite.helper.warmup(
            A16W4_HQQ_INT, shapes=[(N, K)], dtype=torch.float32, device="cpu", progress=False
        )
    assert isinstance(DType.FP16, DType)


def test_the_portable_lock_without_fcntl(tmp_path, monkeypatch) -> None:
    # Where neither fcntl nor msvcrt exists, an O_EXCL lock file excludes other writers (threads here).
    import builtins
    import threading

    real_import = builtins.__import__

    def no_fcntl(name, *args, **kwargs):
        if name in ("fcntl", "msvcrt"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fcntl)
    path = str(tmp_path / "portable.json")
    acquired = []

    def other():
        with autotune._file_lock(path):
            acquired.append(time.monotonic())

    with autotune._file_lock(path):
        assert os.path.exists(path + ".lock")
        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.2)
        assert not acquired
        released = time.monotonic()
    t.join(10)
    assert acquired and acquired[0] >= released and not os.path.exists(path + ".lock")


# --------------------------------------------------------------------------------------------
# Long reductions, long runs, many threads
# --------------------------------------------------------------------------------------------


def _overflow_layer(device, bits: int):
    """A weight whose running sums pass fp16's largest value (65504) while every output is small.

    Row n: W = +15 on the first half of K, -15 on the second half except its last n inputs (-14), so
    with x = 16 everywhere the sum climbs to 16 * 15 * K / 2 = 122880 at K = 1024 and comes back to
    y[n] = 16 * n. Every product and partial sum is an integer below 2**24: exact in fp32, so the
    output is exact; an fp16 accumulator would overflow to inf (and inf - inf = NaN).
    """
    k, n, g = 1024, 64, 128
    w = torch.full((n, k), 15.0)
    w[:, k // 2 :] = -15.0
    for row in range(n):
        if row:
            w[row, k - row :] = -14.0
    if bits == 16:
        layer = GemLiteLinear(16, None, k, n).pack(w.half().to(device), None, None)
    else:  # (q - z) * s with s = 1: codes 15 - 0 and 0 - 15 (zero 15 on the second half's groups)
        z = torch.zeros(n, k // g)
        z[:, (k // 2) // g :] = 15.0
        codes = (w + z.repeat_interleave(g, dim=1)).to(torch.uint8)
        s = torch.ones(n, k // g)
        layer = GemLiteLinear(bits, g, k, n).pack(codes.to(device), s.half().to(device), z.half().to(device))
    expected = 16.0 * torch.arange(n, dtype=torch.float32)
    return layer, torch.full((2, k), 16.0, dtype=torch.float16, device=device), expected


@pytest.mark.parametrize("bits", [4, 16], ids=["A16W4_HQQ_INT", "A16W16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_long_reduction_past_fp16_range_is_exact(family: str, bits: int, device: str) -> None:
    layer, x, expected = _overflow_layer(device, bits)
    y = layer.forward_manual(x, family)
    assert bool(torch.isfinite(y).all()), f"{family}: a partial sum overflowed"
    assert torch.equal(y.float().cpu(), expected.expand(2, -1)), f"{family}: not exact"


def _exact_case(device, bits: int, g: int, s: torch.Tensor, x: torch.Tensor, gen: torch.Generator):
    """(layer, expected) for random codes and integer zeros under scales `s` ``[N, K // g]`` with fp32
    output, and x ``[M, K]`` chosen so that the true ``x @ W^T`` is exact in fp32 (asserted): a
    correct kernel's output equals `expected` bit for bit."""
    (n, groups), k = s.shape, x.shape[1]
    codes = torch.randint(0, 1 << bits, (n, k), generator=gen, dtype=torch.uint8)
    z = torch.randint(0, 1 << bits, (n, groups), generator=gen).float()
    layer = GemLiteLinear(bits, g, k, n, output_dtype=DType.FP32).pack(
        codes.to(device), s.half().to(device), z.half().to(device), None
    )
    w = (codes.double() - z.double().repeat_interleave(g, 1)) * s.double().repeat_interleave(g, 1)
    expected = (x.double() @ w.T).float()
    assert torch.equal(expected.double(), x.double() @ w.T), "the test's sums must be exact in fp32"
    return layer, expected


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("family", FAMILIES)
def test_fp16_x_at_the_ends_of_its_range_is_exact(family: str, bits: int, device: str) -> None:
    """fp16 x of +-65504 (row 0, at 16 inputs k = 17 i, which meet every field of a 2-8-bit word and
    half of a 1-bit one's) and of +-2**-24, the least subnormal (row 1, everywhere): exact in every
    family (fp32 output, scale 2**-10, integer zeros: each row's products and sums, ``sum x q`` and
    ``z sum x`` apart too, are integers below 2**24 times one power of two). The GEMV's grouped sums
    scale x by up to 2**112 and the codes by 2**-149 (`gemlite.kernels.gemv._fields_subnormal`):
    x * 2**112 must stay finite for 65504, x q 2**-37 normal for 2**-24."""
    k, n, g = 256, 32, 64
    gen = torch.Generator().manual_seed(5)
    sign = torch.randint(0, 2, (2, k), generator=gen).float() * 2.0 - 1.0  # -1, +1
    sparse = torch.zeros(k)
    sparse[torch.arange(16) * 17] = 1.0
    x = sign * torch.stack([65504.0 * sparse, torch.full((k,), 2.0**-24)])
    layer, expected = _exact_case(device, bits, g, torch.full((n, k // g), 2.0**-10), x, gen)
    y = layer.forward_manual(x.half().to(device), family)
    assert_exact(y.float().cpu(), expected, what=f"{family}: {bits}-bit, fp16 x at its range ends")


@pytest.mark.parametrize("m", [1, 2])
@pytest.mark.parametrize("bits", [2, 4])
def test_gemv_split_starting_mid_group_keeps_each_steps_scale(bits: int, m: int, device: str) -> None:
    """A GEMV split that starts at an odd K step (K = 192, BLOCK_K = 32, SPLIT_K = 2: 96 K a split)
    with groups of two steps (64): the second split's first iteration holds steps 96 and 128, of two
    groups, so it must not add their sums under one scale (`gemv_kernel`'s PAIRED needs EVEN_PAIRS).
    Every group has its own power-of-two scale and integer zeros, x small integers: the sums are exact
    in fp32, so the output is compared bitwise."""
    from gemlite import autotune

    k, n, g = 192, 32, 64
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(-4, 5, (m, k), generator=gen).float()
    s = (2.0 ** -(8 + torch.arange(k // g))).expand(n, -1).contiguous()
    layer, expected = _exact_case(device, bits, g, s, x, gen)
    config = {"BLOCK_M": m, "BLOCK_N": 32, "BLOCK_K": 32, "SPLIT_K": 2, "num_warps": 1}
    with autotune.forced_config("GEMV", config):
        y = layer.forward_manual(x.half().to(device), "GEMV")
    assert_exact(y.float().cpu(), expected, what=f"GEMV {bits}-bit, M = {m}, a split starting mid-group")


def test_many_forward_calls_do_not_grow_memory(device: str, monkeypatch) -> None:
    """10,000 forward calls over 40 distinct M (every kept per-M choice and replay) hold no more memory
    at the end than after the first pass.

    On the CPU the kernels themselves are not run (the interpreter takes ~45 ms per launch, 10,000
    launches would take 8 minutes): `KernelLaunch._run_triton` is stubbed after a first real pass, so
    everything else runs as on a GPU (x checks, launch choice, plans, caches, output allocation). On
    a GPU the kernels run too and CUDA memory is checked as well.
    """
    import gc
    import tracemalloc

    from gemlite.kernels import plan as kplan

    layer = _layer(device)
    ms = list(range(1, 41))
    xs = {m: _x(m, device, seed=m) for m in ms}
    first = {m: layer(xs[m]) for m in ms}
    if device == "cpu":
        monkeypatch.setattr(kplan.KernelLaunch, "_run_triton", lambda self: None)
    calls = 10_000
    for m in ms:  # one full pass with the stub (if any) before measuring
        layer(xs[m])
    cuda = device != "cpu"
    if cuda:
        torch.cuda.synchronize()
        cuda_before = torch.cuda.memory_allocated()
    # A full collection before each reading also empties CPython's free lists: freed tuples kept for
    # reuse still count as traced memory (the launch arguments' tuples fill one over ~40,000 calls,
    # ~360 KB, then stop: a plateau, not a leak).
    tracemalloc.start()
    try:
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for i in range(calls):
            layer(xs[ms[i % len(ms)]])
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A leak of one small Python object per call (>= 32 bytes) would add >= 320 KB.
    assert after - before < 64 * 1024, f"Python memory grew by {after - before} bytes over {calls} calls"
    if cuda:
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == cuda_before
        assert all(torch.equal(layer(xs[m]), first[m]) for m in ms)


def test_concurrent_forward_and_autotune_from_threads(device: str, monkeypatch, clean_cache) -> None:
    """Four threads call forward on their own layers (new autotune keys) and on one shared layer, at
    several M, at once. Every output must be within the kernel bound of its float64 golden, and once the
    threads are done a plain sequential call gives bitwise each thread's last output (the configs they
    settled in the shared cache).

    NOTE: the Triton interpreter is not thread-safe, so on the CPU the kernel launches themselves are
    serialised (a lock around `KernelLaunch._run_triton`); everything around them (the x checks, the
    launch choice and autotune cache under its lock, the per-layer choices, plans, replays, settings
    generations) runs concurrently. On a GPU nothing is serialised and autotune "fast" times configs
    while the other threads launch.
    """
    import threading

    from gemlite.kernels import plan as kplan
    from harness.numerics import Precision, compare_output, golden_from_dequantized

    if device == "cpu":
        launch_lock = threading.Lock()
        run_triton = kplan.KernelLaunch._run_triton

        def serialised(self):
            with launch_lock:
                return run_triton(self)

        monkeypatch.setattr(kplan.KernelLaunch, "_run_triton", serialised)
    else:
        autotune.set_autotune("fast")

    def layer_and_W64(seed: int, n: int):
        gen = torch.Generator().manual_seed(seed)
        codes = torch.randint(0, 16, (n, K), generator=gen, dtype=torch.uint8)
        s = (torch.rand(n, K // G, generator=gen) * 0.01 + 0.001).half()
        z = torch.randint(0, 16, (n, K // G), generator=gen).half()
        W64 = (codes.double() - z.double().repeat_interleave(G, 1)) * s.double().repeat_interleave(G, 1)
        return GemLiteLinear(4, G, K, n).pack(codes.to(device), s.to(device), z.to(device)), W64

    shared = layer_and_W64(100, N)
    own = [layer_and_W64(101 + t, 32 * (t + 1)) for t in range(4)]
    ms = (1, 3, 16)
    rounds = 3 if device == "cpu" else 50
    results: dict[tuple[int, str, int], list[torch.Tensor]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(t: int) -> None:
        try:
            start.wait()
            for _ in range(rounds):
                for which, (layer, _) in (("own", own[t]), ("shared", shared)):
                    for m in ms:
                        y = layer(_x(m, device, seed=m))
                        results.setdefault((t, which, m), []).append(y)
        except BaseException as e:  # reported below, not lost in the thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    assert not errors, errors[0]
    assert len(results) == 4 * 2 * len(ms)
    for (t, which, m), ys in results.items():
        layer, W64 = own[t] if which == "own" else shared
        x = _x(m, device, seed=m)
        golden = golden_from_dequantized(x, W64.to(device))
        for y in ys:
            precision = Precision(torch.float16, torch.float16)
            cmp = compare_output(y, golden, precision, context=f"thread {t} {which} M={m}")
            assert cmp.ok, cmp.message()
        assert torch.equal(layer(x), ys[-1]), (t, which, m)
