"""harness.precompile: the tuning run's kernels compiled in parallel first (``--tune-only --jobs``)."""

from __future__ import annotations

import torch

from harness import precompile
from harness.perf_cases import Case, FormatEntry

HQQ4 = FormatEntry("A16W4_HQQ_INT/g32", "A16W4_HQQ_INT", {"group_size": 32})
INT8 = FormatEntry("A16W8_INT8", "A16W8_INT8")


def _cases(entry, shapes, ms):
    return [Case("gemlite", entry.label, K, N, M, entry) for K, N in shapes for M in ms]


def test_jobs_hold_each_layer_once_with_its_m_and_share_the_work():
    cases = _cases(HQQ4, [(256, 64), (512, 128), (1024, 64)], [1, 2, 16]) + _cases(INT8, [(256, 64)], [4, 1])
    cases.append(Case("ref", "cublas_fp16", 256, 64, 1))  # references are not tuned
    parts = precompile.jobs_for(cases, 2)
    items = [item for part in parts for item in part]
    assert len(parts) == 2 and len(items) == 4
    assert {(e["label"], K, N, ms) for e, K, N, ms in items} == {
        ("A16W4_HQQ_INT/g32", 256, 64, (1, 2, 16)),
        ("A16W4_HQQ_INT/g32", 512, 128, (1, 2, 16)),
        ("A16W4_HQQ_INT/g32", 1024, 64, (1, 2, 16)),
        ("A16W8_INT8", 256, 64, (1, 4)),
    }
    assert parts[0][0][1:3] == (512, 128)  # the largest layer first
    assert precompile.jobs_for(cases, 8) and len(precompile.jobs_for(cases, 8)) == 4  # no empty part
    assert precompile.jobs_for([], 4) == []


def test_a_worker_launches_every_candidate_the_tuner_would_time(device):
    # The worker's launches under the interpreter: each candidate of the dispatched family runs
    # once, forced (GEMV's one-row tiles at M = 1, two-row tiles at M = 2).
    from gemlite import autotune
    from gemlite.dispatch import choose_matmul_type
    from harness.perf_run import build_layer

    layer = build_layer(HQQ4, 256, 64, device)
    for M in (1, 2):
        family = choose_matmul_type(M, layer.layout)
        want = len(autotune.legal_configs(family, layer.layout, "fast", M))
        assert want and {c.BLOCK_M for c in autotune.legal_configs(family, layer.layout, "fast", M)} == {M}
        assert precompile.launch_candidates(layer, M, "fast", torch.float16, device) == (want, [])


def test_a_failing_launch_is_counted_and_named(device):
    from gemlite import autotune
    from harness.perf_run import build_layer

    layer = build_layer(HQQ4, 256, 64, device)
    x = torch.randn(1, 256, dtype=torch.float16, device=device)
    bad = autotune.Config(BLOCK_N=64, BLOCK_K=64)  # straddles the 32-wide scale groups: refused
    ok, errors = precompile.launch_forced(layer, x, "GEMV", [autotune.interpreter_configs("GEMV")[0], bad])
    assert ok == 1 and len(errors) == 1 and "GEMV BM1_BN64_BK64" in errors[0] and "ValueError" in errors[0]
