"""msvsr.Interpolate: DAIN frame-rate conversion with exact rational timing.

Timing is :mod:`vsmsvsr.retime` (exact fractions); this module wires it into a graph. Every
output frame is chosen by ``std.FrameEval`` from the packed cut/duplicate flags around its source
time (handed over as a frame, ``prop_src``), and returns either a source frame itself or a small
node whose dependencies are the two source frames it interpolates. No frame is ever fetched with
``get_frame`` inside a callback, and each output frame is a pure function of a bounded set of
source frames, so output is independent of request order and thread count.
"""
from __future__ import annotations

import collections
import functools
import math
import numbers
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Callable

import numpy as np
import vapoursynth as vs

from vsmsvsr import retime, scenecut
from vsmsvsr.filters.convert import check_constant_format, from_rgbs, per_frame_tags, to_rgbs
from vsmsvsr.engine.backends import resolve_precision
from vsmsvsr.filters._args import check_bool, check_int, check_weights_path, progressive, scene_change_mode
from vsmsvsr.filters.errors import named_errors
from vsmsvsr.filters.scene import DIFF_PROP, difference_clip, is_cut_frame, scene_cut_clip, shifted

if TYPE_CHECKING:  # pragma: no cover
    from vsmsvsr.engine.memory import MemoryPlan

core = vs.core

FUNC = "vsmsvsr.Interpolate"
#: Longest clip VapourSynth can hold (``num_frames`` is a C int).
MAX_FRAMES = 2**31 - 1
AT_CUT = ("repeat", "blend")
#: ``remove_duplicates``: a frame whose mean absolute luma difference to the previous one (luma in
#: [0, 1], 64-pixel plane) is below this repeats it (about half an 8-bit code value).
DEFAULT_DUP_THRESHOLD = 0.002
#: Frame pairs whose interpolated frames are kept (a pair serves ``ceil(factor)`` frames at most).
CACHE_PAIRS = 4

_CUTS, _DUPS = "VsmsvsrCuts", "VsmsvsrDups"
PairRunner = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class PairCache:
    """Interpolates each frame pair once, at all the times any output frame needs from it."""

    def __init__(self, run: PairRunner, size: int = CACHE_PAIRS) -> None:
        self._run = run
        self._size = size
        self._results: collections.OrderedDict[tuple, dict] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.runs = 0

    def frame(self, a: np.ndarray, b: np.ndarray, key: tuple, times: tuple[Fraction, ...], t: Fraction) -> np.ndarray:
        with self._lock:
            result = self._results.get(key)
            if result is None:
                out = self._run(a, b, np.array([float(x) for x in times], np.float32))
                result = self._results[key] = dict(zip(times, out))
                self.runs += 1
                while len(self._results) > self._size:
                    self._results.popitem(last=False)
            else:
                self._results.move_to_end(key)
            return result[t]


@dataclass(frozen=True)
class OfficialProgram:
    """The official static program and the times baked into it (``k * time_step``)."""

    run: Callable[..., list]
    times: tuple[float, ...]

    def serves(self, times: np.ndarray) -> bool:
        return len(times) == len(self.times) and bool(np.allclose(times, self.times, rtol=0, atol=1e-6))


def _pair_frames(frame0: np.ndarray, frame1: np.ndarray, times: np.ndarray, net, adapter,
                 official: OfficialProgram | None = None) -> np.ndarray:
    """``(3, h, w)`` RGB frames -> ``(T, 3, h, w)`` at ``times``, fed to the model by its adapter
    (DAIN: padded like PaddleGAN). The official program runs where it computes exactly these
    times; the native network (any times) everywhere else."""
    x0, x1, box = adapter.prepare(frame0, frame1)
    if official is not None and official.serves(times):
        (out,) = official.run(np.stack([x0, x1]))          # image (2, 1, 3, H, W) -> (T, 1, 3, H, W)
        out = out[:, 0]
    else:
        (out,) = net(x0, x1, times)
    return adapter.finish(out, box)


def _official_program(program: bool | None, weights, choice, spec) -> OfficialProgram | None:
    """The official program to run as it is, or None (see ``Interpolate(program=...)``)."""
    from vsmsvsr.engine import ProgramRunner

    first = choice.usable[0]
    if program is False or (program is None and first.runs_on != "gpu"):
        return None
    from pathlib import Path

    from vsmsvsr import weights as wmod
    from vsmsvsr.models.dain_weights import official_program, program_info

    path = Path(weights) if weights is not None else wmod.fetch(spec.weights)
    files = official_program(path)
    times = program_info(path).time_offsets if files is not None else ()
    if files is None or not times:
        if program:
            raise ValueError(f"{FUNC}: program=True needs the official static program (DAIN_weight.tar or "
                             f"its folder) with recognisable time offsets; {path} is not one")
        return None
    if first.runs_on is None:  # the dygraph backend
        raise ValueError(f"{FUNC}: program=True needs a Paddle Inference backend ('gpu', 'trt', 'cpu', "
                         "'cpu-plain'), not 'dygraph'")
    return OfficialProgram(ProgramRunner(*files, first, label="DAIN-official"), tuple(times))


def _plan(width: int, height: int, model: str, backend_name: str, budget: tuple[int, str]) -> "MemoryPlan":
    """DAIN's memory plan: two whole frames at PaddleGAN's padded size per call, nothing to tile."""
    from vsmsvsr.engine.memory import memory_model, plan_tiles
    from vsmsvsr.models import get_spec

    spec = get_spec(model)
    net = memory_model(spec.memory, backend_name, model)
    ph, pw = spec.load_adapter().network_size(width, height)
    # the network on a pair, and the cached results and frames in flight at the clip's size
    cost = net.estimate(2, ph, pw) + (CACHE_PAIRS + 4) * 12 * width * height
    return plan_tiles(lambda th, tw, tiled: cost, label=model, width=width, height=height, frames=2,
                      budget=budget[0], budget_source=budget[1], backend=backend_name, tile_overlap=0, min_tile=0,
                      min_size=0, tile=0)


def _pack_frame(n: int, f: list[vs.VideoFrame], lo: int, dup_threshold: float | None) -> vs.VideoFrame:
    # f[0]: blank, f[1 + j]: cut flags of frame n + lo + j, then (with duplicates) differences.
    count = (len(f) - 1) // (2 if dup_threshold is not None else 1)
    out = f[0].copy()
    out.props[_CUTS] = [int(is_cut_frame(f[1 + j])) for j in range(count)]
    if dup_threshold is not None:
        out.props[_DUPS] = [int(f[1 + count + j].props[DIFF_PROP] < dup_threshold) for j in range(count)]
    return out


def _interpolated_frame(n: int, f: list[vs.VideoFrame], cache: PairCache, key: tuple,
                        times: tuple[Fraction, ...], t: Fraction) -> vs.VideoFrame:
    # f[0]: blank RGBS frame, f[1], f[2]: the pair (RGBS).
    def planes(frame: vs.VideoFrame) -> np.ndarray:
        return np.stack([np.asarray(frame[p]) for p in range(3)])

    image = cache.frame(planes(f[1]), planes(f[2]), key, times, t)
    out = f[0].copy()
    for p in range(3):
        np.copyto(np.asarray(out[p]), image[p])
    out.props.clear()
    out.props.update(f[1].props)
    return out


def _parse_factor(factor: object) -> Fraction:
    if isinstance(factor, bool) or not isinstance(factor, (numbers.Real, str)):
        raise TypeError(f"{FUNC}: factor must be a number or a fraction string such as '5/2', got {factor!r}")
    if isinstance(factor, numbers.Real) and not isinstance(factor, numbers.Rational) \
            and not math.isfinite(float(factor)):
        raise ValueError(f"{FUNC}: factor must be a finite number > 0, got {factor!r}")
    try:
        value = Fraction(factor) if not isinstance(factor, float) else Fraction(factor).limit_denominator(1_000_000)
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"{FUNC}: factor must be a number or a fraction string such as '5/2', "
                         f"got {factor!r}") from None
    if value <= 0:
        raise ValueError(f"{FUNC}: factor must be > 0, got {factor!r}")
    return value


def Interpolate(
    clip: vs.VideoNode,
    factor: int | float | Fraction | str | None = None,
    fps_num: int | None = None,
    fps_den: int | None = None,
    model: str = "DAIN",
    weights: str | os.PathLike | None = None,
    scene_change: bool | str = True,
    sc_threshold: float = scenecut.DEFAULT_THRESHOLD,
    at_cut: str = "repeat",
    remove_duplicates: bool = False,
    dup_threshold: float = DEFAULT_DUP_THRESHOLD,
    device: str | None = None,
    fp16: bool = False,
    backend: str = "auto",
    precision: str | None = None,
    program: bool | None = None,
    max_memory: int | str | None = None,
) -> vs.VideoNode:
    """Convert the frame rate with DAIN: exact rational timing, seek-safe, no smear across cuts.

    Output frame ``k`` shows source time ``k * src_rate / dst_rate`` (exact fractions). Where it
    coincides with a source frame, that frame passes through untouched (bit-identical, props
    kept); between frames ``i`` and ``i + 1`` DAIN synthesises the frame at ``t`` in (0, 1).
    The output has ``ceil(num_frames * dst_rate / src_rate)`` frames (same duration) at exactly
    ``fps_num/fps_den``, and every frame's ``_DurationNum/_DurationDen`` is exact. Down-conversion
    works too (frames picked or interpolated at their exact times).

    Args:
        clip: constant format and size, a constant frame rate; YUV, RGB or GRAY; 8–16-bit integer,
            half or float. Returned in the same format.
        factor: rate multiplier (``2``, ``Fraction(5, 2)``, ``"5/2"``, ``2.5``); or give
            ``fps_num`` (and ``fps_den``, default 1) for the target rate. Exactly one of the two.
        model: ``"DAIN"``.
        weights: the official ``DAIN_weight.tar``, its extracted folder, or a ``.pdparams``;
            ``None`` = the official file (downloaded once into the cache).
        scene_change: ``True`` detects cuts (as :func:`vsmsvsr.SceneDetect`), ``"props"`` honours
            ``_SceneChangePrev``/``_SceneChangeNext`` on ``clip``, ``False`` ignores cuts.
        sc_threshold: detector floor (see :func:`vsmsvsr.SceneDetect`).
        at_cut: what frames between the last frame of a shot and the first of the next show:
            ``"repeat"`` (default) the last frame of the old shot, ``"blend"`` a cross-fade.
            Never a DAIN interpolation across the cut.
        remove_duplicates: treat runs of repeated source frames (up to 8) as one picture at the
            run's first time and interpolate across the run, instead of holding a still and
            jumping (PaddleGAN's option, done by retiming rather than dropping frames).
        dup_threshold: mean absolute luma difference (0–1) below which a frame repeats the
            previous one (default 0.002).
        device, fp16, backend, precision: as for :func:`vsmsvsr.Upscale`.
        program: run the official static program itself (``DAIN_weight.tar`` as PaddleGAN does)
            instead of the native network converted from it, for the frame pairs whose times are
            the ones baked into the program (``k * time_step``, 0.5 for doubling); other times
            always use the native network. ``None`` (default): only on a GPU backend (the
            program's correlation op has no CPU kernel); ``True``: also on the CPU backends (for
            programs without GPU-only ops); ``False``: never.
        max_memory: the memory budget, as in :func:`vsmsvsr.Upscale`. DAIN's flow and depth see
            the whole frame (tiles would cut motion apart), so nothing is tiled: a budget below
            the estimate is a ``ValueError`` before any frame is computed.
    """
    # --- checks first, before any weights are touched ---
    check_constant_format(clip, FUNC)
    if clip.fps_num <= 0 or clip.fps_den <= 0:
        raise ValueError(f"{FUNC}: the clip has a variable frame rate; set one first, "
                         "e.g. clip = core.std.AssumeFPS(clip, fpsnum=24000, fpsden=1001)")
    if (factor is None) == (fps_num is None):
        raise ValueError(f"{FUNC}: give either factor or fps_num (and fps_den), not both or neither")
    if fps_num is None and fps_den is not None:
        raise ValueError(f"{FUNC}: fps_den needs fps_num")
    if factor is not None:
        dst = Fraction(clip.fps_num, clip.fps_den) * _parse_factor(factor)
    else:
        dst = Fraction(check_int(fps_num, "fps_num", FUNC, 1), check_int(fps_den if fps_den is not None else 1,
                                                                         "fps_den", FUNC, 1))
    num_out = retime.output_length(clip.num_frames, dst / Fraction(clip.fps_num, clip.fps_den))
    if num_out > MAX_FRAMES:
        raise ValueError(f"{FUNC}: {clip.num_frames} frames at {dst.numerator}/{dst.denominator} fps would be "
                         f"{num_out} frames, more than VapourSynth's limit of {MAX_FRAMES} frames per clip")
    if max(dst.numerator, dst.denominator) > 2**63 - 1:
        raise ValueError(f"{FUNC}: the output rate {dst.numerator}/{dst.denominator} does not fit VapourSynth's "
                         "64-bit rate fields; give fps_num/fps_den or a simpler factor")
    from vsmsvsr.models import check_model

    spec = check_model(model, ("interp",), FUNC)
    if at_cut not in AT_CUT:
        raise ValueError(f"{FUNC}: at_cut must be one of {', '.join(map(repr, AT_CUT))}, got {at_cut!r}")
    check_bool(remove_duplicates, "remove_duplicates", FUNC)
    if isinstance(dup_threshold, bool) or not isinstance(dup_threshold, numbers.Real) or not 0 < dup_threshold < 1:
        raise ValueError(f"{FUNC}: dup_threshold must be in (0, 1), got {dup_threshold!r}")
    mode = scene_change_mode(scene_change, FUNC)
    check_weights_path(weights, FUNC, folder_ok=True)  # DAIN: also PaddleGAN's extracted program folder
    if program is not None and not isinstance(program, bool):
        raise TypeError(f"{FUNC}: program must be None, True or False, got {program!r}")
    resolve_precision(precision, fp16, FUNC)
    clip = progressive(clip, FUNC)
    flags = scene_cut_clip(clip, mode, threshold=sc_threshold, func=FUNC)

    from vsmsvsr.engine import LayerRunner
    from vsmsvsr.engine.memory import is_explicit
    from vsmsvsr.filters.planning import backend_and_budget, require_fit
    from vsmsvsr.models import load_model

    choice, budget = backend_and_budget(backend, device, fp16, precision, max_memory, FUNC)
    with named_errors(FUNC):
        memory = _plan(clip.width, clip.height, model, choice.usable[0].name, budget)
    require_fit(memory, FUNC, "Give more max_memory, or interpolate a downscaled clip.", is_explicit(max_memory))
    with named_errors(FUNC):
        net = load_model(model, weights, device=choice.load_device)
        official = _official_program(program, weights, choice, spec)
    if spec.reader is not None:  # the weights file was read for the model and the program: done
        from vsmsvsr.models import dain_weights

        dain_weights.forget()
    adapter = spec.load_adapter()
    runner = LayerRunner(adapter.layer(net), choice, label=model)
    cache = PairCache(functools.partial(_pair_frames, net=runner, adapter=adapter, official=official))

    # --- timing: exact fractions ---
    num_src = clip.num_frames
    ratio = dst / Fraction(clip.fps_num, clip.fps_den)
    dup_threshold = float(dup_threshold) if remove_duplicates else None

    # --- flags of the neighbourhood of every source frame, packed into one small frame ---
    lo, hi = (-2 * retime.MAX_RUN, 2 * retime.MAX_RUN + 2) if remove_duplicates else (0, 2)
    blank1 = core.std.BlankClip(width=1, height=1, format=vs.GRAY8, length=num_src, keep=True)
    sources = [shifted(flags, j) for j in range(lo, hi)]
    if remove_duplicates:
        diffs = difference_clip(clip)
        sources += [shifted(diffs, j) for j in range(lo, hi)]
    packed = core.std.ModifyFrame(blank1, [blank1, *sources],
                                  functools.partial(_pack_frame, lo=lo, dup_threshold=dup_threshold))
    blank_out1 = core.std.BlankClip(blank1, length=num_out, keep=True)
    packed_out = core.std.FrameEval(blank_out1, lambda n: packed[math.floor(retime.source_time(n, ratio))])

    # --- frames ---
    # Colour tags are read from each frame as it is rendered: building the graph renders nothing.
    rgb = core.std.Expr(per_frame_tags(clip, lambda tags: to_rgbs(clip, tags),
                                       core.std.BlankClip(clip, format=vs.RGBS, keep=True)), "x 0 max 1 min")
    one_frame = core.std.BlankClip(clip, length=1, keep=True)
    blank_rgb1 = core.std.BlankClip(rgb, length=1, keep=True)

    def select(n: int, f: vs.VideoFrame) -> vs.VideoNode:
        tau = retime.source_time(n, ratio)
        i = math.floor(tau)
        cuts = f.props[_CUTS]
        dups = f.props[_DUPS] if remove_duplicates else None

        def is_cut(j: int) -> bool:
            return 0 < j < num_src and bool(cuts[j - i - lo])

        is_dup = None if dups is None else (lambda j: 0 < j < num_src and bool(dups[j - i - lo]))
        plan = retime.frame_plan(tau, num_src, is_cut, is_dup, at_cut)
        if plan.kind == "copy":
            return clip[plan.a]
        if plan.kind == "blend":
            return core.std.Merge(clip[plan.a], clip[plan.b], weight=float(plan.t))
        times = retime.pair_times(plan.a, plan.b, ratio, num_src, is_cut, is_dup, at_cut)
        pair = core.std.ModifyFrame(blank_rgb1, [blank_rgb1, rgb[plan.a], rgb[plan.b]], functools.partial(
            _interpolated_frame, cache=cache, key=(plan.a, plan.b), times=times, t=plan.t))
        pair = core.std.Expr(pair, "x 0 max 1 min")
        return per_frame_tags(clip[plan.a], lambda tags: from_rgbs(pair, clip, tags), one_frame)

    template = core.std.BlankClip(clip, length=num_out, keep=True)
    out = core.std.FrameEval(template, select, prop_src=packed_out)
    return core.std.AssumeFPS(out, fpsnum=dst.numerator, fpsden=dst.denominator)
