"""The command line as a user runs it: output, exit codes, no tracebacks."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.model


def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webinfer", *args], capture_output=True, text=True,
                          input=input, timeout=300)


def test_generate_paris(default_model_path):
    r = run("generate", "The capital of France is", "--temperature", "0", "--max-tokens", "8",
            "--model", str(default_model_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(" Paris")


def test_chat_one_shot_streams_an_answer(default_model_path):
    r = run("chat", "-M", "What is the capital of France?", "--temperature", "0", "--max-tokens", "24",
            "--stats", "--model", str(default_model_path))
    assert r.returncode == 0, r.stderr
    assert "Paris" in r.stdout
    assert "decode" in r.stderr and "tok/s" in r.stderr


def test_info_lists_tensors(default_model_path):
    r = run("info", str(default_model_path))
    assert r.returncode == 0, r.stderr
    assert "272 tensors" in r.stdout
    assert "token_embd.weight" in r.stdout and "Q8_0" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (("info", "/nonexistent/model.gguf"), "no model file"),
    (("generate", "hi", "--model", "/nonexistent.gguf"), "no model file"),
    (("generate", "hi", "--temperature", "-1"), "temperature"),
])
def test_user_errors_exit_2_without_traceback(args, needle, default_model_path):
    r = run(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_truncated_file_is_a_clean_error(tmp_path, default_model_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(default_model_path.read_bytes()[:50_000_000])
    r = run("generate", "hi", "--model", str(bad))
    assert r.returncode == 2
    assert "truncated" in r.stderr and "Traceback" not in r.stderr


def test_prompt_longer_than_context(default_model_path):
    r = run("generate", "word " * 100, "--n-ctx", "16", "--model", str(default_model_path))
    assert r.returncode == 2
    assert "context" in r.stderr and "Traceback" not in r.stderr
