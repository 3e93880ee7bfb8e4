"""Decode tokens/s of a ~1B-parameter Llama (random weights) in fp16 and in each gemlite weight format,
eager and under torch.compile, as a markdown table.

    PYTHONPATH=$PWD python tools/tokens_per_s.py --formats fp16 A16W8_INT8 A16W4_HQQ_INT --tokens 64 \\
        --max-minutes 4

The model: transformers' ``LlamaForCausalLM`` from a config (hidden 2048, 16 layers, intermediate
8192, 32 heads of 64 with 8 KV heads, vocab 32000: 1.1B parameters, 0.97B of them in the linears that
gemlite converts), random weights (nothing is downloaded), fp16. Each format is the same fp16 model
with every linear but ``lm_head`` converted by `gemlite.helper.patch_model` (HQQ formats with group
size ``--group-size``, round-to-nearest: the quantizer does not change the speed, and hqq's optimizer
would cost minutes at this size). ``fp16`` is the unconverted model (cuBLAS through torch).

What is timed, per (format, mode): greedy ``generate`` of a batch of ``--batch`` random prompts of
``--prompt`` tokens with ``max_new_tokens = min_new_tokens = --tokens`` (so every run makes the same
number of tokens), the median of ``--repeats`` runs after a warmup (two runs: the first also
autotunes gemlite's kernels for the prefill and decode M, or compiles). Decode tokens/s is
``batch * (tokens - 1) / (t(tokens) - t(1))``: the one-token run (the prefill and its first token)
is subtracted, so prefill time is not counted; ``end-to-end`` is ``batch * tokens / t(tokens)``;
``graphs`` is how many graphs dynamo compiled during the warmup (0 in eager mode; a compile run that
compiled none is reported as failed, since transformers would have run it eagerly).

Modes:
* ``eager``: ``generate`` with its default dynamic KV cache, no compilation.
* ``compile``: Hugging Face's compiled decoding: ``cache_implementation="static"`` with
  ``CompileConfig(fullgraph=True, dynamic=False, mode="reduce-overhead", backend="inductor")``: the
  decode step's forward goes through ``torch.compile`` and is replayed as a CUDA graph; gemlite's
  matmul is one custom-op node in it. ``--compile-backend cudagraphs`` (no mode) captures the same
  CUDA graphs without inductor's code generation: a compile of seconds instead of about a minute per
  format. The eager run of the same format comes first, so gemlite's configs are tuned before any
  graph is captured (nothing is tuned during capture).

``--max-minutes`` is a budget: a (format, mode) that would start after it is spent is reported as
skipped, and the table is printed anyway. ``--tiny`` swaps in a 2-layer, hidden-64 config (a CPU
smoke test: with ``TRITON_INTERPRET=1``, on the CPU; the figures mean nothing there).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time

import torch

FULL = dict(
    vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
    num_key_value_heads=8, max_position_embeddings=4096,
)  # fmt: skip
TINY = dict(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256,
)  # fmt: skip
FORMATS = (
    "fp16", "A16W16", "A16W8_INT8", "A16W8_FP8", "A16W8_HQQ_INT", "A16W4_HQQ_INT", "A16W2_HQQ_INT",
    "A16W1_HQQ_INT", "A16W158_INT",
)  # fmt: skip
MODES = ("eager", "compile")


def build_model(tiny: bool, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **(TINY if tiny else FULL), tie_word_embeddings=False, pad_token_id=0, bos_token_id=None,
        eos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    return model.to(torch.float16).eval()


def patched(base, fmt: str, device: str, group_size: int):
    """A copy of `base` with `fmt`'s layers (``fp16``: the copy as is)."""
    from gemlite import helper

    model = copy.deepcopy(base)
    if fmt != "fp16":
        processor = getattr(helper, fmt)
        kw = {"group_size": group_size, "optimize": False} if "HQQ" in fmt else {}
        helper.patch_model(model, device, processor, skip_modules=["lm_head"], **kw)
    return model


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _generate_kwargs(mode: str, backend: str, device: str) -> dict:
    from transformers import CompileConfig

    if mode == "eager":
        return {"disable_compile": True}
    config = CompileConfig(fullgraph=True, dynamic=False, mode=compile_mode(backend, device), backend=backend)
    if not device.startswith("cuda"):
        # transformers compiles only on accelerators; the CPU smoke test asks for it explicitly.
        config._compile_all_devices = True
    return {"cache_implementation": "static", "compile_config": config}


def compile_mode(backend: str, device: str) -> str | None:
    """inductor's "reduce-overhead" (CUDA graphs) on a GPU; other backends take no mode (``cudagraphs``
    captures CUDA graphs itself, without inductor's code generation: a quicker compile)."""
    return "reduce-overhead" if backend == "inductor" and device.startswith("cuda") else None


def time_generate(model, ids, new_tokens: int, repeats: int, gen_kw: dict, device: str) -> float:
    """Median seconds of `repeats` greedy generate calls making exactly `new_tokens` tokens."""
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
                **gen_kw,
            )  # fmt: skip
        _sync(device)
        times.append(time.perf_counter() - t0)
        if out.shape[1] != ids.shape[1] + new_tokens:
            raise RuntimeError(f"generate made {out.shape[1] - ids.shape[1]} tokens, expected {new_tokens}")
    return statistics.median(times)


def measure(model, ids, tokens: int, repeats: int, mode: str, backend: str, device: str) -> dict:
    from torch._dynamo.utils import counters

    gen_kw = _generate_kwargs(mode, backend, device)
    counters.clear()
    t_warm = time.perf_counter()
    time_generate(model, ids, tokens, 2, gen_kw, device)  # autotune / compile / capture
    warmup_s = time.perf_counter() - t_warm
    # How many graphs dynamo compiled: 0 in compile mode would mean generate silently ran eagerly.
    graphs = counters["stats"]["unique_graphs"]
    if mode == "compile" and graphs == 0:
        raise RuntimeError("generate compiled no graph (transformers did not take the compiled path)")
    t_full = time_generate(model, ids, tokens, repeats, gen_kw, device)
    t_one = time_generate(model, ids, 1, repeats, gen_kw, device)
    batch = ids.shape[0]
    decode = batch * (tokens - 1) / (t_full - t_one) if t_full > t_one and tokens > 1 else float("nan")
    return {"decode": decode, "e2e": batch * tokens / t_full, "warmup_s": warmup_s, "graphs": graphs}


def render(rows: list[dict], meta: str) -> str:
    from tabulate import tabulate

    fp16 = {r["mode"]: r["decode"] for r in rows if r["format"] == "fp16" and "decode" in r}
    table = []
    for r in rows:
        if "decode" not in r:
            table.append([r["format"], r["mode"], r.get("note", "skipped"), "", "", "", ""])
            continue
        base = fp16.get(r["mode"])
        ratio = (
            f"{r['decode'] / base:.2f}x"
            if base and math.isfinite(base) and math.isfinite(r["decode"])
            else "n/a"
        )
        decode = f"{r['decode']:.1f}" if math.isfinite(r["decode"]) else "n/a"
        table.append(
            [
                r["format"], r["mode"], decode, f"{r['e2e']:.1f}", ratio,
                f"{r['warmup_s']:.0f}", str(r["graphs"]),
            ]
        )  # fmt: skip
    headers = ["format", "mode", "decode tok/s", "end-to-end tok/s", "decode vs fp16", "warmup s", "graphs"]
    body = tabulate(
        table,
        headers=headers,
        tablefmt="pipe",
        colalign=("left", "left", *["right"] * 5),
        disable_numparse=True,
    )
    return f"{meta}\n\n{body}\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS, metavar="FORMAT")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--tokens", type=int, default=64, help="new tokens per generate (default 64)")
    p.add_argument("--prompt", type=int, default=16, help="prompt length (default 16)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--group-size", type=int, default=64, help="HQQ formats' group size (default 64)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--max-minutes", type=float, default=10.0, help="time budget; later runs are skipped")
    p.add_argument("--tiny", action="store_true", help="a 2-layer hidden-64 model (CPU smoke test)")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--output", default=None, help="also write the markdown table to this file")
    args = p.parse_args(argv)
    if args.tokens < 2:
        p.error("--tokens: at least 2 (decode tokens/s subtracts the one-token run)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    start = time.monotonic()
    deadline = start + 60 * args.max_minutes

    import transformers

    import gemlite  # noqa: F401  (fails early on a broken install)

    base = build_model(args.tiny, device)
    params = sum(p.numel() for p in base.parameters())
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(1, base.config.vocab_size, (args.batch, args.prompt), generator=gen).to(device)
    rows = []
    for fmt in args.formats:
        model = None
        for mode in args.modes:
            if time.monotonic() > deadline:
                rows.append({"format": fmt, "mode": mode, "note": "skipped (--max-minutes)"})
                continue
            try:
                if model is None:
                    model = patched(base, fmt, device, args.group_size)
                torch._dynamo.reset()
                result = measure(model, ids, args.tokens, args.repeats, mode, args.compile_backend, device)
                rows.append({"format": fmt, "mode": mode, **result})
            except Exception as e:  # one failing format must not lose the others' figures
                rows.append({"format": fmt, "mode": mode, "note": f"failed: {type(e).__name__}: {e}"[:160]})
            print(
                f"[{time.monotonic() - start:6.0f} s] {fmt} {mode}: {rows[-1]}", file=sys.stderr, flush=True
            )
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    where = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU (Triton interpreter)"
    meta = (
        f"Llama {'tiny' if args.tiny else '~1B'} ({params / 1e9:.2f}B parameters, random weights), fp16, "
        f"batch {args.batch}, prompt {args.prompt}, {args.tokens} new tokens, median of {args.repeats}; "
        f"{where}; torch {torch.__version__}, transformers {transformers.__version__}; compile = "
        f"static cache + torch.compile(backend='{args.compile_backend}', "
        f"mode={compile_mode(args.compile_backend, device)!r}, fullgraph=True, dynamic=False)"
    )
    text = render(rows, meta)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0 if all("decode" in r or r.get("note", "").startswith("skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
