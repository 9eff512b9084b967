"""Pieces shared by several architectures (imported by them, after Paddle is loaded)."""
from __future__ import annotations

import paddle


@paddle.jit.not_to_static  # plain Python on the shape: no traced control flow
def shape_of(x: paddle.Tensor) -> "list[int] | paddle.Tensor":
    """``x``'s shape as numbers where all are static (converters read a constant shape), else as a
    tensor (a program exported for dynamic sizes)."""
    shape = list(x.shape)
    return shape if min(shape) >= 0 else paddle.shape(x)


def conv_before_shuffle(weight: paddle.Tensor, bias: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
    """A 3x3 convolution (stride 1, padding 1) that follows a pixel shuffle by 2, moved before it.

    ``conv2d(pixel_shuffle(y, 2), weight, bias, padding=1) == pixel_shuffle(conv2d(y, k, b, padding=1), 2)``
    for any ``y`` (n, 4c, h, w): the same products, summed in another order.

    Args:
        weight: (o, c, 3, 3); bias: (o,).

    Returns:
        ``k`` (4o, 4c, 3, 3) and ``b`` (4o,). Output pixel (2Y+sy, 2X+sx) of the shuffled grid reads
        its rows 2Y+sy-1 .. 2Y+sy+1: rows Y-1 .. Y+1 of ``y``, sub-row dy. So
        ``k[4o' + 2sy + sx, 4c' + 2dy + dx, ky, kx] = weight[o', c', 2ky + dy - sy - 1, 2kx + dx - sx - 1]``,
        zero where that tap is outside 0..2.

    Four times the multiplications, five ninths of them by zeros: programs use its non-zero taps
    (:func:`sub_pixel_kernels`, :func:`sub_pixel_conv`).
    """
    o, c = weight.shape[0], weight.shape[1]
    if list(weight.shape[2:]) != [3, 3]:
        raise ValueError(f"conv_before_shuffle: a 3x3 kernel is needed, got {list(weight.shape)}")
    padded = paddle.nn.functional.pad(weight, [2, 2, 2, 2])  # (o, c, 7, 7): tap a at index a + 2
    # sub-pixel (sy, sx): rows t = 2ky + dy in 0..5 read tap t - sy - 1, i.e. index t - sy + 1
    subs = [padded[:, :, 1 - sy:7 - sy, 1 - sx:7 - sx] for sy in (0, 1) for sx in (0, 1)]
    k = paddle.stack(subs, axis=1).reshape([o, 4, c, 3, 2, 3, 2])  # (o, s, c, ky, dy, kx, dx)
    k = k.transpose([0, 1, 2, 4, 6, 3, 5]).reshape([4 * o, 4 * c, 3, 3])
    return k, bias.reshape([o, 1]).tile([1, 4]).reshape([4 * o])


_SUB_PIXELS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (sy, sx) of a pixel shuffle by 2, in its channel order


def sub_pixel_kernels(weight: paddle.Tensor, bias: paddle.Tensor) -> tuple[paddle.Tensor, paddle.Tensor]:
    """:func:`conv_before_shuffle` cut to the taps each sub-pixel reads, for :func:`sub_pixel_conv`.

    Sub-pixel (sy, sx) reads rows Y-1+sy .. Y+sy of the unshuffled tensor (taps ``sy:sy+2`` of the
    3x3 kernel; the others are zero), so it is a 2x2 convolution: 4/9 of the products.

    Args:
        weight: (o, c, 3, 3); bias: (o,).

    Returns:
        ``k`` (4o, 4c, 2, 2), sub-pixel major (rows ``s*o .. s*o+o-1`` are sub-pixel ``s = 2sy+sx``),
        and ``b`` (4o,) in the same order.
    """
    o = weight.shape[0]
    k, _ = conv_before_shuffle(weight, bias)
    k = k.reshape([o, 4, k.shape[1], 3, 3])
    subs = [k[:, s, :, sy:sy + 2, sx:sx + 2] for s, (sy, sx) in enumerate(_SUB_PIXELS)]
    return paddle.concat(subs, axis=0), bias.tile([4])


def sub_pixel_conv(y: paddle.Tensor, kernel: paddle.Tensor, bias: paddle.Tensor) -> paddle.Tensor:
    """``conv2d(y, *conv_before_shuffle(weight, bias), padding=1)`` from ``sub_pixel_kernels(weight, bias)``.

    One 2x2 convolution with padding 1 gives every sub-pixel's result on an (h+1, w+1) grid;
    sub-pixel (sy, sx) is its crop at rows ``sy:sy+h``, columns ``sx:sx+w``. The same products
    as the 3x3 form without its zeros, summed in another order: at 3 colours out of 128 channels
    (PP-MSVSR's x4 tails) the convolution takes a third of the time, the crops a few percent.

    Args:
        y: (n, 4c, h, w); kernel: (4o, 4c, 2, 2); bias: (4o,).

    Returns:
        (n, 4o, h, w), channels in pixel-shuffle order (``4*o' + 2*sy + sx``).
    """
    n, _, h, w = shape_of(y)
    o = kernel.shape[0] // 4
    full = paddle.nn.functional.conv2d(y, kernel, bias, padding=1)
    subs = [full[:, s * o:(s + 1) * o, sy:sy + h, sx:sx + w] for s, (sy, sx) in enumerate(_SUB_PIXELS)]
    return paddle.stack(subs, axis=2).reshape([n, 4 * o, h, w])


def conv_after_shuffle_stride2(weight: paddle.Tensor) -> paddle.Tensor:
    """A 3x3 convolution with stride 2 and padding 1 of ``pixel_shuffle(y, 2)``, as a 2x2 convolution
    of ``y`` with stride 1 and padding (top 1, bottom 0, left 1, right 0):

    ``conv2d(pixel_shuffle(y, 2), weight, stride=2, padding=1) ==
    conv2d(y, conv_after_shuffle_stride2(weight), padding=[1, 0, 1, 0])`` (no bias here).

    Output row i reads shuffled rows 2i-1 .. 2i+1: sub-row 1 of row i-1 of ``y``, then sub-rows 0
    and 1 of row i. So ``k[o', 4c' + 2dy + dx, a, b] = weight[o', c', 2a + dy - 1, 2b + dx - 1]``, zero
    where that tap is -1. The shuffled tensor (4 times ``y``'s pixels) is never made.

    Args:
        weight: (o, c, 3, 3).

    Returns:
        (o, 4c, 2, 2).
    """
    o, c = weight.shape[0], weight.shape[1]
    if list(weight.shape[2:]) != [3, 3]:
        raise ValueError(f"conv_after_shuffle_stride2: a 3x3 kernel is needed, got {list(weight.shape)}")
    padded = paddle.nn.functional.pad(weight, [1, 0, 1, 0])  # tap t at index t + 1 = 2a + dy
    k = padded.reshape([o, c, 2, 2, 2, 2])  # (o, c, a, dy, b, dx)
    return k.transpose([0, 1, 3, 5, 2, 4]).reshape([o, 4 * c, 2, 2])


def conv_of_concat(conv: paddle.nn.Conv2D, parts: list[paddle.Tensor]) -> paddle.Tensor:
    """``conv(paddle.concat(parts, axis=1))`` as one convolution per part on its rows of the
    weights, summed: the same products, summed in another order. A compiled program then
    neither copies the parts into one tensor nor converts that tensor's layout as a whole
    (each part is read by its own convolution, the sums fused into them).
    """
    out, start = None, 0
    for part in parts:
        stop = start + part.shape[1]
        y = paddle.nn.functional.conv2d(part, conv.weight[:, start:stop], conv.bias if out is None else None,
                                        stride=conv._stride, padding=conv._padding, dilation=conv._dilation)
        out, start = (y if out is None else out + y), stop
    return out
