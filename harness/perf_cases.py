"""Performance suites as data: which formats, shapes and batch sizes a GPU's suite times.

A suite file (``suites/perf/<gpu>.json``) lists format entries (label, helper, kwargs), layer shapes
``[K, N]``, batch sizes ``M``, the cuBLAS references timed beside them, a small ``quick`` subset and
a small ``host`` subset (the cases whose eager host time is measured too, against
``torch.nn.functional.linear``: see `HostSubset`). `load_suite` validates it against the vocabulary
(``gemlite/formats.py``) so a typo fails before a GPU minute is spent. `Suite.cases` expands it into
`Case` objects in the order they are run: shape by shape (so one shape's weights are built once),
references first (the report divides by cuBLAS fp16), then each format over every M.

This module also holds the traffic model: `case_bytes` is the *minimum* HBM traffic of a call (packed
weight + scales/zeros + x + y, each read or written once; the weight's part comes from its scheme in
``gemlite.schemes``), `case_flops` is ``2 * M * N * K``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from gemlite.formats import Format, WeightKind, WeightSpec, Zeros, get_format

try:
    from gemlite.schemes import act_scheme, weight_scheme
except ModuleNotFoundError as e:  # an A/B base revision older than gemlite.schemes: see `weight_bytes`
    if e.name != "gemlite.schemes":
        raise
    act_scheme = weight_scheme = None

__all__ = [
    "REFERENCES",
    "SUITES_DIR",
    "Case",
    "FormatEntry",
    "HOST_REFERENCE",
    "HostSubset",
    "Reference",
    "Selection",
    "Suite",
    "case_bytes",
    "case_flops",
    "load_suite",
    "parse_selection",
    "suite_path",
    "weight_bytes",
]

ROOT = Path(__file__).resolve().parent.parent
SUITES_DIR = ROOT / "suites" / "perf"

_ACT_DTYPES = {"float16": 2, "bfloat16": 2}
_TOP_KEYS = {"suite", "description", "_how", "formats", "shapes", "M", "references", "quick", "host"}
_ENTRY_KEYS = {"label", "helper", "kwargs", "act_dtype", "init"}
_HOST_KEYS = {"_why", "formats", "shapes", "M"}


# --------------------------------------------------------------------------------------------
# cuBLAS references
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """A vendor-library product timed beside gemlite on the same K, N, M.

    weight_bytes / act_bytes / out_bytes: bytes per element of W, x and y. scale_bytes: bytes per
    per-row scale of x and of W (fp8 row-wise scaling), 0 if none.
    """

    name: str
    description: str
    weight_bytes: int
    act_bytes: int
    out_bytes: int
    scale_bytes: int = 0


REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in (
        Reference("cublas_fp16", "torch.nn.functional.linear, fp16 (cuBLAS)", 2, 2, 2),
        Reference("cublas_bf16", "torch.nn.functional.linear, bf16 (cuBLAS)", 2, 2, 2),
        Reference(
            "cublas_fp8_scaled_mm", "torch._scaled_mm, e4m3 x e4m3, per-row scales, bf16 out", 1, 1, 2, 4
        ),
        Reference("cublas_int8_int_mm", "torch._int_mm, int8 x int8 -> int32", 1, 1, 4),
    )
}

#: The reference whose eager host time the host subset compares gemlite's with (the goal: a gemlite
#: forward costs the host at most 1.5x what torch.nn.functional.linear costs it).
HOST_REFERENCE = "cublas_fp16"


# --------------------------------------------------------------------------------------------
# Suite data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormatEntry:
    """One format of a suite.

    label: the report label, which must equal the vocabulary's ``Format.label`` for this helper and
    kwargs (e.g. "A16W4_HQQ_INT/g128"). helper: the processor class in ``gemlite.helper`` (also the
    format's name in ``gemlite.formats.FORMATS``). kwargs: passed to ``from_linear`` (HQQ:
    ``group_size``). act_dtype: activation (and output) dtype, "float16" or "bfloat16". init: passed
    to the processor's constructor besides device and dtype (``A8W8_MXFP_dynamic``: ``post_scale``).
    """

    label: str
    helper: str
    kwargs: dict = field(default_factory=dict, hash=False, compare=False)
    act_dtype: str = "float16"
    init: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def format(self) -> Format:
        """The vocabulary's Format this entry builds."""
        fmt = get_format(self.helper)
        if "group_size" in self.kwargs:
            fmt = fmt.with_group_size(self.kwargs["group_size"])
        return fmt

    def to_dict(self) -> dict:
        d = {
            "label": self.label,
            "helper": self.helper,
            "kwargs": dict(self.kwargs),
            "act_dtype": self.act_dtype,
        }
        if self.init:  # only where given, so the other entries' records (and keys) are unchanged
            d["init"] = dict(self.init)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FormatEntry:
        return cls(
            d["label"], d["helper"], dict(d.get("kwargs", {})), d.get("act_dtype", "float16"),
            dict(d.get("init", {})),
        )  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One timed product: a gemlite format (kind "gemlite"), a reference (kind "ref") or the public
    GemLite release on one of our formats (kind "peer", `harness.peer`) at K, N, M.

    name: the format label or the reference name. entry: the FormatEntry (gemlite and peer cases).
    host: the case is in the suite's host subset: after its kernel time, its eager host time is
    measured too (`harness.perf_run`). Not part of the case's identity.
    """

    kind: str
    name: str
    K: int
    N: int
    M: int
    entry: FormatEntry | None = field(default=None, compare=False, hash=False)
    host: bool = field(default=False, compare=False, hash=False)

    @property
    def case_id(self) -> str:
        """Stable identity used by results, baselines and A/B: ``"A16W4_HQQ_INT/g128 4096x4096 M1"``
        (K x N; no '|', so it sits in a markdown table cell as is). A peer case's starts with "peer ",
        so it never meets its gemlite case's in a results file or a baseline."""
        peer = "peer " if self.kind == "peer" else ""
        return f"{peer}{self.name} {self.K}x{self.N} M{self.M}"

    @property
    def test_id(self) -> str:
        """The pytest parameter id (no '/' or '|', which read badly on a command line)."""
        return f"{self.name.replace('/', '_')}-{self.K}x{self.N}-M{self.M}"

    @property
    def build_key(self) -> tuple:
        """Cases with the same build key share built weights (all M of one format and shape)."""
        entry = json.dumps(self.entry.to_dict(), sort_keys=True) if self.entry else None
        return (self.kind, self.name, self.K, self.N, entry)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "name": self.name, "K": self.K, "N": self.N, "M": self.M, "host": self.host}
        if self.entry is not None:
            d["entry"] = self.entry.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Case:
        entry = FormatEntry.from_dict(d["entry"]) if d.get("entry") else None
        host = bool(d.get("host", False))  # results written before the host subset existed lack it
        return cls(d["kind"], d["name"], int(d["K"]), int(d["N"]), int(d["M"]), entry, host)


@dataclass(frozen=True)
class Selection:
    """A subset of a suite: None in a field means "all of them".

    formats: labels. shapes: (K, N) pairs. ms: batch sizes. refs: time the cuBLAS references.
    """

    formats: tuple[str, ...] | None = None
    shapes: tuple[tuple[int, int], ...] | None = None
    ms: tuple[int, ...] | None = None
    refs: bool = True

    @property
    def is_everything(self) -> bool:
        return self.formats is None and self.shapes is None and self.ms is None and self.refs


@dataclass(frozen=True)
class HostSubset:
    """The cases whose eager host time is measured: gemlite formats (labels) x shapes x M, each M and
    shape one of the suite's; `HOST_REFERENCE` (cuBLAS fp16) is measured on the same K, N, M.

    A host-only format (one the suite's ``formats`` lack, such as A16W16) is timed only here.
    """

    formats: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    ms: tuple[int, ...]

    def covers(self, kind: str, name: str, K: int, N: int, M: int) -> bool:
        """Whether the product `name` of `kind` ("gemlite" | "ref") at K, N, M is in the subset."""
        if (K, N) not in self.shapes or M not in self.ms:
            return False
        return name in self.formats if kind == "gemlite" else name == HOST_REFERENCE


@dataclass(frozen=True)
class Suite:
    """A validated suite file. See the module docstring and `load_suite`.

    formats: the formats timed over every shape and M. host_formats: formats timed only in the host
    subset `host` (None: the suite measures no eager host time).
    """

    name: str
    description: str
    formats: tuple[FormatEntry, ...]
    shapes: tuple[tuple[int, int], ...]
    ms: tuple[int, ...]
    references: tuple[str, ...]
    quick: Selection
    host: HostSubset | None = None
    host_formats: tuple[FormatEntry, ...] = ()

    def cases(self, quick: bool = False, selection: Selection | None = None) -> list[Case]:
        """Expand into cases in run order: for each shape, references over all M, then formats (the
        host-only ones last).

        quick: start from the suite's ``quick`` subset; the host subset is added to it (so a quick
        run shows the eager host time too). selection: narrow both further (validated against the
        suite: unknown labels/shapes/M raise ValueError). A case of the host subset has ``host``
        set.
        """
        base = self.quick if quick else Selection()
        sel = selection or Selection()
        self._check_selection(sel)
        main_labels = {f.label for f in self.formats}
        products = [("ref", r, None) for r in self.references] + [
            ("gemlite", f.label, f) for f in self.formats + self.host_formats
        ]
        out: list[Case] = []
        for K, N in self.shapes:
            if not _pick(sel.shapes, (K, N)):
                continue
            for kind, name, entry in products:
                if not (sel.refs if kind == "ref" else _pick(sel.formats, name)):
                    continue
                in_base = base.refs if kind == "ref" else name in main_labels and _pick(base.formats, name)
                for M in self.ms:
                    if not _pick(sel.ms, M):
                        continue
                    host = self.host is not None and self.host.covers(kind, name, K, N, M)
                    if host or (in_base and _pick(base.shapes, (K, N)) and _pick(base.ms, M)):
                        out.append(Case(kind, name, K, N, M, entry, host=host))
        return out

    def entry(self, label: str) -> FormatEntry:
        for f in self.formats + self.host_formats:
            if f.label == label:
                return f
        raise ValueError(
            f"format: {label!r} is not in suite {self.name}; it has "
            f"{[f.label for f in self.formats + self.host_formats]}"
        )

    def _check_selection(self, sel: Selection) -> None:
        labels = [f.label for f in self.formats + self.host_formats]
        for what, chosen, known in (
            ("--formats", sel.formats, labels),
            ("--shapes", sel.shapes, list(self.shapes)),
            ("--m", sel.ms, list(self.ms)),
        ):
            if chosen is None:
                continue
            unknown = [c for c in chosen if c not in known]
            if unknown:
                shown = [f"{k[0]}x{k[1]}" if isinstance(k, tuple) else k for k in known]
                bad = [f"{k[0]}x{k[1]}" if isinstance(k, tuple) else k for k in unknown]
                raise ValueError(f"{what}: {bad} not in suite {self.name}; it has {shown}")


def _pick(chosen, item) -> bool:
    return chosen is None or item in chosen


def suite_path(name: str) -> Path:
    """``suites/perf/<name>.json``."""
    return SUITES_DIR / f"{name}.json"


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite file.

    Raises FileNotFoundError when it is missing and ValueError (naming the file and the field) when
    anything is off: unknown keys, a helper the vocabulary lacks, a label that does not match the
    format the helper and kwargs build, a shape whose K is not a multiple of 32 or of a group size,
    non-positive or duplicate M, a quick subset naming something the suite does not have, a host
    subset whose formats, shapes or M the suite lacks (or a suite with a host subset but without
    cuBLAS fp16 among its references, the eager time it compares with).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None

    def bad(msg: str) -> ValueError:
        return ValueError(f"{path}: {msg}")

    if not isinstance(raw, dict):
        raise bad("expected a JSON object at the top level")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("suite", "formats", "shapes", "M"):
        if key not in raw:
            raise bad(f"missing key {key!r}")

    formats = tuple(_parse_entry(bad, i, e) for i, e in enumerate(_list(bad, raw, "formats")))
    labels = [f.label for f in formats]
    if len(set(labels)) != len(labels):
        raise bad(f"formats: duplicate labels in {labels}")

    shapes = tuple(_parse_shape(bad, s) for s in _list(bad, raw, "shapes"))
    if len(set(shapes)) != len(shapes):
        raise bad("shapes: duplicates")
    for K, _N in shapes:
        for f in formats:
            g = f.format.weight.group_size
            if f.format.weight.kind is WeightKind.HQQ and g is not None and K % g:
                raise bad(f"shapes: K={K} is not a multiple of {f.label}'s group size {g}")

    ms = tuple(_parse_m(bad, m) for m in _list(bad, raw, "M"))
    if len(set(ms)) != len(ms):
        raise bad("M: duplicates")

    refs = tuple(raw.get("references", ()))
    for r in refs:
        if r not in REFERENCES:
            raise bad(f"references: unknown {r!r}; known: {sorted(REFERENCES)}")

    q = raw.get("quick", {})
    if not isinstance(q, dict) or set(q) - {"formats", "shapes", "M", "references"}:
        raise bad("quick: expected an object with some of formats, shapes, M, references")
    quick = Selection(
        formats=tuple(q["formats"]) if "formats" in q else None,
        shapes=tuple(_parse_shape(bad, s) for s in q["shapes"]) if "shapes" in q else None,
        ms=tuple(_parse_m(bad, m) for m in q["M"]) if "M" in q else None,
        refs=bool(q.get("references", True)),
    )
    host, host_formats = (
        _parse_host(bad, raw["host"], formats, shapes, ms, refs) if "host" in raw else (None, ())
    )
    suite = Suite(
        name=str(raw["suite"]),
        description=str(raw.get("description", "")),
        formats=formats,
        shapes=shapes,
        ms=ms,
        references=refs,
        quick=quick,
        host=host,
        host_formats=host_formats,
    )
    try:
        suite._check_selection(quick)
    except ValueError as e:
        raise bad(f"quick: {e}") from None
    host_only = [f for f in quick.formats or () if f not in labels]
    if host_only:
        raise bad(f"quick: {host_only} are timed only in the host subset (which every quick run adds)")
    return suite


def _parse_host(bad, h, formats, shapes, ms, refs) -> tuple[HostSubset, tuple[FormatEntry, ...]]:
    """The ``host`` object: formats (a label of the suite's formats, or a full entry for a format
    timed only here), shapes and M (the suite's own), validated like the rest of the file."""
    if not isinstance(h, dict):
        raise bad(f"host: expected an object with formats, shapes and M, got {h!r}")
    unknown = set(h) - _HOST_KEYS
    missing = {"formats", "shapes", "M"} - set(h)
    if unknown or missing:
        raise bad(f"host: expected keys formats, shapes, M (optional _why); got {sorted(h)}")
    if HOST_REFERENCE not in refs:
        raise bad(f"host: the eager host time is compared with {HOST_REFERENCE}, which references lacks")
    labels = [f.label for f in formats]
    chosen: list[str] = []
    extra: list[FormatEntry] = []
    for i, f in enumerate(_list(bad, h, "formats", "host.formats")):
        if isinstance(f, str):
            if f not in labels:
                raise bad(
                    f"host.formats[{i}]: {f!r} is not one of the suite's formats {labels}; a format timed "
                    "only here needs a full entry {label, helper, kwargs}"
                )
            chosen.append(f)
        else:
            entry = _parse_entry(bad, i, f, where="host.formats")
            if entry.label in labels:
                raise bad(
                    f"host.formats[{i}]: {entry.label!r} is a suite format already; name it by its label"
                )
            chosen.append(entry.label)
            extra.append(entry)
    if len(set(chosen)) != len(chosen):
        raise bad(f"host.formats: duplicates in {chosen}")
    hshapes = tuple(_parse_shape(bad, s) for s in _list(bad, h, "shapes", "host.shapes"))
    for s in hshapes:
        if s not in shapes:
            raise bad(f"host.shapes: {s[0]}x{s[1]} is not one of the suite's shapes")
    for K, _N in hshapes:
        for f in extra:
            g = f.format.weight.group_size
            if f.format.weight.kind is WeightKind.HQQ and g is not None and K % g:
                raise bad(f"host.shapes: K={K} is not a multiple of {f.label}'s group size {g}")
    hms = tuple(_parse_m(bad, m) for m in _list(bad, h, "M", "host.M"))
    for m in hms:
        if m not in ms:
            raise bad(f"host.M: {m} is not one of the suite's M {list(ms)}")
    if len(set(hshapes)) != len(hshapes) or len(set(hms)) != len(hms):
        raise bad("host: duplicate shapes or M")
    return HostSubset(tuple(chosen), hshapes, hms), tuple(extra)


def _list(bad, raw: dict, key: str, where: str | None = None) -> list:
    v = raw[key]
    if not isinstance(v, list) or not v:
        raise bad(f"{where or key}: expected a non-empty list, got {v!r}")
    return v


def _parse_entry(bad, i: int, e, where: str = "formats") -> FormatEntry:
    at = f"{where}[{i}]"
    if not isinstance(e, dict):
        raise bad(f"{at}: expected an object, got {e!r}")
    unknown = set(e) - _ENTRY_KEYS
    if unknown or "label" not in e or "helper" not in e:
        raise bad(f"{at}: needs label and helper (optional kwargs, act_dtype, init); got keys {sorted(e)}")
    kwargs = e.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise bad(f"{at}.kwargs: expected an object, got {kwargs!r}")
    init = e.get("init", {})
    if not isinstance(init, dict):
        raise bad(f"{at}.init: expected an object, got {init!r}")
    act = e.get("act_dtype", "float16")
    if act not in _ACT_DTYPES:
        raise bad(f"{at}.act_dtype: expected one of {sorted(_ACT_DTYPES)}, got {act!r}")
    entry = FormatEntry(e["label"], e["helper"], dict(kwargs), act, dict(init))
    try:
        fmt = entry.format
    except ValueError as err:
        raise bad(f"{at} ({e['helper']}): {err}") from None
    if fmt.label != entry.label:
        raise bad(f"{at}: label {entry.label!r} does not match the format it builds, {fmt.label!r}")
    return entry


def _parse_shape(bad, s) -> tuple[int, int]:
    if not (isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(v, int) and v > 0 for v in s)):
        raise bad(f"shapes: expected [K, N] with positive integers, got {s!r}")
    K, N = int(s[0]), int(s[1])
    if K % 32:
        raise bad(f"shapes: K={K} is not a multiple of 32 (gemlite packs codes along K in 32s)")
    return K, N


def _parse_m(bad, m) -> int:
    if not isinstance(m, int) or isinstance(m, bool) or m <= 0:
        raise bad(f"M: expected positive integers, got {m!r}")
    return m


def parse_selection(formats: str | None, shapes: str | None, ms: str | None, refs: bool = True) -> Selection:
    """Build a Selection from command-line strings.

    formats: comma-separated labels ("A16W4_HQQ_INT/g128,A16W8_INT8"). shapes: "KxN,KxN". ms:
    "1,16,256". Raises ValueError naming the option on malformed input.
    """

    def split(s: str) -> list[str]:
        return [p.strip() for p in s.split(",") if p.strip()]

    f = tuple(split(formats)) if formats else None
    sh = None
    if shapes:
        out = []
        for p in split(shapes):
            try:
                k, n = p.lower().split("x")
                out.append((int(k), int(n)))
            except ValueError:
                raise ValueError(f"--shapes: expected KxN pairs such as 4096x14336, got {p!r}") from None
        sh = tuple(out)
    m = None
    if ms:
        try:
            m = tuple(int(p) for p in split(ms))
        except ValueError:
            raise ValueError(f"--m: expected comma-separated integers such as 1,16,256, got {ms!r}") from None
    return Selection(formats=f, shapes=sh, ms=m, refs=refs)


# --------------------------------------------------------------------------------------------
# Traffic and work
# --------------------------------------------------------------------------------------------


def weight_bytes(fmt: Format, K: int, N: int, scale_bytes: int = 2) -> int:
    """Bytes of a stored weight: packed codes plus scales and zeros, for a K x N layer.

    The weight's scheme owns the count (``gemlite.schemes.weight_scheme(kind).weight_bytes``).
    scale_bytes: bytes of one HQQ scale or float zero (the helpers store them in the activation
    dtype, 2 bytes); INT8/FP8/TERNARY channel scales are fp32. Kinds without a scheme yet are counted
    by `_weight_bytes_without_scheme`.
    """
    w = fmt.weight
    if weight_scheme is None or w.block_n > 1:
        return _weight_bytes_without_scheme(w, K, N, scale_bytes)
    return weight_scheme(w.kind).weight_bytes(w, K, N, scale_bytes)


# TEMPORARY: the block-scaled 8-bit variant (block_n > 1), whose INT8/FP8 scheme would count
# channel-wise scales, is counted here until its scheme exists and owns its byte count.
def _weight_bytes_without_scheme(w: WeightSpec, K: int, N: int, scale_bytes: int) -> int:
    """TEMPORARY: the perf harness's own byte formulas, from before the schemes owned the count.

    Used for block-scaled INT8/FP8 (one fp32 scale per 128 x 128 block), and for every kind when the
    gemlite imported predates ``gemlite.schemes`` (the base revision of an A/B run, whose worker runs
    this harness; such a revision runs no microscaled format).
    """
    total = math.ceil(N * K * w.bits / 8)
    if w.kind is WeightKind.HQQ:
        groups = N * (K // (w.group_size or K))
        total += groups * scale_bytes
        if w.zeros is Zeros.FLOAT:
            total += groups * scale_bytes
    elif w.kind in (WeightKind.INT8, WeightKind.FP8):
        if w.block_n > 1:
            total += math.ceil(N / w.block_n) * math.ceil(K / (w.group_size or K)) * 4
        elif getattr(w, "scaled", True):  # codes without scales (A8W8_INT8 / A8W8_FP8): no bytes
            total += N * 4
    elif w.kind is WeightKind.TERNARY:
        total += N * 4
    return total


def case_flops(case: Case) -> int:
    """``2 * M * N * K``: one multiply and one add per weight element per row of x."""
    return 2 * case.M * case.N * case.K


def case_bytes(case: Case) -> int:
    """Minimum HBM traffic of one call: the weight read once, x read once, y written once.

    gemlite cases: `weight_bytes` + the activation operand + M*N*2 (y in the activation dtype). The
    activation operand is M*K*2 (fp16/bf16 x) for weight-only formats; a dynamic format's activation
    scheme counts its own (``gemlite.schemes.activation``: x read once by the quantizer, plus the
    int8/e4m3 codes written and read back and the fp32 row scales).
    References: from their element sizes (plus fp8 per-row scales of x and W).
    """
    M, N, K = case.M, case.N, case.K
    if case.kind == "ref":
        r = REFERENCES[case.name]
        return N * K * r.weight_bytes + M * K * r.act_bytes + M * N * r.out_bytes + (M + N) * r.scale_bytes
    entry = case.entry
    if entry is None:
        raise ValueError(f"case: gemlite case {case.case_id} carries no format entry")
    act = _ACT_DTYPES[entry.act_dtype]
    fmt = entry.format
    x_bytes = M * K * act
    if act_scheme is not None and fmt.act.is_dynamic:
        x_bytes = act_scheme(fmt.act.kind).act_bytes(M, K, act, fmt.act.group_size)
    return weight_bytes(fmt, K, N, scale_bytes=act) + x_bytes + M * N * act
