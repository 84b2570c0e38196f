"""webinfer quantize / imatrix / perplexity --kv-dtype from the command line."""

from __future__ import annotations

import json

import pytest

from webinfer.cli import main
from webinfer.formats.gguf import GGUFFile
from webinfer.quant.imatrix import Imatrix, calibration_windows

from ..conftest import TEXT_DIR, need


def test_calibration_windows():
    a, b = list(range(100)), list(range(1000, 1050))
    assert calibration_windows([a, b], ctx=20, n_chunks=4) == a[:40] + b[:40]
    assert calibration_windows([a, b], ctx=20, n_chunks=10) == a[:100] + b[:40]   # b holds 2 windows only
    with pytest.raises(ValueError, match="no calibration text"):
        calibration_windows([], ctx=20)


def test_quantize_command(tiny_tied, tmp_path, capsys):
    out = tmp_path / "q.gguf"
    assert main(["quantize", str(tiny_tied), str(out), "--type", "Q4_K,token_embd=Q8_0"]) == 0
    line = capsys.readouterr().out
    assert "bits per weight" in line and "with packed rows" in line
    with GGUFFile.open(out) as g:
        assert g.info("token_embd.weight").type_name == "Q8_0" and g.info("blk.0.ffn_up.weight").packed_rows == 4
    assert main(["quantize", str(tiny_tied), str(out), "--type", "Q4_K", "--no-pack"]) == 2
    assert "packing is off" in capsys.readouterr().err
    assert main(["quantize", str(tiny_tied), str(out), "--type", "Q4_K", "--method", "gptq"]) == 2
    assert "needs an importance matrix" in capsys.readouterr().err


@pytest.mark.model
def test_imatrix_and_perplexity_commands(default_model_path, tmp_path, capsys):
    texts = [str(need(TEXT_DIR / "lcet10.txt")), str(need(TEXT_DIR / "asyoulik.txt"))]
    out = tmp_path / "imatrix.gguf"
    assert main(["imatrix", str(default_model_path), *texts, "-o", str(out), "--ctx", "64", "--chunks", "2"]) == 0
    assert "211 matrices, 2 windows of 64 tokens" in capsys.readouterr().out
    m = Imatrix.load(out)
    assert m.datasets == ["lcet10.txt + asyoulik.txt"] and m.counts["blk.3.ffn_down.weight"] == 128
    assert main(["perplexity", str(default_model_path), texts[1], "--ctx", "64", "--n-tokens", "128",
                 "--kv-dtype", "int8", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_predictions"] == 126 and 1 < r["ppl"] < 1000
