"""Suite data (suites/perf/<gpu>.json): validity, expansion into cases, selections, and the traffic
model behind the GB/s and roofline columns."""

import json

import pytest

from gemlite.formats import FORMATS, WeightKind, get_format
from harness import perf_cases
from harness.perf_cases import (
    HOST_REFERENCE,
    REFERENCES,
    Case,
    FormatEntry,
    HostSubset,
    case_bytes,
    case_flops,
    load_suite,
    parse_selection,
    suite_path,
    weight_bytes,
)

ISSUE_LABELS = ["A16W4_HQQ_INT/g128", "A16W4_HQQ_INT/g64", "A16W2_HQQ_INT/g128", "A16W8_INT8", "A16W8_FP8"]
ISSUE_LABELS += ["A16W8_MXFP", "A16W4_MXFP", "A16W4_NVFP"]  # issue "Kernels III"
ISSUE_LABELS += [  # issue 10, "Kernels II": dynamic activations
    "A8W8_INT8_dynamic",
    "A8W8_FP8_dynamic",
    "A8W8_INT8_block_dynamic",
    "A8W8_FP8_block_dynamic",
    "A8W4_HQQ_INT_dynamic/g128",
    "A8W2_HQQ_INT_dynamic/g128",
    "A8W158_INT_dynamic",
]
ISSUE_LABELS += [  # issue 11, "Kernels III": microscaled activations
    "A8W8_MXFP_dynamic",
    "A8W4_MXFP_dynamic",
    "A4W4_MXFP_dynamic",
    "A4W4_NVFP_dynamic",
]
ISSUE_SHAPES = [
    (4096, 4096),
    (4096, 14336),
    (14336, 4096),
    (4096, 1024),
    (8192, 8192),
    (8192, 28672),
    (28672, 8192),
    (8192, 1024),
    (16384, 16384),
]
ISSUE_M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096]
# The eager host-time subset (issue "Core v2", deliverable 4): two quantized formats and gemlite's
# own fp16 path against F.linear fp16, on one Llama-sized layer at decode batch sizes.
HOST_LABELS = ["A16W4_HQQ_INT/g128", "A16W8_INT8", "A16W16"]
HOST_IDS = {f"{name} 4096x4096 M{m}" for name in HOST_LABELS + [HOST_REFERENCE] for m in (1, 4)}


@pytest.mark.parametrize("name", ["h100", "h200"])
def test_shipped_suites_hold_the_issue_cases(name):
    s = load_suite(suite_path(name))
    assert s.name == name
    assert [f.label for f in s.formats] == ISSUE_LABELS
    assert list(s.shapes) == ISSUE_SHAPES
    assert list(s.ms) == ISSUE_M
    assert set(s.references) == set(REFERENCES)
    cases = s.cases()
    assert sum(c.kind == "gemlite" for c in cases) == len(ISSUE_LABELS) * 9 * 12 + 2  # + A16W16, host only
    assert sum(c.kind == "ref" for c in cases) == 4 * 9 * 12
    assert len({c.case_id for c in cases}) == len(cases)
    for f in s.formats + s.host_formats:  # the label is the vocabulary's own
        assert f.format.label == f.label
    assert [f.label for f in s.host_formats] == ["A16W16"]
    assert list(s.host.formats) == HOST_LABELS
    assert {c.case_id for c in cases if c.host} == HOST_IDS
    quick = s.cases(quick=True)
    assert 0 < sum(c.kind == "gemlite" for c in quick) <= 20
    assert {c.case_id for c in quick} <= {c.case_id for c in cases}
    assert {c.case_id for c in quick if c.host} == HOST_IDS  # a quick run shows the host section too


def test_run_order_is_shape_major_references_first():
    cases = load_suite(suite_path("h100")).cases()
    shapes_seen = []
    for c in cases:
        if not shapes_seen or shapes_seen[-1] != (c.K, c.N):
            assert (c.K, c.N) not in shapes_seen, "a shape must be finished before the next starts"
            shapes_seen.append((c.K, c.N))
    first = [c for c in cases if (c.K, c.N) == ISSUE_SHAPES[0]]
    kinds = [c.kind for c in first]
    assert kinds == sorted(kinds, key=lambda k: k != "ref")  # every reference before any gemlite case
    # all M of one build key are consecutive, so weights are built once per format and shape
    keys = [c.build_key for c in cases]
    assert len(keys) - sum(a == b for a, b in zip(keys, keys[1:])) == len(set(keys))


def test_selection_narrows_and_validates():
    s = load_suite(suite_path("h100"))
    sel = parse_selection("A16W8_INT8", "4096x4096,8192x1024", "1,32", refs=False)
    cases = s.cases(selection=sel)
    assert [c.case_id for c in cases] == [
        "A16W8_INT8 4096x4096 M1",
        "A16W8_INT8 4096x4096 M32",
        "A16W8_INT8 8192x1024 M1",
        "A16W8_INT8 8192x1024 M32",
    ]
    assert not sel.is_everything and parse_selection(None, None, None).is_everything
    with pytest.raises(ValueError, match="--formats"):
        s.cases(selection=parse_selection("A16W3", None, None))
    with pytest.raises(ValueError, match="--shapes"):
        s.cases(selection=parse_selection(None, "100x100", None))
    with pytest.raises(ValueError, match="--m"):
        s.cases(selection=parse_selection(None, None, "3"))
    with pytest.raises(ValueError, match="--shapes: expected KxN"):
        parse_selection(None, "4096by4096", None)
    with pytest.raises(ValueError, match="--m: expected"):
        parse_selection(None, None, "one")


def _write(tmp_path, **over):
    base = {
        "suite": "t",
        "formats": [{"label": "A16W8_INT8", "helper": "A16W8_INT8", "kwargs": {}}],
        "shapes": [[128, 64]],
        "M": [1, 2],
    }
    base.update(over)
    p = tmp_path / "suite.json"
    p.write_text(json.dumps(base))
    return p


@pytest.mark.parametrize(
    "over, match",
    [
        ({"extra": 1}, "unknown keys"),
        ({"formats": []}, "formats: expected a non-empty list"),
        (
            {
                "formats": [
                    {"label": "A16W4_HQQ_INT/g64", "helper": "A16W4_HQQ_INT", "kwargs": {"group_size": 128}}
                ]
            },
            "does not match the format it builds",
        ),
        ({"formats": [{"label": "X", "helper": "A16W9_NOPE"}]}, "unknown format"),
        (
            {"formats": [{"label": "A16W8_INT8", "helper": "A16W8_INT8", "kwargs": {"group_size": 64}}]},
            "fixed group size",
        ),
        ({"formats": [{"label": "A16W8_INT8", "helper": "A16W8_INT8", "act_dtype": "float32"}]}, "act_dtype"),
        ({"formats": [{"label": "A16W8_INT8", "helper": "A16W8_INT8", "init": [1]}]}, "init: expected an"),
        ({"formats": [{"label": "A16W8_INT8", "helper": "A16W8_INT8"}] * 2}, "duplicate labels"),
        ({"shapes": [[100, 64]]}, "not a multiple of 32"),
        (
            {
                "shapes": [[96, 64]],
                "formats": [
                    {"label": "A16W4_HQQ_INT/g64", "helper": "A16W4_HQQ_INT", "kwargs": {"group_size": 64}}
                ],
            },
            "group size 64",
        ),
        ({"shapes": [[128, 64], [128, 64]]}, "shapes: duplicates"),
        ({"shapes": [[128]]}, r"\[K, N\]"),
        ({"M": [1, 0]}, "M: expected positive"),
        ({"M": [1, 1]}, "M: duplicates"),
        ({"references": ["cublas_fp4"]}, "references: unknown"),
        ({"quick": {"M": [8]}}, "quick"),
        ({"quick": {"formats": ["A16W8_FP8"]}}, "quick"),
    ],
)
def test_bad_suite_files_are_refused(tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        load_suite(_write(tmp_path, **over))


def test_entry_init_goes_to_the_constructor_and_round_trips():
    """``init`` (the processor's constructor arguments: A8W8_MXFP_dynamic's post_scale=False) is kept
    through a record's round trip and left out of the records of entries without it."""
    s = load_suite(suite_path("h200"))
    entry = next(f for f in s.formats if f.label == "A8W8_MXFP_dynamic")
    assert entry.init == {"post_scale": False}
    assert FormatEntry.from_dict(entry.to_dict()).init == {"post_scale": False}
    plain = next(f for f in s.formats if f.label == "A16W8_INT8")
    assert "init" not in plain.to_dict() and FormatEntry.from_dict(plain.to_dict()).init == {}


def test_bad_json_and_missing_file(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_suite(p)
    with pytest.raises(FileNotFoundError):
        load_suite(tmp_path / "missing.json")


def test_one_line_adds_a_format(tmp_path):
    """A later format (dynamic activations here) is one more entry, nothing else."""
    p = _write(
        tmp_path,
        formats=[
            {"label": "A16W8_INT8", "helper": "A16W8_INT8"},
            {"label": "A8W8_INT8_dynamic", "helper": "A8W8_INT8_dynamic"},
        ],
    )
    s = load_suite(p)
    assert [c.name for c in s.cases() if c.kind == "gemlite"] == ["A16W8_INT8"] * 2 + [
        "A8W8_INT8_dynamic"
    ] * 2


def test_host_subset_expansion():
    s = load_suite(suite_path("h200"))
    cases = s.cases()
    # A16W16 is built for the host subset only: its M are the subset's, after the suite's formats.
    assert [c.case_id for c in cases if c.name == "A16W16"] == ["A16W16 4096x4096 M1", "A16W16 4096x4096 M4"]
    shape = [c.name for c in cases if (c.K, c.N) == (4096, 4096) and c.kind == "gemlite"]
    assert shape[-2:] == ["A16W16", "A16W16"]
    # every case of a build key is still consecutive, host cases included
    keys = [c.build_key for c in cases]
    assert len(keys) - sum(a == b for a, b in zip(keys, keys[1:])) == len(set(keys))
    # a selection narrows the host subset like the rest; --no-refs drops F.linear
    sel = s.cases(selection=parse_selection("A16W8_INT8,A16W16", "4096x4096", "1,32"))
    assert {c.case_id for c in sel if c.host} == {
        "cublas_fp16 4096x4096 M1",
        "A16W8_INT8 4096x4096 M1",
        "A16W16 4096x4096 M1",
    }
    no_refs = s.cases(selection=parse_selection("A16W16", None, None, refs=False))
    assert [c.case_id for c in no_refs] == ["A16W16 4096x4096 M1", "A16W16 4096x4096 M4"]
    assert s.entry("A16W16").helper == "A16W16"
    assert not s.cases(selection=parse_selection(None, "8192x1024", "1"))[0].host
    back = Case.from_dict(json.loads(json.dumps(next(c for c in cases if c.host).to_dict())))
    assert back.host
    old = {k: v for k, v in back.to_dict().items() if k != "host"}  # results from before the subset
    assert Case.from_dict(old).host is False


def test_host_subset_covers():
    h = HostSubset(("A16W8_INT8",), ((4096, 4096),), (1, 4))
    assert h.covers("gemlite", "A16W8_INT8", 4096, 4096, 4)
    assert h.covers("ref", HOST_REFERENCE, 4096, 4096, 1)
    assert not h.covers("ref", "cublas_bf16", 4096, 4096, 1)
    assert not h.covers("gemlite", "A16W8_INT8", 4096, 4096, 2)
    assert not h.covers("gemlite", "A16W8_INT8", 4096, 1024, 1)
    assert not h.covers("gemlite", "A16W8_FP8", 4096, 4096, 1)


def _host(**over):
    h = {"formats": ["A16W8_INT8"], "shapes": [[128, 64]], "M": [1]}
    h.update(over)
    return {"references": ["cublas_fp16"], "host": h}


@pytest.mark.parametrize(
    "over, match",
    [
        ({"references": ["cublas_fp16"], "host": ["A16W8_INT8"]}, "host: expected an object"),
        (
            {"references": ["cublas_fp16"], "host": {"formats": ["A16W8_INT8"], "M": [1]}},
            "host: expected keys",
        ),
        ({**_host(), "host": {**_host()["host"], "calls": 5}}, "host: expected keys"),
        ({**_host(), "references": ["cublas_bf16"]}, "compared with cublas_fp16"),
        (_host(formats=["A16W8_INT"]), r"host.formats\[0\]: 'A16W8_INT' is not one of the suite's formats"),
        (_host(formats=[]), "host.formats: expected a non-empty list"),
        (_host(formats=["A16W8_INT8", "A16W8_INT8"]), "host.formats: duplicates"),
        (
            _host(formats=[{"label": "A16W16", "helper": "A16W16", "kwargs": {"x": 1}, "bad": 1}]),
            r"host.formats\[0\]",
        ),
        (_host(formats=[{"label": "A16W8_INT8", "helper": "A16W8_INT8"}]), "is a suite format already"),
        (_host(formats=[{"label": "A16W4_HQQ_INT/g64", "helper": "A16W4_HQQ_INT"}]), "does not match"),
        (
            _host(
                formats=[
                    {"label": "A16W4_HQQ_INT/g128", "helper": "A16W4_HQQ_INT", "kwargs": {"group_size": 128}}
                ],
                shapes=[[96, 64]],
            ),
            "host.shapes: 96x64 is not one of the suite's shapes",
        ),
        (_host(shapes=[[4096, 4096]]), "host.shapes: 4096x4096 is not one of the suite's shapes"),
        (_host(M=[3]), r"host.M: 3 is not one of the suite's M \[1, 2\]"),
        (_host(M=[1, 1]), "host: duplicate"),
        (_host(M=[0]), "M: expected positive"),
        (
            {
                **_host(),
                "quick": {"formats": ["A16W16"]},
                "host": {**_host()["host"], "formats": [{"label": "A16W16", "helper": "A16W16"}]},
            },
            "quick",
        ),
    ],
)
def test_bad_host_subsets_are_refused(tmp_path, over, match):
    """A typo in the host subset fails at load time, before a GPU minute is spent."""
    with pytest.raises(ValueError, match=match):
        load_suite(_write(tmp_path, **over))


def test_host_subset_with_a_host_only_format(tmp_path):
    p = _write(
        tmp_path,
        references=["cublas_fp16", "cublas_bf16"],
        host={
            "_why": "test",
            "formats": ["A16W8_INT8", {"label": "A16W16", "helper": "A16W16"}],
            "shapes": [[128, 64]],
            "M": [2],
        },
    )
    s = load_suite(p)
    assert [(c.case_id, c.host) for c in s.cases()] == [
        ("cublas_fp16 128x64 M1", False),
        ("cublas_fp16 128x64 M2", True),
        ("cublas_bf16 128x64 M1", False),
        ("cublas_bf16 128x64 M2", False),
        ("A16W8_INT8 128x64 M1", False),
        ("A16W8_INT8 128x64 M2", True),
        ("A16W16 128x64 M2", True),
    ]
    assert load_suite(_write(tmp_path)).host is None  # the subset is optional


# Independent hand formulas of a stored weight's bytes (codes + scales + zeros), one per format the
# suites time: packed codes bits/8 per element; HQQ: one fp16 scale and one fp16 zero per group of
# g inputs; INT8/FP8: one fp32 scale per output channel; A16W16: the fp16 weight itself; MX: one e8m0
# byte per 32 inputs; NVFP4: one e4m3 byte per 16 inputs and the fp32 tensor scale.
def _hand_bytes(label: str, K: int, N: int) -> int:
    hqq = {"A16W4_HQQ_INT/g128": (4, 128), "A16W4_HQQ_INT/g64": (4, 64), "A16W2_HQQ_INT/g128": (2, 128)}
    hqq.update({"A8W4_HQQ_INT_dynamic/g128": (4, 128), "A8W2_HQQ_INT_dynamic/g128": (2, 128)})
    if label in ("A8W8_INT8_dynamic", "A8W8_FP8_dynamic"):  # the weight of A16W8_INT8 / A16W8_FP8
        return K * N + 4 * N
    if label.endswith("_block_dynamic"):  # one fp32 scale per 128 x 128 block (the minimum traffic)
        return K * N + -(-N // 128) * (K // 128) * 4
    if label == "A8W158_INT_dynamic":  # 2-bit codes, the fp32 scale repeated per channel
        return K * N // 4 + 4 * N
    if label in hqq:
        bits, g = hqq[label]
        return K * N * bits // 8 + 2 * 2 * N * (K // g)
    mx = {"A16W8_MXFP": K * N + K * N // 32, "A16W4_MXFP": K * N // 2 + K * N // 32,
          "A16W4_NVFP": K * N // 2 + K * N // 16 + 4}  # fmt: skip
    mx.update({"A8W8_MXFP_dynamic": mx["A16W8_MXFP"], "A8W4_MXFP_dynamic": mx["A16W4_MXFP"],
               "A4W4_MXFP_dynamic": mx["A16W4_MXFP"], "A4W4_NVFP_dynamic": mx["A16W4_NVFP"]})  # fmt: skip
    return {"A16W8_INT8": K * N + 4 * N, "A16W8_FP8": K * N + 4 * N, "A16W16": 2 * K * N, **mx}[label]


@pytest.mark.parametrize("name", ["h100", "h200"])
def test_weight_bytes_of_every_suite_format(name):
    """The schemes own the byte count now; every number the reports printed before stays the same."""
    s = load_suite(suite_path(name))
    for f in s.formats + s.host_formats:
        for K, N in s.shapes:
            assert weight_bytes(f.format, K, N) == _hand_bytes(f.label, K, N), (f.label, K, N)


def test_weight_bytes_come_from_the_schemes(monkeypatch):
    from gemlite.schemes import weight_scheme

    fmt = get_format("A16W8_INT8")
    scheme = type(weight_scheme(WeightKind.INT8))
    monkeypatch.setattr(scheme, "weight_bytes", lambda self, spec, K, N, sb: 12345)
    assert weight_bytes(fmt, 4096, 4096) == 12345
    monkeypatch.undo()
    # Without gemlite.schemes (an A/B base revision older than it) the harness's own formulas apply;
    # they give what the schemes give, so an A/B across the change reports the same bytes.
    formats = [f.with_group_size(64) for f in FORMATS.values() if f.weight.kind is WeightKind.HQQ]
    formats += list(FORMATS.values())
    # (No revision without gemlite.schemes runs the microscaled formats: their scheme owns their bytes.)
    microscaled = (WeightKind.MXFP8, WeightKind.MXFP4, WeightKind.NVFP4)
    formats = [f for f in formats if f.weight.kind not in microscaled]
    with_schemes = [weight_bytes(f, 4096, 14336) for f in formats]
    monkeypatch.setattr(perf_cases, "weight_scheme", None)
    assert [weight_bytes(f, 4096, 14336) for f in formats] == with_schemes


def test_weight_bytes():
    K, N = 4096, 4096
    g128 = get_format("A16W4_HQQ_INT")  # g128, float zeros, fp16 scales
    assert weight_bytes(g128, K, N) == K * N // 2 + 2 * (N * K // 128) * 2
    assert weight_bytes(g128.with_group_size(64), K, N) == K * N // 2 + 2 * (N * K // 64) * 2
    assert weight_bytes(get_format("A16W2_HQQ_INT"), K, N) == K * N // 4 + 2 * (N * K // 128) * 2
    assert weight_bytes(get_format("A16W8_INT8"), K, N) == K * N + 4 * N
    assert weight_bytes(get_format("A16W8_FP8"), K, N) == K * N + 4 * N
    assert weight_bytes(get_format("A16W16"), K, N) == 2 * K * N
    assert weight_bytes(get_format("A16W158_INT"), K, N) == K * N // 4 + 4 * N
    assert weight_bytes(get_format("A16W4_MXFP"), K, N) == K * N // 2 + K * N // 32
    assert weight_bytes(get_format("A16W4_NVFP"), K, N) == K * N // 2 + K * N // 16 + 4
    assert weight_bytes(get_format("A8W8_INT8_block_dynamic"), K, N) == K * N + (N // 128) * (K // 128) * 4


def test_case_bytes_and_flops():
    e = FormatEntry("A16W4_HQQ_INT/g128", "A16W4_HQQ_INT", {"group_size": 128})
    c = Case("gemlite", e.label, 4096, 14336, 16, e)
    assert case_bytes(c) == weight_bytes(e.format, 4096, 14336) + 16 * 4096 * 2 + 16 * 14336 * 2
    assert case_flops(c) == 2 * 16 * 14336 * 4096
    r = Case("ref", "cublas_fp16", 4096, 14336, 16)
    assert case_bytes(r) == 2 * 4096 * 14336 + 16 * 4096 * 2 + 16 * 14336 * 2
    f8 = Case("ref", "cublas_fp8_scaled_mm", 4096, 14336, 16)
    assert case_bytes(f8) == 4096 * 14336 + 16 * 4096 + 16 * 14336 * 2 + (16 + 14336) * 4
    i8 = Case("ref", "cublas_int8_int_mm", 4096, 14336, 32)
    assert case_bytes(i8) == 4096 * 14336 + 32 * 4096 + 32 * 14336 * 4
    with pytest.raises(ValueError, match="no format entry"):
        case_bytes(Case("gemlite", "x", 32, 32, 1))


def test_case_identity_round_trip():
    e = FormatEntry("A16W4_HQQ_INT/g64", "A16W4_HQQ_INT", {"group_size": 64}, "bfloat16")
    c = Case("gemlite", e.label, 8192, 1024, 4, e)
    assert c.case_id == "A16W4_HQQ_INT/g64 8192x1024 M4"
    assert "/" not in c.test_id and " " not in c.test_id
    back = Case.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back == c and back.entry.to_dict() == e.to_dict()


def test_dynamic_formats_count_their_activation_operand():
    """Dynamic activations: x read by the quantizer, the 8-bit codes written and read back, the fp32 row
    scales written and read (gemlite.schemes.activation), on top of the weight and y."""
    suite = load_suite(suite_path("h200"))
    case = next(c for c in suite.cases() if c.case_id == "A8W8_FP8_dynamic 4096x14336 M16")
    M, K, N = 16, 4096, 14336
    assert case_bytes(case) == (K * N + 4 * N) + (M * K * 2 + 2 * M * K + 2 * M * 4) + M * N * 2
