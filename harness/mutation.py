"""Mutation testing of the correctness suite: plant known kernel bugs, one at a time, and show each is caught.

``python -m harness.mutation`` (what ``nox -s mutation`` runs):

1. checks that every patch of the catalogue (`harness.mutants.MUTANTS`) applies: its ``old`` text
   occurs exactly once in its file. A patch that no longer applies fails the session ("out of sync"),
   so the catalogue follows the kernels.
2. copies the repository into a TEMPORARY directory (the working tree is never touched) and runs the
   fast correctness subset there unmutated (the baseline: it must pass, or a "caught" would mean
   nothing);
3. for each mutant: a fresh copy of that baseline snapshot, the patch applied, then the fast subset of
   ``suites/correctness/test_formats.py`` run in it under the Triton interpreter (``-x``, the
   ``quick`` profile: a fixed, derandomized set of examples; ``-k`` the mutant's focus);
4. prints a table mutant -> caught / MISSED (and the first test that failed), and exits non-zero if a
   mutant was missed, a patch did not apply, or a run broke (crash, collection error, timeout).

Options: ``--only NAME`` (repeatable), ``--jobs N`` (mutants run in parallel; default 1, the machine is
shared), ``--timeout S`` per run, ``--no-baseline``, ``--keep`` (leave the temporary copies), ``--list``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent
TEST_FILE = "suites/correctness/test_formats.py"
# What each run executes (relative to the copy's root).
PYTEST_ARGS = (
    "-m", "pytest", TEST_FILE, "-x", "-q", "-rfE", "-m", "not slow and not gpu",
    "-p", "no:cacheprovider", "--correctness-profile", "quick",
)  # fmt: skip
# Not copied: version control, virtualenvs, caches, generated reports and results.
_IGNORE = shutil.ignore_patterns(
    ".git", ".nox", ".venv", "venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache",
    "*.egg-info", "reports", "results", ".benchmarks", "build", "dist",
)  # fmt: skip


class MutantOutOfSync(RuntimeError):
    """A patch of the catalogue does not apply to the current source."""


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
    """How one run of the fast subset ended.

    status: "passed" (exit 0), "failed" (a test failed: the bug was caught), "error" (collection error,
        crash, usage error or no test selected), "timeout".
    first_failure: the first failing test (node id), when status is "failed".
    how: why it failed: "bound" (an output outside the error bound), "exception" (gemlite raised),
        "other" (another assertion).
    seconds: wall time. tail: the last lines of the output (for errors).
    """

    status: str
    first_failure: str
    how: str
    seconds: float
    tail: str


_FAILED_LINE = re.compile(r"^(FAILED|ERROR) (\S+)")


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


def run_subset(root: Path, focus: str | None, timeout: float, python: str = sys.executable) -> RunResult:
    """Run the fast correctness subset in the copy at `root`, stopping at the first failure."""
    args = [python, *PYTEST_ARGS]
    if focus:
        args += ["-k", focus]
    start = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=root, env=_env(root), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return RunResult("timeout", "", "", time.monotonic() - start, out[-3000:])
    seconds = time.monotonic() - start
    output = proc.stdout + proc.stderr
    kind, first = "", ""
    for line in output.splitlines():
        m = _FAILED_LINE.match(line)
        if m:
            kind, first = m.group(1), m.group(2)
            break
    # With -x the output holds exactly one failure: say whether the bound caught it or gemlite raised.
    if "OUTSIDE the error bound" in output:
        how = "bound"
    elif re.search(r"^E\s+AssertionError: .* raised ", output, re.MULTILINE):
        how = "exception"
    else:
        how = "other"
    if proc.returncode == 0:
        status = "passed"
    elif proc.returncode == 1 and kind == "FAILED":
        status = "failed"
    else:
        # ERROR: a test could not be set up; 2: interrupted / collection error; 3: internal error;
        # 4: usage error; 5: no test selected. None of these is a numerical catch.
        status = "error"
    return RunResult(status, first, how, seconds, "\n".join(output.splitlines()[-40:]))


# --------------------------------------------------------------------------------------------
# The session
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MutantOutcome:
    """verdict: "caught", "MISSED", "error", "timeout" or "out of sync"; by: the first failing test;
    how: "bound" / "exception" / "other" (see `RunResult`)."""

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
        result = run_subset(root, mutant.focus, timeout)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    verdict = {"failed": "caught", "passed": "MISSED"}.get(result.status, result.status)
    detail = result.tail if verdict in ("error", "timeout") else ""
    return MutantOutcome(mutant, verdict, result.first_failure, result.how, result.seconds, detail)


def render_table(outcomes: list[MutantOutcome]) -> str:
    """A plain-text table: mutant, bug, verdict, the first test that failed and how, seconds."""
    rows = [("mutant", "planted bug", "verdict", "caught by (how)", "s")]
    for o in outcomes:
        if o.by:
            by = f"{o.by.split('::', 1)[-1]} ({o.how})"
        else:
            by = o.detail[:60] if o.verdict == "out of sync" else "-"
        rows.append((o.mutant.name, o.mutant.bug, o.verdict, by, f"{o.seconds:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    widths[1] = min(widths[1], 60)

    def line(r):
        bug = r[1] if len(r[1]) <= widths[1] else r[1][: widths[1] - 3] + "..."
        cells = (r[0], bug, r[2], r[3], r[4])
        return "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), sep, *(line(r) for r in rows[1:])])


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
            print(f"{m.name:24} {m.path:36} {m.bug}")
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
            print("mutation: baseline (unmutated copy) ...", flush=True)
            result = run_subset(base, None, args.timeout * 2)
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
            print(f"  {m.name:24} {outcome.verdict:12} {test} {outcome.how} ({outcome.seconds:.0f} s)",
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
