"""The whole pipeline on a CPU: ``python -m harness.perf_cli run --dry-run`` (pytest +
pytest-benchmark + gate + re-measure + report + baseline) with planted effects, A/B with two worker
processes over a temporary git repository, and the CLI's refusals."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ab, perf_cli
from harness import baselines as bl
from harness.perf_cases import ROOT, load_suite, parse_selection, suite_path
from harness.perf_run import FakeMeasurer, RunSettings, fake_gpu, parse_factor_spec

SEL = ["--formats", "A16W4_HQQ_INT/g128,A16W8_INT8", "--shapes", "4096x4096", "--m", "1,32"]
W4_M1, W8_M1, W8_M32 = (
    "A16W4_HQQ_INT/g128 4096x4096 M1",
    "A16W8_INT8 4096x4096 M1",
    "A16W8_INT8 4096x4096 M32",
)


def _cases():
    return load_suite(suite_path("h100")).cases(selection=parse_selection(*[SEL[i] for i in (1, 3, 5)]))


def _fake_baseline(path: Path) -> None:
    """A dry-run baseline made the way a run makes one (the fake's first measurement of each case)."""
    fm = FakeMeasurer(RunSettings(dry_run=True), fake_gpu("h100"), log=lambda s: None)
    meta = {
        "gpu": "fake",
        "gpu_key": "h100-sxm",
        "dry_run": True,
        "date": "d0",
        "commit": "c0",
        "copy_gbps": 1.0,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bl.merge_baseline(None, meta, [fm.measure(c) for c in _cases()])))


FAKE_KNOBS = (
    "GEMLITE_PERF_FAKE_SLOWDOWN",
    "GEMLITE_PERF_FAKE_TRANSIENT",
    "GEMLITE_PERF_FAKE_ERROR",
    "GEMLITE_PERF_FAKE_HOST_SLOWDOWN",
    "GEMLITE_PERF_FAKE_HOST_TRANSIENT",
)


def _cli(tmp_path, *args, env=None):
    # Not the xdist worker's variables: pytest-benchmark in the child would take itself for a worker
    # and disable itself (no benchmark JSON).
    e = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    e.update({"PYTHONPATH": str(ROOT), **(env or {})})
    for k in FAKE_KNOBS:
        e.setdefault(k, "")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.perf_cli",
            "run",
            "--gpu",
            "h100",
            "--dry-run",
            *SEL,
            "--results-dir",
            str(tmp_path / "results"),
            "--baselines-dir",
            str(tmp_path / "baselines"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=e,
        cwd=ROOT,
        timeout=240,
    )


def test_gate_end_to_end(tmp_path):
    base = tmp_path / "baselines" / "h100-sxm.json"
    _fake_baseline(base)
    r = _cli(
        tmp_path,
        "--export",
        str(tmp_path / "out"),
        env={
            "GEMLITE_PERF_FAKE_SLOWDOWN": f"{W4_M1}=1.3",  # a real slowdown: every measurement
            "GEMLITE_PERF_FAKE_TRANSIENT": f"{W8_M32}=1.5",  # noise: only the first measurement
            "GEMLITE_PERF_FAKE_ERROR": W8_M1,
        },
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    reg = out.split("REGRESSIONS (confirmed by re-measuring):")[1].split("\n\n")[0]
    assert W4_M1 in reg and "+30.0%" in reg and W8_M32 not in reg
    noise = out.split("Suspects NOT confirmed")[1].split("\n\n")[0]
    assert W8_M32 in noise and "+50.0%" in noise
    assert "ERRORS:" in out and "planted by GEMLITE_PERF_FAKE_ERROR" in out
    assert "gate: FAIL (1 error, 1 noise, 1 ok, 1 regression; eager host time: 1 ok)" in out
    # raw results, the pytest-benchmark JSON, the report and the export
    res = json.loads((tmp_path / "results" / "h100-sxm-subset-run.json").read_text())
    assert len(res["measurements"]) == len(_cases()) and res["meta"]["dry_run"] is True
    bench = json.loads((tmp_path / "results" / "h100-sxm-subset-benchmark.json").read_text())
    infos = {b["extra_info"]["case_id"]: b for b in bench["benchmarks"]}
    assert infos[W4_M1]["extra_info"]["us"] > 0 and infos[W4_M1]["stats"]["rounds"] == 15
    assert bench["machine_info"]["gpu_key"] == "h100-sxm" and bench["gemlite_perf"]["dry_run"] is True
    md = (tmp_path / "results" / "h100-sxm-subset.md").read_text()
    assert md.startswith("# DRY RUN") and "+30.0%" in md
    assert {"h100-sxm-subset.md", "h100-sxm-subset.json", "h100-sxm-subset-run.json"} <= {
        p.name for p in (tmp_path / "out").iterdir()
    }
    assert json.loads(base.read_text())["runs"][0]["commit"] == "c0"  # the gate never writes the baseline


def test_host_gate_end_to_end(tmp_path):
    """A planted eager-host slowdown of one case fails the run after re-measuring; a transient one
    on another case does not; the kernel times, unchanged, pass; the report shows the host section."""
    _fake_baseline(tmp_path / "baselines" / "h100-sxm.json")
    r = _cli(
        tmp_path,
        "--host-calls",
        "500",
        env={
            "GEMLITE_PERF_FAKE_HOST_SLOWDOWN": f"{W4_M1}=2",
            "GEMLITE_PERF_FAKE_HOST_TRANSIENT": f"{W8_M1}=2",
        },
    )
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    reg = out.split("REGRESSIONS (confirmed by re-measuring):")[1].split("\n\n")[0]
    assert f"{W4_M1} (eager host)" in reg and W8_M1 not in reg
    noise = out.split("Suspects NOT confirmed")[1].split("\n\n")[0]
    assert f"{W8_M1} (eager host)" in noise
    assert "gate: FAIL (4 ok; eager host time: 1 noise, 1 regression)" in out
    assert "F.linear eager host time now / baseline: geomean" in out
    res = json.loads((tmp_path / "results" / "h100-sxm-subset-run.json").read_text())
    hosts = {m["case_id"]: (m["host_us"], m["host_calls"]) for m in res["measurements"]}
    assert hosts[W4_M1][1] == 500 and hosts["cublas_fp16 4096x4096 M1"][0] > 0
    assert hosts[W8_M32] == (None, 0)  # not in the host subset
    assert res["meta"]["settings"]["host_calls"] == 500
    rep = json.loads((tmp_path / "results" / "h100-sxm-subset.json").read_text())
    w4 = next(x for x in rep["results"] if x["format"] == "A16W4_HQQ_INT/g128" and x["M"] == 1)
    assert w4["fp16_host_us"] == hosts["cublas_fp16 4096x4096 M1"][0] and w4["baseline_host_us"] > 0
    md = (tmp_path / "results" / "h100-sxm-subset.md").read_text()
    assert "## Eager host time" in md and "500 back-to-back eager calls" in md
    bench = json.loads((tmp_path / "results" / "h100-sxm-subset-benchmark.json").read_text())
    assert {b["extra_info"]["case_id"]: b["extra_info"]["host_us"] for b in bench["benchmarks"]}[W4_M1] > 0


def test_update_baseline_merges_a_run(tmp_path):
    path = tmp_path / "baselines" / "h100-sxm.json"
    _fake_baseline(path)
    old = json.loads(path.read_text())
    old["cases"]["A16W8_FP8 8192x1024 M4"] = {"us": 3.0, "rel_iqr": 0.01, "run": 0}  # a case this run skips
    path.write_text(json.dumps(old))
    r = _cli(
        tmp_path,
        "--update-baseline",
        "--export",
        str(tmp_path / "out"),
        env={"GEMLITE_PERF_FAKE_SLOWDOWN": f"{W4_M1}=2"},
    )
    assert r.returncode == 0, r.stdout + r.stderr  # recording a baseline is not gated
    assert "baseline written" in r.stdout
    assert (tmp_path / "out" / "baseline-h100-sxm.json").read_text() == path.read_text()  # --export
    new = json.loads(path.read_text())
    assert new["meta"]["dry_run"] is True and [run["commit"] for run in new["runs"]][0] == "c0"
    assert len(new["runs"]) == 2 and new["runs"][1]["cases"] == len(_cases()) - 1  # int8 M=1 is skipped
    assert new["cases"][W4_M1]["us"] == pytest.approx(2 * old["cases"][W4_M1]["us"], rel=0.02)
    assert new["cases"][W4_M1]["run"] == 1 and new["cases"]["A16W8_FP8 8192x1024 M4"]["run"] == 0
    assert new["cases"][W4_M1]["host_us"] > 0 and "host_us" not in new["cases"][W8_M32]


def test_cli_refusals(tmp_path, monkeypatch, capsys):
    from harness import gpu

    def no_gpu(expected):
        raise gpu.NoGpuError("no CUDA GPU is visible")

    monkeypatch.setattr(perf_cli, "require", no_gpu)
    assert perf_cli.main(["run", "--gpu", "h100"]) == 2
    assert "add --dry-run" in capsys.readouterr().out
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--m", "3"]) == 2
    assert "--m: [3] not in suite" in capsys.readouterr().out
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--against", "x", "--update-baseline"]) == 2
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--force-config", "{not json"]) == 2
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--retune-m", "1,two"]) == 2
    assert "--retune-m: expected comma-separated batch sizes >= 1, got '1,two'" in capsys.readouterr().out
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--retune-m", "0"]) == 2
    assert "--retune-m: expected comma-separated batch sizes >= 1, got '0'" in capsys.readouterr().out
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--retune-m", "1", "--no-config-cache"]) == 2
    assert "not with --no-config-cache" in capsys.readouterr().out
    b = tmp_path / "h100-sxm.json"
    b.write_text(json.dumps({"schema": 1, "meta": {"gpu_key": "h100-sxm"}, "cases": {}}))
    assert perf_cli.main(["run", "--gpu", "h100", "--dry-run", "--baselines-dir", str(tmp_path)]) == 2
    assert "holds real GPU numbers" in capsys.readouterr().out


def test_retune_m_names_the_cache_buckets():
    # The cache is keyed by M bucket: --retune-m 3 must re-tune bucket 4 (where M = 3's config lives),
    # not look for an "M=3" entry that never exists.
    assert perf_cli.retune_buckets("1,2") == (1, 2)
    assert perf_cli.retune_buckets("3,4,1") == (1, 4)
    assert perf_cli.retune_buckets("5000") == (4096,)


def test_fake_spec_parsing():
    assert parse_factor_spec("a=1.5, b c=2") == [("a", 1.5), ("b c", 2.0)]
    assert parse_factor_spec(None) == [] and parse_factor_spec("") == []
    for bad in ("a", "=2", "a=0", "a=x"):
        with pytest.raises(ValueError, match="substring"):
            parse_factor_spec(bad)


# --------------------------------------------------------------------------------------------
# A/B
# --------------------------------------------------------------------------------------------


def test_ab_order():
    assert ab.ab_order(0, 1) == ["base", "head"] and ab.ab_order(1, 1) == ["head", "base"]
    assert ab.ab_order(0, 2) == ["base", "head", "head", "base"]
    assert ab.ab_order(3, 3) == ["head", "base", "base", "head", "head", "base"]
    for i in range(4):
        for r in range(1, 4):
            o = ab.ab_order(i, r)
            assert o.count("base") == o.count("head") == r
    with pytest.raises(ValueError):
        ab.ab_order(0, 0)


@pytest.fixture
def toy_repo(tmp_path):
    """A git repository whose gemlite is only the vocabulary (enough for dry-run workers)."""
    repo = tmp_path / "repo"
    (repo / "gemlite").mkdir(parents=True)
    (repo / "gemlite" / "__init__.py").write_text("")
    (repo / "gemlite" / "formats.py").write_text((ROOT / "gemlite" / "formats.py").read_text())
    (repo / "gemlite" / "configs").mkdir()
    (repo / "gemlite" / "configs" / "h100-sxm.json").write_text("{}")  # its tuned-config cache
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)
    return repo


def test_ab_interleaved_dry_run(toy_repo, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("GEMLITE_PERF_FAKE_SLOWDOWN_HEAD", "A16W4_HQQ_INT/g128=0.8")
    monkeypatch.setenv("GEMLITE_PERF_FAKE_HOST_SLOWDOWN_HEAD", "A16W8_INT8=1.25")
    for k in ("GEMLITE_PERF_FAKE_SLOWDOWN_BASE", "GEMLITE_PERF_FAKE_HOST_SLOWDOWN_BASE"):
        monkeypatch.delenv(k, raising=False)
    lines = []
    cases = [c for c in _cases() if c.kind == "gemlite" or c.host]  # as perf_cli hands them over
    assert [c.case_id for c in cases if c.kind == "ref"] == ["cublas_fp16 4096x4096 M1"]
    rc = ab.run_ab(
        cases,
        settings=RunSettings(dry_run=True),
        gpu="h100",
        against="HEAD",
        repo=toy_repo,
        out_dir=tmp_path / "ab",
        stem="ab",
        log=lines.append,
    )
    assert rc == 0, "\n".join(lines)
    data = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert data["summary"]["per_format"]["A16W4_HQQ_INT/g128"] == pytest.approx(0.8, rel=0.02)
    assert data["summary"]["per_format"]["A16W8_INT8"] == pytest.approx(1.0, rel=0.02)
    assert all(len(r["base_us"]) == len(r["head_us"]) == 2 for r in data["rows"])
    # the eager host time, measured by both sides in the same interleaved measurements
    rows = {r["case_id"]: r for r in data["rows"]}
    assert len(rows[W8_M1]["base_host_us"]) == len(rows[W8_M1]["head_host_us"]) == 2
    assert rows[W8_M1]["host_ratio"] == pytest.approx(1.25, rel=0.08)
    assert rows[W4_M1]["host_ratio"] == pytest.approx(1.0, rel=0.08)
    assert rows[W8_M32]["base_host_us"] == [] and rows[W8_M32]["host_ratio"] is None
    assert data["summary"]["host"]["per_format"]["A16W8_INT8"] == pytest.approx(1.25, rel=0.08)
    assert data["summary"]["controls"]["cublas_fp16"] == pytest.approx(1.0, rel=0.02)
    assert set(data["summary"]["per_format"]) == {"A16W4_HQQ_INT/g128", "A16W8_INT8"}  # no control
    md = (tmp_path / "ab" / "ab.md").read_text()
    host = md.split("## Eager host time")[1]
    assert f"| {W8_M1} " in host and f"| {W4_M1} " in host and "head / F.linear" in host
    assert "F.linear control (head / base, should be 1): cublas_fp16 4096x4096 M1" in host
    assert any("[base] worker ready: gemlite" in s and "gemlite-ab-" in s for s in lines)
    # each side reads its own revision's tuned configs (the base's from the temporary worktree)
    log = capfd.readouterr().err.splitlines()  # the workers log to stderr
    assert any(s.startswith("[base]") and "(not read) /" in s and "gemlite-ab-" in s for s in log)
    assert any(s.startswith("[head]") and "config cache (not read) gemlite/configs/" in s for s in log)
    listed = subprocess.run(
        ["git", "-C", str(toy_repo), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert len(listed.strip().splitlines()) == 1  # the temporary worktree is gone
    assert "# A/B: working tree vs HEAD" in (tmp_path / "ab" / "ab.md").read_text()


def test_ab_refusals(toy_repo, tmp_path):
    cases = [c for c in _cases() if c.kind == "gemlite"][:1]
    kw = dict(settings=RunSettings(dry_run=True), gpu="h100", out_dir=tmp_path, stem="x", log=lambda s: None)
    with pytest.raises(ValueError, match="not a commit"):
        ab.run_ab(cases, against="no-such-ref", repo=toy_repo, **kw)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(RuntimeError, match="--against-dir"):
        ab.run_ab(cases, against="HEAD", repo=plain, **kw)
    with pytest.raises(FileNotFoundError, match="not a gemlite package"):
        ab.run_ab(cases, against_dir=str(plain), repo=toy_repo, **kw)
    with pytest.raises(ValueError, match="exactly one"):
        ab.run_ab(cases, repo=toy_repo, **kw)
    # a base checkout without its tuned configs (an old revision archived without suites/perf/configs)
    uncached = tmp_path / "uncached"
    shutil.copytree(toy_repo / "gemlite", uncached / "gemlite", ignore=shutil.ignore_patterns("configs"))
    with pytest.raises(FileNotFoundError, match="no tuned-config cache for this GPU"):
        ab.run_ab(cases, against_dir=str(uncached), repo=toy_repo, **kw)
    (uncached / "suites" / "perf" / "configs").mkdir(parents=True)  # where older revisions kept it
    (uncached / "suites" / "perf" / "configs" / "h100-sxm.json").write_text("{}")
    assert ab.run_ab(cases, against_dir=str(uncached), repo=toy_repo, **kw) == 0
    shutil.rmtree(uncached / "suites")
    no_cache = dict(kw, settings=RunSettings(dry_run=True, config_cache=False))
    assert ab.run_ab(cases, against_dir=str(uncached), repo=toy_repo, **no_cache) == 0  # both autotune
