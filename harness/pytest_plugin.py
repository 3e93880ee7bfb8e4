"""pytest plugin of the correctness harness: profile, GPU check, and the correctness report.

Loaded for the whole suite by ``suites/conftest.py`` (and by ``nox -s correctness`` with ``-p``).
Options:

``--correctness-profile quick|cpu|gpu|thorough``
    how many cases and how large (`harness.profiles`); default: "gpu" on a GPU machine, else the fast
    "quick" subset. ``nox -s correctness -- --profile X`` passes it on.
``--correctness-gpu h100|h100-sxm|h100-pcie|h200|...``
    refuse to run unless the GPU found is that one (`harness.gpu.require`, imported only then).
``--correctness-report PATH``
    write the markdown report there when the session ends (`harness.correctness_report`).
``--mutation-log PATH``
    (the mutation session, `harness.mutation`) append every failing test and its kind
    (`harness.mutation.classify_failure`) to PATH as JSON lines, and stop the session at the first
    failure that counts as a catch.

Tests record each case through the session fixture ``correctness_recorder``.

This module imports nothing from gemlite at import time: with ``-p harness.pytest_plugin`` it is
loaded before ``suites/conftest.py`` has chosen whether the Triton interpreter runs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest

from harness import profiles
from harness.correctness_report import Meta, Record, write_report

_RECORDER = pytest.StashKey["Recorder"]()


class Recorder:
    """Collects the `Record` of every case the session runs (the last record of a repeated case wins:
    hypothesis replays a failing example once more to raise its error)."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], Record] = {}
        self.gpu_info = None
        self.outcomes = {"passed": 0, "failed": 0, "skipped": 0}

    def add(self, record: Record) -> None:
        self._records[(record.test, record.case_json)] = record

    def has(self, record: Record) -> bool:
        """Whether a record of the same case (test and case) is kept."""
        return (record.test, record.case_json) in self._records

    def record(self, case, comparison, test: str = "") -> Record:
        """Record a finished comparison; returns the record."""
        rec = Record.from_comparison(case, comparison, test)
        self.add(rec)
        return rec

    def record_error(self, case, exc: BaseException, test: str = "", repro: str = "") -> Record:
        """Record a case whose run raised."""
        rec = Record.from_error(case, exc, test, repro)
        self.add(rec)
        return rec

    @property
    def records(self) -> list[Record]:
        return list(self._records.values())


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("correctness", "gemlite correctness harness")
    group.addoption(
        "--correctness-profile",
        choices=sorted(profiles.PROFILES),
        default=None,
        help="how many and how large the drawn cases are (default: gpu with a GPU, else quick)",
    )
    group.addoption(
        "--correctness-gpu",
        default=None,
        metavar="GPU",
        help="refuse to run unless the GPU is this one (e.g. h100, h100-sxm, h200)",
    )
    group.addoption(
        "--correctness-report",
        default=None,
        metavar="PATH",
        help="write the markdown correctness report to PATH at the end of the session",
    )
    group.addoption(
        "--correctness-records",
        default=None,
        metavar="PATH",
        help="also write this session's case records (JSON) to PATH, for --correctness-merge",
    )
    group.addoption(
        "--correctness-merge",
        action="append",
        default=[],
        metavar="PATH",
        help="add the records of an earlier session (--correctness-records) to the report (repeatable): "
        "one report over a suite split across several runs",
    )
    group.addoption(
        "--mutation-log",
        default=None,
        metavar="PATH",
        help="(harness.mutation) log failures and their kind to PATH; stop at the first catch",
    )


def pytest_configure(config: pytest.Config) -> None:
    import torch

    name = config.getoption("correctness_profile") or profiles.default_profile_name(torch.cuda.is_available())
    profiles.select(name)
    recorder = Recorder()
    expected = config.getoption("correctness_gpu")
    if expected:
        if not torch.cuda.is_available():
            raise pytest.UsageError(f"--correctness-gpu {expected}: no CUDA GPU is visible on this machine")
        from harness import gpu

        try:
            recorder.gpu_info = gpu.require(expected)
        except (RuntimeError, ValueError) as e:
            raise pytest.UsageError(f"--correctness-gpu {expected}: {e}") from None
    config.stash[_RECORDER] = recorder
    for merge in config.getoption("correctness_merge"):
        if not Path(merge).is_file():
            raise pytest.UsageError(
                f"--correctness-merge: expected a records file (--correctness-records), got {merge!r}"
            )
    path = config.getoption("correctness_report") or config.getoption("correctness_records")
    if path and _worker_id(config) is None:
        shutil.rmtree(_parts_dir(path), ignore_errors=True)  # leftovers of an earlier run


# Under pytest-xdist every worker runs its share of the cases in its own process: each writes its
# records to a part file when it finishes, and the controller (whose sessionfinish comes after the
# workers') merges them into the one report.


def _worker_id(config: pytest.Config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


def _parts_dir(report_path: str) -> Path:
    return Path(f"{report_path}.parts")


def pytest_report_header(config: pytest.Config) -> str:
    p = profiles.current()
    return (
        f"gemlite correctness profile: {p.name} ({p.examples} examples per test; "
        f"M <= {p.max_M}, K <= {p.max_K}, N <= {p.max_N}; derandomize={p.derandomize})"
    )


@pytest.fixture(scope="session")
def correctness_recorder(request: pytest.FixtureRequest) -> Recorder:
    """The session's `Recorder`: call ``.record(case, comparison, test)`` for every case run."""
    return request.config.stash[_RECORDER]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    log = item.config.getoption("mutation_log", None)
    if log and report.failed and call.excinfo is not None:
        _log_failure(item, report, call.excinfo.value, log)
    recorder = item.config.stash.get(_RECORDER, None)
    if recorder is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        key = report.outcome if report.outcome in recorder.outcomes else "failed"
        recorder.outcomes[key] += 1


def _log_failure(item: pytest.Item, report, exc: BaseException, path: str) -> None:
    """One JSON line for a failed phase of `item`; a counted catch stops the session."""
    from harness.mutation import COUNTED, classify_failure

    how = classify_failure(exc, item.nodeid) if report.when == "call" else "other"
    line = {
        "test": item.nodeid,
        "phase": report.when,
        "how": how,
        "message": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300],
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
    if how in COUNTED:
        item.session.shouldstop = f"mutation: caught by {item.nodeid} ({how})"


def _merge_part(recorder: Recorder, part: dict, earlier: bool = False) -> None:
    """Add a worker's records and test outcomes to `recorder`; earlier=True: an earlier session's,
    whose record of a case this session also ran gives way to this session's."""
    for rec in part["records"]:
        record = Record(**rec)
        if not (earlier and recorder.has(record)):
            recorder.add(record)
    for key, n in part["outcomes"].items():
        recorder.outcomes[key] += n


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    path = config.getoption("correctness_report")
    records_path = config.getoption("correctness_records")
    recorder = config.stash.get(_RECORDER, None)
    if not (path or records_path) or recorder is None:
        return
    parts = _parts_dir(path or records_path)  # the workers' parts sit beside what the session writes
    worker = _worker_id(config)
    if worker is not None:
        parts.mkdir(parents=True, exist_ok=True)
        part = {"records": [asdict(r) for r in recorder.records], "outcomes": recorder.outcomes}
        (parts / f"{worker}.json").write_text(json.dumps(part))
        return
    for part_file in sorted(parts.glob("*.json")) if parts.is_dir() else []:
        _merge_part(recorder, json.loads(part_file.read_text()))
    shutil.rmtree(parts, ignore_errors=True)
    if records_path:
        part = {"records": [asdict(r) for r in recorder.records], "outcomes": recorder.outcomes}
        Path(records_path).parent.mkdir(parents=True, exist_ok=True)
        Path(records_path).write_text(json.dumps(part))
    if not path:
        return
    for merge in config.getoption("correctness_merge"):
        _merge_part(recorder, json.loads(Path(merge).read_text()), earlier=True)
    device = None
    if recorder.gpu_info is not None:
        device = f"{recorder.gpu_info.name} ({recorder.gpu_info.key})"
    meta = Meta.collect(
        profiles.current().name,
        device=device,
        autotune=profiles.current().autotune,
        tests_passed=recorder.outcomes["passed"],
        tests_failed=recorder.outcomes["failed"],
        tests_skipped=recorder.outcomes["skipped"],
    )
    from harness.support import FAMILIES  # imports gemlite: not at plugin import (before the conftest)

    written = write_report(path, recorder.records, meta, FAMILIES)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"correctness report written to {written} ({len(recorder.records)} cases)")
