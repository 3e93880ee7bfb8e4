"""The regression gate and baselines: thresholds from noise, confirmation by re-measuring, the
verdict table, exit codes, and baseline files (only from measured runs, merged, checked on load)."""

import json

import pytest

from harness import baselines as bl
from harness.perf_cases import Case, FormatEntry
from harness.perf_run import Measurement

ENTRY = FormatEntry("A16W4_HQQ_INT/g128", "A16W4_HQQ_INT", {"group_size": 128})


def meas(
    M: int,
    us: float | None,
    rel_iqr: float = 0.01,
    status: str = "ok",
    kind: str = "gemlite",
    reason: str = "",
    host_us: float | None = None,
) -> Measurement:
    case = Case(
        kind,
        ENTRY.label if kind == "gemlite" else "cublas_fp16",
        4096,
        4096,
        M,
        ENTRY if kind == "gemlite" else None,
    )
    if status != "ok":
        return Measurement(case, status, reason=reason)
    half = us * rel_iqr / 2
    return Measurement(
        case,
        "ok",
        us=us,
        q1_us=us - half,
        q3_us=us + half,
        replays=15,
        samples_us=[us] * 15,
        host_us=host_us,
        host_calls=10_000 if host_us else 0,
    )


def baseline_of(*ms: Measurement) -> dict:
    meta = {
        "gpu": "NVIDIA H100 80GB HBM3",
        "gpu_key": "h100-sxm",
        "date": "d0",
        "commit": "c0",
        "copy_gbps": 3000.0,
    }
    return bl.merge_baseline(None, meta, ms)


GATED = lambda m: m.case.kind == "gemlite"  # noqa: E731


def test_threshold_rule():
    r = bl.GateRule()
    assert r.threshold(0.001, 0.002) == 0.05  # quiet cases: the floor
    assert r.threshold(0.03, 0.01) == pytest.approx(0.09)  # noisy baseline: 3 x its spread
    assert r.threshold(None, 0.04) == pytest.approx(0.12)
    assert r.slower(10.0, 10.6, 0.05) and not r.slower(10.0, 10.4, 0.05)
    assert not r.slower(2.0, 2.4, 0.05)  # +20% but only 0.4 us: under the absolute floor
    assert r.faster(10.0, 9.4, 0.05) and not r.faster(10.0, 9.6, 0.05)
    for kw in (
        {"rel_floor": 0},
        {"rel_floor": 1.5},
        {"noise_k": 0},
        {"abs_floor_us": -1},
        {"confirm_runs": 0},
    ):
        with pytest.raises(ValueError):
            bl.GateRule(**kw)


def test_compare_sorts_cases():
    base = baseline_of(
        meas(1, 10.0),
        meas(2, 10.0),
        meas(4, 10.0, rel_iqr=0.05),
        meas(8, 10.0),
        meas(16, 10.0),
        meas(32, 10.0),
    )
    now = [
        meas(1, 10.2),  # within noise
        meas(2, 11.0),  # +10% beyond 5%: suspect
        meas(4, 11.0),  # +10% but the baseline was noisy (threshold 15%): ok
        meas(8, 8.0),  # -20%: improvement
        meas(16, None, status="error", reason="RuntimeError: boom"),
        meas(32, None, status="not_run"),  # left out
        meas(64, 3.0),  # not in the baseline: new
        meas(1, 99.0, kind="ref"),  # references are not gated
        meas(128, None, status="skipped", reason="no"),
    ]
    v = {x.case_id.split()[-1]: x for x in bl.compare(now, base, bl.GateRule(), GATED)}
    assert {k: x.status for k, x in v.items()} == {
        "M1": "ok",
        "M2": "suspect",
        "M4": "ok",
        "M8": "improvement",
        "M16": "error",
        "M64": "new",
        "M128": "skipped",
    }
    assert v["M2"].ratio == pytest.approx(1.1) and v["M2"].threshold == pytest.approx(0.05)
    assert v["M4"].threshold == pytest.approx(0.15)


def test_confirm_separates_regressions_from_noise():
    base = baseline_of(meas(1, 10.0), meas(2, 10.0), meas(4, 10.0))
    vs = bl.compare([meas(1, 13.0), meas(2, 13.0), meas(4, 13.0)], base, bl.GateRule(), GATED)
    again = {"M1": [12.9, 13.1, 13.0], "M2": [10.1, 9.9, 13.0], "M4": [None, None, None]}
    calls = []

    def remeasure(case_id, metric):
        assert metric == "us"
        calls.append(case_id)
        return again[case_id.split()[-1]].pop(0)

    bl.confirm(vs, remeasure, bl.GateRule(), log=lambda s: None)
    assert [v.status for v in vs] == ["regression", "noise", "error"]
    assert len(calls) == 9  # confirm_runs (3) re-measurements per suspect, none for the others
    assert vs[0].confirmed_us == pytest.approx(13.0) and vs[1].confirmed_us == pytest.approx(10.1)
    assert bl.exit_code(vs) == 1
    assert bl.exit_code([v for v in vs if v.status == "noise"]) == 0


def test_suspects_past_the_deadline_fail_unconfirmed():
    base = baseline_of(meas(1, 10.0), meas(2, 10.0))
    vs = bl.compare([meas(1, 13.0), meas(2, 13.0)], base, bl.GateRule(), GATED)
    bl.confirm(vs, lambda cid, metric: 10.0, bl.GateRule(), log=lambda s: None, deadline=0.0)  # long past
    assert [v.status for v in vs] == ["unconfirmed", "unconfirmed"] and not vs[0].confirm_us
    assert bl.exit_code(vs) == 1
    assert "UNCONFIRMED suspects" in bl.render_verdicts(vs)


def test_render_verdicts():
    base = baseline_of(meas(1, 10.0), meas(2, 10.0), meas(4, 10.0))
    vs = bl.compare([meas(1, 13.0), meas(2, 7.0), meas(4, 10.1)], base, bl.GateRule(), GATED)
    bl.confirm(vs, lambda cid, metric: 13.0, bl.GateRule(), log=lambda s: None)
    text = bl.render_verdicts(vs)
    assert "REGRESSIONS (confirmed by re-measuring)" in text and "A16W4_HQQ_INT/g128 4096x4096 M1" in text
    assert "+30.0%" in text and "13.00, 13.00, 13.00" in text
    assert "IMPROVEMENTS" in text and "-30.0%" in text
    assert text.rstrip().endswith("gate: FAIL (1 improvement, 1 ok, 1 regression)")
    ok = bl.render_verdicts([v for v in vs if v.status == "ok"])
    assert "REGRESSIONS" not in ok and ok.endswith("gate: PASS (1 ok)")
    assert "NO BASELINE" in bl.render_verdicts([bl.Verdict("x", "new", cur_us=1.0)], has_baseline=False)


def test_merge_baseline_only_from_measurements(tmp_path):
    with pytest.raises(ValueError, match="only comes from measured numbers"):
        baseline_of(meas(1, None, status="error"), meas(2, None, status="skipped"))
    first = baseline_of(meas(1, 10.0), meas(2, 20.0))
    assert first["runs"][0]["cases"] == 2 and first["cases"]["A16W4_HQQ_INT/g128 4096x4096 M1"]["us"] == 10.0
    meta2 = {"gpu": "NVIDIA H100 80GB HBM3", "gpu_key": "h100-sxm", "date": "d1", "commit": "c1"}
    second = bl.merge_baseline(first, meta2, [meas(2, 18.0), meas(4, 5.0)])
    cases = second["cases"]
    assert cases["A16W4_HQQ_INT/g128 4096x4096 M1"] == first["cases"]["A16W4_HQQ_INT/g128 4096x4096 M1"]
    assert (
        cases["A16W4_HQQ_INT/g128 4096x4096 M2"]["us"] == 18.0
        and cases["A16W4_HQQ_INT/g128 4096x4096 M2"]["run"] == 1
    )
    assert [r["date"] for r in second["runs"]] == ["d0", "d1"] and second["meta"]["commit"] == "c1"
    p = tmp_path / "h100-sxm.json"
    p.write_text(json.dumps(second))
    assert bl.load_baseline(p, "h100-sxm")["cases"] == cases


def test_load_baseline_refuses_what_it_cannot_compare(tmp_path):
    p = tmp_path / "b.json"
    assert bl.load_baseline(p, "h100-sxm") is None
    p.write_text("{")
    with pytest.raises(bl.BaselineError, match="not valid JSON"):
        bl.load_baseline(p, "h100-sxm")
    p.write_text(json.dumps({"cases": {}}))
    with pytest.raises(bl.BaselineError, match="not a baseline"):
        bl.load_baseline(p, "h100-sxm")
    good = baseline_of(meas(1, 10.0))
    p.write_text(json.dumps(good))
    with pytest.raises(bl.BaselineError, match="not 'h100-pcie'"):
        bl.load_baseline(p, "h100-pcie")
    with pytest.raises(bl.BaselineError, match="this run is a dry run"):
        bl.load_baseline(p, "h100-sxm", dry_run=True)
    good["meta"]["dry_run"] = True
    p.write_text(json.dumps(good))
    with pytest.raises(bl.BaselineError, match="synthetic"):
        bl.load_baseline(p, "h100-sxm")
    good["meta"]["dry_run"] = False
    good["cases"]["A16W4_HQQ_INT/g128 4096x4096 M1"]["us"] = 0
    p.write_text(json.dumps(good))
    with pytest.raises(bl.BaselineError, match="no positive 'us'"):
        bl.load_baseline(p, "h100-sxm")


def test_no_baseline_files_are_invented():
    """Shipped baselines, if any, must be real runs of the GPU they are named after."""
    for p in sorted(bl.BASELINES_DIR.glob("*.json")):
        data = bl.load_baseline(p, p.stem)
        assert data["runs"] and all(r.get("date") and r.get("commit") for r in data["runs"])
        assert not data["meta"].get("dry_run")


def test_compute_bound_cases_get_the_wider_floor():
    """Compute-bound cases drift more between runs (H100: bimodal, up to +14% on unchanged code), so
    their floor is compute_floor; memory-bound decode cases keep the 5% floor."""
    r = bl.GateRule()
    assert r.threshold(0.01, 0.01, intensity=4.0) == r.rel_floor
    assert r.threshold(0.01, 0.01, intensity=r.compute_intensity) == r.compute_floor
    assert r.threshold(0.01, 0.10, intensity=1000.0) == pytest.approx(0.30)  # noise beyond the floor
    decode, prefill = meas(1, 10.0), meas(4096, 10.0)
    assert decode.intensity < r.compute_intensity <= prefill.intensity
    base = baseline_of(meas(1, 10.0), meas(4096, 10.0))
    # +12%: a regression suspect at decode sizes, within the band at prefill sizes.
    now = [meas(1, 11.2), meas(4096, 11.2)]
    v = {x.case_id.split()[-1]: x.status for x in bl.compare(now, base, r, GATED)}
    assert v == {"M1": "suspect", "M4096": "ok"}
    with pytest.raises(ValueError, match="compute_floor"):
        bl.GateRule(compute_floor=0)


# --------------------------------------------------------------------------------------------
# The eager host time
# --------------------------------------------------------------------------------------------


def test_host_gate_catches_a_planted_regression_and_passes_an_unchanged_run():
    base = baseline_of(meas(1, 10.0, host_us=90.0), meas(4, 10.0, host_us=90.0), meas(16, 10.0))
    r = bl.GateRule()
    assert base["cases"]["A16W4_HQQ_INT/g128 4096x4096 M1"]["host_us"] == 90.0
    assert "host_us" not in base["cases"]["A16W4_HQQ_INT/g128 4096x4096 M16"]
    # unchanged: +40% is inside the host floor (50%: host time on a cloud VM drifts that much)
    same = bl.compare([meas(1, 10.0, host_us=126.0), meas(4, 10.0, host_us=85.0)], base, r, GATED)
    assert [(v.metric, v.status) for v in same] == [
        ("us", "ok"),
        ("us", "ok"),
        ("host_us", "ok"),
        ("host_us", "ok"),
    ]
    bl.confirm(same, lambda cid, metric: pytest.fail("nothing to re-measure"), r, log=lambda s: None)
    assert bl.exit_code(same) == 0
    assert bl.render_verdicts(same).endswith("gate: PASS (2 ok; eager host time: 2 ok)")
    # planted: M1 +100% host time that every re-measurement confirms; M4 +100% at first, then one
    # re-measurement as fast as the baseline: a slow state of the machine, not of the code (noise
    # only adds time, so the fastest re-measurement decides). The kernel times did not move.
    now = [meas(1, 10.0, host_us=180.0), meas(4, 10.0, host_us=180.0), meas(16, 10.0)]
    vs = bl.compare(now, base, r, GATED)
    host = [v for v in vs if v.metric == "host_us"]
    assert [v.status for v in host] == ["suspect", "suspect"] and all(
        v.threshold == r.host_floor for v in host
    )
    again = {"M1": [175.0, 185.0, 181.0], "M4": [170.0, 95.0, 175.0]}
    asked = []

    def remeasure(case_id, metric):
        asked.append((case_id.split()[-1], metric))
        return again[case_id.split()[-1]].pop(0)

    bl.confirm(vs, remeasure, r, log=lambda s: None)
    assert [v.status for v in host] == ["regression", "noise"]
    assert host[0].confirmed_us == 175.0 and host[1].confirmed_us == 95.0  # the fastest, not the median
    assert asked == [("M1", "host_us")] * 3 + [("M4", "host_us")] * 3  # the kernel verdicts were ok
    assert bl.exit_code(vs) == 1
    text = bl.render_verdicts(vs)
    reg = text.split("REGRESSIONS (confirmed by re-measuring):")[1].split("\n\n")[0]
    assert "A16W4_HQQ_INT/g128 4096x4096 M1 (eager host)" in reg and "+100.0%" in reg and "50.0%" in reg
    assert "M4 (eager host)" in text.split("Suspects NOT confirmed")[1]
    assert text.endswith("gate: FAIL (3 ok; eager host time: 1 noise, 1 regression)")


def test_host_gate_floor_and_improvements():
    base = baseline_of(meas(1, 10.0, host_us=20.0), meas(2, 10.0, host_us=0.8))
    r = bl.GateRule()
    assert r.host_floor == 0.50
    v = {
        (x.case_id.split()[-1], x.metric): x.status
        for x in bl.compare([meas(1, 10.0, host_us=30.5), meas(2, 10.0, host_us=1.25)], base, r, GATED)
    }
    assert v[("M1", "host_us")] == "suspect"  # +52.5%
    assert v[("M2", "host_us")] == "ok"  # +56% but 0.45 us: under the absolute floor
    quiet_host = bl.GateRule(host_floor=0.20)  # --host-floor 0.2 on a quieter machine
    assert [x.status for x in bl.compare([meas(1, 10.0, host_us=25.0)], base, quiet_host, GATED)][
        -1
    ] == "suspect"
    imp = bl.compare([meas(1, 10.0, host_us=12.0)], base, r, GATED)[-1]
    assert (imp.metric, imp.status) == ("host_us", "improvement")
    with pytest.raises(ValueError, match="host_floor"):
        bl.GateRule(host_floor=1.0)
    # the kernel gate keeps the median of its re-measurements
    k = bl.Verdict("x", "suspect", 10.0, 13.0, 0.05, confirm_us=[13.0, 10.0, 13.5])
    assert k.confirmed_us == 13.0


def test_a_baseline_without_host_times_gates_nothing_on_them(tmp_path):
    """Baselines recorded before the host subset still load; their cases' host times are "new"."""
    old = baseline_of(meas(1, 10.0), meas(4, 10.0))
    for c in old["cases"].values():
        assert "host_us" not in c
    p = tmp_path / "h100-sxm.json"
    p.write_text(json.dumps(old))
    loaded = bl.load_baseline(p, "h100-sxm")
    vs = bl.compare([meas(1, 10.0, host_us=30.0), meas(4, 10.0, host_us=5.0)], loaded, bl.GateRule(), GATED)
    assert [(v.metric, v.status) for v in vs] == [
        ("us", "ok"),
        ("us", "ok"),
        ("host_us", "new"),
        ("host_us", "new"),
    ]
    assert bl.exit_code(vs) == 0
    # a shipped baseline (recorded before the host subset) loads as it is
    for shipped in sorted(bl.BASELINES_DIR.glob("*.json")):
        assert bl.load_baseline(shipped, shipped.stem)["cases"]


def test_baseline_host_times_merge_and_are_checked(tmp_path):
    first = baseline_of(meas(1, 10.0, host_us=20.0), meas(2, 10.0))
    c1 = first["cases"]["A16W4_HQQ_INT/g128 4096x4096 M1"]
    assert (c1["host_us"], c1["host_calls"]) == (20.0, 10_000)
    meta2 = {"gpu": "NVIDIA H100 80GB HBM3", "gpu_key": "h100-sxm", "date": "d1", "commit": "c1"}
    # a later run re-measures M1 (no host time this time) and adds M2's host time
    second = bl.merge_baseline(first, meta2, [meas(1, 11.0), meas(2, 10.0, host_us=21.0)])
    assert "host_us" not in second["cases"]["A16W4_HQQ_INT/g128 4096x4096 M1"]  # replaced as a whole
    assert second["cases"]["A16W4_HQQ_INT/g128 4096x4096 M2"]["host_us"] == 21.0
    p = tmp_path / "h100-sxm.json"
    second["cases"]["A16W4_HQQ_INT/g128 4096x4096 M2"]["host_us"] = -1
    p.write_text(json.dumps(second))
    with pytest.raises(bl.BaselineError, match="host_us"):
        bl.load_baseline(p, "h100-sxm")
