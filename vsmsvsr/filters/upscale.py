"""msvsr.Upscale: ×4 video super-resolution (PP-MSVSR family) with deterministic temporal windows."""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import vapoursynth as vs

from vsmsvsr import scenecut
from vsmsvsr.engine.backends import resolve_precision
from vsmsvsr.filters._args import check_int, check_weights_path, progressive, scene_change_mode
from vsmsvsr.filters.errors import named_errors
from vsmsvsr.filters.convert import check_constant_format, from_rgbs, per_frame_tags, to_rgbs
from vsmsvsr.filters.scene import span_clip
from vsmsvsr.filters.windowed import CACHE_WINDOWS, Output, windowed_clips
from vsmsvsr.temporal import check_grid, clamp_grid

if TYPE_CHECKING:  # pragma: no cover
    from vsmsvsr.engine.memory import MemoryPlan

core = vs.core
log = logging.getLogger("vsmsvsr.filters")

FUNC = "vsmsvsr.Upscale"
SCALE = 4
#: Output frames per grid window: PaddleGAN's predictor runs 10-frame chunks.
DEFAULT_WINDOW = 10
#: Context frames on each side of a window (see bench/bench_upscale.py for the measurement).
DEFAULT_OVERLAP = 4
MIN_TILE = 64
DEFAULT_TILE_OVERLAP = 16
#: Bytes of one float32 RGB pixel.
_RGBS = 12


def _check_tiles(tile: Any, tile_overlap: Any, func: str) -> None:
    if tile is not None and tile != 0:
        check_int(tile, "tile", func, MIN_TILE)
    check_int(tile_overlap, "tile_overlap", func, 0)
    if tile and tile_overlap >= tile // 2:
        raise ValueError(f"{func}: tile_overlap must be < tile / 2, got {tile_overlap} for tile {tile}")


def _plan(width: int, height: int, num_frames: int, model: str, window: int, overlap: int, backend_name: str,
          budget: tuple[int, str], tile: int | None, tile_overlap: int) -> "MemoryPlan":
    """The memory plan of an Upscale whose arguments are already checked (``window``/``overlap``
    clamped to the clip): whole frames, or the square tile that fits ``budget`` with the least work."""
    from vsmsvsr.engine import MIN_SIZE
    from vsmsvsr.engine.memory import memory_model, plan_tiles
    from vsmsvsr.models import get_spec

    net = memory_model(get_spec(model).memory, backend_name, model)
    frames = min(window + 2 * overlap, max(num_frames, 1))
    ph, pw = max(height, MIN_SIZE), max(width, MIN_SIZE)
    out_frame = _RGBS * SCALE * SCALE * ph * pw  # one output frame, float32 RGB

    def cost(th: int, tw: int, tiled: bool) -> int:
        total = net.estimate(frames, th, tw)         # the model on one window (its output included)
        total += 2 * frames * _RGBS * ph * pw          # the window's input, stacked and made contiguous
        total += CACHE_WINDOWS * window * out_frame    # finished windows kept (output frames only)
        total += 2 * out_frame                         # frames in flight to the format conversion
        if tiled:  # the window's output frames accumulated at full size, their weights, one weighted tile
            total += window * out_frame + 4 * SCALE * SCALE * ph * pw + window * _RGBS * SCALE * SCALE * th * tw
        else:      # the output frames cut out of the model's output while it is still held
            total += window * out_frame
        return total

    return plan_tiles(cost, label=model, width=width, height=height, frames=frames, budget=budget[0],
                      budget_source=budget[1], backend=backend_name, tile_overlap=tile_overlap, min_tile=MIN_TILE,
                      min_size=MIN_SIZE, tile=tile)


def _with_spare(model: str, memory: "MemoryPlan") -> "MemoryPlan":
    """``memory`` with the model's :class:`~vsmsvsr.models.Spare` taken (its bytes in ``spare``
    and in the estimate) where whole frames fit the budget with it too; else ``memory`` as it is.
    Either way the frames are the same: this only saves work."""
    import dataclasses

    from vsmsvsr.engine import MIN_SIZE
    from vsmsvsr.models import get_spec

    spare = get_spec(model).spare
    if spare is None or memory.tile != 0 or not memory.fits:
        return memory
    extra = int(spare.per_frame_pixel * memory.frames * max(memory.height, MIN_SIZE) * max(memory.width, MIN_SIZE))
    if memory.estimate + extra > memory.budget:
        return memory
    return dataclasses.replace(memory, estimate=memory.estimate + extra, spare=extra)


def plan(clip: vs.VideoNode, model: str = "PP-MSVSR", window: int = DEFAULT_WINDOW, overlap: int = DEFAULT_OVERLAP,
         device: str | None = None, fp16: bool = False, backend: str = "auto", precision: str | None = None,
         tile: int | None = None, tile_overlap: int = DEFAULT_TILE_OVERLAP, max_memory: int | str | None = None,
         func: str = FUNC) -> "MemoryPlan":
    """What :func:`Upscale` with these arguments will do within its memory budget (loads no weights,
    renders nothing): a :class:`vsmsvsr.engine.memory.MemoryPlan` (tile size, estimate, budget)."""
    check_constant_format(clip, func)
    from vsmsvsr.models import check_model

    check_model(model, ("vsr",), func)
    _, window, overlap = check_grid(max(clip.num_frames, 1), window, overlap, func)
    window, overlap = clamp_grid(clip.num_frames, window, overlap)
    _check_tiles(tile, tile_overlap, func)
    precision = resolve_precision(precision, fp16, func)
    from vsmsvsr.filters.planning import backend_and_budget

    choice, budget = backend_and_budget(backend, device, False, precision, max_memory, func)
    return _with_spare(model, _plan(clip.width, clip.height, clip.num_frames, model, window, overlap,
                                    choice.usable[0].name, budget, tile, tile_overlap))


def Upscale(
    clip: vs.VideoNode,
    model: str = "PP-MSVSR",
    weights: str | None = None,
    window: int = DEFAULT_WINDOW,
    overlap: int = DEFAULT_OVERLAP,
    device: str | None = None,
    fp16: bool = False,
    backend: str = "auto",
    precision: str | None = None,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    scene_change: bool | str = True,
    sc_threshold: float = scenecut.DEFAULT_THRESHOLD,
    max_memory: int | str | None = None,
) -> vs.VideoNode:
    """×4 video super-resolution with PP-MSVSR, PP-MSVSR-L or PP-MSVSR-BD.

    Args:
        clip: constant format and size; YUV (any subsampling), RGB or GRAY; 8–16-bit integer, half
            or float. Returned in the same format at 4× width and height, frame props kept. YUV is
            converted with its ``_Matrix``/``_Range``/``_ChromaLocation`` (first frame; defaults when
            absent). Frames smaller than 64 px are padded for the network and cropped back.
        model: ``"PP-MSVSR"`` (default), ``"PP-MSVSR-L"`` (larger, slower) or ``"PP-MSVSR-BD"``
            (trained on blur-downsampled video).
        weights: path to a ``.pdparams`` file; ``None`` = the official file (downloaded once into
            the user cache).
        window: output frames per temporal window (default 10). Windows sit on a fixed grid
            ``[k·window, (k+1)·window)``, so frame n's output never depends on request order,
            thread count or machine.
        overlap: context frames computed and discarded on each side of a window (default 4),
            hiding window boundaries. Context never crosses a scene cut or a clip end.
        device: ``"cpu"``, ``"gpu"``, ``"gpu:N"``; ``None`` = any (``backend="auto"`` prefers a GPU).
        fp16: half-precision inference (GPU backends only); the same as ``precision="fp16"``.
        backend: ``"auto"`` (fastest available: TensorRT, GPU, OpenVINO, CPU with oneDNN, dygraph),
            ``"trt"``, ``"gpu"``, ``"openvino"``, ``"cpu"`` (Paddle Inference + oneDNN), ``"cpu-plain"`` or
            ``"dygraph"``; see :mod:`vsmsvsr.engine`. An unavailable explicit choice is an error.
        precision: ``None``/``"fp32"`` (default: within rel-L2 1e-5 of PaddleGAN's dygraph output),
            ``"bf16"`` (OpenVINO on a CPU with bf16/AMX: 2.7-4x faster, rel-L2 ~4e-3, a few dB
            of PSNR against fp32: see the README) or ``"fp16"`` (GPU backends).
        tile: ``None`` (default) = chosen from ``max_memory``: whole frames when they fit, else the
            square tile that fits with the least work (see :func:`vsmsvsr.plan`); ``0`` = whole frames; else
            the tile size in input pixels (>= 64). Every tile runs through the whole window, so
            tiling never changes the temporal grid.
        tile_overlap: overlap of neighbouring tiles in input pixels; the seams are cross-faded.
        scene_change: ``True`` detects cuts on luma (like :func:`vsmsvsr.SceneDetect`), ``"props"``
            honours existing ``_SceneChangePrev``/``_SceneChangeNext``, ``False`` ignores cuts.
            No window propagates features across a cut.
        sc_threshold: detector floor on the mean absolute luma difference (0–1).
        max_memory: the memory this filter may plan for (its model, one window and its buffers;
            not VapourSynth's frame cache): bytes, ``"8GB"``, ``"8GiB"``, ``"50%"`` (of the memory
            available when the graph is built). ``None`` (default): 60 % of the available memory
            (free GPU memory on a GPU backend). The plan is logged in one line; a budget that even
            64-pixel tiles exceed is a ``ValueError`` before anything is computed. Give the same
            explicit value on two machines and they cut the same tiles and compute the same frames.
    """
    # --- checks first, before any weights are touched ---
    check_constant_format(clip, FUNC)
    from vsmsvsr.models import check_model

    check_model(model, ("vsr",), FUNC)
    _, window, overlap = check_grid(max(clip.num_frames, 1), window, overlap, FUNC)
    # A window longer than the clip computes what window=num_frames computes: clamping keeps the
    # frames the same and the graph (2 * (window + overlap) shifted clips) as small as the clip.
    window, overlap = clamp_grid(clip.num_frames, window, overlap)
    _check_tiles(tile, tile_overlap, FUNC)
    mode = scene_change_mode(scene_change, FUNC)
    precision = resolve_precision(precision, fp16, FUNC)
    check_weights_path(weights, FUNC)  # last: the other checks never need the file

    # span_clip validates sc_threshold too, and loads nothing.
    spans = span_clip(clip, window, overlap, mode, threshold=sc_threshold, func=FUNC)

    from vsmsvsr.engine import Engine, run_window
    from vsmsvsr.engine.memory import is_explicit
    from vsmsvsr.filters.planning import backend_and_budget, require_fit

    from vsmsvsr.models import get_spec

    choice, budget = backend_and_budget(backend, device, False, precision, max_memory, FUNC)
    keep = None
    if tile is not None and not get_spec(model).memory:  # nothing to plan, and nothing needed
        log.info("%s: %s has no memory model; tile=%d as given", FUNC, model, tile)
        chosen = tile
    else:
        with named_errors(FUNC):
            memory = _with_spare(model, _plan(clip.width, clip.height, clip.num_frames, model, window, overlap,
                                              choice.usable[0].name, budget, tile, tile_overlap))
        if tile is not None and not memory.fits:  # the user's own choice: said, not refused
            log.warning("%s: tile=%d exceeds the memory budget: %s", FUNC, tile, memory.describe())
        else:
            require_fit(memory, FUNC, f"Give more max_memory, or a shorter window/overlap (now {window}/{overlap}: "
                                      f"{memory.frames} frames per window).", is_explicit(max_memory))
        chosen = memory.tile
        keep = get_spec(model).spare.attributes if memory.spare else None

    with named_errors(FUNC):
        engine = Engine(model, weights, backend=backend, device=device, precision=precision, model_attributes=keep)
    runner = functools.partial(run_window, engine, scale=SCALE, tile=chosen, tile_overlap=tile_overlap)

    # --- graph: work clip -> windows -> back to the input's format ---
    # Colour tags are read from each frame as it is rendered: building the graph renders nothing.
    checked = progressive(clip, FUNC)
    rgbs = core.std.BlankClip(clip, format=vs.RGBS, keep=True)
    work = core.std.Expr(per_frame_tags(checked, lambda tags: to_rgbs(checked, tags), rgbs),
                         "x 0 max 1 min")  # the network was trained on [0, 1]
    template = core.std.BlankClip(work, width=clip.width * SCALE, height=clip.height * SCALE, length=1)
    (upscaled,) = windowed_clips(work, spans, window, overlap, runner, [Output(template)], keeps=True)
    rgb = core.std.Expr(upscaled, "x 0 max 1 min")
    big = core.std.BlankClip(clip, width=rgb.width, height=rgb.height, keep=True)
    return per_frame_tags(clip, lambda tags: from_rgbs(rgb, clip, tags), big)
