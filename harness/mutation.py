"""Mutation testing of the correctness suite: plant known kernel bugs, one at a time, and show each is caught.

``python -m harness.mutation`` (what ``nox -s mutation`` runs):

1. checks that every patch of the catalogue (`harness.mutants.MUTANTS`) applies: its ``old`` text
   occurs exactly once in its file. A patch that no longer applies fails the session ("out of sync"),
   so the catalogue follows the kernels.
2. copies the repository into a TEMPORARY directory (the working tree is never touched) and runs,
   unmutated, every test any selected mutant will run (the baseline: the union of their test files,
   ``-k`` the union of their foci, ``--jobs`` pytest-xdist workers). It must pass, or a "caught" would
   mean nothing;
3. for each mutant: a fresh copy of that baseline snapshot, the patch applied, then the mutant's tests
   (``Mutant.tests``: the files that reach its path, ``test_formats.py`` unless it says otherwise) run
   in it under the Triton interpreter (the ``quick`` profile: a fixed, derandomized set of examples;
   ``-k`` the mutant's focus), stopping at the first failure that COUNTS (`classify_failure`): an
   output outside the error bound ("bound"), a bitwise comparison that fails ("exact"), a legal case
   whose run raises ("raised"), or an expected error that does not come ("refused"). Other failures
   (a plain assertion, a meta-test such as the catalogue-sync test, which fails for every applied
   patch; its file is never collected) are listed but are not catches;
4. prints a table mutant -> caught / MISSED (and the first counting failure and its kind), and exits
   non-zero if a mutant was missed, a patch did not apply, or a run broke (crash, collection error,
   timeout).

Options: ``--only NAME`` (repeatable), ``--jobs N`` (mutants run in parallel, and the baseline's
workers; default 1, the machine is shared), ``--timeout S`` per run, ``--no-baseline``, ``--keep``
(leave the temporary copies), ``--list``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from harness.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent
TEST_FILE = "suites/correctness/test_formats.py"
#: Meta-tests of the mutation machinery itself: never collected by a run (the catalogue-sync test fails
#: for every applied patch) and never counted.
META_TESTS = ("suites/unit/test_harness_mutation.py",)
# What each run executes (relative to the copy's root), before its test files.
PYTEST_ARGS = (
    "-m", "pytest", "-q", "-rfE", "-m", "not slow and not gpu", "-p", "no:cacheprovider",
    "--correctness-profile", "quick", *(f"--ignore={t}" for t in META_TESTS),
)  # fmt: skip
#: The failure kinds that count as catching a mutant (`classify_failure`).
COUNTED = ("bound", "exact", "raised", "refused")
_LOG_NAME = ".mutation-log.jsonl"
# Not copied: version control, virtualenvs, caches, generated reports and results.
_IGNORE = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
    "*.egg-info", "reports", "results", ".benchmarks", "build", "dist",
)  # fmt: skip


class MutantOutOfSync(RuntimeError):
    """A patch of the catalogue does not apply to the current source."""


# --------------------------------------------------------------------------------------------
# What counts as a catch
# --------------------------------------------------------------------------------------------


def classify_failure(exc: BaseException, nodeid: str = "") -> str:
    """The kind of one test failure, for the mutation verdict (only `COUNTED` kinds are catches).

    "bound": `harness.numerics.BoundViolation`, or an assertion whose message is a failed
        `Comparison.message` ("kernel output OUTSIDE the error bound": tests that assert ``result.ok``);
    "exact": `harness.numerics.ExactMismatch` (codes, packed words, bitwise reproducibility, a state_dict
        round trip);
    "raised": `harness.repro.CaseRaised`, a legal case whose run raised;
    "refused": ``pytest.raises`` that saw no error, or not the expected one (bad input accepted);
    "meta": a test of `META_TESTS`; "other": anything else (not a catch).
    The classes are recognised by name in the exception's MRO: the pytest plugin calls this, and must
    not import gemlite (through `harness.repro`) before the suite's conftest has chosen the Triton
    interpreter.
    """
    if any(nodeid.startswith(t) for t in META_TESTS):
        return "meta"
    kinds = {cls.__name__ for cls in type(exc).__mro__}
    text = str(exc)
    if "BoundViolation" in kinds or (
        isinstance(exc, AssertionError) and "kernel output OUTSIDE the error bound" in text
    ):
        return "bound"
    if "ExactMismatch" in kinds:
        return "exact"
    if "CaseRaised" in kinds:
        return "raised"
    if text.startswith("DID NOT RAISE") or "Regex pattern did not match" in text:
        return "refused"
    return "other"


# --------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------


def patch_problem(mutant: Mutant, root: Path = ROOT) -> str | None:
    """None when `mutant` applies to the tree at `root`, else why not."""
    path = root / mutant.path
    if not path.is_file():
        return f"{mutant.name}: {mutant.path} does not exist"
    count = path.read_text().count(mutant.old)
    if count != 1:
        where = "does not occur" if count == 0 else f"occurs {count} times"
        return f"{mutant.name}: the text to replace {where} in {mutant.path}: {mutant.old!r}"
    if mutant.old == mutant.new:
        return f"{mutant.name}: old and new are the same text"
    return None


def catalogue_problems(root: Path = ROOT, mutants=MUTANTS) -> list[str]:
    """Every patch that does not apply, plus duplicate names (empty when the catalogue is in sync)."""
    problems = [p for m in mutants if (p := patch_problem(m, root)) is not None]
    names = [m.name for m in mutants]
    problems += [f"duplicate mutant name {n!r}" for n in sorted({n for n in names if names.count(n) > 1})]
    return problems


def apply_mutant(mutant: Mutant, root: Path) -> None:
    """Patch the copy at `root` (never call this on the working tree). Raises MutantOutOfSync."""
    if root.resolve() == ROOT:
        raise ValueError("root: refusing to mutate the working tree; pass a temporary copy")
    problem = patch_problem(mutant, root)
    if problem is not None:
        raise MutantOutOfSync(problem)
    path = root / mutant.path
    path.write_text(path.read_text().replace(mutant.old, mutant.new))


def copy_repository(dst: Path, src: Path = ROOT) -> Path:
    """Copy the repository's sources (not .git, caches or reports) to `dst`; returns `dst`."""
    shutil.copytree(src, dst, ignore=_IGNORE, symlinks=True)
    return dst


# --------------------------------------------------------------------------------------------
# Running one copy
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """How one run of a mutant's tests ended.

    status: "passed" (exit 0), "failed" (a failure that counts: the bug was caught), "uncounted" (tests
        failed, none in a way that counts), "error" (collection error, crash, usage error or no test
        selected), "timeout".
    first_failure: the first counting failure (node id), when status is "failed".
    how: its kind (`classify_failure`: "bound", "exact", "raised", "refused").
    seconds: wall time. tail: the last lines of the output (for errors), or the uncounted failures.
    """

    status: str
    first_failure: str
    how: str
    seconds: float
    tail: str


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRITON_INTERPRET="1",  # the interpreter must be on before gemlite is imported
        TRITON_DEFAULT_FP_FUSION="1",
        PYTHONHASHSEED="0",
        PYTHONPATH=str(root),  # the copy's gemlite, not an installed or editable one
        CUDA_VISIBLE_DEVICES="",  # mutation runs on the CPU interpreter even on a GPU machine
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def check_import_location(root: Path, python: str = sys.executable) -> None:
    """Raise RuntimeError unless `python` run in `root` imports gemlite and harness from `root`."""
    code = "import gemlite.formats, harness; print(gemlite.__file__); print(harness.__file__)"
    out = subprocess.run(
        [python, "-c", code], cwd=root, env=_env(root), capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"importing gemlite in the copy failed:\n{out.stderr[-2000:]}")
    for line in out.stdout.split():
        if not Path(line).resolve().is_relative_to(root.resolve()):
            raise RuntimeError(f"the copy at {root} imports {line}, not its own sources (check PYTHONPATH)")


def _read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_subset(
    root: Path,
    focus: str | None,
    timeout: float,
    python: str = sys.executable,
    tests: tuple[str, ...] = (TEST_FILE,),
    workers: int = 1,
) -> RunResult:
    """Run `tests` (``-k`` `focus`) in the copy at `root`, stopping at the first failure that counts.

    workers > 1 runs them with pytest-xdist (the baseline; a mutant run stays in one process so that
    it stops at its first catch). The suite's plugin (``--mutation-log``) writes every failure and its
    kind to a log in the copy, which decides the status.
    """
    for t in tests:
        if any(t.startswith(m) for m in META_TESTS):
            raise ValueError(f"tests: {t} is a meta-test of the mutation machinery, never a catch")
    log = root / _LOG_NAME
    log.unlink(missing_ok=True)
    args = [python, *PYTEST_ARGS, f"--mutation-log={log}", *tests]
    if focus:
        args += ["-k", focus]
    if workers > 1:
        args += ["-n", str(workers)]
    start = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return RunResult("timeout", "", "", time.monotonic() - start, out[-3000:])
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    tail = "\n".join(output.splitlines()[-40:])
    failures = _read_log(log)
    counted = [f for f in failures if f["how"] in COUNTED]
    if proc.returncode == 0:
        return RunResult("passed", "", "", seconds, tail)
    if counted:
        return RunResult("failed", counted[0]["test"], counted[0]["how"], seconds, tail)
    if proc.returncode == 1 and failures:
        listed = "\n".join(f"  {f['test']} ({f['how']}): {f['message']}" for f in failures[:5])
        return RunResult("uncounted", "", "", seconds, f"failures that do not count as catches:\n{listed}")
    # 2: interrupted / collection error; 3: internal error; 4: usage error; 5: no test selected. None of
    # these is a numerical catch.
    return RunResult("error", "", "", seconds, tail)


def baseline_selection(mutants) -> tuple[tuple[str, ...], str | None]:
    """(test files, -k expression) covering every test the mutants run: the union of their files and
    of their foci (None when one of them runs its files whole)."""
    tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
    foci = [m.focus for m in mutants]
    focus = None if any(f is None for f in foci) else " or ".join(f"({f})" for f in dict.fromkeys(foci))
    return tests, focus


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MutantOutcome:
    """verdict: "caught", "MISSED", "error", "timeout" or "out of sync"; by: the first counting failure;
    how: its kind, one of `COUNTED` (see `classify_failure`)."""

    mutant: Mutant
    verdict: str
    by: str
    how: str
    seconds: float
    detail: str = ""


def run_mutant(
    mutant: Mutant, workdir: Path, timeout: float, keep: bool = False, source: Path = ROOT
) -> MutantOutcome:
    """Copy `source` (the session's pristine snapshot), patch and test one mutant under `workdir`."""
    root = copy_repository(workdir / f"mutant-{mutant.name}", src=source)
    try:
        try:
            apply_mutant(mutant, root)
        except MutantOutOfSync as e:
            return MutantOutcome(mutant, "out of sync", "", "", 0.0, str(e))
        result = run_subset(root, mutant.focus, timeout, tests=mutant.tests)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    verdict = {"failed": "caught", "passed": "MISSED", "uncounted": "MISSED"}.get(
        result.status, result.status
    )
    detail = result.tail if verdict != "caught" and result.status != "passed" else ""
    return MutantOutcome(mutant, verdict, result.first_failure, result.how, result.seconds, detail)


def render_table(outcomes: list[MutantOutcome]) -> str:
    """A plain-text table (tabulate's "simple"): mutant, bug (cut at 60 characters), verdict, the
    first test that failed and how, seconds."""
    rows = []
    for o in outcomes:
        if o.by:
            by = f"{o.by.split('::', 1)[-1]} ({o.how})"
        else:
            by = o.detail[:60] if o.verdict == "out of sync" else "-"
        bug = o.mutant.bug if len(o.mutant.bug) <= 60 else o.mutant.bug[:57] + "..."
        rows.append((o.mutant.name, bug, o.verdict, by, f"{o.seconds:.0f}"))
    return tabulate(
        rows, headers=("mutant", "planted bug", "verdict", "caught by (how)", "s"), tablefmt="simple",
        colalign=("left", "left", "left", "left", "right"), disable_numparse=True,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only this mutant")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds per run (default 420)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated baseline run")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    args = parser.parse_args(argv)

    mutants = list(MUTANTS)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutants})
        if unknown:
            parser.error(f"--only: unknown mutant(s) {unknown}; known: {[m.name for m in mutants]}")
        mutants = [m for m in mutants if m.name in args.only]
    if args.jobs < 1:
        parser.error(f"--jobs: expected >= 1, got {args.jobs}")
    if args.list:
        for m in mutants:
            where = " ".join(Path(t).name for t in m.tests) + (f" -k {m.focus!r}" if m.focus else "")
            print(f"{m.name:26} {m.path:32} {where}\n{'':26} {m.bug}")
        return 0

    problems = catalogue_problems(ROOT, mutants)
    if problems:
        print("mutation: the catalogue is out of sync with the sources (harness/mutants.py):",
              file=sys.stderr)  # fmt: skip
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1

    start = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="gemlite-mutation-"))
    print(f"mutation: {len(mutants)} mutants, copies under {workdir}", flush=True)
    try:
        base = copy_repository(workdir / "baseline")
        check_import_location(base)
        if not args.no_baseline:
            tests, focus = baseline_selection(mutants)
            print(f"mutation: baseline (unmutated copy): {' '.join(tests)} -k {focus!r} ...", flush=True)
            result = run_subset(base, focus, args.timeout * 2, tests=tests, workers=args.jobs)
            if result.status != "passed":
                print(f"mutation: the UNMUTATED suite does not pass ({result.status}); a catch would prove "
                      f"nothing:\n{result.tail}", file=sys.stderr)  # fmt: skip
                return 1
            print(f"mutation: baseline passed in {result.seconds:.0f} s", flush=True)

        def one(m: Mutant) -> MutantOutcome:
            # Every mutant starts from the baseline snapshot, not from the working tree, which may be
            # edited while the session runs.
            outcome = run_mutant(m, workdir, args.timeout, keep=args.keep, source=base)
            test = outcome.by.split("::", 1)[-1]
            print(f"  {m.name:26} {outcome.verdict:12} {test} {outcome.how} ({outcome.seconds:.0f} s)",
                  flush=True)  # fmt: skip
            return outcome

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            outcomes = list(pool.map(one, mutants))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(render_table(outcomes))
    bad = [o for o in outcomes if o.verdict != "caught"]
    for o in bad:
        if o.detail:
            print(f"\n--- {o.mutant.name} ({o.verdict}) ---\n{o.detail}")
    minutes = (time.monotonic() - start) / 60
    caught = len(outcomes) - len(bad)
    print(f"\nmutation: {caught}/{len(outcomes)} mutants caught in {minutes:.1f} min")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
