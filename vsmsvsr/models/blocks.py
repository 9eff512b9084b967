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

    Four times the multiplications, but where ``o`` is small (3 colours) a CPU convolution
    vectorised over output channels fills 12 lanes of 16 instead of 3, and the 4c-channel tensor
    is never shuffled: the x4 tails of PP-MSVSR run faster this way.
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


def conv_of_concat(conv: paddle.nn.Conv2D, parts: list[paddle.Tensor]) -> paddle.Tensor:
    """``conv(paddle.concat(parts, axis=1))`` as one convolution per part on its rows of the
    weights, summed: the same products, summed in another order. A compiled program then does
    not copy the parts into one tensor, which its CPU plugin does with a reference kernel when
    their channel counts are not multiples of 16 (3 + 32 channels at 4x in PP-MSVSR).
    """
    out, start = None, 0
    for part in parts:
        stop = start + part.shape[1]
        y = paddle.nn.functional.conv2d(part, conv.weight[:, start:stop], conv.bias if out is None else None,
                                        stride=conv._stride, padding=conv._padding, dilation=conv._dilation)
        out, start = (y if out is None else out + y), stop
    return out
