"""Temporal-window processing as a VapourSynth graph, shared by Upscale and Remaster.

A window function ``run(context) -> result`` maps the frames of one span's context
``(t, planes, h, w)`` (float32) to ``(t, planes', h', w')``. :func:`windowed_clips` builds one
``std.ModifyFrame`` per requested output: its callback gets the span of frame ``n`` (from
:func:`vsmsvsr.filters.scene.span_clip`) and the work frames around ``n`` as dependencies
(shifted clips, never ``get_frame`` in a callback), runs the span once through a shared
:class:`WindowCache` and copies frame ``n``'s planes out. Several outputs (e.g. restored luma and
colour) can read the same result, so the network runs once per span for all of them.
"""
from __future__ import annotations

import collections
import functools
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import vapoursynth as vs

from vsmsvsr.engine.allocator import return_free_memory
from vsmsvsr.filters.scene import shifted, span_of_frame
from vsmsvsr.temporal import Span

core = vs.core

__all__ = ["CACHE_WINDOWS", "Output", "WindowCache", "windowed_clips"]

#: Finished windows kept for the frames still to be delivered: the window being read and its
#: neighbour (requests from several threads straddle one window boundary). A window evicted too
#: early is computed again, with the same result.
CACHE_WINDOWS = 2

#: ``run(context) -> result``, or with ``keeps=True`` ``run(context, keep=slice) -> result[keep]``.
WindowRunner = Callable[..., np.ndarray]


class WindowCache:
    """Runs each span once and keeps the last few results (output frames only).

    One lock serialises the model: a Paddle predictor is not thread-safe and holds the GIL anyway,
    so parallel callbacks would only contend. A frame whose span is cached is served at once.

    When a new result needs room, a window all of whose frames have been read by every output
    (``readers`` reads each) goes first, the least recently used of those; only if every kept
    window still owes frames does the least recently used one go. Threads finish frames out of
    order: a plain LRU dropped a window one late frame still needed, as soon as two later windows
    had been started, and ran it again.
    """

    def __init__(self, run: WindowRunner, size: int = CACHE_WINDOWS, keeps: bool = False, readers: int = 1) -> None:
        self._run = run
        self._keeps = keeps
        self._size = size
        self._readers = readers
        # span -> (its output frames, reads of each frame), least recently used first
        self._results: collections.OrderedDict[Span, tuple[np.ndarray, collections.Counter[int]]] = \
            collections.OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0

    def frame(self, span: Span, n: int, frames: Callable[[], np.ndarray]) -> np.ndarray:
        """Result ``(planes', h', w')`` of frame ``n``; ``frames()`` gives the span's context."""
        with self._lock:
            entry = self._results.get(span)
            if entry is None:
                keep = slice(span.start - span.ctx_start, span.stop - span.ctx_start)
                if self._keeps:  # the runner returns only the output frames
                    result = self._run(frames(), keep=keep)
                else:  # keep only the output frames: context outputs are discarded
                    out = self._run(frames())
                    result = out[keep].copy()
                    del out
                entry = self._results[span] = (result, collections.Counter())
                self.runs += 1
                while len(self._results) > self._size:
                    self._evict(newest=span)
                return_free_memory()  # what the window freed, glibc would otherwise keep
            else:
                self._results.move_to_end(span)
            result, reads = entry
            reads[n] += 1
            return result[n - span.start]

    def _read_out(self, span: Span) -> bool:
        reads = self._results[span][1]
        return all(reads[i] >= self._readers for i in range(span.start, span.stop))

    def _evict(self, newest: Span) -> None:
        older = [s for s in self._results if s != newest]  # least recently used first
        victim = next((s for s in older if self._read_out(s)), older[0])
        del self._results[victim]


@dataclass(frozen=True)
class Output:
    """One output clip of :func:`windowed_clips`: ``template``'s format and size, its planes
    filled from the result planes ``first, first + 1, ...``."""

    template: vs.VideoNode
    first: int = 0


def _window_frame(n: int, f: list[vs.VideoFrame], cache: WindowCache, first_offset: int,
                  first_plane: int) -> vs.VideoFrame:
    # f[0]: blank frame to fill, f[1]: span of n, f[2 + j]: work frame n + first_offset + j.
    span = Span(*span_of_frame(f[1]))
    planes = f[2].format.num_planes

    def context() -> np.ndarray:
        index = [2 + i - n - first_offset for i in span.context]
        return np.stack([np.stack([np.asarray(f[j][p]) for p in range(planes)]) for j in index])

    image = cache.frame(span, n, context)
    out = f[0].copy()
    for p in range(out.format.num_planes):
        np.copyto(np.asarray(out[p]), image[first_plane + p])
    source = f[2 - first_offset]
    out.props.clear()
    out.props.update(source.props)
    return out


def windowed_clips(work: vs.VideoNode, spans: vs.VideoNode, window: int, overlap: int,
                   run: WindowRunner, outputs: Sequence[Output],
                   cache_windows: int = CACHE_WINDOWS, keeps: bool = False) -> list[vs.VideoNode]:
    """The outputs of ``run`` on every span of ``work``, one clip per :class:`Output`.

    Args:
        work: planar float32 clip (RGBS, GRAYS...) whose frames ``run`` sees.
        spans: :func:`vsmsvsr.filters.scene.span_clip` of ``work`` with the same window/overlap.
        run: ``(t, planes, h, w) float32 -> (t, planes', h', w')`` for one span's context.
        outputs: the clips to produce; each frame gets the props of ``work``'s frame ``n``.
        keeps: ``run`` takes ``keep=slice`` (the span's output frames within its context) and
            returns only those, so context outputs are never held (see ``run_window``).

    Frame ``n`` depends on the work frames ``n - (window - 1 + overlap) .. n + window + overlap - 1``
    only, so output never depends on request order or thread count.
    """
    cache = WindowCache(run, cache_windows, keeps, readers=len(outputs))
    offsets = range(-(window - 1 + overlap), window + overlap)
    neighbours = [shifted(work, j) for j in offsets]
    clips = []
    for output in outputs:
        blank = core.std.BlankClip(output.template, length=work.num_frames, keep=True)
        clips.append(core.std.ModifyFrame(
            blank, [blank, spans, *neighbours],
            functools.partial(_window_frame, cache=cache, first_offset=offsets[0], first_plane=output.first)))
    return clips
