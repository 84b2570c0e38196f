"""webinfer: LLM inference in Python for the browser (Pyodide) and CPython."""

__version__ = "0.1.0"
