#!/usr/bin/env python3
"""Produce reference logits for the default model with an independent implementation.

transformers loads the same GGUF (``gguf_file=``; gguf-py dequantizes the
weights to float32) and runs its own Llama on CPU torch.  The output,
``tests/data/reference/<name>.npz``, is what tests/model/test_reference_logits.py
compares webinfer against, so CI needs neither torch nor transformers.

Run in a separate venv (torch is big and never a dependency of webinfer):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install -r scripts/requirements-ref.txt
    /tmp/refvenv/bin/python scripts/reference_logits.py [--model PATH]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

CACHE = Path(os.environ.get("WEBINFER_CACHE", Path.home() / ".cache" / "webinfer"))
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference"

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
]
N_GREEDY = 32


def greedy(model, ids: list[int], n: int) -> list[int]:
    """Plain argmax decoding that runs past end-of-generation tokens.

    (``generate(min_new_tokens=...)`` would mask EOS instead, which is not greedy.)
    """
    out = model(torch.tensor([ids]), use_cache=True)
    past, toks = out.past_key_values, []
    for _ in range(n):
        toks.append(int(out.logits[0, -1].argmax()))
        out = model(torch.tensor([[toks[-1]]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return toks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--name", default="smollm2_135m_q4_1")
    args = ap.parse_args()
    path = Path(args.model)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, torch_dtype=torch.float32)
    model.eval()
    out: dict[str, np.ndarray] = {}
    for i, prompt in enumerate(PROMPTS):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float().numpy()
            gen = greedy(model, ids, N_GREEDY)
        out[f"prompt{i}_text"] = np.frombuffer(prompt.encode(), dtype=np.uint8)
        out[f"prompt{i}_ids"] = np.array(ids, dtype=np.int32)
        out[f"prompt{i}_logits"] = logits.astype(np.float32)              # [T, vocab]
        out[f"prompt{i}_greedy"] = np.array(gen, dtype=np.int32)
        print(f"prompt {i}: {len(ids)} tokens -> {tok.decode(out[f'prompt{i}_greedy'])!r}")
    out["versions"] = np.frombuffer(
        f"torch {torch.__version__}; transformers {transformers.__version__}".encode(), dtype=np.uint8)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT / f"{args.name}.npz", **out)
    print("wrote", OUT / f"{args.name}.npz")


if __name__ == "__main__":
    main()
