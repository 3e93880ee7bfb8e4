"""The peer: the public GemLite release, timed beside gemlite in the same run, by the same method.

``nox -s perf -- --gpu h200 --peer PATH`` (PATH: a source tree, a wheel or the sdist of the public
GemLite release, e.g. 0.6.0.post2 from PyPI) times, after the run's own cases, every case of a
format both libraries have (`PEER_BUILDS`) through the peer, and the report gains a "vs GemLite"
column (peer time / gemlite time: above 1 gemlite is faster) and its geomean per format.

How: the two share the import name ``gemlite``, so the peer runs in a worker process of its own, the
A/B mode's (`harness.ab.Worker`, over a shim directory holding only a ``gemlite`` link to the peer's
package); its entry point `harness.peer_worker` first makes this project's vocabulary
(``gemlite/formats.py``, data only) importable beside the peer, which the harness needs to describe
a case. There `PeerMeasurer` builds each (format, K, N) from the same random weights as gemlite's
run (the same seed and ``nn.Linear`` init) through the peer's own public API, then times it with
gemlite's measurer (`harness.perf_run.GpuMeasurer`): rotating copies over 2x L2, one warm-up call
that autotunes, CUDA-graph replays between CUDA events. How each format is built:

* HQQ (A16W4_HQQ_INT g128 / g64, A16W2_HQQ_INT g128): ``GemLiteLinearTriton(bits, group_size, K,
  N, dtype, dtype).pack(W_q, scales, zeros)`` on the codes, scales and zeros that the reference
  quantizer (`reference.quantize_weight`, min-max per group, float zeros) gives for the weight; this
  is what the peer's ``A16W4_HQQ_INT().from_weights`` does for a grouped weight (its
  ``from_linear`` needs the ``hqq`` package).
* 8-bit (A16W8_INT8 / FP8, A8W8_INT8 / FP8 dynamic, and the 128 x 128 block-scaled dynamic ones):
  the peer's helper, ``from_linear`` on the same ``nn.Linear`` (``A8W8_*_dynamic(block_quant=True)``
  for the block-scaled ones).

Everything else is "not in the peer" (listed in the report, never sent). The peer's times are
measurements of kind "peer": kept in the run's results and the report, never gated, never in the
baseline. The peer autotunes slowly and ships no H200 config, so it has a time budget of its own
(``--peer-minutes``: new cases start only within it) and a tuned-config cache of its own
(``<results>/peer-configs-<version>/<gpu key>.json``, loaded and written like gemlite's).
Copies are not compared bitwise: the peer's split-K and GEMV kernels add partial sums atomically.

``--dry-run`` models the peer too (`FakePeerMeasurer`: the fake measurer's roofline; plant a
difference with ``GEMLITE_PERF_FAKE_SLOWDOWN_PEER="<case substring>=<factor>"``).
"""

from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from gemlite.formats import WeightKind, Zeros
from harness.ab import Worker, make_shim
from harness.perf_cases import Case, FormatEntry
from harness.perf_run import FakeMeasurer, GpuMeasurer, Measurement, RunSettings, config_cache_path

__all__ = [
    "PEER_BUILDS",
    "FakePeerMeasurer",
    "PeerBuild",
    "PeerError",
    "PeerMeasurer",
    "PeerRun",
    "PeerSource",
    "build_peer_layer",
    "inspect_peer",
    "materialize",
    "not_in_peer",
    "peer_build",
    "peer_config_dir",
    "run_peer",
]

SIDE = "peer"


class PeerError(ValueError):
    """--peer names something that is not the public GemLite release."""


# --------------------------------------------------------------------------------------------
# Which formats both have
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerBuild:
    """How the peer builds one of our formats.

    via: "pack" (``GemLiteLinearTriton(...).pack`` on the reference quantizer's codes, scales and
    zeros) or "helper" (``gemlite.helper.<helper>(device, dtype, **kwargs).from_linear``).
    """

    via: str
    helper: str = ""
    kwargs: dict = field(default_factory=dict)


#: Our helper name -> how the peer builds that format (see the module docstring).
PEER_BUILDS: dict[str, PeerBuild] = {
    "A16W4_HQQ_INT": PeerBuild("pack"),
    "A16W2_HQQ_INT": PeerBuild("pack"),
    "A16W8_INT8": PeerBuild("helper", "A16W8_INT8"),
    "A16W8_FP8": PeerBuild("helper", "A16W8_FP8"),
    "A8W8_INT8_dynamic": PeerBuild("helper", "A8W8_INT8_dynamic"),
    "A8W8_FP8_dynamic": PeerBuild("helper", "A8W8_FP8_dynamic"),
    "A8W8_INT8_block_dynamic": PeerBuild("helper", "A8W8_INT8_dynamic", {"block_quant": True}),
    "A8W8_FP8_block_dynamic": PeerBuild("helper", "A8W8_FP8_dynamic", {"block_quant": True}),
}


def not_in_peer(entry: FormatEntry) -> str:
    """Why the peer does not run `entry` ("" when it does: `peer_build` gives how)."""
    if entry.helper not in PEER_BUILDS:
        return f"{entry.label}: not in the peer mapping (harness.peer.PEER_BUILDS)"
    if getattr(entry, "init", None):
        return f"{entry.label}: constructor arguments {entry.init} are not mapped to the peer"
    how = PEER_BUILDS[entry.helper]
    if how.via == "helper" and entry.kwargs:
        return f"{entry.label}: from_linear arguments {entry.kwargs} are not mapped to the peer"
    if how.via == "pack":
        w = entry.format.weight
        grouped = w.kind is WeightKind.HQQ and w.group_size is not None and w.zeros is Zeros.FLOAT
        if set(entry.kwargs) - {"group_size"} or not grouped:
            return f"{entry.label}: only group-wise HQQ with float zeros is mapped to the peer's pack"
    return ""


def peer_build(entry: FormatEntry | None) -> PeerBuild | None:
    """How the peer builds `entry`, or None when the peer does not run it (`not_in_peer` says why)."""
    if entry is None or not_in_peer(entry):
        return None
    return PEER_BUILDS[entry.helper]


def build_peer_layer(entry: FormatEntry, linear):
    """The peer's layer for `entry`, built from `linear` (an ``nn.Linear`` [N, K] without bias, in
    the entry's act dtype, on the device the layer is for) through the peer's public API.

    Runs where ``import gemlite`` is the peer (its worker, `harness.peer_worker`). Raises ValueError
    when the peer does not have the format; whatever the peer raises passes through.
    """
    import torch

    import gemlite  # the peer, in its worker
    from reference import quantize_weight

    how = peer_build(entry)
    if how is None:
        raise ValueError(f"entry: {not_in_peer(entry)}")
    dtype = linear.weight.dtype
    if how.via == "pack":
        fmt = entry.format
        N, K = linear.weight.shape
        qw = quantize_weight(fmt, linear.weight.detach(), scale_dtype=dtype)
        gl_dtype = gemlite.DType.FP16 if dtype == torch.float16 else gemlite.DType.BF16
        layer = gemlite.GemLiteLinearTriton(
            fmt.weight.bits, group_size=fmt.weight.group_size, in_features=K, out_features=N,
            input_dtype=gl_dtype, output_dtype=gl_dtype,
        )  # fmt: skip
        return layer.pack(qw.codes, qw.scales, qw.zeros, bias=None)
    proc = getattr(gemlite.helper, how.helper)(device=linear.weight.device, dtype=dtype, **how.kwargs)
    return proc.from_linear(linear)


# --------------------------------------------------------------------------------------------
# The measurers (in the peer's worker)
# --------------------------------------------------------------------------------------------


def _peer_family(layer, x) -> str | None:
    """The kernel family the peer's dispatch picks for x (its ``get_matmul_type``), if it says."""
    try:
        from gemlite import core

        M = x.numel() // x.shape[-1]
        return f"GemLite {core.get_matmul_type(M, layer.W_nbits)}"
    except Exception:  # noqa: BLE001 - a description, never a reason to fail the case
        return None


def _absent(case: Case) -> str:
    """Why the peer's worker skips `case` ("" when the peer has its format)."""
    if case.kind == "gemlite" and peer_build(case.entry) is None:
        return f"not in the peer ({not_in_peer(case.entry)})"
    return ""


class PeerMeasurer(GpuMeasurer):
    """`GpuMeasurer` with the peer's layers (`build_peer_layer`); the rest (copies, warm-up, graph
    timing, config cache) is gemlite's. Cases of formats the peer lacks come back "skipped"."""

    def skip_reason(self, case: Case) -> str:
        return _absent(case) or super().skip_reason(case)

    def _build_gemlite(self, case: Case):
        import torch

        dtype = getattr(torch, case.entry.act_dtype)
        torch.manual_seed(self._seed(case))  # the weights gemlite's measurer draws for this case
        linear = torch.nn.Linear(case.K, case.N, bias=False, dtype=dtype, device=self.device)
        layer = build_peer_layer(case.entry, linear)
        del linear
        # Not bitwise: the peer's GEMV and split-K kernels add partial sums with atomics.
        return self._rotating(case, layer, dtype, False, describe=lambda x: _peer_family(layer, x))


class FakePeerMeasurer(FakeMeasurer):
    """The dry run's peer: the fake measurer's model (its worker reads GEMLITE_PERF_FAKE_SLOWDOWN_PEER
    as GEMLITE_PERF_FAKE_SLOWDOWN), with the real measurer's refusal of formats the peer lacks."""

    def skip_reason(self, case: Case) -> str:
        return _absent(case) or super().skip_reason(case)

    def start(self) -> None:
        self.log("DRY RUN: the peer's timings are synthetic too")
        super().start()


# --------------------------------------------------------------------------------------------
# The peer's source: a tree, a wheel or an sdist
# --------------------------------------------------------------------------------------------

_NEEDED = ("gemlite/__init__.py", "gemlite/core.py", "gemlite/helper.py")
_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


@dataclass(frozen=True)
class PeerSource:
    """A checked peer. path: as resolved. kind: "tree" (holding ``gemlite/``), "wheel" or "sdist".
    root: inside the tree / archive, the folder that holds ``gemlite/`` ("" = the top)."""

    path: Path
    kind: str
    version: str
    root: str = ""

    def describe(self) -> str:
        return f"GemLite {self.version} ({self.kind} {self.path})"


def inspect_peer(path: str | Path) -> PeerSource:
    """Check that `path` is the public GemLite release, without extracting anything.

    Accepted: a directory holding ``gemlite/`` (an unpacked sdist or a checkout) or the ``gemlite``
    package folder itself; a wheel (``.whl``); an sdist (``.tar.gz``). The package must have
    ``__init__.py``, ``core.py`` (defining ``GemLiteLinearTriton``) and ``helper.py``. Raises
    PeerError naming the argument, what it expects and what it got (this project's own gemlite,
    which has ``formats.py``, is refused by name).
    """
    given = str(path)
    p = Path(path).expanduser()

    def bad(why: str) -> PeerError:
        return PeerError(
            "--peer: expected a source tree, a wheel (.whl) or an sdist (.tar.gz) of the public GemLite "
            f"release (e.g. pip download --no-deps --no-binary=:all: gemlite==0.6.0.post2), got {given!r}: "
            f"{why}"
        )

    if not p.exists():
        raise bad("no such file or directory")
    p = p.resolve()
    if p.is_dir():
        top = p.parent if (p.name == "gemlite" and (p / "__init__.py").exists()) else p
        names = {n for n in (*_NEEDED, "gemlite/formats.py") if (top / n).is_file()}
        version = _check_package(names, lambda n: (top / n).read_text(errors="replace"), bad)
        return PeerSource(top, "tree", version)
    if p.suffix == ".whl":
        try:
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
                version = _check_package(names, lambda n: zf.read(n).decode(errors="replace"), bad)
        except zipfile.BadZipFile:
            raise bad("not a zip archive (a wheel is one)") from None
        return PeerSource(p, "wheel", version)
    if p.name.endswith((".tar.gz", ".tgz")):
        try:
            with tarfile.open(p, "r:*") as tf:
                members = {m.name: m for m in tf.getmembers() if m.isfile()}
                tops = {n.split("/", 1)[0] for n in members if "/" in n}
                root = next((t for t in sorted(tops) if f"{t}/gemlite/__init__.py" in members), "")
                prefix = f"{root}/" if root else ""
                names = {n[len(prefix) :] for n in members if n.startswith(prefix)}

                def read(n: str) -> str:
                    return tf.extractfile(members[prefix + n]).read().decode(errors="replace")

                version = _check_package(names, read, bad)
        except tarfile.TarError as e:
            raise bad(f"not a readable tar archive ({e})") from None
        return PeerSource(p, "sdist", version, root)
    raise bad("neither a directory, a .whl nor a .tar.gz")


def _check_package(names: set[str], read: Callable[[str], str], bad) -> str:
    """The version of the GemLite package whose files (relative to the folder holding ``gemlite/``)
    are `names`; raises bad(...) when it is not the public release."""
    missing = [n for n in _NEEDED if n not in names]
    if "gemlite/formats.py" in names:  # the public release has no vocabulary module
        raise bad("that is this project's gemlite (it has gemlite/formats.py), not the public release")
    if missing:
        raise bad(f"no GemLite package there (missing {', '.join(missing)})")
    if "class GemLiteLinearTriton" not in read("gemlite/core.py"):
        raise bad("its gemlite/core.py defines no GemLiteLinearTriton")
    m = _VERSION.search(read("gemlite/__init__.py"))
    return m.group(1) if m else "unknown"


def materialize(source: PeerSource, tmp: Path) -> Path:
    """The peer's ``gemlite`` package folder on disk: the tree's own, or the archive's unpacked into
    `tmp` (which the caller removes)."""
    if source.kind == "tree":
        return source.path / "gemlite"
    dest = Path(tmp) / f"peer-{source.kind}"
    dest.mkdir(parents=True, exist_ok=True)
    if source.kind == "wheel":
        with zipfile.ZipFile(source.path) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(source.path, "r:*") as tf:
            # "data": no absolute paths, links out of dest or device files (Python >= 3.11.4)
            kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(dest, **kw)
    return dest / source.root / "gemlite"


def peer_config_dir(results_dir: Path, source: PeerSource) -> Path:
    """Where the peer's tuned-config cache lives: one folder per peer version under the results."""
    return Path(results_dir) / f"peer-configs-{source.version}"


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


@dataclass
class PeerRun:
    """What the peer phase of a run gives: the measurements (kind "peer", run order), the cases not
    run (time budget) and the formats the run had that the peer does not (label -> why)."""

    source: PeerSource
    measurements: list[Measurement]
    not_run: int
    not_in_peer: dict[str, str]
    minutes: float | None
    config_cache: Path | None = None

    def meta(self) -> dict:
        """The run's ``meta["peer"]`` (and the report's)."""
        ok = sum(m.status == "ok" for m in self.measurements)
        return {
            "version": self.source.version,
            "source": f"{self.source.kind} {self.source.path.name}",
            "minutes": self.minutes,
            "cases": len(self.measurements) + self.not_run,
            "timed": ok,
            "not_run": self.not_run,
            "not_in_peer": self.not_in_peer,
        }


def run_peer(
    source: PeerSource,
    cases: list[Case],
    *,
    settings: RunSettings,
    gpu: str,
    gpu_key: str,
    results_dir: Path,
    minutes: float | None = None,
    ours: dict[str, float] | None = None,
    log: Callable[[str], None] = print,
) -> PeerRun:
    """Time the peer on the gemlite cases of `cases` whose format it has, one worker process.

    settings: the run's; the peer's worker gets them without a forced config, with its own config
    cache (`peer_config_dir`) and no eager host time. gpu: the --gpu value (the worker checks the
    GPU again); gpu_key: the run's exact GPU key (the cache's file name). minutes: the peer's own
    budget, counted from the start of this phase: new cases start only within it (None: no limit).
    ours: gemlite's us per case_id, for the progress lines. Never raises for a failing case or a
    worker that dies: they are "error" measurements (the run's outcome does not depend on the peer).
    """
    t0 = time.monotonic()
    deadline = t0 + 60 * minutes if minutes is not None else None
    ours = ours or {}
    mine = [c for c in cases if c.kind == "gemlite"]
    todo = [c for c in mine if peer_build(c.entry) is not None]
    absent = {c.name: not_in_peer(c.entry).split(": ", 1)[-1] for c in mine if peer_build(c.entry) is None}
    config_dir = peer_config_dir(results_dir, source)
    peer_settings = replace(
        settings, force_config=None, config_dir=str(config_dir), write_config_cache=settings.config_cache
    )
    cache = (
        config_cache_path(gpu_key, settings.autotune, config_dir)
        if peer_settings.writes_config_cache
        else None
    )
    log(f"peer: {source.describe()}: {len(todo)} cases of {len(mine)}" + (
        f" (budget {minutes:g} min)" if minutes is not None else " (no time budget: --peer-minutes)"
    ))  # fmt: skip
    for label, why in absent.items():
        log(f"peer: {label} not timed: {why}")
    out: list[Measurement] = []
    tmp = Path(tempfile.mkdtemp(prefix="gemlite-peer-"))
    worker = None
    try:
        package = materialize(source, tmp)
        shim = make_shim(tmp, SIDE, package)
        try:
            worker = Worker(SIDE, shim, package, peer_settings, gpu, log, module="harness.peer_worker")
        except Exception as e:  # noqa: BLE001 - a peer that cannot start costs its column, not the run
            reason = f"the peer's worker did not start: {type(e).__name__}: {str(e).splitlines()[0]}"
            log(f"peer: {reason}")
            out = [_as_peer(Measurement(c, "error", reason=reason)) for c in todo]
            return PeerRun(source, out, 0, absent, minutes, cache)
        for i, case in enumerate(todo):
            if deadline is not None and time.monotonic() > deadline:
                log(f"peer: time budget (--peer-minutes {minutes:g}) spent: {len(todo) - i} cases not run")
                break
            try:
                m = worker.measure(replace(case, host=False))  # the eager host time is not compared
            except RuntimeError as e:  # the worker died (e.g. a CUDA context it poisoned)
                reason = f"the peer's worker died: {str(e).splitlines()[0]}"
                log(f"peer: {reason}")
                out += [_as_peer(Measurement(c, "error", reason=reason)) for c in todo[i:]]
                worker = None
                break
            m = _as_peer(m)
            out.append(m)
            log(_progress(i, len(todo), t0, m, ours.get(case.case_id)))
        return PeerRun(source, out, len(todo) - len(out), absent, minutes, cache)
    finally:
        if worker is not None:
            worker.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _as_peer(m: Measurement) -> Measurement:
    m.case = replace(m.case, kind="peer", host=False)
    return m


def _progress(i: int, n: int, t0: float, m: Measurement, ours_us: float | None) -> str:
    c = m.case
    head = f"[peer {i + 1:>4}/{n} {time.monotonic() - t0:6.0f} s] {c.name} {c.K}x{c.N} M={c.M}"
    if m.status != "ok":
        return f"{head}: {m.status.upper()} {m.reason}"
    vs = f" | vs GemLite {m.us / ours_us:.2f}x (gemlite {ours_us:.2f} us)" if ours_us else ""
    warm = f" | warm {m.warm_s:.1f}s" if m.warm_s and m.warm_s > 1.0 else ""
    return f"{head}: {m.us:9.2f} us (IQR {100 * (m.rel_iqr or 0):.1f}%){vs}{warm}"
