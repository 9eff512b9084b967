"""Scene-cut detection and temporal spans as VapourSynth graphs.

:func:`SceneDetect` marks cuts with the standard ``_SceneChangePrev``/``_SceneChangeNext`` frame
properties; :func:`scene_cut_clip` gives the temporal filters one cut flag per frame from the
detector, from properties the user set, or none; :func:`span_clip` turns those flags into the
:class:`vsmsvsr.temporal.Span` of every frame. The math lives in :mod:`vsmsvsr.scenecut` and
:mod:`vsmsvsr.temporal`; this module only wires clips together.

Every neighbour frame reaches a callback as a dependency (a shifted clip handed to
``std.ModifyFrame``), never through ``get_frame`` inside a callback, and every output frame is a
pure function of a bounded set of input frames, so results never depend on request order or thread
count, and memory does not grow with the clip length.
"""

from __future__ import annotations

import functools

import numpy as np
import vapoursynth as vs

from .. import scenecut
from ..temporal import check_grid, window_span
from .convert import check_constant_format

core = vs.core

__all__ = [
    "DIFF_PROP",
    "MAX_SHIFT_LIMIT",
    "SCENE_CHANGE_MODES",
    "SPAN_PROP",
    "SceneDetect",
    "difference_clip",
    "is_cut_frame",
    "scene_cut_clip",
    "shifted",
    "span_clip",
    "span_of_frame",
    "span_offsets",
]

#: Frame property with ``d(n)``, the shift-compensated luma difference to the previous frame
#: (float, luma in [0, 1]; 0.0 on frame 0). Useful to tune ``threshold``.
DIFF_PROP = "VsmsvsrSceneDiff"
#: Frame property set by :func:`span_clip`: ``[start, stop, ctx_start, ctx_stop]`` (ints).
SPAN_PROP = "VsmsvsrSpan"
#: Where the cut flags come from, see :func:`scene_cut_clip`.
SCENE_CHANGE_MODES = ("detect", "props", "none")
#: Largest ``max_shift`` accepted (pixels of the 64-pixel statistic plane).
MAX_SHIFT_LIMIT = 8

_PREV = "_SceneChangePrev"
_NEXT = "_SceneChangeNext"


def shifted(clip: vs.VideoNode, offset: int) -> vs.VideoNode:
    """``clip`` moved in time: frame ``n`` of the result is frame ``n + offset`` of ``clip``.

    Frames past either end repeat the first or last frame, so the result has ``clip``'s length;
    callbacks that care must tell those repeats apart by frame number.
    """
    num = clip.num_frames
    if offset == 0:
        return clip
    if abs(offset) >= num:
        return (clip[0] if offset < 0 else clip[-1]) * num
    if offset > 0:
        return clip[offset:] + clip[-1] * offset
    return clip[0] * (-offset) + clip[:offset]


def _check_detector(threshold: object, ratio: object, max_shift: object, func: str) -> None:
    scenecut.validate_criterion(threshold, ratio, func)
    if isinstance(max_shift, bool) or not isinstance(max_shift, int):
        raise TypeError(f"{func}: max_shift must be an int, got {max_shift!r}")
    if not 0 <= max_shift <= MAX_SHIFT_LIMIT:
        raise ValueError(f"{func}: max_shift must be in [0, {MAX_SHIFT_LIMIT}], got {max_shift}")


def _luma_stat_clip(clip: vs.VideoNode) -> vs.VideoNode:
    """Small GRAYS clip of the luma (BT.709 weights for RGB), longer side ``scenecut.STAT_SIZE``."""
    width, height = scenecut.stat_size(clip.width, clip.height)
    family = clip.format.color_family
    if family == vs.RGB:
        return core.resize.Bilinear(clip, width, height, format=vs.GRAYS, matrix_s="709")
    if family == vs.YUV:
        clip = core.std.ShufflePlanes(clip, 0, vs.GRAY)
    return core.resize.Bilinear(clip, width, height, format=vs.GRAYS)


def _diff_frame(n: int, f: list[vs.VideoFrame], max_shift: int) -> vs.VideoFrame:
    out = f[1].copy()
    if n == 0:
        out.props[DIFF_PROP] = 0.0
    else:
        out.props[DIFF_PROP] = scenecut.luma_difference(np.asarray(f[0][0]), np.asarray(f[1][0]), max_shift)
    return out


def _cut_frame(n: int, f: list[vs.VideoFrame], num: int, threshold: float, ratio: float) -> vs.VideoFrame:
    # f[j] carries d(n - NEIGHBOURHOOD + j); frame numbers outside [1, num) are clamped repeats.
    radius = scenecut.NEIGHBOURHOOD
    out = f[radius].copy()
    cut = False
    if n >= 1:
        neighbours = [
            f[j].props[DIFF_PROP]
            for j in range(2 * radius + 1)
            if j != radius and 1 <= n - radius + j < num
        ]
        cut = scenecut.is_scene_cut(out.props[DIFF_PROP], neighbours, threshold, ratio)
    out.props[_PREV] = int(cut)
    return out


def _detected_cuts(clip: vs.VideoNode, threshold: float, ratio: float, max_shift: int) -> vs.VideoNode:
    """Small clip whose frame ``i`` has ``_SceneChangePrev`` (cut between i-1 and i) and DIFF_PROP."""
    stat = _luma_stat_clip(clip)
    diffs = core.std.ModifyFrame(
        stat, [shifted(stat, -1), stat], functools.partial(_diff_frame, max_shift=max_shift)
    )
    radius = scenecut.NEIGHBOURHOOD
    return core.std.ModifyFrame(
        diffs,
        [shifted(diffs, j) for j in range(-radius, radius + 1)],
        functools.partial(_cut_frame, num=clip.num_frames, threshold=threshold, ratio=ratio),
    )


def difference_clip(clip: vs.VideoNode, max_shift: int = 0) -> vs.VideoNode:
    """Small clip whose frame ``i`` carries :data:`DIFF_PROP`: the mean absolute luma difference
    (luma in [0, 1], on the 64-pixel statistic plane) between frames ``i - 1`` and ``i``, minimised
    over global shifts up to ``max_shift`` (0: the plain difference; 0.0 on frame 0)."""
    stat = _luma_stat_clip(clip)
    return core.std.ModifyFrame(stat, [shifted(stat, -1), stat], functools.partial(_diff_frame, max_shift=max_shift))


def _mark_frame(n: int, f: list[vs.VideoFrame], num: int) -> vs.VideoFrame:
    out = f[0].copy()
    out.props[_PREV] = int(f[1].props[_PREV])
    out.props[_NEXT] = int(f[2].props[_PREV]) if n + 1 < num else 0
    out.props[DIFF_PROP] = float(f[1].props[DIFF_PROP])
    return out


def SceneDetect(
    clip: vs.VideoNode,
    threshold: float = scenecut.DEFAULT_THRESHOLD,
    *,
    ratio: float = scenecut.DEFAULT_RATIO,
    max_shift: int = scenecut.DEFAULT_MAX_SHIFT,
) -> vs.VideoNode:
    """Mark scene cuts with ``_SceneChangePrev`` / ``_SceneChangeNext`` on every frame.

    The luma (BT.709 weights for RGB) is downscaled to a 64-pixel plane; ``d(n)`` is its mean
    absolute difference to frame ``n-1``, minimised over global shifts of up to ``max_shift``
    pixels (so camera pans cost nothing), and a cut lies between ``n-1`` and ``n`` when
    ``d(n) >= threshold`` and ``d(n) >= ratio * d(m)`` for every ``m`` in ``n-2..n+2``,
    ``m != n``: cuts are isolated spikes, motion gives steady differences. The result for frame
    ``n`` depends on frames ``n-3 .. n+3`` only. See :mod:`vsmsvsr.scenecut`.

    Args:
        clip: any constant format and size: GRAY, YUV or RGB; 8-16 bit integer, half or float.
        threshold: absolute floor on ``d(n)``, luma in [0, 1]; default 0.05. Lower finds cuts
            between darker or similar shots, higher ignores more.
        ratio: how many times larger than its neighbours a spike must be (>= 1); default 2.0.
        max_shift: largest global shift searched, in pixels of the 64-pixel plane (0-8); default 6,
            i.e. pans of up to about 9 % of the frame width per frame are compensated.

    Returns:
        ``clip`` with frame properties ``_SceneChangePrev`` (1 on the first frame of a new scene,
        i.e. a cut between ``n-1`` and ``n``), ``_SceneChangeNext`` (1 on the last frame before a
        cut), both 0 otherwise, and ``VsmsvsrSceneDiff`` (``d(n)``, float). Clip ends are not
        cuts: frame 0 has ``_SceneChangePrev = 0`` and the last frame ``_SceneChangeNext = 0``,
        as with the former ``misc.SCDetect``.

    Raises:
        TypeError / ValueError: bad clip or parameter, naming ``vsmsvsr.SceneDetect``.
    """
    func = "vsmsvsr.SceneDetect"
    check_constant_format(clip, func)
    _check_detector(threshold, ratio, max_shift, func)
    cuts = _detected_cuts(clip, float(threshold), float(ratio), max_shift)
    return core.std.ModifyFrame(
        clip, [clip, cuts, shifted(cuts, 1)], functools.partial(_mark_frame, num=clip.num_frames)
    )


def _props_cut_frame(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
    # f[0]: blank flag frame, f[1]: user frame n, f[2]: user frame n - 1.
    out = f[0].copy()
    cut = n >= 1 and (bool(f[1].props.get(_PREV, 0)) or bool(f[2].props.get(_NEXT, 0)))
    out.props[_PREV] = int(cut)
    return out


def scene_cut_clip(
    clip: vs.VideoNode,
    scene_change: str = "detect",
    *,
    threshold: float = scenecut.DEFAULT_THRESHOLD,
    ratio: float = scenecut.DEFAULT_RATIO,
    max_shift: int = scenecut.DEFAULT_MAX_SHIFT,
    func: str = "vsmsvsr.scene_cut_clip",
) -> vs.VideoNode:
    """A small clip, as long as ``clip``, whose frame ``i`` tells whether a cut precedes frame ``i``.

    Read the flag with :func:`is_cut_frame`. Frame 0 never has a cut.

    Args:
        clip: the source clip (constant format and size, as for :func:`SceneDetect`).
        scene_change: ``"detect"`` runs :func:`SceneDetect`'s detector (with ``threshold``,
            ``ratio``, ``max_shift``); ``"props"`` honours ``_SceneChangePrev``/``_SceneChangeNext``
            already on ``clip`` from any detector (a cut precedes frame ``i`` when frame ``i`` has
            ``_SceneChangePrev`` or frame ``i-1`` has ``_SceneChangeNext`` set; missing means 0);
            ``"none"``: no cuts.
        func: name used in error messages (the calling filter's).
    """
    check_constant_format(clip, func)
    if scene_change not in SCENE_CHANGE_MODES:
        raise ValueError(
            f"{func}: scene_change must be one of {', '.join(map(repr, SCENE_CHANGE_MODES))}, "
            f"got {scene_change!r}"
        )
    _check_detector(threshold, ratio, max_shift, func)
    if scene_change == "detect":
        return _detected_cuts(clip, float(threshold), float(ratio), max_shift)
    blank = core.std.BlankClip(clip, width=1, height=1, format=vs.GRAY8, keep=True)
    if scene_change == "none":
        return core.std.SetFrameProps(blank, **{_PREV: 0})
    return core.std.ModifyFrame(blank, [blank, clip, shifted(clip, -1)], _props_cut_frame)


def is_cut_frame(frame: vs.VideoFrame) -> bool:
    """Cut flag of a frame of :func:`scene_cut_clip` (or of :func:`SceneDetect`'s output)."""
    return bool(frame.props.get(_PREV, 0))


def _span_frame(
    n: int, f: list[vs.VideoFrame], num: int, window: int, overlap: int, first_offset: int
) -> vs.VideoFrame:
    # f[j] is the flag frame of frame n + first_offset + j (clamped at the clip ends, but
    # window_span never asks outside [1, num)). ModifyFrame hands a lone frame, not a list,
    # when there is a single clip (window 1, overlap 0).
    if isinstance(f, vs.VideoFrame):
        f = [f]
    out = f[-first_offset].copy()
    span = window_span(n, num, window, overlap, lambda i: is_cut_frame(f[i - n - first_offset]))
    out.props[SPAN_PROP] = [span.start, span.stop, span.ctx_start, span.ctx_stop]
    return out


def span_offsets(window: int, overlap: int) -> range:
    """Offsets ``i - n`` of every cut flag that the span of some frame ``n`` may need.

    The union over all positions of ``n`` in its grid window of
    ``vsmsvsr.temporal.cut_flag_range`` shifted by ``-n``: ``[2 - window - overlap, window + overlap)``,
    always containing 0.
    """
    return range(min(0, 2 - window - overlap), max(1, window + overlap))


def span_clip(
    clip: vs.VideoNode,
    window: int,
    overlap: int,
    scene_change: str = "detect",
    *,
    threshold: float = scenecut.DEFAULT_THRESHOLD,
    ratio: float = scenecut.DEFAULT_RATIO,
    max_shift: int = scenecut.DEFAULT_MAX_SHIFT,
    func: str = "vsmsvsr.span_clip",
) -> vs.VideoNode:
    """A small clip whose frame ``n`` carries the temporal span of frame ``n`` in ``clip``.

    The property :data:`SPAN_PROP` (``"VsmsvsrSpan"``) holds ``[start, stop, ctx_start, ctx_stop]``
    of ``vsmsvsr.temporal.window_span(n, clip.num_frames, window, overlap, is_cut)``, with the cut
    flags from :func:`scene_cut_clip` (``scene_change`` and the detector parameters as there); the
    cut flag of frame ``n`` is kept as ``_SceneChangePrev``. Each frame depends on the flags of at
    most ``2 * (window + overlap) - 2`` neighbouring frames, handed over as shifted clips.

    Raises:
        TypeError / ValueError: bad clip, window, overlap or detector parameter, naming ``func``.
    """
    check_constant_format(clip, func)
    num, window, overlap = check_grid(clip.num_frames, window, overlap, func)
    flags = scene_cut_clip(
        clip, scene_change, threshold=threshold, ratio=ratio, max_shift=max_shift, func=func
    )
    offsets = span_offsets(window, overlap)
    return core.std.ModifyFrame(
        flags,
        [shifted(flags, j) for j in offsets],
        functools.partial(_span_frame, num=num, window=window, overlap=overlap, first_offset=offsets[0]),
    )


def span_of_frame(frame: vs.VideoFrame) -> list[int]:
    """``[start, stop, ctx_start, ctx_stop]`` of a frame of :func:`span_clip`."""
    return list(frame.props[SPAN_PROP])
