"""Run profiles: named, inspectable settings chosen from a capability report.

The table is data (``data/profiles.json``): each profile fixes the backend,
precision, KV-cache type, attention splits, readback batching, matvec shape
and memory budget; ordered rules map a report to a profile name.  Every
field can be overridden by the user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from importlib import resources

from ..errors import InvalidArgumentError
from .report import CapabilityReport


@dataclass(frozen=True)
class Profile:
    name: str
    description: str = ""
    backend: str = "webgpu"          # webgpu | wasm | numpy
    precision: str = "f32"
    kv_dtype: str = "f32"
    attn_splits: int = 16
    readback_batch: int = 1
    matvec_lanes: int = 32          # invocations per row in matvec (1 for CPU adapters)
    matvec_workgroup: int = 256
    matmul: str = "tiled"              # prefill kernel: tiled (GPUs) | rowwise (CPU adapters)
    matvec_x: str = "global"           # matvec reads x from global memory | shared (staged per workgroup)
    matvec_unroll: int = 1             # chunks per matvec loop iteration (1 | 2)
    memory_budget_mb: int = 2048
    max_workgroup_size: int = 256
    cpu_threads: int = 0               # wasm backend: threads (0: as many as the report allows, 1: one)

    def with_overrides(self, **kw) -> "Profile":
        """A copy with fields changed; unknown names raise InvalidArgumentError naming the valid ones."""
        names = {f.name for f in fields(self)} - {"name"}
        bad = set(kw) - names
        if bad:
            raise InvalidArgumentError(f"unknown profile field(s) {', '.join(sorted(bad))}; "
                                       f"valid: {', '.join(sorted(names))}")
        for k in ("attn_splits", "readback_batch", "matvec_lanes", "matvec_workgroup", "memory_budget_mb"):
            if k in kw and (not isinstance(kw[k], int) or kw[k] < 1):
                raise InvalidArgumentError(f"profile field {k} must be a positive integer, got {kw[k]!r}")
        if "matvec_unroll" in kw and kw["matvec_unroll"] not in (1, 2):
            raise InvalidArgumentError(f"profile matvec_unroll must be 1 or 2, got {kw['matvec_unroll']!r}")
        if "matmul" in kw and kw["matmul"] not in ("tiled", "rowwise"):
            raise InvalidArgumentError(f"profile matmul must be 'tiled' or 'rowwise', got {kw['matmul']!r}")
        if "matvec_x" in kw and kw["matvec_x"] not in ("global", "shared"):
            raise InvalidArgumentError(f"profile matvec_x must be 'global' or 'shared', got {kw['matvec_x']!r}")
        if "backend" in kw and kw["backend"] not in ("webgpu", "wasm", "numpy"):
            raise InvalidArgumentError(f"profile backend must be 'webgpu', 'wasm' or 'numpy', got {kw['backend']!r}")
        if "cpu_threads" in kw and (not isinstance(kw["cpu_threads"], int) or kw["cpu_threads"] < 0):
            raise InvalidArgumentError(f"profile cpu_threads must be an integer >= 0, got {kw['cpu_threads']!r}")
        return replace(self, **kw)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@lru_cache(maxsize=1)
def _table() -> dict:
    return json.loads(resources.files("webinfer").joinpath("data/profiles.json").read_text())


def profile_names() -> list[str]:
    return list(_table()["profiles"])


def get_profile(name: str) -> Profile:
    t = _table()["profiles"]
    if name not in t:
        raise InvalidArgumentError(f"unknown profile {name!r}; known: {', '.join(t)}")
    return Profile(name=name, **t[name])


def _holds(cond: dict, r: CapabilityReport) -> bool:
    facts = {"webgpu": r.webgpu, "is_fallback": r.is_fallback, "mobile": r.mobile, "browser": r.browser,
             "environment": r.environment, "has_f16": r.has_f16}
    return all(facts.get(k) == v for k, v in cond.items())


def choose_profile(report: CapabilityReport, name: str | None = None, **overrides) -> Profile:
    """The profile for ``report`` (the first rule that holds), or the one ``name``d, with ``overrides``."""
    if name is None:
        name = next(rule["profile"] for rule in _table()["rules"] if _holds(rule["when"], report))
    p = get_profile(name)
    return p.with_overrides(**overrides) if overrides else p
