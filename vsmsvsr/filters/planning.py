"""``vsmsvsr.plan``: what a filter will do within its memory budget, without building it."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import vapoursynth as vs

from vsmsvsr.engine.backends import resolve_precision
from vsmsvsr.filters._args import check_bool, check_int
from vsmsvsr.filters.convert import check_constant_format
from vsmsvsr.filters.errors import named_errors
from vsmsvsr.temporal import check_grid, clamp_grid

if TYPE_CHECKING:  # pragma: no cover
    from vsmsvsr.engine.backends import BackendChoice
    from vsmsvsr.engine.memory import MemoryPlan

FUNC = "vsmsvsr.plan"
log = logging.getLogger("vsmsvsr.filters")


def backend_and_budget(backend: Any, device: Any, fp16: bool, precision: str | None, max_memory: Any,
                       func: str) -> tuple["BackendChoice", tuple[int, str]]:
    """The backends a filter will use (:func:`vsmsvsr.engine.choose_backend`) and its budget
    ``(bytes, where it came from)`` in the memory of the first one's device."""
    from vsmsvsr.engine import choose_backend
    from vsmsvsr.engine.memory import budget_for

    with named_errors(func):
        choice = choose_backend(backend, device, fp16, precision=precision)
    config = choice.usable[0]
    return choice, budget_for(max_memory, func, config.runs_on, getattr(config, "device_id", 0))


def require_fit(memory: "MemoryPlan", func: str, hint: str, explicit: bool) -> None:
    """Log a plan that fits in one line. One that does not: with an ``explicit`` ``max_memory``
    the too-small error (naming ``func``); with the default budget (a share of what happens to be
    free now) a warning, and the filter goes on with the plan (the smallest tile): the user set
    no limit, and a busy moment or a conservative estimate must not refuse a job that may fit."""
    from vsmsvsr.engine.memory import too_small

    if memory.fits:
        log.info("%s: %s", func, memory.describe())
    elif explicit:
        raise too_small(memory, func, hint)
    else:
        log.warning("%s: %s", func, str(too_small(memory, func, hint)).split(": ", 1)[1].replace(
            "is too small", "may be too small") + " Going on; set max_memory to make this an error.")


def plan(clip: vs.VideoNode, model: str = "PP-MSVSR", *, device: str | None = None, fp16: bool = False,
         backend: str = "auto", precision: str | None = None, max_memory: int | str | None = None,
         **options: Any) -> "MemoryPlan":
    """The memory plan the filter of ``model`` makes for ``clip`` (reads no weights, renders nothing).

    ``model`` picks the filter: the PP-MSVSR family :func:`vsmsvsr.Upscale` (``options``:
    ``window``, ``overlap``, ``tile``, ``tile_overlap``), DeOldify :func:`vsmsvsr.Colorize`
    (``render_factor``), DeepRemaster :func:`vsmsvsr.Remaster` (``colorize``, ``mindim``,
    ``window``, ``overlap``), DAIN :func:`vsmsvsr.Interpolate`. ``device``, ``backend``,
    ``precision`` and ``max_memory`` as for the filters.

    Returns a :class:`vsmsvsr.engine.memory.MemoryPlan`: ``tile`` (what ``Upscale(tile=...)`` will
    use: ``0`` = whole frames), ``estimate`` and ``budget`` in bytes, ``fits``, ``describe()`` (the
    line the filter logs). A pure function of the clip's size and length, the model, the backend
    chosen, the options and the budget: an explicit ``max_memory`` gives the same plan anywhere.
    """
    check_constant_format(clip, FUNC)
    from vsmsvsr.models import check_model

    spec = check_model(model, ("vsr", "colorize", "restore", "interp"), FUNC)
    if spec.task == "vsr":
        from vsmsvsr.filters import upscale

        return upscale.plan(clip, model, device=device, fp16=fp16, backend=backend, precision=precision,
                            max_memory=max_memory, func=FUNC, **options)
    allowed = {"colorize": {"render_factor"}, "restore": {"colorize", "mindim", "window", "overlap"},
               "interp": set()}[spec.task]
    unknown = set(options) - allowed
    if unknown:
        raise TypeError(f"{FUNC}: unexpected argument(s) for {model}: {', '.join(sorted(unknown))}")
    precision = resolve_precision(precision, fp16, FUNC)
    choice, budget = backend_and_budget(backend, device, False, precision, max_memory, FUNC)
    config = choice.usable[0]
    if spec.task == "colorize":
        from vsmsvsr.filters import colorize

        render_factor = check_int(options.get("render_factor", 32), "render_factor", FUNC, 7, 64)
        return colorize._plan(clip.width, clip.height, model, render_factor, config.name, budget)
    if spec.task == "restore":
        from vsmsvsr.filters import remaster

        colour = options.get("colorize", False)
        check_bool(colour, "colorize", FUNC)
        mindim = check_int(options.get("mindim", remaster.DEFAULT_MINDIM), "mindim", FUNC, 16)
        _, window, overlap = check_grid(max(clip.num_frames, 1), options.get("window", remaster.DEFAULT_WINDOW),
                                        options.get("overlap", remaster.DEFAULT_OVERLAP), FUNC)
        window, overlap = clamp_grid(clip.num_frames, window, overlap)
        return remaster._plan(clip.width, clip.height, clip.num_frames, colour, mindim, window, overlap,
                              config.name, budget)
    from vsmsvsr.filters import interpolate

    return interpolate._plan(clip.width, clip.height, model, config.name, budget)
