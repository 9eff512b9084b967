"""Temporal window grid for recurrent video models (pure Python, no VapourSynth).

A recurrent model (MSVSR, DeepRemaster, ...) processes a run of consecutive frames at once, and
its output for one frame depends on the other frames of the run. For the output of frame ``n`` to
be the same whatever order frames are requested in, however many threads render, and whichever
machine renders which part of a film, the run that produces frame ``n`` must be a pure function of
``n`` and of data near ``n``. This module defines that run:

* **Grid.** Grid window ``k`` holds the output frames ``[k * window, (k + 1) * window)`` (the last
  one is cut short by the clip end). The grid is anchored at frame 0 of the clip, never at the
  first frame requested.
* **Scene cuts split windows.** ``is_cut(i)`` says that a cut lies between frames ``i - 1`` and
  ``i``. A cut at ``c`` inside grid window ``k`` splits it into ``[k * window, c)`` and
  ``[c, (k + 1) * window)``; several cuts split it several times. These pieces are the *spans*:
  every frame of the clip is the output of exactly one span, and no span contains a cut.
* **Context.** A span is computed together with up to ``overlap`` context frames on each side,
  whose outputs are discarded. Context stops early at a cut and at the clip ends, so a span never
  sees frames of another scene. Context is what hides the window boundaries: frames near the
  boundary of a span see (almost) as much of the scene as frames in its middle.

Because cuts only ever split grid windows, the span of frame ``n`` depends only on ``n``,
``num_frames``, ``window``, ``overlap`` and the cut flags of the frames in
:func:`cut_flag_range` of ``n``'s grid window, a range of ``window + 2 * overlap - 1`` frames at
most. Nothing depends on scanning the clip from its start, so memory and work are bounded by the
window, never by the clip length.

Frame numbers are 0-based; all ranges are half-open ``[start, stop)``. ``is_cut(0)`` is never
consulted: the clip start is a boundary already.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = [
    "CutPredicate",
    "Span",
    "check_grid",
    "clamp_grid",
    "cut_flag_range",
    "grid_spans",
    "grid_window",
    "iter_spans",
    "window_span",
]

#: ``is_cut(i)`` is True when a scene cut lies between frames ``i - 1`` and ``i``.
CutPredicate = Callable[[int], bool]


@dataclass(frozen=True)
class Span:
    """One unit of temporal work: a run of output frames plus its context.

    Attributes:
        start, stop: the output frames ``[start, stop)``; they never contain a cut
            (``is_cut(i)`` is False for ``start < i < stop``).
        ctx_start, ctx_stop: the frames to compute ``[ctx_start, ctx_stop)``, a superset of the
            output frames extended by at most ``overlap`` frames on each side, never across a cut
            or a clip end. Outputs of ``[ctx_start, start)`` and ``[stop, ctx_stop)`` are discarded.
    """

    start: int
    stop: int
    ctx_start: int
    ctx_stop: int

    @property
    def frames(self) -> range:
        """The output frames of the span."""
        return range(self.start, self.stop)

    @property
    def context(self) -> range:
        """The frames computed for the span (output frames and context frames)."""
        return range(self.ctx_start, self.ctx_stop)

    def __len__(self) -> int:
        return self.stop - self.start


def _as_int(value: object, name: str, where: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{where}: {name} must be an int, got {value!r}")
    try:
        return operator.index(value)  # int, numpy integers
    except TypeError:
        raise TypeError(f"{where}: {name} must be an int, got {value!r}") from None


def check_grid(num_frames: object, window: object, overlap: object, where: str) -> tuple[int, int, int]:
    """Validate grid parameters for the function named ``where``; return them as ints.

    Raises:
        TypeError: an argument is not an int (bools are rejected; numpy integers are accepted).
        ValueError: ``num_frames < 1``, ``window < 1`` or ``overlap < 0``.
    """
    num_frames = _as_int(num_frames, "num_frames", where)
    window = _as_int(window, "window", where)
    overlap = _as_int(overlap, "overlap", where)
    if num_frames < 1:
        raise ValueError(f"{where}: num_frames must be >= 1, got {num_frames}")
    if window < 1:
        raise ValueError(f"{where}: window must be >= 1, got {window}")
    if overlap < 0:
        raise ValueError(f"{where}: overlap must be >= 0, got {overlap}")
    return num_frames, window, overlap


def clamp_grid(num_frames: int, window: int, overlap: int) -> tuple[int, int]:
    """``(window, overlap)`` reduced to what a clip of ``num_frames`` frames can use.

    Every span is the same as with the given values: a window of ``num_frames`` or more is one
    grid window holding the whole clip, and context never reaches past the clip ends, so no span
    has more than ``num_frames - 1`` context frames on a side.
    """
    num_frames = max(int(num_frames), 1)
    return min(window, num_frames), min(overlap, num_frames - 1)


def _check_predicate(is_cut: object, where: str) -> None:
    if not callable(is_cut):
        raise TypeError(f"{where}: is_cut must be callable as is_cut(frame) -> bool, got {is_cut!r}")


def grid_window(n: int, window: int) -> int:
    """Index ``k`` of the grid window holding frame ``n`` (``n // window``)."""
    where = "vsmsvsr.temporal.grid_window"
    n = _as_int(n, "n", where)
    window = _as_int(window, "window", where)
    if window < 1:
        raise ValueError(f"{where}: window must be >= 1, got {window}")
    if n < 0:
        raise ValueError(f"{where}: n must be >= 0, got {n}")
    return n // window


def cut_flag_range(k: int, num_frames: int, window: int, overlap: int) -> range:
    """Frames whose cut flags decide the spans of grid window ``k``.

    The spans of every frame in grid window ``k`` (output frames and context) are determined by
    ``is_cut(i)`` for ``i`` in the returned range, and by nothing else but ``num_frames``,
    ``window`` and ``overlap``. The range is
    ``[max(1, k * window - overlap + 1), min(num_frames, (k + 1) * window + overlap))``, at most
    ``window + 2 * overlap - 1`` frames (empty when there is nothing to decide, e.g. a one-frame
    clip). A filter requests the cut flags of these frames, e.g. as clips shifted by
    ``i - n``, for the output frame ``n``.

    Raises:
        TypeError: an argument is not an int.
        ValueError: ``num_frames < 1``, ``window < 1``, ``overlap < 0`` or ``k`` outside the clip.
    """
    where = "vsmsvsr.temporal.cut_flag_range"
    num_frames, window, overlap = check_grid(num_frames, window, overlap, where)
    k = _as_int(k, "k", where)
    last = (num_frames - 1) // window
    if not 0 <= k <= last:
        raise ValueError(f"{where}: k must be in [0, {last}] for {num_frames} frames, got {k}")
    return range(max(1, k * window - overlap + 1), min(num_frames, (k + 1) * window + overlap))


def _span(n: int, num_frames: int, window: int, overlap: int, is_cut: CutPredicate) -> Span:
    grid_start = (n // window) * window
    grid_stop = min(grid_start + window, num_frames)
    start = n
    while start > grid_start and not is_cut(start):
        start -= 1
    stop = n + 1
    while stop < grid_stop and not is_cut(stop):
        stop += 1
    # Context frame start - j is usable when no cut lies in (start - j, start].
    ctx_start = start
    while ctx_start > 0 and start - ctx_start < overlap and not is_cut(ctx_start):
        ctx_start -= 1
    # Context frame stop + j is usable when no cut lies in [stop, stop + j].
    ctx_stop = stop
    while ctx_stop < num_frames and ctx_stop - stop < overlap and not is_cut(ctx_stop):
        ctx_stop += 1
    return Span(start, stop, ctx_start, ctx_stop)


def window_span(n: int, num_frames: int, window: int, overlap: int, is_cut: CutPredicate) -> Span:
    """The span whose output includes frame ``n``.

    Args:
        n: output frame, ``0 <= n < num_frames``.
        num_frames: length of the clip (>= 1).
        window: output frames per grid window (>= 1).
        overlap: context frames on each side of a span (>= 0), clipped at cuts and clip ends.
        is_cut: ``is_cut(i)`` is True when a cut lies between frames ``i - 1`` and ``i``; it is
            only called with ``i`` in ``cut_flag_range(n // window, ...)``.

    Returns:
        The :class:`Span` holding ``n``; the same span for every ``n`` of that span.

    Raises:
        TypeError: an argument is not an int, or ``is_cut`` is not callable.
        ValueError: ``num_frames < 1``, ``window < 1``, ``overlap < 0`` or ``n`` outside the clip.
    """
    where = "vsmsvsr.temporal.window_span"
    num_frames, window, overlap = check_grid(num_frames, window, overlap, where)
    n = _as_int(n, "n", where)
    if not 0 <= n < num_frames:
        raise ValueError(f"{where}: n must be in [0, {num_frames - 1}], got {n}")
    _check_predicate(is_cut, where)
    return _span(n, num_frames, window, overlap, is_cut)


def grid_spans(k: int, num_frames: int, window: int, overlap: int, is_cut: CutPredicate) -> list[Span]:
    """The spans of grid window ``k`` in frame order (one, or more where cuts split it).

    Same arguments and errors as :func:`window_span`, with the grid window index ``k`` in
    ``[0, (num_frames - 1) // window]`` instead of a frame.
    """
    where = "vsmsvsr.temporal.grid_spans"
    num_frames, window, overlap = check_grid(num_frames, window, overlap, where)
    k = _as_int(k, "k", where)
    last = (num_frames - 1) // window
    if not 0 <= k <= last:
        raise ValueError(f"{where}: k must be in [0, {last}] for {num_frames} frames, got {k}")
    _check_predicate(is_cut, where)
    spans = []
    n = k * window
    stop = min(n + window, num_frames)
    while n < stop:
        span = _span(n, num_frames, window, overlap, is_cut)
        spans.append(span)
        n = span.stop
    return spans


def iter_spans(num_frames: int, window: int, overlap: int, is_cut: CutPredicate) -> Iterator[Span]:
    """All spans of a clip in frame order; their output frames partition ``[0, num_frames)``.

    Same arguments and errors as :func:`window_span`. Lazy: memory does not grow with the clip.
    """
    where = "vsmsvsr.temporal.iter_spans"
    num_frames, window, overlap = check_grid(num_frames, window, overlap, where)
    _check_predicate(is_cut, where)
    n = 0
    while n < num_frames:
        span = _span(n, num_frames, window, overlap, is_cut)
        yield span
        n = span.stop
