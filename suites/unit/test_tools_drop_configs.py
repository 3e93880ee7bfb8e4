"""tools/drop_configs.py drops exactly the entries of the named batch sizes (and families)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "tools" / "drop_configs.py"
_spec = importlib.util.spec_from_file_location("drop_configs", _PATH)
drop_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drop_configs)

_CFG = {"BLOCK_N": 64}


def _cache() -> dict:
    return {
        "GEMV": {"M=1,N=8,K=8,group=8": _CFG, "M=16,N=8,K=8,group=8": _CFG},
        "GEMM_SPLITK": {"M=2,N=8,K=8,group=8": _CFG, "M=1,N=16,K=8,group=8": _CFG, "M=12,N=8": _CFG},
    }


def test_drops_only_the_named_batch_sizes_not_their_prefixes():
    cache = _cache()
    assert drop_configs.drop(cache, {1}, None) == 2
    assert cache == {"GEMV": {"M=16,N=8,K=8,group=8": _CFG},
                     "GEMM_SPLITK": {"M=2,N=8,K=8,group=8": _CFG, "M=12,N=8": _CFG}}  # fmt: skip


def test_families_restrict_what_is_dropped(tmp_path):
    path = tmp_path / "cache.json"
    path.write_text(json.dumps(_cache()))
    assert drop_configs.main([str(path), "--m", "1,2", "--families", "GEMM_SPLITK"]) == 0
    left = json.loads(path.read_text())
    assert set(left["GEMV"]) == {"M=1,N=8,K=8,group=8", "M=16,N=8,K=8,group=8"}
    assert set(left["GEMM_SPLITK"]) == {"M=12,N=8"}
