"""The harness's one way to ask git: the commit a report or baseline was made from, and the plain git
calls A/B mode makes (its temporary worktree). Read-only except for what A/B itself asks for."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["ROOT", "commit", "run"]

ROOT = Path(__file__).resolve().parent.parent


def run(repo: str | os.PathLike, *args: str, timeout: float = 120) -> str:
    """``git -C repo *args``'s stripped stdout. Raises RuntimeError (with git's message) when git fails,
    OSError when there is no git to run."""
    r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"git {' '.join(args)} failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip()


def commit(root: str | os.PathLike = ROOT, *, short: bool = False) -> tuple[str, bool | None]:
    """``(sha, dirty)`` of the working tree at `root` (tracked files only); ``("unknown", None)`` outside
    a git checkout. ``GEMLITE_PERF_COMMIT`` overrides the sha (a GPU machine may get the tree without
    .git); `short` gives git's abbreviated sha."""
    override = os.environ.get("GEMLITE_PERF_COMMIT")
    if override:
        return override, None
    try:
        sha = run(root, "rev-parse", *(("--short",) if short else ()), "HEAD", timeout=20)
        dirty = run(root, "status", "--porcelain", "--untracked-files=no", timeout=20)
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return "unknown", None
    return sha or "unknown", bool(dirty)
