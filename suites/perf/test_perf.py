"""One test per suite case: gemlite formats and cuBLAS references at every (K, N, M).

Run through ``nox -s perf -- --gpu h100`` (``python -m harness.perf_cli run``), which identifies the
GPU, sets up the measurer and the cases (see conftest.py). Each test times its case with CUDA events
over CUDA-graph replays (`harness.timing`); the same replays run inside pytest-benchmark's pedantic
mode, so its JSON records their wall time too, while the authoritative per-call numbers (median,
IQR, and the eager host time of a case of the host subset) go into the benchmark's ``extra_info`` and
into the run's results file.
"""

import pytest


def test_case(perf_case, perf_session, perf_benchmark):
    pedantic = perf_benchmark.pedantic if perf_benchmark is not None else None
    m = perf_session.run_case(perf_case, pedantic=pedantic)
    if perf_benchmark is not None:
        perf_benchmark.group = f"{perf_case.K}x{perf_case.N}"
        perf_benchmark.extra_info.update(
            {
                "case_id": m.case_id,
                "status": m.status,
                "us": m.us,
                "iqr_us": m.iqr_us,
                "calls_per_replay": m.calls_per_replay,
                "host_us": m.host_us,
                "n_copies": m.n_copies,
                "bytes": m.bytes,
                "flops": m.flops,
            }
        )
    if m.status in ("skipped", "not_run"):
        pytest.skip(m.reason)
    if m.status == "error":
        if perf_case.kind == "ref":  # a vendor library that cannot run a case is a fact, not our failure
            pytest.skip(f"reference error: {m.reason}")
        pytest.fail(f"{m.case_id}: {m.reason}\n{m.detail}", pytrace=False)
