"""Suite data (suites/perf/<gpu>.json): validity, expansion into cases, selections, and the traffic
model behind the GB/s and roofline columns."""

import json

import pytest

from gemlite.formats import get_format
from harness.perf_cases import (
    REFERENCES,
    Case,
    FormatEntry,
    case_bytes,
    case_flops,
    load_suite,
    parse_selection,
    suite_path,
    weight_bytes,
)

ISSUE_LABELS = ["A16W4_HQQ_INT/g128", "A16W4_HQQ_INT/g64", "A16W2_HQQ_INT/g128", "A16W8_INT8", "A16W8_FP8"]
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


@pytest.mark.parametrize("name", ["h100", "h200"])
def test_shipped_suites_hold_the_issue_cases(name):
    s = load_suite(suite_path(name))
    assert s.name == name
    assert [f.label for f in s.formats] == ISSUE_LABELS
    assert list(s.shapes) == ISSUE_SHAPES
    assert list(s.ms) == ISSUE_M
    assert set(s.references) == set(REFERENCES)
    cases = s.cases()
    assert sum(c.kind == "gemlite" for c in cases) == 5 * 9 * 12
    assert sum(c.kind == "ref" for c in cases) == 4 * 9 * 12
    assert len({c.case_id for c in cases}) == len(cases)
    for f in s.formats:  # the label is the vocabulary's own
        assert f.format.label == f.label
    quick = s.cases(quick=True)
    assert 0 < sum(c.kind == "gemlite" for c in quick) <= 20
    assert {c.case_id for c in quick} <= {c.case_id for c in cases}


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
