"""`gemlite.helper.patch_model` on a real Hugging Face model: a tiny transformers ``LlamaForCausalLM``
built from a config with random weights (nothing downloaded), patched with every weight format.

For each format the test checks, on the same token ids:

* the patched model's logits against two float64 runs of the same architecture: with the original
  weights (``ref64``) and with the reference's dequantized weights of every patched layer (``q64``,
  from `reference.quantize_weight` of the original weight: the layer must hold exactly those codes);
* that ``generate()`` runs, its first token is the argmax of the patched prefill, and every token it
  chose is a (near-)argmax of the patched model run on the whole sequence without a cache;
* that a ``safetensors`` save of ``model.state_dict()`` and the documented reload (a skeleton of the
  model, ``patch_model(..., quantize=False)``, ``load_state_dict``) give the logits back bit for bit.

The bound (see `logit_bounds`). The patched model runs in fp16; so does the same model in torch with
the dequantized weights (``q16``, its linears computed by torch instead of gemlite). Both are the same
function evaluated in fp16, with different rounding inside the linears (both accumulate in fp32), so
gemlite's distance to the exact ``q64`` must be of the order of torch's own, ``e16 = max|q16 - q64|``:
we allow ``SAFETY * e16`` (SAFETY = 4, the c of `harness.numerics`), plus ``2**-10 * max|q64|`` so
that an e16 that happens to be tiny cannot make the bound tighter than one fp16 rounding of the
largest logit. Against the *unpatched* fp16 model the format-appropriate bound follows by the
triangle inequality: the exact effect of the format's quantization on this model,
``max|q64 - ref64|``, plus the fp16 allowances of both runs. A sanity ceiling per format on the
relative quantization effect (8-bit formats must move the logits by little, 1-bit may move them by
a lot) catches a patch that quantizes the wrong tensor even if it does so "exactly".

Everything is tiny (hidden 64, 2 layers, 8 tokens, 3 new tokens) so that the Triton interpreter runs it
on a CPU in about a minute; group size 32 so that the HQQ formats are grouped, not channel-wise.
"""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch

import reference as ref
from gemlite import GemLiteLinear
from gemlite.formats import FORMATS, WeightKind
from gemlite.helper import (
    A16W1_HQQ_INT,
    A16W2_HQQ_INT,
    A16W4_HQQ_INT,
    A16W8_FP8,
    A16W8_HQQ_INT,
    A16W8_INT8,
    A16W16,
    A16W158_INT,
    patch_model,
)

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
pytestmark = [
    pytest.mark.interpreter,
    pytest.mark.skipif(
        not (HAS_TRANSFORMERS and HAS_SAFETENSORS),
        reason="transformers and safetensors are not installed (nox -s tests installs both)",
    ),
]

CONFIG = dict(
    vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, rms_norm_eps=1e-6,
    pad_token_id=0, bos_token_id=None, eos_token_id=None,
)  # fmt: skip
GROUP = 32
PROMPT_LEN, NEW_TOKENS = 8, 3
SAFETY = 4.0  # harness.numerics' c: the fp16 runs of one function differ by a small multiple of e16
SKIP = ("lm_head",)  # the head stays fp16, as GemLite's default skip list keeps it

# processor, the largest relative change of the logits (max|q64 - ref64| / max|ref64|) the format's
# quantization may cause on this model. Measured (torch 2.13 CPU, seed 0): W16 0, INT8 0.017, FP8 0.054,
# HQQ8 0.014, HQQ4 0.23, HQQ2 1.07, HQQ1 1.34, ternary 1.28 (of max|ref64| = 2.8); the ceilings leave
# about 3x: a sanity check that patch_model quantized the right tensors, not a quality claim (at 2 bits
# and fewer, random weights give logits of another model).
CASES = {
    "A16W16": (A16W16, 1e-6),
    "A16W8_INT8": (A16W8_INT8, 0.05),
    "A16W8_FP8": (A16W8_FP8, 0.15),
    "A16W8_HQQ_INT": (A16W8_HQQ_INT, 0.05),
    "A16W4_HQQ_INT": (A16W4_HQQ_INT, 0.6),
    "A16W2_HQQ_INT": (A16W2_HQQ_INT, 3.0),
    "A16W1_HQQ_INT": (A16W1_HQQ_INT, 4.0),
    "A16W158_INT": (A16W158_INT, 4.0),
}


def tiny_llama(device: str, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG)).to(device=device, dtype=torch.float16).eval()
    # Random init draws the weights with std 0.02: scale them up so that attention and the MLP
    # nonlinearity do something (at 0.02 the logits are nearly a linear function of the embeddings).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(5.0)
    return model


def prompt(device: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    return torch.randint(1, CONFIG["vocab_size"], (1, PROMPT_LEN), generator=gen).to(device)


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids, use_cache=False).logits.float()


def reference_weight(fmt_name: str, w: torch.Tensor) -> ref.QuantizedWeight:
    fmt = FORMATS[fmt_name]
    if fmt.weight.kind is WeightKind.HQQ:
        return ref.quantize_weight(fmt.with_group_size(GROUP), w, scale_dtype=torch.float16)
    return ref.quantize_weight(fmt, w)


def twin(model, weights: dict[str, torch.Tensor], dtype: torch.dtype):
    """A copy of the unpatched `model` in `dtype`, with the named linears' weights replaced."""
    out = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        for name, w in weights.items():
            out.get_submodule(name).weight.copy_(w.to(dtype))
    return out


def logit_bounds(e16: float, q64: torch.Tensor) -> float:
    """What gemlite's fp16 logits may differ from the exact q64 (module docstring)."""
    return SAFETY * e16 + 2**-10 * q64.abs().max().item()


@pytest.mark.parametrize("fmt_name", list(CASES))
def test_patch_model_llama(fmt_name: str, device: str, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    processor, ceiling = CASES[fmt_name]
    original = tiny_llama(device)
    ids = prompt(device)
    model = copy.deepcopy(original)
    kw = {"optimize": False} if "HQQ" in fmt_name else {}  # the reference holds the RTN rule's codes
    assert patch_model(model, device, processor, skip_modules=SKIP, group_size=GROUP, **kw) is model

    # 1. What was patched: every linear but the head, with exactly the reference's codes.
    patched = {n: m for n, m in model.named_modules() if isinstance(m, GemLiteLinear)}
    linears = [n for n, m in original.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(patched) == sorted(n for n in linears if n != "lm_head")
    assert type(model.lm_head) is torch.nn.Linear
    deq = {}
    for name, layer in patched.items():
        qw = reference_weight(fmt_name, original.get_submodule(name).weight.detach().float())
        assert layer.format == qw.fmt, name
        assert layer.quantizer == "rtn", name
        deq[name] = ref.dequantize_weight(qw)

    # 2. Logits: the exact runs, torch's fp16 run of the same quantized model, and gemlite's.
    ref64 = logits(twin(original, {}, torch.float64), ids)
    q64 = logits(twin(original, deq, torch.float64), ids)
    q16 = logits(twin(original, deq, torch.float16), ids)
    unpatched16 = logits(original, ids)
    y = logits(model, ids)
    assert torch.isfinite(y).all()
    e16, e16_unpatched = (q16 - q64).abs().max().item(), (unpatched16 - ref64).abs().max().item()
    kernel_err = (y - q64).abs().max().item()
    assert kernel_err <= logit_bounds(e16, q64), (
        f"{fmt_name}: max|gemlite - q64| = {kernel_err:.3g} > {SAFETY:g} * e16 ({e16:.3g}) + 2^-10 * max|q64|"
    )
    quant_effect = (q64 - ref64).abs().max().item()
    vs_unpatched = (y - unpatched16).abs().max().item()
    allowed = quant_effect + logit_bounds(e16, q64) + SAFETY * e16_unpatched
    assert vs_unpatched <= allowed, (
        f"{fmt_name}: max|gemlite - unpatched| = {vs_unpatched:.3g} > {allowed:.3g}"
    )
    relative = quant_effect / ref64.abs().max().item()
    assert relative <= ceiling, f"{fmt_name}: quantization moved the logits by {relative:.3g} (> {ceiling})"

    # 3. generate(): greedy, a fixed number of new tokens, through the KV cache (decode at M = 1).
    out = model.generate(
        ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0
    )
    assert out.shape == (1, PROMPT_LEN + NEW_TOKENS) and torch.equal(out[:, :PROMPT_LEN], ids)
    assert out[0, PROMPT_LEN].item() == y[0, -1].argmax().item()  # the same prefill computation
    full = logits(model, out)
    for t in range(PROMPT_LEN, PROMPT_LEN + NEW_TOKENS):
        row, chosen = full[0, t - 1], out[0, t].item()
        # Decode runs other kernel families than the full-sequence run: their rounding may swap
        # two nearly tied candidates, never a clearly worse one.
        assert row.max().item() - row[chosen].item() <= 2 * logit_bounds(e16, q64), (fmt_name, t)

    # 4. safetensors save and reload into a fresh skeleton: bitwise the same logits.
    path = tmp_path / "model.safetensors"
    saved = model.state_dict()
    for name in patched:
        assert f"{name}.metadata" in saved and f"{name}.W_q" in saved
    save_file(saved, str(path))
    skeleton = tiny_llama(device, seed=123)  # other random weights: all must come from the file
    patch_model(skeleton, device, processor, skip_modules=SKIP, group_size=GROUP, quantize=False)
    assert all(not m.is_packed for m in skeleton.modules() if isinstance(m, GemLiteLinear))
    skeleton.load_state_dict(load_file(str(path), device=str(device)), strict=True)
    assert torch.equal(logits(skeleton, ids), y)


def test_patch_model_quantize_false_arguments(device: str) -> None:
    model = tiny_llama(device)
    with pytest.raises(TypeError, match="quantize: expected a bool, got int"):
        patch_model(model, device, A16W8_INT8, quantize=1)
    with pytest.raises(TypeError, match="optimize: expected None or a bool, got str"):
        patch_model(model, device, A16W4_HQQ_INT, optimize="yes")
    patch_model(model, device, A16W4_HQQ_INT, skip_modules=SKIP, group_size=GROUP, quantize=False)
    layer = model.model.layers[0].mlp.down_proj
    assert isinstance(layer, GemLiteLinear) and not layer.is_packed
    assert layer.signature == (128, 64, 4, GROUP)
    with pytest.raises(RuntimeError, match="forward\\(\\) called before the layer holds a weight"):
        logits(model, prompt(device))
