"""The steps of ``--process_order`` (PaddleGAN's model names -> vsmsvsr filters), the job's
settings, and the weights every step needs (resolved before any graph is built)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping

from vsmsvsr.pipeline.errors import FUNC, EnhanceError

if TYPE_CHECKING:  # pragma: no cover
    import vapoursynth as vs

log = logging.getLogger("vsmsvsr.enhance")


# --------------------------------------------------------------------------------------------
# the steps of --process_order


# Each step: apply(clip, settings, weights, max_memory) -> clip, and plan(clip, settings, max_memory)
# -> its vsmsvsr.plan (what it would use), so that the job can share one budget among its steps.


def _upscale_options(model: str, s: "EnhanceSettings") -> dict:
    return dict(model=model, window=s.num_frames, device=s.device, precision=s.precision, backend=s.backend)


def _upscale(model: str) -> Callable[..., "vs.VideoNode"]:
    def apply(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None, max_memory: int) -> "vs.VideoNode":
        from vsmsvsr.filters import Upscale

        return Upscale(clip, weights=_str(weights), max_memory=max_memory, **_upscale_options(model, s))

    return apply


def _interpolate(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None, max_memory: int) -> "vs.VideoNode":
    from vsmsvsr.filters import Interpolate

    return Interpolate(clip, factor=s.factor, model="DAIN", weights=_str(weights),
                       remove_duplicates=s.remove_duplicates, device=s.device, precision=s.precision,
                       backend=s.backend, max_memory=max_memory)


def _colorize(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None, max_memory: int) -> "vs.VideoNode":
    from vsmsvsr.filters import Colorize

    return Colorize(clip, model=s.deoldify_model, weights=_str(weights), render_factor=s.render_factor,
                    device=s.device, precision=s.precision, backend=s.backend, max_memory=max_memory)


def _remaster(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None, max_memory: int) -> "vs.VideoNode":
    from vsmsvsr.filters import Remaster

    # PaddleGAN uses the reference images only when colourising.
    references = _str(s.reference_dir) if s.colorization else None
    return Remaster(clip, references=references, colorize=s.colorization, mindim=s.mindim,
                    weights=_str(weights), device=s.device, precision=s.precision, backend=s.backend,
                    max_memory=max_memory)


def _plan_options(step: str, s: "EnhanceSettings") -> tuple[str, dict]:
    """(model, options of vsmsvsr.plan) of ``step`` under ``s``."""
    if step in ("PPMSVSR", "PPMSVSRLarge"):
        options = _upscale_options(STEPS[step].models[0], s)
        return options.pop("model"), options
    if step == "DeOldify":
        return s.deoldify_model, dict(render_factor=s.render_factor, device=s.device, precision=s.precision,
                                      backend=s.backend)
    if step == "DeepRemaster":
        return "DeepRemaster", dict(colorize=s.colorization, mindim=s.mindim, device=s.device, precision=s.precision,
                                    backend=s.backend)
    return "DAIN", dict(device=s.device, precision=s.precision, backend=s.backend)


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


@dataclass(frozen=True)
class Step:
    """One name of ``--process_order``: the model it runs and the filter call that runs it.

    ``models`` holds the model name (a key of :data:`vsmsvsr.weights.OFFICIAL`); DeOldify has two,
    stable and artistic, chosen by ``--artistic``.
    """

    name: str
    weight_flag: str
    apply: Callable[..., "vs.VideoNode"]
    models: tuple[str, ...]
    description: str

    @property
    def tiles(self) -> bool:
        """The step's filter fits its budget by tiling (Upscale); the others need a fixed amount."""
        return self.name in ("PPMSVSR", "PPMSVSRLarge")


#: The names PaddleGAN's video-enhance accepts in ``--process_order`` that vsmsvsr implements.
STEPS: Mapping[str, Step] = MappingProxyType({
    step.name: step
    for step in (
        Step("PPMSVSR", "PPMSVSR_weight", _upscale("PP-MSVSR"), ("PP-MSVSR",),
             "x4 super-resolution, msvsr.Upscale(model='PP-MSVSR')"),
        Step("PPMSVSRLarge", "PPMSVSRLarge_weight", _upscale("PP-MSVSR-L"), ("PP-MSVSR-L",),
             "x4 super-resolution, msvsr.Upscale(model='PP-MSVSR-L')"),
        Step("DAIN", "DAIN_weight", _interpolate, ("DAIN",),
             "frame interpolation, msvsr.Interpolate(factor=1/time_step)"),
        Step("DeOldify", "DeOldify_weight", _colorize, ("DeOldify", "DeOldify-artistic"),
             "colourisation, msvsr.Colorize(model='DeOldify' or 'DeOldify-artistic')"),
        Step("DeepRemaster", "DeepRemaster_weight", _remaster, ("DeepRemaster",),
             "restoration (+ colourisation), msvsr.Remaster"),
    )
})

#: PaddleGAN video-enhance models that are not part of vsmsvsr.
_NOT_PORTED = ("RealSR", "EDVR", "BasicVSR", "IconVSR", "BasiVSRPlusPlus")


# --------------------------------------------------------------------------------------------
# settings


def _positive_int(value: object, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EnhanceError(f"{FUNC}: {name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise EnhanceError(f"{FUNC}: {name} must be {bounds}, got {value}")
    return value


def _time_step(value: object) -> Fraction:
    """``0.5`` (as str, float or Fraction) or ``'1/3'`` → exact Fraction in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Fraction)):
        raise EnhanceError(f"{FUNC}: time_step must be a number such as 0.5, got {value!r}")
    try:
        # str() first: Fraction(0.1) would be the binary float, Fraction('0.1') is 1/10.
        step = value if isinstance(value, Fraction) else Fraction(str(value).strip())
    except (ValueError, ZeroDivisionError):
        raise EnhanceError(f"{FUNC}: time_step must be a number such as 0.5 or 1/3, got {value!r}") from None
    if not 0 < step < 1:
        raise EnhanceError(f"{FUNC}: time_step must be > 0 and < 1 (0.5 doubles the frame rate), got {value}")
    return step


@dataclass(frozen=True)
class EnhanceSettings:
    """What to run: PaddleGAN video-enhance's model options, checked on construction.

    Attributes:
        process_order: names from :data:`STEPS`, applied in this order (repeats allowed).
        num_frames: PP-MSVSR temporal window in frames (``Upscale(window=...)``), default 10.
        time_step: DAIN: output frame spacing in input frames; 0.5 doubles the frame rate. The
            interpolation factor is exactly ``1 / time_step`` (``'0.4'`` → 5/2).
        remove_duplicates: DAIN: drop duplicated input frames first, keeping the timing.
        render_factor: DeOldify: the network sees ``16 * render_factor`` pixels square (7–64).
        artistic: DeOldify: the artistic model instead of the stable one.
        colorization: DeepRemaster: colourise as well as restore.
        reference_dir: DeepRemaster: folder of colour reference images (used with colorization).
        mindim: DeepRemaster: length of the shorter frame edge the network works at (>= 16).
        weights: ``{step name: weights file}``; absent steps use the official file.
        device: ``None`` (any, a GPU where Paddle has one), ``'cpu'``, ``'gpu'``, ``'gpu:N'``.
        max_frames: process only the first N frames (the audio is cut to their duration).
        max_memory: the job's memory budget (bytes, ``'8GB'``, ``'50%'``; ``None``: 60 % of the
            available memory), shared by its steps: see :func:`step_budgets`.
        precision: ``None``/``'fp32'`` (default), ``'bf16'`` (OpenVINO on the CPU) or ``'fp16'``
            (GPU), for every step (see :func:`vsmsvsr.Upscale`).
        backend: ``'auto'`` (default: each filter takes the first backend that runs here) or one
            name of :data:`vsmsvsr.engine.BACKEND_NAMES` for every step. A chunked job resolves
            ``'auto'`` once (:func:`vsmsvsr.pipeline.chunks.resolve_machine`) so that every chunk,
            wherever it runs, uses the same one.
    """

    process_order: tuple[str, ...]
    num_frames: int = 10
    time_step: Fraction | float | str = Fraction(1, 2)
    remove_duplicates: bool = False
    render_factor: int = 32
    artistic: bool = False
    colorization: bool = False
    reference_dir: Path | str | None = None
    mindim: int = 360
    weights: Mapping[str, Path | str | None] = field(default_factory=dict)
    device: str | None = None
    max_frames: int | None = None
    precision: str | None = None
    max_memory: int | str | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        order = self.process_order
        if isinstance(order, str):
            order = (order,)
        order = tuple(order)
        if not order:
            raise EnhanceError(f"{FUNC}: process_order is empty; give one or more of {', '.join(STEPS)}")
        for name in order:
            if name not in STEPS:
                hint = " (a PaddleGAN model that vsmsvsr does not port)" if name in _NOT_PORTED else ""
                close = [s for s in STEPS if s.lower() == str(name).lower()]
                hint = f" (did you mean {close[0]!r}?)" if close else hint
                raise EnhanceError(f"{FUNC}: unknown process_order name {name!r}{hint}; "
                                   f"valid: {', '.join(STEPS)}")
        object.__setattr__(self, "process_order", order)
        _positive_int(self.num_frames, "num_frames")
        object.__setattr__(self, "time_step", _time_step(self.time_step))
        # The bounds of msvsr.Colorize and msvsr.Remaster, checked here so that a bad value fails
        # before an earlier step of the order loads its model.
        _positive_int(self.render_factor, "render_factor", 7, 64)
        _positive_int(self.mindim, "mindim", 16)
        for name in ("remove_duplicates", "artistic", "colorization"):
            if not isinstance(getattr(self, name), bool):
                raise EnhanceError(f"{FUNC}: {name} must be a bool, got {getattr(self, name)!r}")
        if self.max_frames is not None:
            _positive_int(self.max_frames, "max_frames")
        if self.reference_dir is not None:
            ref = Path(self.reference_dir)
            if not ref.is_dir():
                raise EnhanceError(f"{FUNC}: reference_dir {str(ref)!r} is not a folder")
            object.__setattr__(self, "reference_dir", ref)
        weights: dict[str, Path | None] = {}
        for name, path in dict(self.weights).items():
            if name not in STEPS:
                raise EnhanceError(f"{FUNC}: weights given for unknown step {name!r}; valid: {', '.join(STEPS)}")
            if path is None:
                continue
            # DAIN's official weights are a tar that PaddleGAN users have unpacked into a folder.
            exists = Path(path).exists() if name == "DAIN" else Path(path).is_file()
            if not exists:
                raise EnhanceError(f"{FUNC}: --{STEPS[name].weight_flag}: no file at {str(path)!r}")
            weights[name] = Path(path)
        object.__setattr__(self, "weights", MappingProxyType(weights))
        from vsmsvsr.device import parse_device
        from vsmsvsr.engine.backends import BACKEND_NAMES, resolve_precision

        if self.backend != "auto" and self.backend not in BACKEND_NAMES:
            raise EnhanceError(f"{FUNC}: backend must be 'auto' or one of {', '.join(BACKEND_NAMES)}, "
                               f"got {self.backend!r}")

        from vsmsvsr.engine.memory import resolve_budget

        try:
            parse_device(self.device, FUNC)
            object.__setattr__(self, "precision", resolve_precision(self.precision, False, FUNC))
            resolve_budget(self.max_memory, FUNC, lambda: 1)  # the form only: the amount is read later
        except (TypeError, ValueError) as exc:
            raise EnhanceError(str(exc)) from None

    def notes(self) -> list[str]:
        """Options that are given but have no effect (logged as warnings when a job starts)."""
        notes = []
        if self.reference_dir is not None and not (self.colorization and "DeepRemaster" in self.process_order):
            notes.append(f"{FUNC}: reference_dir is used only by DeepRemaster with colorization; ignored")
        for name in self.weights:
            if name not in self.process_order:
                notes.append(f"{FUNC}: --{STEPS[name].weight_flag} given, but {name} is not in "
                             "process_order; ignored")
        return notes

    @property
    def factor(self) -> Fraction | int:
        """DAIN's frame-rate factor ``1 / time_step`` (an int when whole)."""
        factor = 1 / Fraction(self.time_step)
        return int(factor) if factor.denominator == 1 else factor

    @property
    def deoldify_model(self) -> str:
        return "DeOldify-artistic" if self.artistic else "DeOldify"

    def model_of(self, step: str) -> str:
        """The model (and official weights) name that ``step`` runs."""
        return self.deoldify_model if step == "DeOldify" else STEPS[step].models[0]

    @property
    def label(self) -> str:
        """``'PPMSVSR_DAIN'``: the order, for file names."""
        return "_".join(self.process_order)


#: Encoder choices: x264's command-line tool, or ffmpeg with libx265 / libx264.


def apply_steps(clip: "vs.VideoNode", settings: EnhanceSettings,
                weights: Mapping[str, Path | None] | None = None,
                budgets: "list[int] | None" = None) -> "vs.VideoNode":
    """``clip`` through the filters of ``settings.process_order``, in order.

    ``weights``: ``{step: file}`` from :func:`resolve_weights`; a missing step uses
    ``settings.weights`` (else the filter's official default). ``budgets``: every step's
    ``max_memory``, as :func:`step_budgets` gives them (``None``: computed now, from this
    machine's free memory).
    """
    weights = dict(settings.weights) | dict(weights or {})
    if budgets is None:
        budgets = step_budgets(clip, settings)
    else:
        import vapoursynth as vs

        vs.core.max_cache_size = job_frame_cache_mb(clip.width, clip.height, settings)
    for name, budget in zip(settings.process_order, budgets):
        clip = STEPS[name].apply(clip, settings, weights.get(name), budget)
    return clip


#: VapourSynth's frame cache in an enhance job: frames are requested in order, so a small cache
#: serves them; at least this many MB, and room for :data:`JOB_CACHED_FRAMES` of the largest frame
#: of the graph (a float RGB frame after Upscale: 177 MB at 5120x2880; with less, VapourSynth
#: reports "Memory usage still over the limit, flushing pipeline").
JOB_FRAME_CACHE_MB = 512
JOB_CACHED_FRAMES = 8


def job_frame_cache_mb(width: int, height: int, settings: "EnhanceSettings") -> int:
    """The frame cache (MB) of a job on ``width`` x ``height`` frames (see :data:`JOB_FRAME_CACHE_MB`)."""
    for name in settings.process_order:
        if STEPS[name].tiles:
            width, height = width * 4, height * 4
    return max(JOB_FRAME_CACHE_MB, -(-JOB_CACHED_FRAMES * 12 * width * height // 2**20))


def step_budgets(clip: "vs.VideoNode", settings: EnhanceSettings) -> list[int]:
    """The ``max_memory`` (bytes) of every step of ``settings.process_order`` on ``clip``.

    The job's budget (``settings.max_memory``, resolved once against the memory of the device the
    first step runs on) less VapourSynth's frame cache (:func:`job_frame_cache_mb`, which the job
    sets as ``core.max_cache_size``) is shared by
    models that are all alive in one process and may run at the same time: a step that cannot
    tile (DAIN, DeOldify, DeepRemaster) is given the whole share and must fit it; the steps that
    tile (Upscale) split what the others leave, each of them counted once without the process's
    own memory (:data:`vsmsvsr.engine.memory.PROCESS_BASE`). The budgets are
    :class:`vsmsvsr.engine.memory.Budget` values: explicit when ``--max_memory`` was given (a step
    that cannot fit is an error), a share of the default budget otherwise (a warning).
    """
    import vapoursynth as vs

    from vsmsvsr.engine import choose_backend
    from vsmsvsr.engine.memory import PROCESS_BASE, Budget, budget_for, format_bytes
    from vsmsvsr.filters import plan

    cache = job_frame_cache_mb(clip.width, clip.height, settings)
    vs.core.max_cache_size = cache
    try:
        config = choose_backend(settings.backend, settings.device, precision=settings.precision).usable[0]
    except (TypeError, ValueError) as exc:
        raise EnhanceError(f"{FUNC}: {exc}") from None
    total, source = budget_for(settings.max_memory, FUNC, config.runs_on, getattr(config, "device_id", 0))
    explicit = settings.max_memory is not None
    share = total - cache * 2**20
    if share <= PROCESS_BASE and explicit:
        raise EnhanceError(f"{FUNC}: max_memory {format_bytes(total)} leaves nothing for the models beside "
                           f"VapourSynth's frame cache ({format_bytes(cache * 2**20)}); give more "
                           "(e.g. --max_memory 8GB)")
    fixed, tiling, needs = 0, 0, []
    width, height = clip.width, clip.height
    for name in settings.process_order:
        if STEPS[name].tiles:
            tiling += 1
            width, height = width * 4, height * 4
        else:
            model, options = _plan_options(name, settings)
            probe = vs.core.std.BlankClip(clip, width=width, height=height, keep=True)
            need = max(plan(probe, model, max_memory=share, **options).estimate - PROCESS_BASE, 0)
            fixed += need
            needs.append(f"{name} {format_bytes(need)}")
    rest = (share - fixed) // max(tiling, 1)
    if tiling and rest <= PROCESS_BASE and explicit:
        raise EnhanceError(f"{FUNC}: max_memory {format_bytes(total)} ({source}) leaves nothing for Upscale: "
                           f"VapourSynth's frame cache takes {format_bytes(cache * 2**20)} and the other models an "
                           f"estimated {', '.join(needs)}; give more (at least about "
                           f"{format_bytes(total - rest * tiling + tiling * 2 * 10**9)}) or a smaller render_factor / "
                           "mindim")
    of_job = f"the job's {format_bytes(total)} ({source})"
    budgets = [Budget(max(rest, 1), f"{of_job}: what the other models and the frame cache leave", explicit)
               if STEPS[name].tiles else Budget(max(share, 1), f"{of_job} less the frame cache", explicit)
               for name in settings.process_order]
    others = f", {format_bytes(fixed)} for the other models" if fixed else ""
    log.info("%s: memory budget %s (%s): %s for VapourSynth's frame cache%s%s", FUNC, format_bytes(total), source,
             format_bytes(cache * 2**20), others,
             f", {format_bytes(rest)} for {'each ' if tiling > 1 else ''}Upscale" if tiling else "")
    return budgets


def resolve_weights(settings: EnhanceSettings, *, progress: bool = True) -> dict[str, Path]:
    """The weights file of every step: the given one, else the official file (downloaded now).

    Done for all steps before any graph is built, so a missing download fails before any model
    runs. Raises :class:`vsmsvsr.weights.WeightsError` naming the URL and where to place the file.
    """
    from vsmsvsr import weights as wmod

    paths: dict[str, Path] = {}
    for step in dict.fromkeys(settings.process_order):
        given = settings.weights.get(step)
        if given is not None:
            paths[step] = Path(given)
            continue
        try:
            paths[step] = wmod.fetch(settings.model_of(step), progress=progress)
        except wmod.WeightsError as exc:
            raise type(exc)(f"{exc} vsmsvsr-enhance: --{STEPS[step].weight_flag} PATH; predictors: "
                            "weight_path=PATH.") from None
    return paths
