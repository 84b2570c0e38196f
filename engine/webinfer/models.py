"""Known models and where they live: the registry is data (data/models.json)."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

from .errors import ModelFileNotFoundError


def cache_dir() -> Path:
    """$WEBINFER_CACHE, else ~/.cache/webinfer (where scripts/setup.sh puts the default model)."""
    return Path(os.environ.get("WEBINFER_CACHE") or Path.home() / ".cache" / "webinfer")


def registry() -> dict:
    return json.loads(resources.files("webinfer").joinpath("data/models.json").read_text())


def resolve_model(model: str | os.PathLike | None) -> Path:
    """A path to an existing GGUF file, from a path, a registry name, or None (the default model)."""
    reg = registry()
    name = reg["default"] if model is None else os.fspath(model)
    if name in reg["models"]:
        path = cache_dir() / "models" / reg["models"][name]["file"]
        if not path.exists():
            raise ModelFileNotFoundError(
                f"model {name!r} is not in the cache ({path}); run scripts/setup.sh to fetch it"
            )
        return path
    path = Path(name).expanduser()
    if not path.exists():
        raise ModelFileNotFoundError(
            f"no model file {str(path)!r}, and {name!r} is not a known model name "
            f"(known: {', '.join(sorted(reg['models']))})"
        )
    return path
