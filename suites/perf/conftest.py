"""pytest wiring of the performance suite.

The cases come from the run that ``python -m harness.perf_cli run`` (``nox -s perf``) sets up: it
hands pytest a `harness.perf_cli.PerfPlugin` holding the measuring session. Without that plugin (a
plain ``pytest`` or ``nox -s tests`` run) nothing here is collected: timing needs the GPU, the
suite's GPU check and the baseline, which only the CLI provides.
"""

from __future__ import annotations

import pytest


def _plugin(config):
    for p in config.pluginmanager.get_plugins():
        if getattr(p, "is_gemlite_perf_plugin", False):
            return p
    return None


def pytest_ignore_collect(collection_path, config):
    if collection_path.name == "test_perf.py" and _plugin(config) is None:
        return True
    return None


def pytest_generate_tests(metafunc):
    if "perf_case" in metafunc.fixturenames:
        cases = _plugin(metafunc.config).session.cases
        metafunc.parametrize("perf_case", cases, ids=[c.test_id for c in cases])


def pytest_report_teststatus(report, config):
    # The session prints one line per case; pytest's dots would only interleave with them.
    if "test_perf.py::" in report.nodeid and report.when == "call" and (report.passed or report.skipped):
        return report.outcome, "", report.outcome.upper()
    return None


@pytest.fixture
def perf_session(request):
    """The `harness.perf_run.PerfSession` of this run."""
    return _plugin(request.config).session


@pytest.fixture
def perf_benchmark(request):
    """pytest-benchmark's fixture when the plugin is installed, else None (timing is unaffected)."""
    if request.config.pluginmanager.hasplugin("benchmark"):
        return request.getfixturevalue("benchmark")
    return None
