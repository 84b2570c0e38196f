#!/usr/bin/env python3
"""Reference logits for the tiny synthetic models of tests/model/tiny_models.py.

The tiny GGUF files are written by webinfer's writer from seeded random
weights; transformers then loads them (``gguf_file=``) and runs its own
implementation of each architecture.  Run in the reference venv (see
scripts/reference_logits.py):

    /tmp/refvenv/bin/python scripts/reference_tiny.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "engine"), str(ROOT)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from tests.model.tiny_models import SPECS, TINY_PROMPT, write_tiny_model  # noqa: E402

OUT = ROOT / "tests" / "data" / "reference"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name in SPECS:
            path = write_tiny_model(name, Path(tmp) / f"{name}.gguf")
            # transformers' GGUF loader ignores <arch>.rope.scaling.*: pass it explicitly.
            overrides = {}
            if SPECS[name][6].get("rope.scaling.type") == "linear":
                overrides["rope_parameters"] = {"rope_type": "linear", "rope_theta": 10000.0,
                                                "factor": SPECS[name][6]["rope.scaling.factor"]}
            model = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=path.name, dtype=torch.float32, **overrides)
            model.eval()
            print(name, type(model).__name__, getattr(model.config, "rope_parameters", None))
            with torch.no_grad():
                logits = model(torch.tensor([TINY_PROMPT])).logits[0].numpy().astype(np.float32)
            np.savez_compressed(OUT / f"{name}.npz", ids=np.array(TINY_PROMPT, np.int32), logits=logits)
            print("wrote", OUT / f"{name}.npz", logits.shape)


if __name__ == "__main__":
    main()
