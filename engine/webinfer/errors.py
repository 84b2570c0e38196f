"""The exceptions webinfer raises.

Every error a user can provoke with bad input is a subclass of
:class:`WebinferError` and also of the stdlib type a caller would naturally
catch (``ValueError`` for bad data, ``OSError`` for I/O).  Errors carry the
values a caller needs as attributes, and their messages say what to do.
"""

from __future__ import annotations


class WebinferError(Exception):
    """Base class of all errors raised on purpose by webinfer."""


# ---------------------------------------------------------------- model files


class GGUFError(WebinferError, ValueError):
    """A GGUF file is malformed, hostile or unsupported.

    ``offset`` is the byte offset where the problem was found, if known.
    """

    def __init__(self, message: str, *, offset: int | None = None):
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message)
        self.offset = offset


class GGUFTruncatedError(GGUFError):
    """The file ends before the structure being read does."""


class GGUFMagicError(GGUFError):
    """The file does not start with the GGUF magic bytes."""


class GGUFVersionError(GGUFError):
    """The GGUF version is one this reader does not support."""

    def __init__(self, version: int, supported: tuple[int, ...]):
        super().__init__(
            f"GGUF version {version} is not supported (supported: "
            f"{', '.join(map(str, supported))}); re-convert the model with a current llama.cpp"
        )
        self.version = version


class GGUFLimitError(GGUFError):
    """A count or size in the file is larger than the file could hold or than is sane."""


class GGUFMetadataError(GGUFError):
    """A metadata value has an unknown type, bad UTF-8, or an unexpected shape."""


class UnsupportedTensorTypeError(GGUFError):
    """A tensor uses a quantization type webinfer cannot (de)quantize."""

    def __init__(self, tensor: str, type_name: str, supported: list[str]):
        super().__init__(
            f"tensor {tensor!r} has type {type_name}, which webinfer does not support; "
            f"supported types: {', '.join(supported)}"
        )
        self.tensor = tensor
        self.type_name = type_name


class TensorDataOutOfBoundsError(GGUFError):
    """A tensor's data lies (partly) past the end of the file."""


class MissingTensorError(GGUFError, KeyError):
    """The model needs a tensor the file does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class UnsupportedModelError(WebinferError, ValueError):
    """The file's architecture (or one of its features) is not implemented."""


# ------------------------------------------------------------------ tokenizer


class TokenizerError(WebinferError, ValueError):
    """The tokenizer metadata is unusable, or a token id is out of range."""


class ChatTemplateError(WebinferError, ValueError):
    """A chat template could not be parsed or rendered."""


# -------------------------------------------------------------------- runtime


class ContextOverflowError(WebinferError, ValueError):
    """The prompt (plus what must be generated) does not fit in the context."""

    def __init__(self, n_tokens: int, n_ctx: int, what: str = "prompt"):
        super().__init__(
            f"the {what} has {n_tokens} tokens but the context holds {n_ctx}; "
            f"shorten it or load the model with a larger context (n_ctx)"
        )
        self.n_tokens = n_tokens
        self.n_ctx = n_ctx


class ModelFileNotFoundError(WebinferError, FileNotFoundError):
    """A model path or name did not resolve to a file."""


class InvalidArgumentError(WebinferError, ValueError):
    """A user-supplied option is out of range or of the wrong kind."""


# --------------------------------------------------------------------- WebGPU


class GPUError(WebinferError, RuntimeError):
    """A WebGPU device failed; ``step`` names what was being done (e.g. "create pipeline matvec_q4_1")."""

    def __init__(self, message: str, *, step: str = ""):
        super().__init__(f"{step}: {message}" if step else message)
        self.step = step


class GPUUnavailableError(GPUError):
    """No WebGPU adapter or device could be obtained (no GPU, no driver, WebGPU disabled).

    The engine falls back to the numpy backend; install a Vulkan driver
    (e.g. Debian's mesa-vulkan-drivers) or enable WebGPU in the browser.
    """


class DeviceLostError(GPUError):
    """The GPU device was lost (driver reset, out of memory, tab in background, destroyed).

    ``reason`` is what the implementation reported.  This often happens when
    the GPU runs out of memory: try a smaller model or context (n_ctx).
    """

    def __init__(self, message: str, *, reason: str = "unknown", step: str = ""):
        super().__init__(message, step=step)
        self.reason = reason


class GPUOutOfMemoryError(GPUError, MemoryError):
    """A GPU allocation failed: the model or context does not fit in GPU memory."""


class GPUValidationError(GPUError):
    """WebGPU rejected a call (a bug in webinfer, or a limit of this device was exceeded)."""


class ShaderCompileError(GPUValidationError):
    """A WGSL shader failed to compile or its pipeline could not be created; ``shader`` names it."""

    def __init__(self, message: str, *, shader: str, step: str = ""):
        super().__init__(message, step=step)
        self.shader = shader


# ----------------------------------------------------------------- WASM kernels


class WasmKernelError(WebinferError, RuntimeError):
    """The WASM kernels rejected a command buffer (a bug in webinfer); ``command`` is its index."""

    def __init__(self, message: str, *, command: int = -1):
        super().__init__(message)
        self.command = command


class WasmUnavailableError(WasmKernelError):
    """The WASM kernels cannot run here (not inside Pyodide, or no WASM SIMD).

    Use the numpy backend (``backend="numpy"``), which runs everywhere.
    """
