"""The compiled deformable convolution (vsmsvsr/engine/deform.py): the same numbers as Paddle's
kernel (borders, far-outside taps, stride, dilation, several samples), built once into the cache,
and a clear fallback to Paddle's kernel where there is no compiler or the build fails."""
from __future__ import annotations

import logging

import numpy as np
import paddle
import pytest
from paddle.vision.ops import DeformConv2D

from tests.keyed import assert_close_to_golden
from vsmsvsr.engine import deform, segmented


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A cache of its own and no decision made yet."""
    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path))
    deform.forget()
    yield tmp_path
    deform.forget()


def _case(rng, n, c, h, w, groups, kernel=3, stride=1, padding=1, dilation=1, spread=4.0):
    layer = DeformConv2D(c, 2 * c, kernel, stride=stride, padding=padding, dilation=dilation,
                         deformable_groups=groups)
    layer.eval()
    layer.bias.set_value(paddle.to_tensor(rng.standard_normal(2 * c).astype("float32")))
    ho = (h + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    wo = (w + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    taps = kernel * kernel
    x = paddle.to_tensor(rng.standard_normal((n, c, h, w)).astype("float32"))
    # large offsets: many taps land outside the image, some within one pixel of its edge
    offset = paddle.to_tensor(rng.normal(0, spread, (n, 2 * groups * taps, ho, wo)).astype("float32"))
    mask = paddle.to_tensor(rng.uniform(0, 1, (n, groups * taps, ho, wo)).astype("float32"))
    return layer, x, offset, mask


@pytest.mark.parametrize("shape", [
    dict(n=1, c=32, h=20, w=24, groups=8),
    dict(n=2, c=8, h=9, w=13, groups=2, stride=2),
    dict(n=1, c=6, h=11, w=10, groups=3, dilation=2, padding=2),
    dict(n=1, c=4, h=7, w=7, groups=1, kernel=1, padding=0, spread=1.5),
    dict(n=1, c=32, h=17, w=29, groups=4),
    dict(n=2, c=48, h=12, w=15, groups=3, spread=2.0),
    dict(n=1, c=10, h=9, w=70, groups=2),
], ids=["msvsr-like", "batch-stride", "dilation", "1x1", "stage2-groups", "16-wide-groups", "odd-width-groups"])
def test_compiled_kernel_matches_paddle(fresh, shape):
    lib = deform.library()
    if lib is None:
        pytest.skip("no C++ compiler here")
    rng = np.random.default_rng(5)
    layer, x, offset, mask = _case(rng, **shape)
    with paddle.no_grad():
        want = layer(x, offset, mask).numpy()
        got = deform.deform_conv2d(lib, x, offset, mask, layer.weight, layer.bias, layer._stride, layer._padding,
                                   layer._dilation, int(layer._deformable_groups), threads=3).numpy()
    assert got.shape == want.shape
    assert_close_to_golden(got, want, "compiled deformable conv")


def test_offsets_that_are_not_numbers_sample_zeros_like_paddle(fresh):
    lib = deform.library()
    if lib is None:
        pytest.skip("no C++ compiler here")
    rng = np.random.default_rng(6)
    layer, x, offset, mask = _case(rng, n=1, c=16, h=12, w=20, groups=2)
    values = offset.numpy()
    values[0, 3, 2:5, 4:9] = np.nan
    values[0, 20, 7, :] = np.inf
    offset = paddle.to_tensor(values)
    with paddle.no_grad():
        want = layer(x, offset, mask).numpy()
        got = deform.deform_conv2d(lib, x, offset, mask, layer.weight, layer.bias, layer._stride, layer._padding,
                                   layer._dilation, int(layer._deformable_groups), threads=2).numpy()
    assert np.all(np.isfinite(got)) == np.all(np.isfinite(want))
    assert_close_to_golden(got, want, "compiled deformable conv, offsets not numbers")


def test_built_once_into_the_cache_and_reused(fresh, caplog):
    if deform._compiler() is None:
        pytest.skip("no C++ compiler here")
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        assert deform.library() is not None
    built = list((fresh / "ops").glob("deform_conv-*.so"))
    assert len(built) == 1 and not list((fresh / "ops").glob(".build-*"))
    assert sum("compiling the deformable convolution kernel" in r.getMessage() for r in caplog.records) == 1
    deform.forget()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        assert deform.library() is not None
    assert not any("compiling" in r.getMessage() for r in caplog.records)  # reused, not rebuilt


@pytest.mark.parametrize("how", ["no compiler", "build fails", "forced"])
def test_fallback_to_paddles_kernel_says_so_once_and_gives_the_same_numbers(fresh, monkeypatch, caplog, how):
    if how == "no compiler":
        monkeypatch.setattr(deform, "_compiler", lambda: None)
        expect = "no C++ compiler found"
    elif how == "build fails":
        monkeypatch.setattr(deform, "_FLAGS", deform._FLAGS + ("-fno-such-flag-here",))
        expect = "could not be built"
    else:
        monkeypatch.setenv(deform.ENV, "paddle")
        expect = "VSMSVSR_DEFORM=paddle"
    rng = np.random.default_rng(6)
    layer, x, offset, mask = _case(rng, 1, 32, 20, 24, 8)

    class Runner:  # the part of _SegmentedRunner the convolution uses
        threads = 2
        _pool = None
        pool = segmented._SegmentedRunner.pool

    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        split = segmented._ParallelDeformConv(layer, Runner())
        segmented._ParallelDeformConv(layer, Runner())  # a second layer: no second message
    messages = [r.getMessage() for r in caplog.records if "Paddle's" in r.getMessage()]
    assert len(messages) == 1 and expect in messages[0], messages
    assert not list((fresh / "ops").glob("*.so")) and not list((fresh / "ops").glob(".build-*"))
    assert split.parts == 2  # Paddle's kernel, split by deformable group over the threads
    with paddle.no_grad():
        want, got = layer(x, offset, mask).numpy(), split(x, offset, mask).numpy()
    assert_close_to_golden(got, want, f"deformable conv fallback ({how})")
