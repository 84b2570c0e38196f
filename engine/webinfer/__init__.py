"""webinfer: LLM inference in Python for the browser (Pyodide) and CPython.

>>> import webinfer
>>> engine = webinfer.load()          # default model; or a GGUF path
>>> print(engine.complete("The capital of France is", max_tokens=8, temperature=0))
"""

__version__ = "0.1.0"

from .errors import WebinferError  # noqa: E402


def load(model=None, **kw):
    """Load a GGUF model (path, known name, ByteSource, or None for the default). See :class:`Engine`."""
    from .runtime.engine import Engine

    return Engine.load(model, **kw)


__all__ = ["WebinferError", "load", "__version__"]
