"""msvsr.Upscale: ×4 video super-resolution (PP-MSVSR family) with deterministic temporal windows."""
from __future__ import annotations

import collections
import functools
import threading
from typing import Callable

import numpy as np
import vapoursynth as vs

from vsmsvsr import scenecut
from vsmsvsr.filters.convert import ColorTags, check_constant_format, from_rgbs, to_rgbs
from vsmsvsr.filters.scene import shifted, span_clip, span_of_frame
from vsmsvsr.temporal import Span, check_grid

core = vs.core

FUNC = "vsmsvsr.Upscale"
SCALE = 4
#: Output frames per grid window: PaddleGAN's predictor runs 10-frame chunks.
DEFAULT_WINDOW = 10
#: Context frames on each side of a window (see bench/bench_upscale.py for the measurement).
DEFAULT_OVERLAP = 4
MIN_TILE = 64
DEFAULT_TILE_OVERLAP = 16
#: Finished windows kept for the frames of the window that are still to be delivered.
CACHE_WINDOWS = 3

FrameRunner = Callable[[np.ndarray], np.ndarray]


class WindowCache:
    """Runs each span once and keeps the last few results.

    One lock serialises the model: a Paddle predictor is not thread-safe and holds the GIL anyway,
    so parallel callbacks would only contend. A frame whose span is cached is served at once.
    """

    def __init__(self, run: FrameRunner, size: int = CACHE_WINDOWS) -> None:
        self._run = run
        self._size = size
        self._results: collections.OrderedDict[Span, np.ndarray] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0

    def frame(self, span: Span, n: int, frames: Callable[[], np.ndarray]) -> np.ndarray:
        """Output ``(3, 4h, 4w)`` of frame ``n``; ``frames()`` gives the span's context ``(t, 3, h, w)``."""
        with self._lock:
            result = self._results.get(span)
            if result is None:
                out = self._run(frames())
                # Keep only the output frames: context outputs are discarded.
                result = out[span.start - span.ctx_start: span.stop - span.ctx_start].copy()
                del out
                self._results[span] = result
                self.runs += 1
                while len(self._results) > self._size:
                    self._results.popitem(last=False)
            else:
                self._results.move_to_end(span)
            return result[n - span.start]


def _upscale_frame(n: int, f: list[vs.VideoFrame], cache: WindowCache, first_offset: int) -> vs.VideoFrame:
    # f[0]: blank ×4 frame to fill, f[1]: span of n, f[2 + j]: work frame n + first_offset + j.
    span = Span(*span_of_frame(f[1]))

    def context() -> np.ndarray:
        index = [2 + i - n - first_offset for i in span.context]
        return np.stack([np.stack([np.asarray(f[j][p]) for p in range(3)]) for j in index])

    image = cache.frame(span, n, context)
    out = f[0].copy()
    for p in range(3):
        np.copyto(np.asarray(out[p]), image[p])
    source = f[2 - first_offset]
    out.props.clear()
    out.props.update(source.props)
    return out


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{FUNC}: {name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{FUNC}: {name} must be >= {minimum}, got {value}")
    return value


def Upscale(
    clip: vs.VideoNode,
    model: str = "PP-MSVSR",
    weights: str | None = None,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    device: str | None = None,
    fp16: bool = False,
    backend: str = "auto",
    tile: int = 0,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    scene_change: bool | str = True,
    sc_threshold: float = scenecut.DEFAULT_THRESHOLD,
) -> vs.VideoNode:
    """×4 video super-resolution with PP-MSVSR, PP-MSVSR-L or PP-MSVSR-BD.

    Args:
        clip: constant format and size; YUV (any subsampling), RGB or GRAY; 8–16-bit integer, half
            or float. Returned in the same format at 4× width and height, frame props kept. YUV is
            converted with its ``_Matrix``/``_Range``/``_ChromaLocation`` (first frame; defaults when
            absent). Frames smaller than 64 px are padded for the network and cropped back.
        model: ``"PP-MSVSR"`` (default), ``"PP-MSVSR-L"`` (larger, slower) or ``"PP-MSVSR-BD"``
            (trained on blur-downsampled video).
        weights: path to a ``.pdparams`` file; ``None`` = the official file (downloaded once into
            the user cache).
        window: output frames per temporal window (default 10). Windows sit on a fixed grid
            ``[k·window, (k+1)·window)``, so frame n's output never depends on request order,
            thread count or machine.
        overlap: context frames computed and discarded on each side of a window (default 4),
            hiding window boundaries. Context never crosses a scene cut or a clip end.
        device: ``"cpu"``, ``"gpu"``, ``"gpu:N"``; ``None`` = any (``backend="auto"`` prefers a GPU).
        fp16: half-precision inference (GPU backends only).
        backend: ``"auto"`` (fastest available: TensorRT, GPU, CPU with oneDNN, dygraph),
            ``"trt"``, ``"gpu"``, ``"cpu"`` (Paddle Inference + oneDNN), ``"cpu-plain"`` or
            ``"dygraph"``; see :mod:`vsmsvsr.engine`. An unavailable explicit choice is an error.
        tile: 0 = whole frames; else the tile size in input pixels (>= 64) to bound memory.
        tile_overlap: overlap of neighbouring tiles in input pixels; the seams are cross-faded.
        scene_change: ``True`` detects cuts on luma (like :func:`vsmsvsr.SceneDetect`), ``"props"``
            honours existing ``_SceneChangePrev``/``_SceneChangeNext``, ``False`` ignores cuts.
            No window propagates features across a cut.
        sc_threshold: detector floor on the mean absolute luma difference (0–1).
    """
    # --- checks first, before any weights are touched ---
    check_constant_format(clip, FUNC)
    from vsmsvsr.models import get_spec

    get_spec(model, who=FUNC)
    _, window, overlap = check_grid(max(clip.num_frames, 1), window, overlap, FUNC)
    if tile != 0:
        _check_int(tile, "tile", MIN_TILE)
    _check_int(tile_overlap, "tile_overlap", 0)
    if tile and tile_overlap >= tile // 2:
        raise ValueError(f"{FUNC}: tile_overlap must be < tile / 2, got {tile_overlap} for tile {tile}")
    modes = {True: "detect", False: "none", "props": "props"}
    if not isinstance(scene_change, (bool, str)) or scene_change not in modes:
        raise ValueError(f"{FUNC}: scene_change must be True, False or 'props', got {scene_change!r}")
    if not isinstance(fp16, bool):
        raise TypeError(f"{FUNC}: fp16 must be a bool, got {fp16!r}")

    # span_clip validates sc_threshold too, and loads nothing.
    spans = span_clip(clip, window, overlap, modes[scene_change], threshold=sc_threshold, func=FUNC)

    from vsmsvsr.engine import Engine, run_window

    try:
        engine = Engine(model, weights, backend=backend, device=device, fp16=fp16)
    except (TypeError, ValueError) as exc:  # name this filter, keep the error's class
        raise type(exc)(str(exc).replace("vsmsvsr.Engine:", f"{FUNC}:", 1)) from None
    runner = functools.partial(run_window, engine, scale=SCALE, tile=tile, tile_overlap=tile_overlap)

    # --- graph: work clip -> windows -> back to the input's format ---
    tags = None if clip.format.color_family == vs.RGB else ColorTags.of(clip)
    work = core.std.Expr(to_rgbs(clip, tags), "x 0 max 1 min")  # the network was trained on [0, 1]
    offsets = range(-(window - 1 + overlap), window + overlap)
    blank = core.std.BlankClip(work, width=clip.width * SCALE, height=clip.height * SCALE, keep=True)
    cache = WindowCache(runner)
    upscaled = core.std.ModifyFrame(
        blank,
        [blank, spans, *(shifted(work, j) for j in offsets)],
        functools.partial(_upscale_frame, cache=cache, first_offset=offsets[0]),
    )
    rgb = core.std.Expr(upscaled, "x 0 max 1 min")
    return from_rgbs(rgb, clip, tags)
