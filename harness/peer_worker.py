"""The peer's worker process: ``python -m harness.peer_worker worker`` (started by `harness.peer`).

In this process ``gemlite`` is the public GemLite release (the shim directory first on PYTHONPATH
links it). The harness describes a case with this project's vocabulary, ``gemlite.formats``, which
the peer has no module of. So, before any harness module is imported, `install_vocabulary` loads
this repository's ``gemlite/formats.py`` (data only: it imports nothing of gemlite) under the name
``gemlite.formats``, without importing the peer's package, and marks ``gemlite.schemes`` absent so
the harness's fallback for revisions without schemes applies (`harness.perf_cases`). The peer's own
modules (``gemlite.core``, ``gemlite.helper``, ...) are untouched: only the peer's measurer imports
them, once it starts. Then the A/B worker loop runs with the peer's measurers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def install_vocabulary() -> None:
    """Make ``gemlite.formats`` this repository's vocabulary in a process whose ``gemlite`` is the
    peer (see the module docstring). Raises RuntimeError when ``gemlite`` was imported already (too
    late to put the vocabulary beside it) or the vocabulary cannot be loaded."""
    if "gemlite.formats" in sys.modules:
        return
    if "gemlite" in sys.modules:
        raise RuntimeError("install_vocabulary: gemlite was imported already; call it before anything else")
    path = ROOT / "gemlite" / "formats.py"
    spec = importlib.util.spec_from_file_location("gemlite.formats", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"install_vocabulary: cannot load the vocabulary from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gemlite.formats"] = module  # before exec: dataclasses look their module up there
    spec.loader.exec_module(module)
    sys.modules["gemlite.schemes"] = None  # "import gemlite.schemes" -> ModuleNotFoundError


def main(argv: list[str]) -> int:
    if argv != ["worker"]:
        print("usage: python -m harness.peer_worker worker   (harness.peer starts it)", file=sys.stderr)
        return 2
    install_vocabulary()
    # NOTE: imported here, not at the top: these import harness.perf_cases, whose
    # "from gemlite.formats import ..." needs the vocabulary installed first.
    from harness import ab, peer

    return ab.worker_main(measurers=(peer.FakePeerMeasurer, peer.PeerMeasurer))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
