"""msvsr.Colorize: DeOldify (stable, artistic) per frame, or DeepRemaster from reference images.

DeOldify sees each frame's luma as a grey RGB square of ``16 * render_factor`` pixels, as
PaddleGAN's predictor does; only its chroma is used. The luma of the result is the input's own:
for YUV and GRAY input the Y plane passes through bit for bit.
"""
from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import vapoursynth as vs

from vsmsvsr import scenecut
from vsmsvsr.filters._args import check_int, check_weights_path, progressive, scene_change_mode
from vsmsvsr.filters.errors import named_errors
from vsmsvsr.filters.convert import (check_constant_format, colour_output_format, per_frame_tags, recombine,
                                     work_luma)
from vsmsvsr.filters.scene import SceneDetect

if TYPE_CHECKING:  # pragma: no cover
    from vsmsvsr.engine.memory import MemoryPlan

core = vs.core

FUNC = "vsmsvsr.Colorize"
#: Tasks served: DeOldify's variants ("colorize") run per frame; DeepRemaster ("restore") is
#: :func:`vsmsvsr.Remaster` with ``colorize=True``.
TASKS = ("colorize", "restore")
References = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]], vs.VideoNode, None]


def _plan(width: int, height: int, model: str, render_factor: int, backend_name: str,
          budget: tuple[int, str]) -> "MemoryPlan":
    """DeOldify's memory plan: one square of ``16 * render_factor`` pixels per call, nothing to tile."""
    from vsmsvsr.engine.memory import memory_model, plan_tiles
    from vsmsvsr.models import get_spec

    spec = get_spec(model)
    net = memory_model(spec.memory, backend_name, model)
    side = spec.load_adapter().render_base * render_factor
    # the network's square, and a few frames of the clip in float (luma, colour, recombination)
    return plan_tiles(lambda th, tw, tiled: net.estimate(1, side, side) + 8 * 12 * width * height, label=model,
                      width=width, height=height, frames=1, budget=budget[0], budget_source=budget[1],
                      backend=backend_name, tile_overlap=0, min_tile=0, min_size=0, tile=0)


def _network_frame(n: int, f: list[vs.VideoFrame], run, adapter) -> vs.VideoFrame:
    # f[0]: blank RGBS square to fill, f[1]: the grey square (GRAYS, [0, 1]).
    (y,) = run(adapter.prepare(np.asarray(f[1][0])))
    rgb = adapter.finish(y)
    out = f[0].copy()  # a blank RGB frame: none of the grey frame's YUV tags
    for p in range(3):
        np.copyto(np.asarray(out[p]), rgb[p])
    return out


def Colorize(
    clip: vs.VideoNode,
    model: str = "DeOldify",
    weights: str | os.PathLike | None = None,
    render_factor: int = 32,
    references: References = None,
    device: str | None = None,
    fp16: bool = False,
    backend: str = "auto",
    precision: str | None = None,
    smooth: int = 0,
    scene_change: bool | str = True,
    sc_threshold: float = scenecut.DEFAULT_THRESHOLD,
    max_memory: int | str | None = None,
    **remaster_args,
) -> vs.VideoNode:
    """Colourise a black-and-white clip with DeOldify (per frame) or DeepRemaster (temporal).

    Args:
        clip: constant format and size; YUV, RGB or GRAY; 8–16-bit integer, half or float. Only
            its luma is looked at. Output: same format with new chroma, and for GRAY input YUV 4:2:0
            of the same depth (tagged with the matrix, range and chroma siting used). The luma of
            the output is the input's: the Y plane of YUV/GRAY input is bit-identical.
        model: ``"DeOldify"`` (stable; default), ``"DeOldify-artistic"`` (more saturated, less
            stable) or ``"DeepRemaster"`` (same as :func:`vsmsvsr.Remaster` with
            ``colorize=True``; it also restores the luma).
        weights: ``.pdparams`` path; ``None`` = the official file (downloaded once into the cache).
        render_factor: DeOldify sees a square of ``16 * render_factor`` pixels (default 32: 512),
            7–64. Higher gives more detailed colour and costs time quadratically.
        references: DeepRemaster only: reference colour images (folder, list of paths or a clip).
        device, fp16, backend, precision: see :func:`vsmsvsr.Upscale`.
        smooth: DeOldify only: temporal radius (frames) of a running average of the colour within
            each shot, 0 (default) = off. Reduces flicker; see ``bench/bench_colorize.py``.
        scene_change, sc_threshold: where ``smooth`` (and DeepRemaster's windows) stop: as in
            :func:`vsmsvsr.Upscale`.
        max_memory: the memory budget, as in :func:`vsmsvsr.Upscale`. DeOldify's square has a
            fixed size, so nothing is tiled: a budget below the estimate is a ``ValueError``
            before any frame is computed (lower ``render_factor`` to fit).
        **remaster_args: DeepRemaster only: ``mindim``, ``window``, ``overlap`` of
            :func:`vsmsvsr.Remaster`.
    """
    check_constant_format(clip, FUNC)
    from vsmsvsr.models import check_model

    spec = check_model(model, TASKS, FUNC)
    if spec.task == "restore":
        from vsmsvsr.filters import remaster

        unknown = set(remaster_args) - {"mindim", "window", "overlap"}
        if unknown:
            raise TypeError(f"{FUNC}: unexpected argument(s) for {model}: {', '.join(sorted(unknown))}")
        if render_factor != 32 or smooth != 0:
            raise ValueError(f"{FUNC}: render_factor and smooth are DeOldify's; {model} takes mindim, window, overlap")
        # Remaster's own code, with errors named after this filter
        return remaster.remaster(clip, references=references, colorize=True, weights=weights, device=device,
                                 fp16=fp16, backend=backend, precision=precision, scene_change=scene_change,
                                 sc_threshold=sc_threshold, max_memory=max_memory,
                                 func=FUNC, **remaster_args)
    if remaster_args:
        raise TypeError(f"{FUNC}: unexpected argument(s) for {model}: {', '.join(sorted(remaster_args))}")
    if references is not None:
        raise ValueError(f"{FUNC}: references are used by model='DeepRemaster' only, not by {model}")
    check_int(render_factor, "render_factor", FUNC, 7, 64)
    check_int(smooth, "smooth", FUNC, 0, 15)
    mode = scene_change_mode(scene_change, FUNC)
    check_weights_path(weights, FUNC)
    if smooth and mode == "detect":
        scenecut.validate_criterion(sc_threshold, scenecut.DEFAULT_RATIO, FUNC)

    from vsmsvsr.engine import LayerRunner
    from vsmsvsr.engine.memory import is_explicit
    from vsmsvsr.filters.planning import backend_and_budget, require_fit
    from vsmsvsr.models import load_model

    choice, budget = backend_and_budget(backend, device, fp16, precision, max_memory, FUNC)
    with named_errors(FUNC):
        memory = _plan(clip.width, clip.height, model, render_factor, choice.usable[0].name, budget)
    require_fit(memory, FUNC, f"Give more max_memory, or a smaller render_factor (now {render_factor}: a "
                              f"{16 * render_factor}-pixel square).", is_explicit(max_memory))
    with named_errors(FUNC):
        net = load_model(model, weights, device=choice.load_device)
    run = LayerRunner(net, choice, label=model)
    adapter = spec.load_adapter()

    # --- graph: luma -> grey square -> DeOldify -> chroma back at the clip's size ---
    # Colour tags are read from each frame as it is rendered: building the graph renders nothing.
    checked = progressive(clip, FUNC)
    luma = per_frame_tags(checked, lambda tags: work_luma(checked, tags),
                          core.std.BlankClip(clip, format=vs.GRAYS, keep=True))
    side = adapter.render_base * render_factor
    square = core.std.Expr(core.resize.Bilinear(luma, side, side), "x 0 max 1 min")
    blank = core.std.BlankClip(square, format=vs.RGBS, keep=True)
    colour = core.std.ModifyFrame(blank, [blank, square], functools.partial(_network_frame, run=run, adapter=adapter))
    if smooth:
        if mode != "none":
            cuts = clip if mode == "props" else SceneDetect(clip, threshold=sc_threshold)
            colour = core.std.CopyFrameProps(colour, cuts, props=["_SceneChangePrev", "_SceneChangeNext"])
        colour = core.std.AverageFrames(colour, [1] * (2 * smooth + 1), scenechange=mode != "none")
    return per_frame_tags(clip, lambda tags: recombine(clip, tags, colour=colour),
                          core.std.BlankClip(clip, format=colour_output_format(clip).id, keep=True))
