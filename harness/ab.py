"""A/B mode: two revisions of gemlite timed interleaved, case by case, in one run on one GPU.

``nox -s perf -- --gpu h100 --against <git-ref>`` checks <git-ref> out into a temporary git worktree
and starts two worker processes, "base" (that revision) and "head" (the working tree as it is,
uncommitted changes included). Each worker imports ITS OWN gemlite: its PYTHONPATH starts with a
small directory holding only a ``gemlite`` symlink to that revision's package, followed by this
repository, so both measure with the same harness code (this one) and differ only in gemlite.
The driver then asks for each case in turn, alternating the order in ABBA blocks (`ab_order`):
a slow drift of the machine (clocks, temperature) hits both sides equally. It prints per-case times,
the ratio head / base, and geometric means per format and overall. Cases of the suite's host subset
bring their eager host time along (each measurement times it after the kernel, so it is interleaved
the same way), and the host subset's cuBLAS fp16 cases come too: the ``torch.nn.functional.linear``
host time the goal compares with, and a control (both sides run the same torch, so its ratio should
be 1). The report's "Eager host time" section shows them.

Without a .git directory (a GPU machine may get the tree as plain files) use ``--against-dir <path>``
with a checkout of the base revision made elsewhere (e.g. ``git archive <ref> gemlite | tar -x -C
.ab-base``), carried along.

Protocol: JSON lines over the worker's stdin/stdout; everything else a worker (or the libraries it
imports) prints goes to stderr, so it cannot corrupt the protocol.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib.util import find_spec
from pathlib import Path

from harness import git
from harness.perf_cases import ROOT, Case
from harness.perf_report import HOST_GOAL, geomean, md_table
from harness.perf_run import (
    FakeMeasurer,
    GpuMeasurer,
    Measurement,
    RunSettings,
    config_cache_path,
    fake_gpu,
    write_json_atomic,
)

__all__ = ["ABRow", "Worker", "WorkerError", "ab_order", "render_ab", "run_ab", "summarize_ab", "worker_main"]

SIDES = ("base", "head")


def ab_order(index: int, rounds: int) -> list[str]:
    """Which side measures first, case by case: ABBA blocks, and every other case starts with the
    other side. index: the case's position in the run. rounds: measurements per side (>= 1).

    >>> ab_order(0, 2), ab_order(1, 2)
    (['base', 'head', 'head', 'base'], ['head', 'base', 'base', 'head'])
    """
    if rounds < 1:
        raise ValueError(f"rounds: need at least one measurement per side, got {rounds}")
    first, second = SIDES if index % 2 == 0 else SIDES[::-1]
    order: list[str] = []
    for r in range(rounds):
        order += [first, second] if r % 2 == 0 else [second, first]
    return order


# --------------------------------------------------------------------------------------------
# git (read-only here, except for the temporary worktree A/B itself asks for)
# --------------------------------------------------------------------------------------------


_git = git.run


def resolve_ref(repo: Path, ref: str) -> str:
    """The commit sha `ref` names in `repo`. Raises RuntimeError when there is no git repository
    (suggesting --against-dir) and ValueError when the ref is unknown."""
    try:
        _git(repo, "rev-parse", "--git-dir")
    except (RuntimeError, OSError):
        raise RuntimeError(
            f"--against: {repo} is not a git checkout here (no .git), so a revision cannot be checked out; "
            "make one elsewhere (git archive <ref> gemlite | tar -x -C .ab-base), bring it along and pass "
            "--against-dir .ab-base"
        ) from None
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except RuntimeError:
        raise ValueError(f"--against: {ref!r} is not a commit in {repo}") from None


def make_shim(tmp: Path, side: str, gemlite_dir: Path) -> Path:
    """A directory holding only a ``gemlite`` symlink to `gemlite_dir` (put first on PYTHONPATH)."""
    gemlite_dir = Path(gemlite_dir).resolve()
    if not (gemlite_dir / "__init__.py").exists():
        raise FileNotFoundError(f"{side}: {gemlite_dir} is not a gemlite package (no __init__.py)")
    shim = Path(tmp) / f"shim-{side}"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "gemlite").symlink_to(gemlite_dir, target_is_directory=True)
    return shim


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """The worker answered a request with an error (it is still alive)."""


class Worker:
    """One revision's measuring process (see the module docstring).

    Raises RuntimeError when the worker dies, fails to start, or imported gemlite from somewhere
    other than `gemlite_dir`. A case that fails inside a live worker comes back from `measure` as
    an "error" Measurement.
    """

    def __init__(
        self,
        side: str,
        shim: Path,
        gemlite_dir: Path,
        settings: RunSettings,
        gpu: str,
        log: Callable[[str], None] = print,
        module: str = "harness.ab",
    ) -> None:
        # module: what the worker process runs (``python -m <module> worker``); the peer's worker
        # (`harness.peer_worker`) sets up its imports first, then runs `worker_main` like this one.
        self.side = side
        self.log = log
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        if settings.dry_run:  # dry-run only: let a test give each side its own synthetic speed
            for knob in ("GEMLITE_PERF_FAKE_SLOWDOWN", "GEMLITE_PERF_FAKE_HOST_SLOWDOWN"):
                env[knob] = os.environ.get(f"{knob}_{side.upper()}", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # cwd = the shim: `python -m` puts the cwd first on sys.path, and the repository root there
            # would shadow the shim's gemlite with the working tree's.
            text=True,
            env=env,
            cwd=str(shim),
        )
        try:
            hello = self.request({"cmd": "init", "side": side, "settings": settings.to_dict(), "gpu": gpu})
        except Exception:  # e.g. its gemlite does not import: end the process, then say why
            self.close()
            raise
        found = Path(hello["gemlite"]).resolve()
        if found != Path(gemlite_dir).resolve():
            self.close()
            raise RuntimeError(f"{side}: the worker imported gemlite from {found}, expected {gemlite_dir}")
        self.hello = hello
        log(f"[{side}] worker ready: gemlite {found}")

    def request(self, msg: dict) -> dict:
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait(timeout=60)
            raise RuntimeError(
                f"{self.side}: the worker exited (code {rc}) without answering {msg.get('cmd')!r}"
            )
        reply = json.loads(line)
        if not reply.get("ok"):
            raise WorkerError(f"{self.side}: {reply.get('error')}\n{reply.get('traceback', '')}")
        return reply

    def measure(self, case: Case) -> Measurement:
        try:
            reply = self.request({"cmd": "measure", "case": case.to_dict()})
        except WorkerError as e:  # e.g. a format this revision does not know
            return Measurement(case, "error", reason=str(e).splitlines()[0])
        return Measurement.from_dict(reply["measurement"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request({"cmd": "quit"})
            except Exception:  # noqa: BLE001 - closing a broken worker: just end it
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def worker_main(measurers: tuple[type, type] | None = None) -> int:
    """The worker loop (``python -m harness.ab worker``).

    measurers: the (dry-run, GPU) measurer classes the worker times with; default (FakeMeasurer,
    GpuMeasurer), which build gemlite's layers (the peer's worker passes its own, `harness.peer`).
    """
    fake_cls, gpu_cls = measurers or (FakeMeasurer, GpuMeasurer)
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else printed to stdout now lands on stderr
    measurer = None
    side = "?"

    def log(s: str) -> None:
        print(f"[{side}] {s}", file=sys.stderr, flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        try:
            cmd = msg.get("cmd")
            if cmd == "init":
                side = msg["side"]
                settings = RunSettings.from_dict(msg["settings"])
                spec = find_spec("gemlite")
                if spec is None or spec.origin is None:
                    raise RuntimeError("gemlite is not importable in this worker")
                if settings.dry_run:
                    gpu = fake_gpu(msg["gpu"])
                    measurer = fake_cls(settings, gpu, log)
                else:
                    from harness.gpu import require

                    gpu = require(msg["gpu"])
                    measurer = gpu_cls(settings, gpu, log)
                measurer.start()
                reply = {"gemlite": str(Path(spec.origin).parent), "gpu": gpu.to_dict()}
            elif cmd == "measure":
                m = measurer.measure(Case.from_dict(msg["case"]))
                reply = {"measurement": m.to_dict()}
            elif cmd == "quit":
                if measurer is not None:
                    measurer.finish()
                proto.write(json.dumps({"ok": True}) + "\n")
                return 0
            else:
                raise ValueError(f"unknown command {cmd!r}")
            proto.write(json.dumps({"ok": True, **reply}) + "\n")
        except Exception as e:  # noqa: BLE001 - report it to the driver, which decides
            proto.write(
                json.dumps(
                    {
                        "ok": False,
                        "error": f"{type(e).__name__}: {e}",
                        "traceback": traceback.format_exc(limit=6),
                    }
                )
                + "\n"
            )
    return 0


# --------------------------------------------------------------------------------------------
# Driver and summary
# --------------------------------------------------------------------------------------------


@dataclass
class ABRow:
    """One case of an A/B run: the medians each side measured (us per call), the eager host times
    (us per call; cases of the host subset only) and the errors."""

    case: Case
    base_us: list[float]
    head_us: list[float]
    error: str = ""
    base_host_us: list[float] = field(default_factory=list)
    head_host_us: list[float] = field(default_factory=list)

    @property
    def base(self) -> float | None:
        return statistics.median(self.base_us) if self.base_us else None

    @property
    def head(self) -> float | None:
        return statistics.median(self.head_us) if self.head_us else None

    @property
    def ratio(self) -> float | None:
        """head / base: below 1 the working tree is faster."""
        return self.head / self.base if self.base and self.head else None

    @property
    def base_host(self) -> float | None:
        return statistics.median(self.base_host_us) if self.base_host_us else None

    @property
    def head_host(self) -> float | None:
        return statistics.median(self.head_host_us) if self.head_host_us else None

    @property
    def host_ratio(self) -> float | None:
        """head / base of the eager host time."""
        return self.head_host / self.base_host if self.base_host and self.head_host else None


def summarize_ab(rows: list[ABRow]) -> dict:
    """Geometric means of head / base over the gemlite cases: {"overall": g, "per_format": {label:
    g}, "host": {"overall": g, "per_format": {...}} (eager host time), "controls": {reference: g}}
    (None when empty; "controls" holds the cuBLAS cases, which both sides run alike)."""
    gem = [r for r in rows if r.case.kind == "gemlite"]
    labels = dict.fromkeys(r.case.name for r in gem)
    hosted = [r for r in gem if r.host_ratio is not None]
    host_labels = dict.fromkeys(r.case.name for r in hosted)
    refs = [r for r in rows if r.case.kind == "ref"]
    return {
        "overall": geomean(r.ratio for r in gem),
        "per_format": {lab: geomean(r.ratio for r in gem if r.case.name == lab) for lab in labels},
        "host": {
            "overall": geomean(r.host_ratio for r in hosted),
            "per_format": {
                lab: geomean(r.host_ratio for r in hosted if r.case.name == lab) for lab in host_labels
            },
        },
        "controls": {
            name: geomean(r.ratio for r in refs if r.case.name == name)
            for name in dict.fromkeys(r.case.name for r in refs)
        },
    }


def render_ab(rows: list[ABRow], meta: dict) -> str:
    """Markdown: how the run was made, the geomeans, then every case."""
    s = summarize_ab(rows)
    g = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    out = [
        f"# A/B: {meta.get('head')} vs {meta.get('base')} on {meta.get('gpu')}",
        "",
        "ratio = head time / base time (below 1: head is faster); "
        f"{meta.get('rounds')} measurements per side per case, interleaved ABBA; each measurement is the "
        "median of CUDA-graph replays."
        + (
            f" INCOMPLETE: {meta['not_measured']} cases not measured (time budget)."
            if meta.get("not_measured")
            else ""
        ),
        "",
        md_table(
            ["format", "geomean ratio"],
            [[k, g(v)] for k, v in s["per_format"].items()] + [["**all**", g(s["overall"])]],
        ),
        "",
    ]
    rows_md = [
        [
            r.case.name,
            str(r.case.K),
            str(r.case.N),
            str(r.case.M),
            g(r.base),
            g(r.head),
            g(r.ratio),
            r.error[:80],
        ]
        for r in rows
    ]
    if s["controls"]:
        out += [
            "Controls (cuBLAS, the same torch on both sides; far from 1: the interleaving did not hold "
            "the machine still): " + ", ".join(f"{k} {g(v)}" for k, v in s["controls"].items()),
            "",
        ]
    out += [
        md_table(
            ["format", "K", "N", "M", "base us", "head us", "ratio", "error"], rows_md, align="lrrrrrrl"
        ),
        "",
    ]
    out += _host_section(rows)
    return "\n".join(out)


def _host_section(rows: list[ABRow]) -> list[str]:
    """Eager host time of both sides, head / base, and head against F.linear (the goal)."""
    hosted = [r for r in rows if r.base_host_us or r.head_host_us]
    if not hosted:
        return []
    fp16 = {(r.case.K, r.case.N, r.case.M): r for r in hosted if r.case.kind == "ref"}
    g = lambda v, f=".2f": "-" if v is None else format(v, f)  # noqa: E731
    table = []
    for r in (r for r in hosted if r.case.kind == "gemlite"):
        ref = fp16.get((r.case.K, r.case.N, r.case.M))
        ref_host = ref.head_host if ref else None
        vs = r.head_host / ref_host if r.head_host and ref_host else None
        goal = "-" if vs is None else ("met" if vs <= HOST_GOAL else "MISSED")
        table.append(
            [r.case.case_id, g(r.base_host), g(r.head_host), g(r.host_ratio, ".3f"), g(ref_host), g(vs), goal]
        )
    controls = [r for r in hosted if r.case.kind == "ref"]
    return [
        "## Eager host time",
        "",
        "Wall time per call of back-to-back eager calls (no sync in between, one at the end), measured "
        "after each kernel timing, so interleaved like it. *head / F.linear*: head's host time over "
        f"torch.nn.functional.linear fp16's on the same K, N, M (goal <= {HOST_GOAL}x).",
        "",
        md_table(
            ["case", "base host us", "head host us", "ratio", "F.linear host us", "head / F.linear", "goal"],
            table,
            align="lrrrrrl",
        ),
        "",
    ] + (
        [
            "F.linear control (head / base, should be 1): "
            + ", ".join(f"{r.case.case_id} {g(r.host_ratio, '.3f')}" for r in controls),
            "",
        ]
        if controls
        else []
    )


def run_ab(
    cases: list[Case],
    *,
    settings: RunSettings,
    gpu: str,
    against: str | None = None,
    against_dir: str | None = None,
    rounds: int = 2,
    repo: Path = ROOT,
    out_dir: Path,
    stem: str,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> int:
    """Measure `cases` on base and head interleaved; print and write ``<out_dir>/<stem>.{md,json}``.

    deadline: a time.monotonic() value after which no new case starts (the report says how many
    were left). Returns 0, or 1 when any case failed on either side. Raises ValueError /
    RuntimeError for an unusable revision (unknown ref, no git, no gemlite package there).
    """
    if (against is None) == (against_dir is None):
        raise ValueError("run_ab: give exactly one of against (a git ref) or against_dir (a checkout)")
    tmp = Path(tempfile.mkdtemp(prefix="gemlite-ab-"))
    worktree = None
    workers: dict[str, Worker] = {}
    try:
        if against is not None:
            sha = resolve_ref(repo, against)
            worktree = tmp / "base"
            log(f"checking out {against} ({sha[:12]}) into a temporary worktree {worktree}")
            _git(repo, "worktree", "add", "--detach", str(worktree), sha)
            base_root, base_desc = worktree, f"{against} ({sha[:12]})"
        else:
            base_root, base_desc = Path(against_dir).resolve(), f"directory {against_dir}"
        roots = {"base": base_root / "gemlite", "head": Path(repo) / "gemlite"}
        # Each side loads its own revision's tuned configs: a cache holds the winners of one
        # revision's config spaces, and the other side's may name configs its kernels lack.
        base_configs = base_root / "gemlite" / "configs"  # older revisions kept them in suites/perf/configs
        if not base_configs.is_dir():
            base_configs = base_root / "suites" / "perf" / "configs"
        side_settings = {"base": replace(settings, config_dir=str(base_configs)), "head": settings}
        for side in SIDES:
            shim = make_shim(tmp, side, roots[side])
            workers[side] = Worker(side, shim, roots[side], side_settings[side], gpu, log)
        if settings.loads_config_cache:
            # A base without its cache would autotune inside the run while the head reads its own:
            # two different experiments under one ratio (and a cache-less `git archive` of an old
            # revision is easy to make by accident).
            key = workers["base"].hello["gpu"]["key"]
            base_cache = config_cache_path(key, settings.autotune, base_configs)
            if not base_cache.is_file():
                raise FileNotFoundError(
                    f"the base revision has no tuned-config cache for this GPU ({base_cache}): "
                    f"include it in the checkout (revisions before the caches moved into the package "
                    f"keep them in suites/perf/configs: `git archive <ref> gemlite suites/perf/configs`), "
                    f"or pass --no-config-cache to autotune both sides"
                )
        rows = []
        for i, case in enumerate(cases):
            if deadline is not None and time.monotonic() > deadline:
                log(f"time budget spent: {len(cases) - i} cases not measured")
                break
            row = ABRow(case, [], [])
            for side in ab_order(i, rounds):
                m = workers[side].measure(case)
                if m.status == "ok":
                    (row.base_us if side == "base" else row.head_us).append(m.us)
                    if m.host_us is not None:
                        (row.base_host_us if side == "base" else row.head_host_us).append(m.host_us)
                elif m.status == "error":
                    row.error = f"{side}: {m.reason}"
                elif m.status == "skipped":
                    row.error = f"{side} skipped: {m.reason}"
            rows.append(row)
            r = row.ratio
            hr = row.host_ratio
            log(
                f"[{i + 1:>4}/{len(cases)}] {case.case_id}: base {row.base or float('nan'):.2f} us, "
                f"head {row.head or float('nan'):.2f} us, ratio {'-' if r is None else f'{r:.3f}'}"
                + (
                    f"; eager host base {row.base_host:.2f} us, head {row.head_host:.2f} us, ratio {hr:.3f}"
                    if hr is not None
                    else ""
                )
                + (f"  ({row.error})" if row.error else "")
            )
        meta = {
            "gpu": workers["head"].hello["gpu"]["name"],
            "base": base_desc,
            "head": "working tree",
            "rounds": rounds,
            "settings": settings.to_dict(),
            "not_measured": len(cases) - len(rows),
        }
        md = render_ab(rows, meta)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.md").write_text(md)
        write_json_atomic(
            out_dir / f"{stem}.json",
            {
                "meta": meta,
                "summary": summarize_ab(rows),
                "rows": [
                    {
                        "case_id": r.case.case_id,
                        "base_us": r.base_us,
                        "head_us": r.head_us,
                        "ratio": r.ratio,
                        "base_host_us": r.base_host_us,
                        "head_host_us": r.head_host_us,
                        "host_ratio": r.host_ratio,
                        "error": r.error,
                    }
                    for r in rows
                ],
            },
        )
        s = summarize_ab(rows)
        log("")
        log(
            md_table(
                ["format", "geomean head/base"],
                [[k, "-" if v is None else f"{v:.3f}"] for k, v in s["per_format"].items()]
                + [["all", "-" if s["overall"] is None else f"{s['overall']:.3f}"]],
            )
        )
        if s["host"]["overall"] is not None:
            log(f"eager host time, geomean head/base: {s['host']['overall']:.3f}")
        log(f"A/B report: {out_dir / (stem + '.md')}")
        return 1 if any(r.error for r in rows) else 0
    finally:
        for w in workers.values():
            w.close()
        if worktree is not None:
            try:
                _git(repo, "worktree", "remove", "--force", str(worktree))
            except RuntimeError as e:
                log(f"warning: {e}")
        shutil.rmtree(tmp, ignore_errors=True)
        if worktree is not None:
            try:
                _git(repo, "worktree", "prune")
            except RuntimeError:
                pass


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(worker_main())
    sys.exit("usage: python -m harness.ab worker   (the driver is harness.perf_cli run --against REF)")
