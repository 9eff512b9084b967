"""msvsr.Remaster: DeepRemaster's film restoration and reference-based colorization.

The networks see the clip's luma as CIE lightness (``L*/100``) at a reduced size (short side
``mindim``, sides multiples of 16, as PaddleGAN's predictor), in overlapping temporal windows on
the same fixed, scene-cut-aware grid as :func:`vsmsvsr.Upscale`. The restored lightness comes back
as a residual: ``Y_out = Y + upscale(restored - reduced Y)``, so detail finer than the processing
size is kept and a clip already at that size gets the network's luma exactly. Colour (with
``colorize=True``) is converted from L*a*b* to RGB at the processing size and only its chroma is
scaled back to the clip's size.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import vapoursynth as vs

from vsmsvsr import scenecut
from vsmsvsr.filters._args import check_bool, check_int, check_weights_path, progressive, scene_change_mode
from vsmsvsr.filters.errors import named_errors
from vsmsvsr.filters.convert import (check_constant_format, colour_output_format, per_frame_tags, recombine,
                                     to_rgbs, work_luma)
from vsmsvsr.filters.scene import span_clip
from vsmsvsr.filters.windowed import CACHE_WINDOWS, Output, windowed_clips
from vsmsvsr.temporal import check_grid, clamp_grid

if TYPE_CHECKING:  # pragma: no cover
    from vsmsvsr.engine.memory import MemoryPlan

core = vs.core

FUNC = "vsmsvsr.Remaster"
#: Output frames per window: PaddleGAN's predictor runs blocks of 5 frames.
DEFAULT_WINDOW = 5
#: Context frames on each side. Network C's self-attention over the whole window is quadratic in
#: frames x area: at 640x352, 7 frames hold two 2.4 GB attention matrices.
DEFAULT_OVERLAP = 1
DEFAULT_MINDIM = 360
#: Largest processing short side accepted (2160: a 4K frame's), whatever the clip's size.
MINDIM_CAP = 2160
#: Most reference images accepted (their attention grows with their number).
MAX_REFERENCES = 64

References = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], vs.VideoNode, None]


def _reference_array(references: References, func: str) -> np.ndarray:
    """``(1, n, 3, H, W)`` float32 RGB references, letterboxed as PaddleGAN does."""
    from vsmsvsr.references import fit_references, read_images, reference_files

    if isinstance(references, vs.VideoNode):
        check_constant_format(references, func)
        if references.num_frames > MAX_REFERENCES:
            raise ValueError(f"{func}: at most {MAX_REFERENCES} reference images, the references clip "
                             f"has {references.num_frames} frames")
        rgb = core.std.Expr(to_rgbs(references), "x 0 max 1 min")
        # read once while the filter is built (not inside a frame callback)
        images = [np.stack([np.asarray(f[p]) for p in range(3)], axis=-1) for f in rgb.frames(close=True)]
    else:
        files = reference_files(references, func)
        if len(files) > MAX_REFERENCES:
            raise ValueError(f"{func}: at most {MAX_REFERENCES} reference images, got {len(files)}")
        images = read_images(files, func)
    return fit_references(images)[None]


def Remaster(
    clip: vs.VideoNode,
    references: References = None,
    colorize: bool = False,
    mindim: int = DEFAULT_MINDIM,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    weights: str | os.PathLike | None = None,
    device: str | None = None,
    fp16: bool = False,
    backend: str = "auto",
    precision: str | None = None,
    scene_change: bool | str = True,
    sc_threshold: float = scenecut.DEFAULT_THRESHOLD,
    max_memory: int | str | None = None,
) -> vs.VideoNode:
    """Restore old film with DeepRemaster, and with ``colorize=True`` colourise it.

    Args:
        clip: constant format and size; YUV, RGB or GRAY; 8–16-bit integer, half or float. Only
            its luma is looked at. Output: same size and format (GRAY with ``colorize`` becomes YUV
            4:2:0 of the same depth), frame props kept. Without ``colorize`` the chroma of YUV
            input passes through untouched.
        references: reference colour images for ``colorize``: a folder (its png/jpg/bmp/tif/webp
            files), a list of image paths, or a clip (every frame a reference). ``None``: network C
            colourises without references. At most 64.
        colorize: also run the colorization network (default False: restoration only).
        mindim: processing size: the short side is scaled to ``mindim`` pixels (default 360,
            PaddleGAN's), both sides rounded to multiples of 16; 16 to 4x the clip's short side
            (at least 360, at most 2160). Memory and time grow
            quadratically with the processing area (see ``window``).
        window: output frames per temporal window (default 5, PaddleGAN's block). Windows sit on
            a fixed grid, so output never depends on request order or thread count.
        overlap: context frames on each side of a window (default 1), computed and discarded;
            they hide window boundaries. With colorize, the self-attention of one window of
            ``t = window + 2 * overlap`` frames at ``w x h`` holds two float32 matrices of
            ``(t * w * h / 64)^2`` values: about 2.4 GB each at 640x352 and t = 7.
        weights: ``.pdparams`` path (``{'modelR': ..., 'modelC': ...}``); ``None`` = the official file.
        device, fp16, backend, precision, scene_change, sc_threshold: see :func:`vsmsvsr.Upscale`.
        max_memory: the memory budget, as in :func:`vsmsvsr.Upscale`. The networks see whole
            windows at the processing size (tiling would change the attention), so nothing is
            tiled: a budget below the estimate is a ``ValueError`` before any frame is computed
            (lower ``mindim`` or ``window`` to fit).
    """
    return remaster(clip, references=references, colorize=colorize, mindim=mindim, window=window,
                    overlap=overlap, weights=weights, device=device, fp16=fp16, backend=backend,
                    precision=precision, scene_change=scene_change, sc_threshold=sc_threshold,
                    max_memory=max_memory, func=FUNC)


def max_mindim(width: int, height: int) -> int:
    """Largest ``mindim`` accepted for a clip of ``width x height``: 4x its short side (at least
    the default, so small clips can be worked at PaddleGAN's size), never above :data:`MINDIM_CAP`."""
    return min(MINDIM_CAP, max(DEFAULT_MINDIM, 4 * min(width, height)))


def _plan(width: int, height: int, num_frames: int, colorize: bool, mindim: int, window: int, overlap: int,
          backend_name: str, budget: tuple[int, str]) -> "MemoryPlan":
    """DeepRemaster's memory plan: whole windows at the processing size (checked arguments)."""
    from vsmsvsr.engine.memory import memory_model, plan_tiles
    from vsmsvsr.models import get_spec

    spec = get_spec("DeepRemaster")
    net = memory_model(spec.memory, backend_name, "DeepRemaster")
    pw, ph = spec.load_adapter().processing_size(width, height, mindim)
    frames = min(window + 2 * overlap, max(num_frames, 1))
    planes = 4 if colorize else 1

    def cost(th: int, tw: int, tiled: bool) -> int:
        return (net.estimate(frames, ph, pw, attention=colorize)
                + (CACHE_WINDOWS + 1) * window * planes * 4 * ph * pw  # finished windows kept
                + 8 * 12 * width * height)                              # frames at the clip's size, in float

    return plan_tiles(cost, label="DeepRemaster", width=width, height=height, frames=frames, budget=budget[0],
                      budget_source=budget[1], backend=backend_name, tile_overlap=0, min_tile=0, min_size=0, tile=0)


def remaster(clip: vs.VideoNode, *, references: References = None, colorize: bool = False,
             mindim: int = DEFAULT_MINDIM, window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP,
             weights: str | os.PathLike | None = None, device: str | None = None, fp16: bool = False,
             backend: str = "auto", precision: str | None = None, scene_change: bool | str = True,
             sc_threshold: float = scenecut.DEFAULT_THRESHOLD, max_memory: int | str | None = None,
             func: str = FUNC) -> vs.VideoNode:
    """:func:`Remaster` with errors named ``func`` (``Colorize(model="DeepRemaster")`` calls it)."""
    # --- checks first, before any weights are touched ---
    check_constant_format(clip, func)
    check_bool(colorize, "colorize", func)
    check_int(mindim, "mindim", func, 16)
    if mindim > max_mindim(clip.width, clip.height):
        raise ValueError(f"{func}: mindim must be <= {max_mindim(clip.width, clip.height)} for a "
                         f"{clip.width}x{clip.height} clip (4x its short side, at most {MINDIM_CAP}), got {mindim}")
    _, window, overlap = check_grid(max(clip.num_frames, 1), window, overlap, func)
    window, overlap = clamp_grid(clip.num_frames, window, overlap)
    mode = scene_change_mode(scene_change, func)
    if references is not None and not colorize:
        raise ValueError(f"{func}: references are only used with colorize=True")
    check_weights_path(weights, func)  # last: the other checks never need the file
    refs = _reference_array(references, func) if references is not None else None
    spans = span_clip(clip, window, overlap, mode, threshold=sc_threshold, func=func)

    from vsmsvsr.engine import LayerRunner
    from vsmsvsr.engine.memory import is_explicit
    from vsmsvsr.filters.planning import backend_and_budget, require_fit
    from vsmsvsr.models import get_spec, load_model

    choice, budget = backend_and_budget(backend, device, fp16, precision, max_memory, func)
    with named_errors(func):
        memory = _plan(clip.width, clip.height, clip.num_frames, colorize, mindim, window, overlap,
                       choice.usable[0].name, budget)
    require_fit(memory, func, f"Give more max_memory, or a smaller mindim (now {mindim}) or window/overlap "
                              f"(now {window}/{overlap}).", is_explicit(max_memory))
    with named_errors(func):
        model = load_model("DeepRemaster", weights, device=choice.load_device)
    restore = LayerRunner(model.restoration, choice, label="DeepRemaster-R")
    colour_net = LayerRunner(model.colorization, choice, label="DeepRemaster-C") if colorize else None
    adapter = get_spec("DeepRemaster").load_adapter()
    run = functools.partial(adapter.window, restore=restore, colorize=colour_net, refs=refs)

    # --- graph: luma -> processing size -> windows -> residual luma (+ colour) at the clip's size ---
    # Colour tags are read from each frame as it is rendered: building the graph renders nothing.
    checked = progressive(clip, func)
    luma = per_frame_tags(checked, lambda tags: work_luma(checked, tags),
                          core.std.BlankClip(clip, format=vs.GRAYS, keep=True))
    pw, ph = adapter.processing_size(clip.width, clip.height, mindim)
    small = core.std.Expr(core.resize.Bicubic(luma, pw, ph), "x 0 max 1 min")
    outputs = [Output(core.std.BlankClip(small, length=1))]
    if colorize:
        outputs.append(Output(core.std.BlankClip(small, format=vs.RGBS, length=1), first=1))
    results = windowed_clips(small, spans, window, overlap, run, outputs)
    residual = core.std.Expr([results[0], small], "x y -")
    restored = core.std.Expr([luma, core.resize.Bicubic(residual, clip.width, clip.height)], "x y +")
    colour = results[1] if colorize else None
    return per_frame_tags(clip, lambda tags: recombine(clip, tags, luma=restored, colour=colour),
                          core.std.BlankClip(clip, format=colour_output_format(clip).id if colorize else clip.format.id,
                                             keep=True))
