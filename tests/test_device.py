"""Devices: one parser, one wording, CUDA probed once."""
from __future__ import annotations

import pytest

from vsmsvsr import device


@pytest.mark.parametrize("text, kind, index", [("cpu", "cpu", 0), ("gpu", "gpu", 0), ("GPU:2", "gpu", 2),
                                               (" gpu:0 ", "gpu", 0)])
def test_devices_parse(text, kind, index):
    parsed = device.parse_device(text, "vsmsvsr.X")
    assert (parsed.kind, parsed.index) == (kind, index)
    assert str(parsed) == ("cpu" if kind == "cpu" else f"gpu:{index}")


@pytest.mark.parametrize("text", ["tpu", "cpu:1", "gpu:", "gpu:-1", "cuda"])
def test_bad_devices_name_the_caller(text):
    with pytest.raises(ValueError, match=rf"^vsmsvsr\.X: device must be 'cpu', 'gpu' or 'gpu:N', got '{text}'$"):
        device.parse_device(text, "vsmsvsr.X")
    with pytest.raises(TypeError, match=r"^vsmsvsr\.X: device must be None or a str"):
        device.parse_device(0, "vsmsvsr.X")


def test_cuda_is_probed_once(monkeypatch):
    import paddle

    device._probe.cache_clear()
    calls = []
    real = paddle.device.is_compiled_with_cuda
    monkeypatch.setattr(paddle.device, "is_compiled_with_cuda", lambda: calls.append(1) or real())
    try:
        first = device.cuda_problem(0)
        assert device.cuda_problem(0) == first and device.cuda_problem(5) is not None
        device.gpu_count()
        assert len(calls) == 1
    finally:
        device._probe.cache_clear()
