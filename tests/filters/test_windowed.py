"""Temporal windows as a graph, with runners that need no model: seconds, not minutes."""
from __future__ import annotations

import random

import numpy as np
import pytest
import vapoursynth as vs

from vsmsvsr.filters.scene import span_clip
from vsmsvsr.filters.windowed import Output, WindowCache, windowed_clips
from vsmsvsr.temporal import Span, iter_spans

core = vs.core


def _numbered(num: int, cut_at: tuple[int, ...] = ()) -> vs.VideoNode:
    """GRAYS 8x8 frames whose pixels hold their frame number; ``_SceneChangePrev`` at ``cut_at``."""
    frames = [core.std.BlankClip(format=vs.GRAYS, width=8, height=8, length=1, color=float(n)) for n in range(num)]
    frames = [core.std.SetFrameProps(f, _SceneChangePrev=int(n in cut_at)) for n, f in enumerate(frames)]
    return core.std.Splice(frames)


@pytest.mark.parametrize("window, overlap, cuts", [(4, 2, ()), (3, 0, ()), (5, 3, (7,)), (4, 1, (4, 5, 11))])
def test_each_frame_comes_from_its_span_and_no_span_crosses_a_cut(window, overlap, cuts):
    num = 14
    clip = _numbered(num, cuts)
    seen = []

    def run(context: np.ndarray) -> np.ndarray:  # identity, recording which frames came together
        seen.append(tuple(int(v) for v in context[:, 0, 0, 0]))
        return context * 10

    spans = span_clip(clip, window, overlap, "props")
    (out,) = windowed_clips(clip, spans, window, overlap, run, [Output(core.std.BlankClip(clip, length=1))])
    order = list(range(num))
    random.Random(window * 31 + overlap).shuffle(order)  # request order must not matter
    values = {n: float(np.asarray(out.get_frame(n)[0])[0, 0]) for n in order}
    assert values == {n: 10.0 * n for n in range(num)}
    expected = list(iter_spans(num, window, overlap, lambda i: i in cuts))
    # in random order a window may be evicted from the small cache and run again, never another one
    assert set(seen) == {tuple(span.context) for span in expected}
    for context in seen:  # context frames never reach across a cut
        assert not any(context[0] < c <= context[-1] for c in cuts)


@pytest.mark.parametrize("readers", [1, 2])
def test_a_window_that_still_owes_a_frame_outlives_windows_already_read(readers):
    # Threads finish frames out of order: frame 1 is still to come when windows 2-3 and 4-5 start.
    spans = [Span(0, 2, 0, 2), Span(2, 4, 2, 4), Span(4, 6, 4, 6)]
    cache = WindowCache(lambda context: context * 10, size=2, readers=readers)

    def read(n: int) -> float:
        span = spans[n // 2]
        context = lambda: np.arange(span.ctx_start, span.ctx_stop, dtype=np.float32)[:, None]  # noqa: E731
        values = {float(cache.frame(span, n, context)[0]) for _ in range(readers)}  # every output reads n
        assert values == {10.0 * n}
        return values.pop()

    for n in (0, 2, 3, 4, 1, 5):
        read(n)
    assert cache.runs == 3  # window 0-1 was kept for frame 1; window 2-3, read out, made room
    read(2)  # a frame read again after its window left is computed again, with the same value
    assert cache.runs == 4


def test_several_outputs_share_one_run():
    clip = _numbered(6)
    runs = []

    def run(context: np.ndarray) -> np.ndarray:
        runs.append(1)
        return np.concatenate([context, context + 100], axis=1)  # two "planes": two outputs

    spans = span_clip(clip, 3, 1, "none")
    template = core.std.BlankClip(clip, length=1)
    a, b = windowed_clips(clip, spans, 3, 1, run, [Output(template), Output(template, first=1)])
    for n in range(6):
        assert float(np.asarray(a.get_frame(n)[0])[0, 0]) == n
        assert float(np.asarray(b.get_frame(n)[0])[0, 0]) == n + 100
    assert len(runs) == 2  # two windows of 3, each run once for both outputs


def test_frame_props_of_the_source_frame_are_kept():
    clip = core.std.SetFrameProps(_numbered(4), UserTag="kept")
    spans = span_clip(clip, 2, 0, "none")
    (out,) = windowed_clips(clip, spans, 2, 0, lambda c: c, [Output(core.std.BlankClip(clip, length=1))])
    assert out.get_frame(3).props["UserTag"] == "kept"
