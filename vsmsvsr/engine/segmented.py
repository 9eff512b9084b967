"""The segmented CPU runner: the network's own forward runs eagerly and calls a small static program
for every parameterised child layer, deformable convolutions run by the compiled kernel (or split
over threads), and the stages a model declares (its ``engine_segments(plain, segment)`` hook:
``segment(path, layer, scale)`` returns a callable running ``layer`` as a program, whole or in row
strips) as programs. The engine knows no model by name."""
from __future__ import annotations

import concurrent.futures
import logging
from typing import TYPE_CHECKING

import numpy as np

from vsmsvsr.engine.backends import BackendConfig
from vsmsvsr.engine.dygraph import _main_output, _static_copy
from vsmsvsr.engine import deform, paddle_inference
from vsmsvsr.engine.programs import _ProgramStore

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"

#: Per-frame stages run on strips of at most this many input pixels (plus halo).
STRIP_PIXELS = 128 * 1024
#: Rows of context above and below a strip: more than the reach of either x4 stage in input
#: pixels (PP-MSVSR-L's upsample: input conv + 5 residual blocks + 3 convs at 1x/2x/4x ≈ 13).
STRIP_HALO = 16


class _SegmentedRunner:
    """The network's own forward, eager, with every parameterised child layer a static program."""

    def __init__(self, net: "paddle.nn.Layer", store: _ProgramStore, backend: BackendConfig, threads: int) -> None:
        self.store, self.backend, self.threads = store, backend, threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.net = _static_copy(net)
        if hasattr(net, "check_mirror"):
            self.net.check_mirror = net.check_mirror  # the glue is eager: the exact shortcut may stay
        # The model's own plan for stages that run per frame (MSVSR's x4 stages), if it has one:
        # it hands them to ``segment`` as layers of its own, which run in row strips.
        plan = getattr(self.net, "engine_segments", None)
        self.segments = plan(_static_copy(net), self.stage_segment) if plan is not None else []
        self.segments += _install_segments(self.net, self)
        if not self.segments:
            raise ValueError(f"{_WHO}: {type(net).__name__} has no parameterised child layer to run segmented; "
                             "use segmented=False")
        self.predictors: dict[tuple, "paddle_inference._Predictor"] = {}

    def stage_segment(self, path: str, layer: "paddle.nn.Layer", scale: int | None):
        """A stage a model declares, as a static program (one per input shapes).

        ``scale=None``: ``layer(*inputs)`` runs whole, with any number of outputs. ``scale`` an
        integer: ``layer(x, *feats)`` (per frame, convolutions of bounded reach, one output
        ``scale`` times the input's height) runs on row strips of at most :data:`STRIP_PIXELS`
        input pixels with :data:`STRIP_HALO` rows of context, cropped and joined: the same result
        (rounding-level) with memory bounded by the strip, not the frame."""
        import paddle

        segment = _make_segment(path, layer, self)
        if scale is None:
            return segment

        def run(x, *feats):
            h, w = feats[0].shape[-2:]
            parts = []
            for top, bottom, start, stop in strip_rows(h, w):
                out = segment(x[..., top:bottom, :], *[f[..., top:bottom, :] for f in feats])
                parts.append(out[..., (start - top) * scale:(stop - top) * scale, :])
            return parts[0] if len(parts) == 1 else paddle.concat(parts, axis=-2)

        return run

    def pool(self) -> "concurrent.futures.ThreadPoolExecutor":
        """Worker threads for the split deformable convolutions (created on first use)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.threads,
                                                               thread_name_prefix="vsmsvsr-dcn")
        return self._pool

    def predictor(self, part: str, layer: "paddle.nn.Layer", shapes: tuple) -> "paddle_inference._Predictor":
        pred = self.predictors.get((part, shapes))
        if pred is None:
            folder = self.store.get(part, layer, shapes)
            pred = self.predictors[part, shapes] = paddle_inference._Predictor(folder, self.backend, self.threads)
        return pred

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import paddle

        with paddle.no_grad():
            out = _main_output(self.net(paddle.to_tensor(x, place=paddle.CPUPlace())))
        return out.numpy()


def _install_segments(net: "paddle.nn.Layer", runner: _SegmentedRunner) -> list[str]:
    """Replace every parameterised child of ``net`` by a static segment; returns their dotted names.

    Containers (LayerDict/LayerList) are looked into. A child that contains a deformable
    convolution is looked into too, so that its deformable convolutions stay eager and run split
    over threads (:class:`_ParallelDeformConv`), while its plain sub-layers become segments.
    """
    import paddle
    from paddle.vision.ops import DeformConv2D

    containers = (paddle.nn.LayerDict, paddle.nn.LayerList)
    names: list[str] = []

    def replace_child(parent: "paddle.nn.Layer", name: str, new: "paddle.nn.Layer") -> None:
        if isinstance(parent, paddle.nn.LayerDict):
            parent[name] = new
        else:
            setattr(parent, name, new)

    def visit(parent: "paddle.nn.Layer", prefix: str) -> None:
        for name, child in list(parent.named_children()):
            path = f"{prefix}{name}"
            if isinstance(child, DeformConv2D):
                replace_child(parent, name, _ParallelDeformConv(child, runner))
            elif isinstance(child, containers) or any(isinstance(sub, DeformConv2D) for sub in child.sublayers()):
                visit(child, path + ".")
            elif any(True for _ in child.parameters()):
                replace_child(parent, name, _make_segment(path, child, runner))
                names.append(path)

    visit(net, "")
    return names


def strip_rows(h: int, w: int, pixels: int | None = None, halo: int | None = None) -> list[tuple[int, int, int, int]]:
    """Row strips covering ``h`` rows of width ``w``: ``(top, bottom, start, stop)`` per strip.

    Rows ``start:stop`` (the strip's own, disjoint, covering ``0:h`` in order) are computed from
    rows ``top:bottom`` = the own rows plus up to ``halo`` rows of context on each side. Own rows
    are at most ``pixels // w`` (and at least ``halo``) per strip and as even as possible, so a
    frame gives few distinct strip shapes (each one is a program). One strip if it all fits.
    """
    pixels = STRIP_PIXELS if pixels is None else pixels
    halo = STRIP_HALO if halo is None else halo
    rows = max(pixels // max(w, 1), halo, 1)
    if h <= rows + 2 * halo:
        return [(0, h, 0, h)]
    count = -(-h // rows)
    bounds = [h * k // count for k in range(count + 1)]
    return [(max(0, a - halo), min(h, b + halo), a, b) for a, b in zip(bounds, bounds[1:])]


def _deform_parts(layer: "paddle.nn.Layer", threads: int) -> int:
    """How many independent slices (by deformable group) a deformable conv is split into."""
    groups = int(layer._deformable_groups)
    if int(getattr(layer, "_groups", 1)) != 1:
        return 1
    parts = max(1, min(threads, groups))
    while groups % parts:
        parts -= 1
    return parts


def _ParallelDeformConv(layer: "paddle.nn.Layer", runner: _SegmentedRunner) -> "paddle.nn.Layer":
    """A ``DeformConv2D`` run eagerly as ``parts`` deformable-group slices on parallel threads.

    Paddle's CPU deformable convolution samples its im2col columns on one thread (about 0.2 s
    per call at 180x320 with 32 channels, whatever the thread setting), and its eager kernels
    release the GIL. The deformable groups of a modulated deformable convolution are independent
    (group g samples only its own input channels with its own offsets and mask), so the
    convolution is the sum over slices of groups of the same convolution restricted to each
    slice, plus the bias: the same products, summed in a different order (rounding-level
    differences, rel_l2 ~1e-7).
    """
    import paddle
    from paddle.vision.ops import deform_conv2d

    parts = _deform_parts(layer, runner.threads)
    compiled = deform.library() if int(getattr(layer, "_groups", 1)) == 1 else None

    class ParallelDeformConv(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            self.parts = parts

        def forward(self, x, offset, mask=None):
            inner = self.layer
            if compiled is not None and mask is not None and deform.fits(x):
                return deform.deform_conv2d(compiled, x, offset, mask, inner.weight, inner.bias, inner._stride,
                                            inner._padding, inner._dilation, int(inner._deformable_groups),
                                            runner.threads)
            if self.parts == 1 or mask is None:
                return inner(x, offset, mask)
            c = x.shape[1] // self.parts
            g = int(inner._deformable_groups) // self.parts
            taps = int(inner._kernel_size[0]) * int(inner._kernel_size[1])

            def run(i: int):
                with paddle.no_grad():
                    return deform_conv2d(
                        x[:, i * c:(i + 1) * c], offset[:, i * g * 2 * taps:(i + 1) * g * 2 * taps],
                        inner.weight[:, i * c:(i + 1) * c], None, stride=inner._stride, padding=inner._padding,
                        dilation=inner._dilation, deformable_groups=g, groups=1,
                        mask=mask[:, i * g * taps:(i + 1) * g * taps])

            outs = list(runner.pool().map(run, range(self.parts)))
            out = outs[0]
            for o in outs[1:]:
                out = out + o
            if inner.bias is not None:
                out = out + inner.bias.reshape([1, -1, 1, 1])
            return out

    return ParallelDeformConv()


def as_array(tensor: "paddle.Tensor") -> np.ndarray:
    """A CPU tensor's values as a numpy array without a copy where it can be had (DLPack: the
    array shares the tensor's memory and keeps it alive), else ``tensor.numpy()``."""
    try:
        return np.from_dlpack(tensor)
    except (TypeError, BufferError, RuntimeError, AttributeError):
        return tensor.numpy()


def as_tensor(array: np.ndarray) -> "paddle.Tensor":
    """A numpy array the caller hands over (a program's fresh output) as a CPU tensor, without a
    copy where DLPack allows (the tensor keeps the array alive), else ``paddle.to_tensor``."""
    import paddle

    if array.flags.c_contiguous and array.flags.writeable and array.dtype == np.float32:
        try:
            return paddle.utils.dlpack.from_dlpack(array)
        except (TypeError, BufferError, RuntimeError, AttributeError):
            pass
    return paddle.to_tensor(array, place=paddle.CPUPlace())


def _make_segment(path: str, layer: "paddle.nn.Layer", runner: _SegmentedRunner) -> "paddle.nn.Layer":
    import paddle

    class StaticSegment(paddle.nn.Layer):
        """Calls ``layer`` through its static program; one program per per-sample input shapes."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, *args, **kwargs):
            if kwargs or not args or not all(isinstance(a, paddle.Tensor) for a in args):
                return self.layer(*args, **kwargs)  # not a plain tensor call: stay eager
            n = args[0].shape[0]
            arrays = [as_array(a) for a in args]
            if n > 1 and all(len(a.shape) > 0 and a.shape[0] == n for a in args):
                # one sample at a time: exact (segments are batch-independent), bounded memory
                parts = [self._run([arr[i:i + 1] for arr in arrays]) for i in range(n)]
                outs = [np.concatenate(chunk, axis=0) for chunk in zip(*parts)]
            else:
                outs = self._run(arrays)
            tensors = [as_tensor(o) for o in outs]
            return tensors[0] if len(tensors) == 1 else tuple(tensors)

        def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
            shapes = tuple(tuple(int(d) for d in a.shape) for a in arrays)
            return runner.predictor(path, self.layer, shapes).run(arrays)

    segment = StaticSegment()
    segment.eval()
    return segment
