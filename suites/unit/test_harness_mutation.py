"""The mutation machinery: the catalogue applies to today's kernels, patches only touch copies, and a
run is classified as caught / missed / broken from pytest's own outcome."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from harness import mutation
from harness.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]


def test_catalogue_is_in_sync_with_the_kernels():
    # Every patch's text occurs exactly once in its file: when the kernels change, this fails here,
    # in the fast suite, before anyone runs `nox -s mutation`.
    assert mutation.catalogue_problems() == []


def test_catalogue_covers_the_bug_classes():
    names = {m.name for m in MUTANTS}
    assert len(MUTANTS) >= 31
    required = {
        "group_index", "nibble_order", "zero_sign_float", "zero_sign_int", "scale_twice", "dropped_bias",
        "fp16_acc_dot", "fp16_acc_gemv", "skipped_k_tail", "m_tail_mask", "output_cast", "packing_word",
        "splitk_count", "splitk_reduce",
        # paths only the drawn settings reach: atomics, K-tail masks, DEQUANT, row chunks, metadata,
        # packed input, and the precision of stored parameters
        "atomic_unscaled", "atomic_final_bias", "bias_before_scale", "gemm_k_tail_mask", "gemv_k_tail_mask",
        "gemv_grouped_zero_fp16", "gemv_grouped_field_scale", "dequant_post_scale", "dequant_group",
        "row_chunk_atomic_ws",
        "metadata_zero_int", "packed_input_order", "bias_fp16", "channel_scales_fp16",
        "hqq_scales_compute_dtype",
    }  # fmt: skip
    assert required <= names
    for m in MUTANTS:
        assert m.path.startswith("gemlite/") and m.bug and m.old != m.new
        assert m.tests and all((ROOT / t.split("::")[0]).is_file() for t in m.tests), m.name
        assert not any(t.startswith(mutation.META_TESTS) for t in m.tests), m.name


def test_failures_are_classified_and_only_numeric_or_checked_ones_count():
    from harness.numerics import BoundViolation, ExactMismatch
    from harness.repro import CaseRaised

    def kind(exc, nodeid="suites/correctness/test_paths.py::test_path[x]"):
        return mutation.classify_failure(exc, nodeid)

    assert kind(BoundViolation("kernel output OUTSIDE the error bound [x]")) == "bound"
    assert kind(AssertionError("kernel output OUTSIDE the error bound: 3 of 4 elements fail")) == "bound"
    assert kind(ExactMismatch("W_q: 1 of 4 elements differ")) == "exact"
    assert kind(CaseRaised("A16W4 GEMV raised ValueError")) == "raised"
    assert kind(pytest.fail.Exception("DID NOT RAISE <class 'ValueError'>")) == "refused"
    assert kind(AssertionError("Regex pattern did not match.\n Regex: 'x'")) == "refused"
    assert kind(AssertionError("assert 3 == 2")) == "other"
    assert kind(ValueError("boom")) == "other"
    meta = "suites/unit/test_harness_mutation.py::test_catalogue_is_in_sync_with_the_kernels"
    assert kind(ExactMismatch("x"), meta) == "meta"
    assert set(mutation.COUNTED) == {"bound", "exact", "raised", "refused"}


def test_baseline_runs_every_test_a_mutant_runs():
    a = Mutant("a", "bug", "gemlite/f.py", "x", "y", focus="GEMV", tests=("t1.py",))
    b = Mutant("b", "bug", "gemlite/f.py", "x", "y", focus="det_off and post", tests=("t2.py", "t1.py"))
    assert mutation.baseline_selection([a, b]) == (("t1.py", "t2.py"), "(GEMV) or (det_off and post)")
    c = Mutant("c", "bug", "gemlite/f.py", "x", "y")
    assert mutation.baseline_selection([a, c]) == (("t1.py", mutation.TEST_FILE), None)
    with pytest.raises(ValueError, match="meta-test"):
        mutation.run_subset(ROOT, None, 1, tests=mutation.META_TESTS)


def test_patch_problems_are_reported(tmp_path):
    src = tmp_path / "gemlite" / "f.py"
    src.parent.mkdir()
    src.write_text("a = 1\nb = 2\nb = 2\n")
    ok = Mutant("ok", "bug", "gemlite/f.py", "a = 1", "a = 2")
    assert mutation.patch_problem(ok, tmp_path) is None
    missing = Mutant("missing", "bug", "gemlite/f.py", "c = 3", "c = 4")
    assert "does not occur" in mutation.patch_problem(missing, tmp_path)
    twice = Mutant("twice", "bug", "gemlite/f.py", "b = 2", "b = 3")
    assert "occurs 2 times" in mutation.patch_problem(twice, tmp_path)
    assert "does not exist" in mutation.patch_problem(Mutant("x", "b", "gemlite/g.py", "a", "b"), tmp_path)
    problems = mutation.catalogue_problems(tmp_path, (ok, ok, twice))
    assert any("duplicate mutant name 'ok'" in p for p in problems) and any("twice" in p for p in problems)

    mutation.apply_mutant(ok, tmp_path)
    assert src.read_text() == "a = 2\nb = 2\nb = 2\n"
    with pytest.raises(mutation.MutantOutOfSync, match="twice"):
        mutation.apply_mutant(twice, tmp_path)


def test_the_working_tree_is_never_mutated():
    before = (ROOT / MUTANTS[0].path).read_text()
    with pytest.raises(ValueError, match="refusing to mutate the working tree"):
        mutation.apply_mutant(MUTANTS[0], ROOT)
    assert (ROOT / MUTANTS[0].path).read_text() == before


def test_copy_leaves_out_caches_and_version_control(tmp_path):
    copy = mutation.copy_repository(tmp_path / "copy")
    assert (copy / "gemlite" / "kernels" / "common.py").is_file()
    assert (copy / "suites" / "correctness" / "test_formats.py").is_file()
    assert not (copy / ".git").exists() and not list(copy.rglob("__pycache__"))


def _fake_repository(tmp_path: Path, body: str) -> Path:
    """A repository holding the harness and a stand-in test_formats.py."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "harness", root / "harness", ignore=shutil.ignore_patterns("__pycache__"))
    tests = root / "suites" / "correctness"
    tests.mkdir(parents=True)
    (root / "suites" / "conftest.py").write_text('pytest_plugins = ("harness.pytest_plugin",)\n')
    (tests / "test_formats.py").write_text(body)
    return root


_BOUND = "    raise AssertionError('kernel output OUTSIDE the error bound [x]')\n"


@pytest.mark.parametrize(
    "body,status,how",
    [
        ("def test_ok():\n    pass\n", "passed", ""),
        ("def test_bad():\n" + _BOUND, "failed", "bound"),
        # A plain assertion first, then a bound failure: the run goes on past the first and counts the second.
        ("def test_a():\n    assert 1 == 2\n\ndef test_bad():\n" + _BOUND, "failed", "bound"),
        ("def test_plain():\n    assert 1 == 2\n", "uncounted", ""),
        ("import nonexistent_module_xyz\n", "error", ""),
    ],
    ids=["passes", "fails-the-bound", "plain-then-bound", "plain-assertion-only", "collection-error"],
)
def test_run_subset_classifies_outcomes(tmp_path, body, status, how):
    root = _fake_repository(tmp_path, body)
    result = mutation.run_subset(root, None, timeout=240, python=sys.executable)
    assert result.status == status, result.tail
    if status == "failed":
        assert result.first_failure == "suites/correctness/test_formats.py::test_bad"
        assert result.how == how
    if status == "uncounted":
        assert "test_plain (other)" in result.tail


def test_render_table():
    m = MUTANTS[0]
    outcomes = [
        mutation.MutantOutcome(m, "caught", "suites/correctness/x.py::test_A[GEMM]", "bound", 12.0),
        mutation.MutantOutcome(MUTANTS[1], "MISSED", "", "", 30.0),
    ]
    table = mutation.render_table(outcomes)
    assert "test_A[GEMM] (bound)" in table and "MISSED" in table and m.name in table
