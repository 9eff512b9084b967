"""Work-clip / return-clip format handling shared by the filters.

The networks see planar RGB float32 in [0, 1] (``vs.RGBS``). :func:`to_rgbs` brings any constant
format there and :func:`from_rgbs` returns a processed RGBS clip (of any size) to the input's family,
subsampling, depth and sample type.

YUV is converted with the clip's ``_Matrix``/``_Range``/``_ChromaLocation``, read once from its
first frame when the filter is built (as vs-jetpack does) and used in both directions, so the
round trip is exact up to rounding. Missing or unspecified tags get the defaults a player assumes:
the matrix from the frame size (:func:`default_matrix`), limited range (for GRAY too, as resize
assumes), left chroma siting. GRAY (range-expanded like luma) is copied to the three channels on the way in and is the mean of
the three on the way out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import vapoursynth as vs

core = vs.core

# Property values from the VapourSynth / ITU-T H.273 enumerations.
_MATRIX_RGB, _MATRIX_UNSPECIFIED = 0, 2
_MATRIX_BT709, _MATRIX_BT470BG, _MATRIX_SMPTE170M = 1, 5, 6
# The _Range property uses resize's convention (limited 0, full 1).
_RANGE_LIMITED, _RANGE_FULL = int(vs.RANGE_LIMITED), int(vs.RANGE_FULL)
_CHROMA_LEFT = 0


def default_matrix(width: int, height: int) -> int:
    """Matrix a player assumes for untagged YUV: BT.709 for HD, BT.470BG for 576-line PAL,
    SMPTE 170M otherwise (the usual resolution heuristic)."""
    if width > 1024 or height > 576:
        return _MATRIX_BT709
    if height == 576:
        return _MATRIX_BT470BG
    return _MATRIX_SMPTE170M


@dataclass(frozen=True)
class ColorTags:
    """What resize needs to convert a YUV clip to RGB and back."""

    matrix: int
    range: int
    chromaloc: int

    @classmethod
    def of_props(cls, props: "vs.FrameProps | dict", width: int, height: int) -> "ColorTags":
        """Tags from one frame's props, defaults filled in where absent (see :meth:`of`)."""
        matrix = int(props.get("_Matrix", _MATRIX_UNSPECIFIED))
        if matrix in (_MATRIX_RGB, _MATRIX_UNSPECIFIED):
            matrix = default_matrix(width, height)
        return cls(matrix, int(props.get("_Range", _RANGE_LIMITED)), int(props.get("_ChromaLocation", _CHROMA_LEFT)))

    @classmethod
    def of(cls, clip: vs.VideoNode) -> "ColorTags":
        """Tags of ``clip``'s first frame, defaults filled in where absent.

        Untagged YUV and GRAY are limited range, as VapourSynth's resize assumes them (an untagged
        GRAY clip converted with ``core.resize`` elsewhere in a script gives the same levels).
        """
        return cls.of_props(clip.get_frame(0).props, clip.width, clip.height)


def rgb_tags(clip: vs.VideoNode) -> "ColorTags":
    """What the filters use for an RGB clip's luma: the matrix of its size, full range."""
    return ColorTags(default_matrix(clip.width, clip.height), _RANGE_FULL, _CHROMA_LEFT)


def per_frame_tags(clip: vs.VideoNode, build: "Callable[[ColorTags], vs.VideoNode]",
                   template: vs.VideoNode) -> vs.VideoNode:
    """Frame ``n`` of ``build(tags of clip's frame n)``: colour conversions that follow each frame's
    own ``_Matrix``/``_Range``/``_ChromaLocation``, read when the frame is rendered.

    Building the graph renders nothing (no ``get_frame``): in ``Upscale(Colorize(clip))`` the
    upstream model runs only when frames are asked for (vspreview, ``vspipe --info``). ``build`` is
    called once per distinct set of tags; ``template`` gives the result's format, size and length.
    An RGB clip has no YUV tags: ``build`` gets the matrix of its size (for its luma), full range.
    """
    if clip.format.color_family == vs.RGB:
        return build(rgb_tags(clip))
    nodes: dict[ColorTags, vs.VideoNode] = {}
    width, height = clip.width, clip.height

    def select(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        tags = ColorTags.of_props(f.props, width, height)
        node = nodes.get(tags)
        if node is None:
            node = nodes[tags] = build(tags)
        return node

    return core.std.FrameEval(template, select, prop_src=clip)


def check_constant_format(clip: object, func: str) -> None:
    """Raise TypeError/ValueError naming ``func`` unless ``clip`` is a clip of constant format and size."""
    if not isinstance(clip, vs.VideoNode):
        raise TypeError(f"{func}: clip must be a vapoursynth.VideoNode, got {type(clip).__name__}")
    if clip.format is None or clip.format.id == vs.PresetVideoFormat.NONE:
        raise ValueError(
            f"{func}: the clip has a variable format; convert it to one format first, "
            "e.g. clip = core.resize.Bicubic(clip, format=vs.YUV420P8)"
        )
    if clip.width == 0 or clip.height == 0:
        raise ValueError(
            f"{func}: the clip has a variable frame size; resize it to one size first, "
            "e.g. clip = core.resize.Spline36(clip, width=1280, height=720)"
        )
    if clip.format.color_family not in (vs.YUV, vs.RGB, vs.GRAY):
        raise ValueError(f"{func}: unsupported color family {clip.format.color_family.name}")
    if clip.format.sample_type == vs.INTEGER and clip.format.bits_per_sample > 16:
        raise ValueError(
            f"{func}: {clip.format.bits_per_sample}-bit integer formats are not supported (8-16 bit, half, float)"
        )


def to_rgbs(clip: vs.VideoNode, tags: ColorTags | None = None) -> vs.VideoNode:
    """The work clip: ``vs.RGBS``; limited-range input is expanded, so nominal black/white is 0/1.

    ``tags`` matter for YUV and GRAY only (default: ``ColorTags.of(clip)``). Values are not
    clipped: out-of-gamut YUV can give RGB slightly outside [0, 1].
    """
    family = clip.format.color_family
    if family == vs.RGB:
        return clip if clip.format.id == vs.RGBS else core.resize.Point(clip, format=vs.RGBS)
    tags = tags or ColorTags.of(clip)
    if family == vs.GRAY:
        gray = core.resize.Point(clip, format=vs.GRAYS, range_in=tags.range, range=_RANGE_FULL)
        return core.std.ShufflePlanes(gray, [0, 0, 0], vs.RGB)
    return core.resize.Bicubic(clip, format=vs.RGBS, matrix_in=tags.matrix, range_in=tags.range,
                               chromaloc_in=tags.chromaloc)


def from_rgbs(rgb: vs.VideoNode, like: vs.VideoNode, tags: ColorTags | None = None) -> vs.VideoNode:
    """Return the RGBS clip ``rgb`` (any size) to ``like``'s format, with the same ``tags`` as
    :func:`to_rgbs`. Integer output is rounded (no dither), so equal inputs give equal outputs."""
    family, fmt = like.format.color_family, like.format.id
    if family == vs.RGB:
        return rgb if fmt == vs.RGBS else core.resize.Point(rgb, format=fmt, dither_type="none")
    tags = tags or ColorTags.of(like)
    if family == vs.GRAY:
        planes = [core.std.ShufflePlanes(rgb, i, vs.GRAY) for i in range(3)]
        gray = core.std.Expr(planes, "x y + z + 3 /")
        return core.resize.Point(gray, format=fmt, range_in=_RANGE_FULL, range=tags.range,
                                 dither_type="none")
    return core.resize.Bicubic(rgb, format=fmt, matrix=tags.matrix, range=tags.range,
                               chromaloc=tags.chromaloc, dither_type="none")


# --------------------------------------------------------------------------------------------
# luma / chroma split for the colour filters (Colorize, Remaster)


def _gray_format(fmt: vs.VideoFormat) -> vs.VideoFormat:
    return core.query_video_format(vs.GRAY, fmt.sample_type, fmt.bits_per_sample, 0, 0)


def colour_output_format(clip: vs.VideoNode) -> vs.VideoFormat:
    """Format of a colourised ``clip``: its own, except GRAY which becomes YUV of the same depth
    and sample type: 4:2:0 (what encoders and players expect) when width and height are even,
    else 4:4:4 (4:2:0 cannot hold an odd size)."""
    fmt = clip.format
    if fmt.color_family == vs.GRAY:
        sub = 1 if clip.width % 2 == 0 and clip.height % 2 == 0 else 0
        return core.query_video_format(vs.YUV, fmt.sample_type, fmt.bits_per_sample, sub, sub)
    return fmt


def work_luma(clip: vs.VideoNode, tags: ColorTags) -> vs.VideoNode:
    """Luma of ``clip`` as ``GRAYS`` in full range [0, 1] (nominal black 0, white 1).

    YUV and GRAY: the Y plane, range-expanded. RGB: Y of its YUV with ``tags.matrix``.
    """
    family = clip.format.color_family
    if family == vs.RGB:
        yuv = core.resize.Bicubic(clip, format=vs.YUV444PS, matrix=tags.matrix, range=_RANGE_FULL)
        return core.std.ShufflePlanes(yuv, 0, vs.GRAY)
    y = clip if family == vs.GRAY else core.std.ShufflePlanes(clip, 0, vs.GRAY)
    return core.resize.Point(y, format=vs.GRAYS, range_in=tags.range, range=_RANGE_FULL)


def recombine(clip: vs.VideoNode, tags: ColorTags, luma: vs.VideoNode | None = None,
              colour: vs.VideoNode | None = None) -> vs.VideoNode:
    """``clip`` with its luma and/or chroma replaced, in :func:`colour_output_format`, props kept.

    Args:
        luma: ``GRAYS`` full-range luma at ``clip``'s size, or ``None`` to keep ``clip``'s own
            (then the Y plane of YUV/GRAY input is passed through bit for bit).
        colour: ``RGBS`` clip of any size whose chroma (with ``tags``' matrix) replaces
            ``clip``'s; ``None`` keeps ``clip``'s chroma (GRAY stays GRAY).

    RGB input is split into YUV 4:4:4 with ``tags.matrix`` (full range) and put back together.
    GRAY with ``colour`` becomes YUV 4:2:0 (4:4:4 for an odd size) tagged with ``tags`` (``_Matrix``, ``_Range``,
    ``_ChromaLocation``).
    """
    fmt = clip.format
    family = fmt.color_family
    w, h = clip.width, clip.height
    if colour is not None:  # frames of a work clip may still carry the YUV tags of their source
        colour = core.std.SetFrameProps(colour, _Matrix=_MATRIX_RGB, _Range=_RANGE_FULL)
    if family == vs.RGB:
        yuv = core.resize.Bicubic(clip, format=vs.YUV444PS, matrix=tags.matrix, range=_RANGE_FULL)
        y = luma if luma is not None else yuv
        uv = yuv if colour is None else core.resize.Bicubic(colour, w, h, format=vs.YUV444PS,
                                                            matrix=tags.matrix, range=_RANGE_FULL)
        merged = core.std.ShufflePlanes([y, uv, uv], [0, 1, 2], vs.YUV)
        out = core.resize.Bicubic(merged, format=fmt.id, matrix_in=tags.matrix, range_in=_RANGE_FULL,
                                  dither_type="none")
        return core.std.CopyFrameProps(out, clip)
    out_fmt = colour_output_format(clip)
    if luma is None:
        y = clip
    else:
        y = core.resize.Point(luma, format=_gray_format(fmt).id, range_in=_RANGE_FULL, range=tags.range,
                              dither_type="none")
    if colour is None:
        out = y if family == vs.GRAY else core.std.ShufflePlanes([y, clip, clip], [0, 1, 2], vs.YUV)
        return core.std.CopyFrameProps(out, clip)
    uv = core.resize.Bicubic(colour, w, h, format=out_fmt.id, matrix=tags.matrix, range=tags.range,
                             chromaloc=tags.chromaloc, dither_type="none")
    out = core.std.CopyFrameProps(core.std.ShufflePlanes([y, uv, uv], [0, 1, 2], vs.YUV), clip)
    return core.std.SetFrameProps(out, _Matrix=tags.matrix, _Range=tags.range, _ChromaLocation=tags.chromaloc)
