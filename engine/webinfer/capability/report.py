"""What this machine can do: the capability report.

:func:`detect` fills a :class:`CapabilityReport` from the WebGPU device (its
adapter, features and limits) and, in the browser, from ``navigator`` and
friends (JSPI, WASM SIMD, cross-origin isolation, device memory, user
agent).  The report is plain data: printable (``webinfer doctor``), JSON for
benchmark records, and the input of ``profiles.choose_profile``.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, dataclass, field

from .. import _js


@dataclass
class CapabilityReport:
    environment: str = "cpython"          # cpython | browser | node
    webgpu: bool = False
    webgpu_error: str = ""                # why there is no WebGPU, when there is none
    device_kind: str = ""                 # wgpu-native | browser
    adapter: dict = field(default_factory=dict)   # AdapterInfo fields
    features: list = field(default_factory=list)
    limits: dict = field(default_factory=dict)
    # the browser (empty / None in CPython)
    user_agent: str = ""
    browser: str = ""                     # chromium | firefox | safari | "" (not a browser)
    mobile: bool = False
    jspi: bool | None = None              # JS Promise Integration: sync readback from Python
    wasm_simd: bool | None = None
    wasm_threads: bool | None = None      # worker threads for the wasm backend (isolated page, > 1 core)
    wasm_threads_note: str = ""           # why not, when not
    cross_origin_isolated: bool | None = None   # SharedArrayBuffer / WASM threads possible
    device_memory_gb: float | None = None
    hardware_concurrency: int | None = None
    # the Python side
    python: str = field(default_factory=lambda: sys.version.split()[0])
    platform: str = field(default_factory=platform.platform)
    numpy: str = ""

    @property
    def is_fallback(self) -> bool:
        return bool(self.adapter.get("is_fallback"))

    @property
    def has_f16(self) -> bool:
        return "shader-f16" in self.features

    def as_dict(self) -> dict:
        d = asdict(self)
        d["is_fallback"] = self.is_fallback
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1, sort_keys=True)

    def format(self) -> str:
        """A human-readable multi-line summary."""
        lines = [f"environment      {self.environment} (Python {self.python}, numpy {self.numpy}, {self.platform})"]
        if self.webgpu:
            a = self.adapter
            lines.append(f"webgpu           yes, {self.device_kind}")
            lines.append(f"adapter          vendor={a.get('vendor')!r} architecture={a.get('architecture')!r} "
                         f"device={a.get('device')!r}")
            lines.append(f"                 backend={a.get('backend')!r} type={a.get('adapter_type')!r} "
                         f"fallback={a.get('is_fallback')}")
            lines.append(f"features         {', '.join(sorted(self.features)) or '(none)'}")
            for k in ("maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
                      "maxComputeInvocationsPerWorkgroup", "maxStorageBuffersPerShaderStage",
                      "maxComputeWorkgroupsPerDimension"):
                if k in self.limits:
                    lines.append(f"  {k:<38} {self.limits[k]:>12,}")
        else:
            lines.append(f"webgpu           no ({self.webgpu_error or 'unknown reason'})")
        if self.environment != "cpython":
            lines.append(f"browser          {self.browser or '?'} mobile={self.mobile} UA={self.user_agent!r}")
            lines.append(f"jspi={self.jspi} wasm_simd={self.wasm_simd} crossOriginIsolated={self.cross_origin_isolated} "
                         f"deviceMemory={self.device_memory_gb} cores={self.hardware_concurrency}")
            lines.append(f"wasm threads     {'yes' if self.wasm_threads else 'no'}"
                         + (f" ({self.wasm_threads_note})" if self.wasm_threads_note else ""))
        return "\n".join(lines)


def _browser_name(ua: str) -> str:
    u = ua.lower()
    if "firefox/" in u:
        return "firefox"
    if "chrome/" in u or "chromium/" in u or "edg/" in u:
        return "chromium"
    if "safari/" in u:
        return "safari"
    return ""


def detect(device=None, *, open_device: bool = True) -> CapabilityReport:
    """The report for this environment; ``device`` (an open Device) saves opening one."""
    import numpy as np

    r = CapabilityReport(numpy=np.__version__)
    if _js.IN_PYODIDE:
        info = _js.environment()
        r.environment = "browser" if info.get("user_agent") and "node" not in info["user_agent"].lower() else "node"
        r.user_agent = info.get("user_agent", "")
        r.browser = _browser_name(r.user_agent)
        r.mobile = "mobi" in r.user_agent.lower() or "android" in r.user_agent.lower()
        r.jspi = info.get("jspi")
        r.wasm_simd = info.get("wasm_simd")
        r.cross_origin_isolated = info.get("cross_origin_isolated")
        r.device_memory_gb = info.get("device_memory_gb")
        r.hardware_concurrency = info.get("hardware_concurrency")
        from ..backends.wasm_threads import threads_possible

        ok, why = threads_possible()
        r.wasm_threads = ok and (r.hardware_concurrency or 1) > 1
        r.wasm_threads_note = why if not ok else ("" if r.wasm_threads else "one core")
    if device is None and open_device:
        from ..devices import open_device as _open
        from ..errors import GPUError

        try:
            device = _open()
        except GPUError as e:
            r.webgpu_error = str(e)
    if device is not None:
        r.webgpu = True
        r.device_kind = device.kind
        r.adapter = device.info.as_dict()
        r.features = sorted(device.features)
        r.limits = dict(sorted(device.limits.items()))
    return r
