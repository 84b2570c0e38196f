"""GPU devices behind one contract (base.Device): wgpu-py natively, navigator.gpu in the browser.

:func:`open_device` picks the one that exists here: in Pyodide the browser's
WebGPU (through ``webinfer._js``), in CPython wgpu-py.  Both raise
:class:`~webinfer.errors.GPUUnavailableError` when there is no adapter.
"""

from __future__ import annotations

from .base import AdapterInfo, Buffer, BufferUsage, Device, DeviceStats, Dispatch, Program, Readback


def open_device(prefer: str = "auto", **kw) -> Device:
    """The WebGPU device of this environment: ``prefer`` is "auto", "browser" or "wgpu-native"."""
    from .._js import IN_PYODIDE

    if prefer == "browser" or (prefer == "auto" and IN_PYODIDE):
        from .browser import BrowserDevice

        return BrowserDevice.create(**kw)
    from .wgpu_native import WgpuNativeDevice

    return WgpuNativeDevice(**kw)


__all__ = ["AdapterInfo", "Buffer", "BufferUsage", "Device", "DeviceStats", "Dispatch", "Program", "Readback",
           "open_device"]
