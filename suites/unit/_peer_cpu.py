"""Runs the public GemLite release on the CPU through the Triton interpreter, for test_perf_peer.py.

``python suites/unit/_peer_cpu.py SPEC.json OUT.pt`` in a process whose ``gemlite`` is the peer (a
shim directory first on PYTHONPATH, as in its perf worker). The peer asks CUDA and Triton's GPU
driver for facts at import (compute capability, SM count, shared memory, the target); a CPU build of
torch has no CUDA and the interpreter no driver, so this script answers those questions with an
H100-like sm_90 (test-only stand-ins: the peer's kernels then run in the interpreter on CPU tensors).
For each case of SPEC it builds the peer's layer with `harness.peer.build_peer_layer` from the
weights gemlite's measurer draws (seeded ``nn.Linear``), runs it on seeded x and saves W, x and y;
then it times one case through `harness.peer.PeerMeasurer` on the CPU (build, copies, warm-up,
output checks, host-clock timer) and saves that measurement's status.
"""

import json
import sys
import types
from pathlib import Path

from harness.peer_worker import install_vocabulary

install_vocabulary()  # before anything imports harness.perf_cases (see harness.peer_worker)

import torch  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402

_PROPS = types.SimpleNamespace(name="cpu triton interpreter", multi_processor_count=4, total_memory=1 << 34)
torch.cuda.get_device_capability = lambda *a, **k: (9, 0)
torch.cuda.get_device_properties = lambda *a, **k: _PROPS


class _InterpreterDriver:
    """What the peer asks Triton's driver at import and in its pruners, answered for sm_90."""

    class utils:  # noqa: N801 - mirrors driver.active.utils
        @staticmethod
        def get_device_properties(device):
            return {"max_shared_mem": 232448, "multiprocessor_count": 4}

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_current_device(self):
        return 0

    def get_benchmarker(self):  # autotuning with several configs: any one will do on the CPU
        def bench(fn, quantiles=None, **kw):
            fn()
            return [1.0, 1.0, 1.0] if quantiles else 1.0

        return bench


driver.set_active(_InterpreterDriver())


def main(spec_path: str, out_path: str) -> int:
    import gemlite  # the peer
    from harness.gpu import GpuInfo
    from harness.peer import PeerMeasurer, build_peer_layer
    from harness.perf_cases import Case, FormatEntry
    from harness.perf_run import RunSettings
    from harness.timing import TimingConfig

    spec = json.loads(Path(spec_path).read_text())
    gemlite.set_autotune(False)  # one heuristic config per family: no benchmarking in the interpreter
    out = {"gemlite": str(Path(gemlite.__file__).parent), "cases": {}}
    for c in spec["cases"]:
        entry = FormatEntry(c["label"], c["helper"], c["kwargs"])
        torch.manual_seed(c["seed"])
        linear = torch.nn.Linear(c["K"], c["N"], bias=False, dtype=torch.float16)
        W = linear.weight.detach().clone()
        layer = build_peer_layer(entry, linear)
        for M in c["M"]:
            x = torch.randn(M, c["K"], generator=torch.Generator().manual_seed(c["seed"] + M)).half()
            out["cases"][f"{c['label']} M{M}"] = {"W": W, "x": x, "y": layer(x)}
    # The real measurer's path, on the CPU (an L2 of one byte: the minimum of two copies).
    m = spec["measure"]
    entry = FormatEntry(m["label"], m["helper"], m["kwargs"])
    settings = RunSettings(
        timing=TimingConfig(replays=3, warmup_replays=0, target_replay_ms=0.01),
        autotune="off",
        config_cache=False,
    )
    measurer = PeerMeasurer(
        settings, GpuInfo("cpu", "h100-sxm", 1, 1, 0, "n/a", (9, 0)), lambda s: None, "cpu"
    )
    measurer.start()
    res = measurer.measure(Case("gemlite", entry.label, m["K"], m["N"], 1, entry))
    skip = measurer.measure(
        Case("gemlite", "A16W4_MXFP", m["K"], m["N"], 1, FormatEntry("A16W4_MXFP", "A16W4_MXFP"))
    )
    measurer.finish()
    out["measure"] = {"status": res.status, "reason": res.reason + res.detail, "n_copies": res.n_copies,
                      "notes": res.notes, "skip": [skip.status, skip.reason]}  # fmt: skip
    torch.save(out, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
