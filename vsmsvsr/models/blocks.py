"""Pieces shared by several architectures (imported by them, after Paddle is loaded)."""
from __future__ import annotations

import paddle


@paddle.jit.not_to_static  # plain Python on the shape: no traced control flow
def shape_of(x: paddle.Tensor) -> "list[int] | paddle.Tensor":
    """``x``'s shape as numbers where all are static (converters read a constant shape), else as a
    tensor (a program exported for dynamic sizes)."""
    shape = list(x.shape)
    return shape if min(shape) >= 0 else paddle.shape(x)
