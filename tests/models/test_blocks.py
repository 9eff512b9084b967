"""Shared architecture pieces: rewritten convolutions compute what the plain ones do."""
import numpy as np, paddle, paddle.nn.functional as F, pytest
from vsmsvsr.models.blocks import (conv_after_shuffle_stride2, conv_before_shuffle, conv_of_concat,
                                   sub_pixel_conv, sub_pixel_kernels)

def rel(a, b): return float(np.linalg.norm(a.numpy() - b.numpy()) / np.linalg.norm(b.numpy()))

@pytest.mark.parametrize("o, c", [(3, 8), (5, 4)])
def test_conv_before_shuffle_is_the_conv_after_it(o, c):
    rng = np.random.default_rng(o)
    y = paddle.to_tensor(rng.standard_normal((2, 4 * c, 7, 9), dtype=np.float32))
    w = paddle.to_tensor(rng.standard_normal((o, c, 3, 3), dtype=np.float32))
    b = paddle.to_tensor(rng.standard_normal((o,), dtype=np.float32))
    k, kb = conv_before_shuffle(w, b)
    assert k.shape == [4 * o, 4 * c, 3, 3] and kb.shape == [4 * o]
    after = F.conv2d(F.pixel_shuffle(y, 2), w, b, padding=1)
    before = F.pixel_shuffle(F.conv2d(y, k, kb, padding=1), 2)
    assert rel(before, after) < 1e-6  # borders included: zero padding at x4 is zero padding at x2


@pytest.mark.parametrize("o, c, h, w", [(3, 8, 7, 9), (5, 4, 6, 5)])
def test_sub_pixel_conv_is_the_conv_after_the_shuffle(o, c, h, w):
    rng = np.random.default_rng(o)
    y = paddle.to_tensor(rng.standard_normal((2, 4 * c, h, w), dtype=np.float32))
    wt = paddle.to_tensor(rng.standard_normal((o, c, 3, 3), dtype=np.float32))
    b = paddle.to_tensor(rng.standard_normal((o,), dtype=np.float32))
    k, kb = sub_pixel_kernels(wt, b)
    assert k.shape == [4 * o, 4 * c, 2, 2] and kb.shape == [4 * o]
    after = F.conv2d(F.pixel_shuffle(y, 2), wt, b, padding=1)
    assert rel(F.pixel_shuffle(sub_pixel_conv(y, k, kb), 2), after) < 1e-6  # borders included


@pytest.mark.parametrize("h, w", [(6, 8), (7, 5)])
def test_a_stride_2_conv_after_the_shuffle_is_a_2x2_conv_before_it(h, w):
    rng = np.random.default_rng(h)
    y = paddle.to_tensor(rng.standard_normal((1, 4 * 6, h, w), dtype=np.float32))
    wt = paddle.to_tensor(rng.standard_normal((4, 6, 3, 3), dtype=np.float32))
    after = F.conv2d(F.pixel_shuffle(y, 2), wt, stride=2, padding=1)
    before = F.conv2d(y, conv_after_shuffle_stride2(wt), padding=[1, 0, 1, 0])
    assert before.shape == after.shape == [1, 4, h, w]
    assert rel(before, after) < 1e-6


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_of_concat_is_the_conv_of_the_concatenation(stride):
    rng = np.random.default_rng(stride)
    parts = [paddle.to_tensor(rng.standard_normal((1, ch, 12, 10), dtype=np.float32)) for ch in (3, 32, 5)]
    conv = paddle.nn.Conv2D(40, 16, 3, stride, 1)
    assert rel(conv_of_concat(conv, parts), conv(paddle.concat(parts, axis=1))) < 1e-6
