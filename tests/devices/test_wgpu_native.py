"""The wgpu-py device on lavapipe: memory verbs, the pipeline cache, programs, counters, and named errors."""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.devices.base import BufferUsage, Copy, Dispatch, Readback
from webinfer.errors import DeviceLostError, GPUError, GPUUnavailableError, ShaderCompileError

DOUBLE = """
@group(0) @binding(0) var<storage, read_write> A: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < arrayLength(&A)) { A[g.x] = 2.0 * A[g.x]; }
}
"""


@pytest.fixture()
def dev():
    try:
        from webinfer.devices.wgpu_native import WgpuNativeDevice

        return WgpuNativeDevice()
    except GPUUnavailableError as e:
        pytest.skip(f"no WebGPU adapter: {e}")


def test_adapter_facts_and_requested_limits(dev):
    assert dev.kind == "wgpu-native"
    assert dev.info.describe()
    # the device gets the adapter's limits, not the WebGPU defaults
    assert dev.limits["maxStorageBufferBindingSize"] == dev.adapter_limits["maxStorageBufferBindingSize"]
    assert dev.limits["maxComputeWorkgroupStorageSize"] >= 16384
    assert dev.features <= dev.adapter_features
    if dev.info.adapter_type == "cpu":
        assert dev.info.is_fallback


def test_write_read_roundtrip_pads_to_words(dev):
    data = np.arange(7, dtype=np.uint8)                  # 7 bytes: padded to 8 on the way in
    buf = dev.buffer_from(data)
    assert buf.size == 8
    np.testing.assert_array_equal(dev.read_buffer(buf, 0, 7), data)
    dev.write_buffer(buf, np.array([0xAABBCCDD], np.uint32), offset=4)
    assert dev.read_buffer(buf, 4, 4).view(np.uint32)[0] == 0xAABBCCDD
    dev.destroy_buffer(buf)
    dev.destroy_buffer(buf)                              # twice is harmless


def test_program_runs_in_one_submit_and_the_pipeline_is_cached(dev):
    a = dev.buffer_from(np.arange(100, dtype=np.float32))
    b = dev.create_buffer(400)
    p1 = dev.pipeline("double", DOUBLE)
    assert dev.pipeline("double", DOUBLE) is p1 and dev.stats.pipelines_created == 1
    prog = dev.prepare([Dispatch(p1, dev.bind_group(p1, [a]), (2, 1, 1)), Copy(a, 0, b, 0, 400),
                        Dispatch(p1, dev.bind_group(p1, [b]), (2, 1, 1))])
    dev.read_buffer(b, 0, 4)                             # the readback staging buffer exists from here on
    dev.write_buffer(a, np.arange(100, dtype=np.float32))
    before = dev.stats.snapshot()
    out_a, out_b = dev.run([prog, prog], readback=[Readback(a, 0, 400), Readback(b, 8, 8)])
    d = dev.stats - before
    assert d.submits == 1 and d.runs == 1 and d.dispatches == 4 and d.reads == 2
    assert d.bind_groups_created == 0 and d.buffers_created == 0
    np.testing.assert_array_equal(out_a.view(np.float32), 4 * np.arange(100, dtype=np.float32))
    # b = 2a (copy after the first double), doubled; then the second program: a doubles twice more
    # before b is copied again, so b ends at 2 * (4a) = 8a
    np.testing.assert_array_equal(out_b.view(np.float32), 8 * np.array([2, 3], np.float32))


def test_bad_wgsl_names_the_shader(dev):
    with pytest.raises(ShaderCompileError) as e:
        dev.pipeline("broken_kernel", "fn main( {")
    assert e.value.shader == "broken_kernel" and "broken_kernel" in str(e.value)


def test_oversized_buffer_is_a_named_error(dev):
    with pytest.raises(GPUError):
        dev.create_buffer(dev.limits["maxBufferSize"] + 4096, BufferUsage.STORAGE)


def test_lost_device_raises_device_lost_everywhere(dev):
    buf = dev.buffer_from(np.zeros(4, np.float32))
    dev.simulate_loss("test")
    assert dev.lost
    with pytest.raises(DeviceLostError) as e:
        dev.read_buffer(buf)
    assert e.value.reason == "test" and "lost" in str(e.value)
    with pytest.raises(DeviceLostError):
        dev.create_buffer(16)
    with pytest.raises(DeviceLostError):
        dev.pipeline("double again", DOUBLE)
