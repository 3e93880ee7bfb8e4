"""Fixtures of the kernel-vs-reference suite.

``judge(case)`` runs one `harness.case.Case` end to end (operands from its seed, the gemlite
layer through the public API, the float64 golden from ``reference``; the profile's autotune mode and
the case's own settings), records the outcome for ``reports/correctness.md`` and fails the test, with
the worst elements and a one-line reproducer, when the output breaks the error bound of
`harness.numerics` (`BoundViolation`), a state_dict round trip does not give the same output back or a
dynamic format's activation codes / scales differ from the reference's (`ExactMismatch`), or the run
raises (`CaseRaised`). The mutation session counts exactly these as
catches.
"""

from __future__ import annotations

import pytest
from hypothesis import reject

from harness import profiles
from harness.numerics import BoundViolation, Comparison, ExactMismatch
from harness.repro import CaseRaised, reproducer, run_case
from harness.support import CaseRejected


@pytest.fixture
def judge(correctness_recorder, request, device):
    """``judge(case) -> Comparison``: run, record and assert one case on this run's device."""

    def _judge(case) -> Comparison:
        test = request.node.nodeid
        autotune = profiles.current().autotune
        try:
            result = run_case(case, device, autotune=autotune)
        except CaseRejected:
            reject()  # the reference refused the drawn weight: not a kernel case, draw another
        except Exception as exc:
            line = reproducer(case, autotune)
            correctness_recorder.record_error(case, exc, test, line)
            raise CaseRaised(
                f"{case.label} {case.family} M={case.M} K={case.K} N={case.N} raised "
                f"{type(exc).__name__}: {exc}\nreproduce: {line}"
            ) from exc
        correctness_recorder.record(case, result.comparison, test)
        if result.act_diff is not None:  # the activation codes first: a wrong code explains a wrong y
            error = ExactMismatch(result.act_diff)
            correctness_recorder.record_error(case, error, test, result.comparison.repro or "")
            raise error
        if not result.comparison.ok:
            raise BoundViolation(result.comparison.message())
        if result.reload_diff is not None:
            error = ExactMismatch(result.reload_diff)
            correctness_recorder.record_error(case, error, test, result.comparison.repro or "")
            raise error
        if result.reload_comparison is not None and not result.reload_comparison.ok:
            error = BoundViolation(result.reload_comparison.message())
            correctness_recorder.record_error(case, error, test, result.comparison.repro or "")
            raise error
        return result.comparison

    return _judge
