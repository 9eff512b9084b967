"""msvsr.Upscale: ×4 video super-resolution (PP-MSVSR family) with deterministic temporal windows."""
from __future__ import annotations

import functools

import vapoursynth as vs

from vsmsvsr import scenecut
from vsmsvsr.engine.backends import resolve_precision
from vsmsvsr.filters._args import check_int, check_weights_path, progressive, scene_change_mode
from vsmsvsr.filters.errors import named_errors
from vsmsvsr.filters.convert import check_constant_format, from_rgbs, per_frame_tags, to_rgbs
from vsmsvsr.filters.scene import span_clip
from vsmsvsr.filters.windowed import Output, windowed_clips
from vsmsvsr.temporal import check_grid, clamp_grid

core = vs.core

FUNC = "vsmsvsr.Upscale"
SCALE = 4
#: Output frames per grid window: PaddleGAN's predictor runs 10-frame chunks.
DEFAULT_WINDOW = 10
#: Context frames on each side of a window (see bench/bench_upscale.py for the measurement).
DEFAULT_OVERLAP = 4
MIN_TILE = 64
DEFAULT_TILE_OVERLAP = 16
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
    tile: int = 0,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    scene_change: bool | str = True,
    sc_threshold: float = scenecut.DEFAULT_THRESHOLD,
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
        tile: 0 = whole frames; else the tile size in input pixels (>= 64) to bound memory.
        tile_overlap: overlap of neighbouring tiles in input pixels; the seams are cross-faded.
        scene_change: ``True`` detects cuts on luma (like :func:`vsmsvsr.SceneDetect`), ``"props"``
            honours existing ``_SceneChangePrev``/``_SceneChangeNext``, ``False`` ignores cuts.
            No window propagates features across a cut.
        sc_threshold: detector floor on the mean absolute luma difference (0–1).
    """
    # --- checks first, before any weights are touched ---
    check_constant_format(clip, FUNC)
    from vsmsvsr.models import check_model

    check_model(model, ("vsr",), FUNC)
    _, window, overlap = check_grid(max(clip.num_frames, 1), window, overlap, FUNC)
    # A window longer than the clip computes what window=num_frames computes: clamping keeps the
    # frames the same and the graph (2 * (window + overlap) shifted clips) as small as the clip.
    window, overlap = clamp_grid(clip.num_frames, window, overlap)
    if tile != 0:
        check_int(tile, "tile", FUNC, MIN_TILE)
    check_int(tile_overlap, "tile_overlap", FUNC, 0)
    if tile and tile_overlap >= tile // 2:
        raise ValueError(f"{FUNC}: tile_overlap must be < tile / 2, got {tile_overlap} for tile {tile}")
    mode = scene_change_mode(scene_change, FUNC)
    precision = resolve_precision(precision, fp16, FUNC)
    check_weights_path(weights, FUNC)  # last: the other checks never need the file

    # span_clip validates sc_threshold too, and loads nothing.
    spans = span_clip(clip, window, overlap, mode, threshold=sc_threshold, func=FUNC)

    from vsmsvsr.engine import Engine, run_window

    with named_errors(FUNC):
        engine = Engine(model, weights, backend=backend, device=device, precision=precision)
    runner = functools.partial(run_window, engine, scale=SCALE, tile=tile, tile_overlap=tile_overlap)

    # --- graph: work clip -> windows -> back to the input's format ---
    # Colour tags are read from each frame as it is rendered: building the graph renders nothing.
    checked = progressive(clip, FUNC)
    rgbs = core.std.BlankClip(clip, format=vs.RGBS, keep=True)
    work = core.std.Expr(per_frame_tags(checked, lambda tags: to_rgbs(checked, tags), rgbs),
                         "x 0 max 1 min")  # the network was trained on [0, 1]
    template = core.std.BlankClip(work, width=clip.width * SCALE, height=clip.height * SCALE, length=1)
    (upscaled,) = windowed_clips(work, spans, window, overlap, runner, [Output(template)])
    rgb = core.std.Expr(upscaled, "x 0 max 1 min")
    big = core.std.BlankClip(clip, width=rgb.width, height=rgb.height, keep=True)
    return per_frame_tags(clip, lambda tags: from_rgbs(rgb, clip, tags), big)
