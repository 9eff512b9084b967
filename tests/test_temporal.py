"""Window grid, spans and context around scene cuts (pure Python, no VapourSynth)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from vsmsvsr.temporal import Span, cut_flag_range, grid_spans, grid_window, iter_spans, window_span

# (num_frames, window, overlap, cuts) covering the edge cases the filter meets.
CASES = [
    (1, 1, 0, set()),
    (1, 5, 3, set()),
    (3, 10, 2, set()),  # clip shorter than a window
    (3, 10, 2, {1}),
    (10, 1, 0, {3, 4}),  # window 1
    (10, 1, 2, {3, 4, 9}),
    (10, 4, 0, {0, 9}),  # cut at frame 0 (meaningless) and at the last frame
    (17, 4, 2, {4, 5, 6}),  # consecutive cuts, one on a grid boundary
    (17, 4, 6, {1, 2, 15, 16}),  # overlap larger than the window
    (23, 5, 1, {7, 12, 13, 20}),
    (40, 8, 3, set()),
]


def flags(cuts):
    return lambda i: i in cuts


def random_case(rng: random.Random):
    num = rng.randint(1, 60)
    window = rng.randint(1, 12)
    overlap = rng.randint(0, 7)
    cuts = {i for i in range(num) if rng.random() < 0.15}
    return num, window, overlap, cuts


ALL_CASES = CASES + [random_case(random.Random(seed)) for seed in range(60)]


@pytest.mark.parametrize("num,window,overlap,cuts", ALL_CASES)
def test_spans_partition_clip_and_respect_cuts_and_ends(num, window, overlap, cuts):
    spans = list(iter_spans(num, window, overlap, flags(cuts)))
    covered = [n for s in spans for n in s.frames]
    assert covered == list(range(num))  # every frame in exactly one span, in order
    real_cuts = {c for c in cuts if 0 < c < num}
    boundaries = {s.start for s in spans}
    assert real_cuts <= boundaries  # a cut always starts a new span
    for s in spans:
        assert 0 <= s.ctx_start <= s.start < s.stop <= s.ctx_stop <= num
        assert len(s) <= window
        assert s.start // window == (s.stop - 1) // window  # inside one grid window
        assert s.start - s.ctx_start <= overlap and s.ctx_stop - s.stop <= overlap
        # Neither output nor context crosses a cut.
        assert not any(s.ctx_start < c < s.ctx_stop for c in real_cuts), (s, real_cuts)
        # Context is as long as allowed: it stops only at overlap, a cut or a clip end.
        if s.start - s.ctx_start < overlap:
            assert s.ctx_start == 0 or s.ctx_start in real_cuts
        if s.ctx_stop - s.stop < overlap:
            assert s.ctx_stop == num or s.ctx_stop in real_cuts
    # Spans start only at grid boundaries or cuts.
    assert boundaries <= {k * window for k in range(num)} | real_cuts


@pytest.mark.parametrize("num,window,overlap,cuts", ALL_CASES)
def test_span_is_same_for_every_frame_and_order(num, window, overlap, cuts):
    expected = {n: s for s in iter_spans(num, window, overlap, flags(cuts)) for n in s.frames}
    order = list(range(num))
    random.Random(num * 31 + window).shuffle(order)
    for n in order:
        assert window_span(n, num, window, overlap, flags(cuts)) == expected[n]
    for k in range((num - 1) // window + 1):
        assert grid_spans(k, num, window, overlap, flags(cuts)) == sorted(
            {expected[n] for n in range(k * window, min(num, (k + 1) * window))}, key=lambda s: s.start
        )


@pytest.mark.parametrize("num,window,overlap,cuts", ALL_CASES)
def test_span_depends_only_on_cut_flag_range(num, window, overlap, cuts):
    rng = random.Random(num + 1000 * window + overlap)
    for k in range((num - 1) // window + 1):
        needed = cut_flag_range(k, num, window, overlap)
        assert len(needed) <= window + 2 * overlap - 1
        assert set(needed) <= set(range(k * window - overlap, (k + 1) * window + overlap + 1))
        asked = set()

        def recording(i, asked=asked):
            asked.add(i)
            return i in cuts

        frames = range(k * window, min(num, (k + 1) * window))
        base = {n: window_span(n, num, window, overlap, recording) for n in frames}
        assert asked <= set(needed)  # the predicate is never consulted outside the range
        for _ in range(5):
            # Arbitrary cut flags outside the range never change a span of this grid window.
            outside = {i for i in range(-3, num + 3) if i not in needed and rng.random() < 0.5}
            changed = {c for c in cuts if c in needed} | outside
            for n in frames:
                assert window_span(n, num, window, overlap, flags(changed)) == base[n]


def test_known_spans_with_cuts():
    # Window 4 on 12 frames, overlap 2, cuts before frames 5 and 6.
    spans = list(iter_spans(12, 4, 2, flags({5, 6})))
    assert spans == [
        Span(0, 4, 0, 5),  # right context stops at the cut before frame 5
        Span(4, 5, 2, 5),  # grid window [4, 8) split at 5 and 6
        Span(5, 6, 5, 6),  # a one-frame scene: no context at all
        Span(6, 8, 6, 10),
        Span(8, 12, 6, 12),  # clip end: no right context
    ]


def test_no_cuts_is_fixed_grid_with_overlap():
    spans = list(iter_spans(10, 4, 1, flags(set())))
    assert spans == [Span(0, 4, 0, 5), Span(4, 8, 3, 9), Span(8, 10, 7, 10)]


def test_window_larger_than_clip():
    assert list(iter_spans(3, 10, 4, flags(set()))) == [Span(0, 3, 0, 3)]
    assert window_span(2, 3, 10, 4, flags({2})) == Span(2, 3, 2, 3)


def test_window_one_overlap_zero_is_frame_by_frame():
    assert list(iter_spans(4, 1, 0, flags({2}))) == [Span(n, n + 1, n, n + 1) for n in range(4)]


def test_cut_at_frame_zero_is_ignored_and_last_frame_cut_isolates_it():
    never = []
    assert list(iter_spans(6, 3, 2, flags({0}))) == list(iter_spans(6, 3, 2, flags(set())))
    window_span(0, 6, 3, 2, lambda i: never.append(i) or False)
    assert 0 not in never
    assert window_span(5, 6, 3, 2, flags({5})) == Span(5, 6, 5, 6)


def test_span_helpers_and_numpy_ints():
    s = window_span(np.int64(5), np.int32(12), np.int64(4), np.int16(2), flags(set()))
    assert s == Span(4, 8, 2, 10)
    assert s.frames == range(4, 8) and s.context == range(2, 10) and len(s) == 4
    assert grid_window(7, 4) == 1 and grid_window(0, 1) == 0
    assert cut_flag_range(1, 12, 4, 2) == range(3, 10)
    assert cut_flag_range(0, 12, 4, 0) == range(1, 4)
    assert cut_flag_range(0, 1, 4, 3) == range(1, 1)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"window": 0}, ValueError, "window must be >= 1, got 0"),
        ({"overlap": -1}, ValueError, "overlap must be >= 0, got -1"),
        ({"num_frames": 0}, ValueError, "num_frames must be >= 1"),
        ({"n": 12}, ValueError, r"n must be in \[0, 11\], got 12"),
        ({"n": -1}, ValueError, "n must be in"),
        ({"window": 2.0}, TypeError, "window must be an int, got 2.0"),
        ({"overlap": True}, TypeError, "overlap must be an int"),
        ({"n": "3"}, TypeError, "n must be an int"),
        ({"is_cut": {3}}, TypeError, "is_cut must be callable"),
    ],
)
def test_window_span_rejects_bad_arguments(kwargs, exc, match):
    args = {"n": 3, "num_frames": 12, "window": 4, "overlap": 2, "is_cut": flags(set())} | kwargs
    with pytest.raises(exc, match="vsmsvsr.temporal.window_span: " + match):
        window_span(**args)


def test_other_functions_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"cut_flag_range: k must be in \[0, 2\] for 12 frames, got 3"):
        cut_flag_range(3, 12, 4, 2)
    with pytest.raises(ValueError, match="grid_spans: k must be in"):
        grid_spans(-1, 12, 4, 2, flags(set()))
    with pytest.raises(ValueError, match="iter_spans: window must be >= 1"):
        list(iter_spans(12, 0, 2, flags(set())))
    with pytest.raises(TypeError, match="iter_spans: is_cut must be callable"):
        list(iter_spans(12, 4, 2, None))
    with pytest.raises(ValueError, match="grid_window: window must be >= 1"):
        grid_window(3, 0)
