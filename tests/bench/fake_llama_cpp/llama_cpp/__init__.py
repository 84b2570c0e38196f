"""A stand-in for llama-cpp-python with the few calls the benchmark runner makes (no llama.cpp inside).

It "decodes" by returning logits that make token (last + 1) the argmax, so the runner's loop, timing,
JSON and record plumbing are tested where the real package (a 6-minute build) is not installed.
"""

import ctypes
import time

__version__ = "0.0.0-fake"
N_VOCAB = 64


class _Ctx:
    def __init__(self):
        self.ctx = self
        self.logits = (ctypes.c_float * N_VOCAB)()


def llama_get_logits_ith(ctx, i):
    return ctypes.cast(ctx.logits, ctypes.POINTER(ctypes.c_float))


def llama_synchronize(ctx):
    pass


def llama_print_system_info():
    return b"FAKE = 1"


class Llama:
    def __init__(self, model_path, n_ctx=512, n_threads=1, verbose=True, **kw):
        open(model_path, "rb").close()
        self._ctx = _Ctx()
        self.n_threads = n_threads

    def n_vocab(self):
        return N_VOCAB

    def tokenize(self, text, add_bos=True):
        return ([1] if add_bos else []) + [b % N_VOCAB for b in text[:300]]

    def detokenize(self, tokens):
        return bytes(65 + t % 26 for t in tokens)

    def reset(self):
        pass

    def eval(self, tokens):
        time.sleep(0.0002 * len(tokens))
        for i in range(N_VOCAB):
            self._ctx.logits[i] = 0.0
        self._ctx.logits[(tokens[-1] + 1) % N_VOCAB] = 1.0
