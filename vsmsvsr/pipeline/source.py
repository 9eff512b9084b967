"""The job's source (BestSource, else L-SMASH-Works, colour tags made explicit) and the delivery
format the encoders take."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vsmsvsr.pipeline.encode import MAX_BITS
from vsmsvsr.pipeline.errors import FUNC, EnhanceError

if TYPE_CHECKING:  # pragma: no cover
    import vapoursynth as vs


# --------------------------------------------------------------------------------------------
# graph


def open_source(path: str | os.PathLike) -> "vs.VideoNode":
    """The video of ``path`` through BestSource (else L-SMASH-Works), colour tags made explicit.

    An untagged YUV source gets the ``_Matrix``/``_Range``/``_ChromaLocation`` a player assumes
    (:func:`vsmsvsr.filters.convert.default_matrix`, limited range, left siting) written into its
    props, so that every filter and the encoder tags agree even after the frame size changes.
    """
    import vapoursynth as vs

    from vsmsvsr.filters.convert import check_constant_format, default_matrix

    core = vs.core
    try:
        if hasattr(core, "bs"):
            # cachemode=0: no index files left behind; indexing is one decode pass.
            clip = core.bs.VideoSource(str(path), cachemode=0)
        elif hasattr(core, "lsmas"):
            clip = core.lsmas.LWLibavSource(str(path), cache=0)
        else:
            raise EnhanceError(f"{FUNC}: no source filter: install BestSource (pip install vapoursynth-bestsource)")
    except vs.Error as exc:
        raise EnhanceError(f"{FUNC}: cannot read the video of {str(path)!r}: {str(exc).strip()}") from None
    try:
        check_constant_format(clip, FUNC)
    except (TypeError, ValueError) as exc:
        raise EnhanceError(str(exc)) from None
    if clip.fps.numerator <= 0:
        raise EnhanceError(f"{FUNC}: {str(path)!r} has a variable frame rate; convert it to a constant rate first")
    if clip.format.color_family == vs.YUV:
        props = clip.get_frame(0).props
        explicit: dict[str, int] = {}
        if int(props.get("_Matrix", 2)) == 2:
            explicit["_Matrix"] = default_matrix(clip.width, clip.height)
        if "_Range" not in props:
            explicit["_Range"] = int(vs.RANGE_LIMITED)
        if "_ChromaLocation" not in props:
            explicit["_ChromaLocation"] = 0
        if explicit:
            clip = core.std.SetFrameProps(clip, **explicit)
    return clip


def delivery_clip(clip: "vs.VideoNode", source: "vs.VideoNode", encoder: str) -> "vs.VideoNode":
    """``clip`` in a format that YUV4MPEG and the encoder take: integer YUV or GRAY.

    - YUV and GRAY keep their family and subsampling (4:1:1, 4:1:0, 4:4:0 become 4:2:0);
      RGB becomes YUV with the source's subsampling, matrix, range and chroma siting (4:4:4,
      the matrix of the frame size and limited range for an RGB source).
    - Integer clips keep their depth, float/half clips get the source's depth; capped at
      :data:`MAX_BITS` of the encoder, with error-diffusion dither where depth drops.
    """
    import vapoursynth as vs

    from vsmsvsr.filters.convert import ColorTags, default_matrix

    core = vs.core
    fmt, src = clip.format, source.format
    convert: dict[str, Any] = {}
    if fmt.color_family == vs.RGB:
        family = vs.YUV
        if src.color_family == vs.YUV:
            tags = ColorTags.of(source)
            sub = (src.subsampling_w, src.subsampling_h)
            convert = dict(matrix=tags.matrix, range=tags.range, chromaloc=tags.chromaloc)
        else:
            sub = (0, 0)
            convert = dict(matrix=default_matrix(clip.width, clip.height), range=int(vs.RANGE_LIMITED), chromaloc=0)
    else:
        family, sub = fmt.color_family, (fmt.subsampling_w, fmt.subsampling_h)
    if family == vs.YUV and sub not in ((1, 1), (1, 0), (0, 0)):
        sub = (1, 1)
    if family == vs.YUV and sub != (0, 0) and (clip.width % (1 << sub[0]) or clip.height % (1 << sub[1])):
        sub = (0, 0)  # odd frame size: keep full chroma rather than crop
    if fmt.sample_type == vs.INTEGER:
        bits = fmt.bits_per_sample
    else:
        bits = src.bits_per_sample if src.sample_type == vs.INTEGER else 10
    bits = min(max(bits, 8), MAX_BITS[encoder])
    target = core.query_video_format(family, vs.INTEGER, bits, *sub)
    if target.id == fmt.id:
        return clip
    out = core.resize.Bicubic(clip, format=target.id, dither_type="error_diffusion", **convert)
    if convert:
        out = core.std.SetFrameProps(out, _Matrix=convert["matrix"], _Range=convert["range"],
                                     _ChromaLocation=convert["chromaloc"])
    return out
