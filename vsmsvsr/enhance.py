"""``vsmsvsr-enhance``: PaddleGAN's video-enhance pipeline as one VapourSynth graph piped into an encoder.

PaddleGAN's ``applications/tools/video-enhance.py`` runs its models one after another, each
writing every frame to PNG files and re-encoding a video for the next. Here the models of
``--process_order`` are chained as filters in one graph — source → filters → delivery format —
and the frames go once, as YUV4MPEG, into the encoder's stdin::

    source (BestSource, else L-SMASH-Works) → Upscale / Interpolate / Colorize / Remaster
        → integer YUV/GRAY → y4m → x264 → temporary .mkv → ffmpeg: + the input's audio, copied
                                 → ffmpeg (libx264 / libx265, + the input's audio, copied)
        → output file (.mkv; .mp4/.mov with the ffmpeg encoders)

The graph is built and output in this process (not by ``vspipe``): argument checks, weight
downloads and errors of the graph happen before the encoder starts and come back as Python
exceptions with one clear message, and the progress bar sees every frame.

Nothing is written under the output's name until the result is complete: the encoder writes to a
hidden temporary file beside it, which is renamed over the output at the very end. A failure or
Ctrl-C removes every temporary file.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import vapoursynth as vs

__all__ = [
    "STEPS",
    "ENCODERS",
    "PRESETS",
    "EnhanceError",
    "EncodeError",
    "EnhanceSettings",
    "EncodeSettings",
    "enhance",
    "default_output_path",
    "resolve_weights",
    "open_source",
    "apply_steps",
    "delivery_clip",
    "encode",
]

log = logging.getLogger(__name__)

FUNC = "vsmsvsr.enhance"


class EnhanceError(ValueError):
    """An argument of the enhance pipeline is invalid (raised before anything is loaded)."""


class EncodeError(RuntimeError):
    """The encoder or the muxer failed; the message ends with the tool's own last error line."""


# --------------------------------------------------------------------------------------------
# the steps of --process_order


def _upscale(model: str) -> Callable[["vs.VideoNode", "EnhanceSettings", Path | None], "vs.VideoNode"]:
    def apply(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None) -> "vs.VideoNode":
        from vsmsvsr.filters import Upscale

        return Upscale(clip, model=model, weights=_str(weights), window=s.num_frames, device=s.device)

    return apply


def _interpolate(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None) -> "vs.VideoNode":
    from vsmsvsr.filters import Interpolate

    return Interpolate(clip, factor=s.factor, model="DAIN", weights=_str(weights),
                       remove_duplicates=s.remove_duplicates, device=s.device)


def _colorize(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None) -> "vs.VideoNode":
    from vsmsvsr.filters import Colorize

    return Colorize(clip, model=s.deoldify_model, weights=_str(weights), render_factor=s.render_factor,
                    device=s.device)


def _remaster(clip: "vs.VideoNode", s: "EnhanceSettings", weights: Path | None) -> "vs.VideoNode":
    from vsmsvsr.filters import Remaster

    # PaddleGAN uses the reference images only when colourising.
    references = _str(s.reference_dir) if s.colorization else None
    return Remaster(clip, references=references, colorize=s.colorization, mindim=s.mindim,
                    weights=_str(weights), device=s.device)


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
    apply: Callable[["vs.VideoNode", "EnhanceSettings", Path | None], "vs.VideoNode"]
    models: tuple[str, ...]
    description: str


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

        try:
            parse_device(self.device, FUNC)
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
ENCODERS = ("x264", "x265", "ffmpeg")
#: x264's and x265's presets (identical names), fastest first.
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
           "veryslow", "placebo")
#: Default quality per encoder (CRF scales differ between x264 and x265).
DEFAULT_CRF = {"x264": 16.0, "x265": 18.0, "ffmpeg": 16.0}
#: Highest bit depth each encoder path takes; deeper clips are dithered down.
MAX_BITS = {"x264": 10, "x265": 12, "ffmpeg": 10}
#: Output containers by file extension (ffmpeg muxer names).
CONTAINERS = {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov"}


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode, checked on construction.

    Attributes:
        encoder: ``'x264'`` (the x264 program, H.264), ``'x265'`` (HEVC with libx265, run by
            ffmpeg: this ffmpeg cannot remux the x265 program's raw HEVC with timestamps) or
            ``'ffmpeg'`` (H.264 with ffmpeg's libx264).
        crf: constant rate factor 0–51; ``None`` = 16 for H.264, 18 for HEVC.
        preset: one of :data:`PRESETS`.
        lossless: mathematically lossless (x264 ``--qp 0``, libx264 ``-qp 0``, libx265 ``lossless=1``).
        encoder_args: extra arguments appended to the encoder's command line as given.
    """

    encoder: str = "x264"
    crf: float | None = None
    preset: str = "medium"
    lossless: bool = False
    encoder_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise EnhanceError(f"{FUNC}: encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")
        if self.preset not in PRESETS:
            raise EnhanceError(f"{FUNC}: preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if not isinstance(self.lossless, bool):
            raise EnhanceError(f"{FUNC}: lossless must be a bool, got {self.lossless!r}")
        if self.crf is not None:
            if isinstance(self.crf, bool) or not isinstance(self.crf, (int, float)):
                raise EnhanceError(f"{FUNC}: crf must be a number, got {self.crf!r}")
            if not 0 <= self.crf <= 51:
                raise EnhanceError(f"{FUNC}: crf must be between 0 and 51, got {self.crf:g}")
            if self.lossless:
                raise EnhanceError(f"{FUNC}: give crf or lossless, not both")
        if isinstance(self.encoder_args, str) or not all(isinstance(a, str) for a in self.encoder_args):
            raise EnhanceError(f"{FUNC}: encoder_args must be a sequence of strings, got {self.encoder_args!r}")
        object.__setattr__(self, "encoder_args", tuple(self.encoder_args))

    @property
    def program(self) -> str:
        """What runs the encoder, for messages: ``'x264'``, ``'ffmpeg (libx265)'``, ``'ffmpeg (libx264)'``."""
        return {"x264": "x264", "x265": "ffmpeg (libx265)", "ffmpeg": "ffmpeg (libx264)"}[self.encoder]

    @property
    def quality(self) -> float:
        return DEFAULT_CRF[self.encoder] if self.crf is None else float(self.crf)

    def tools(self) -> dict[str, str]:
        """``{program: absolute path}`` of the programs this encoding runs; EnhanceError if one is missing."""
        names = ("x264", "ffmpeg") if self.encoder == "x264" else ("ffmpeg",)
        found = {}
        for name in names:
            path = shutil.which(name)
            if path is None:
                raise EnhanceError(f"{FUNC}: {name} is not installed (not on PATH); install it "
                                   f"(Debian/Ubuntu: apt-get install {name}) or choose another encoder")
            found[name] = path
        return found


# --------------------------------------------------------------------------------------------
# paths


def default_output_path(input_path: str | os.PathLike, output_dir: str | os.PathLike, settings: EnhanceSettings) -> Path:
    """``<output_dir>/<input stem>_<order>.mkv``, e.g. ``output/cityCC0_PPMSVSR_DAIN.mkv``."""
    return Path(output_dir) / f"{Path(input_path).stem}_{settings.label}.mkv"


def _check_paths(input_path: Path, output: Path, encoder: str) -> None:
    if not input_path.is_file():
        raise EnhanceError(f"{FUNC}: input {str(input_path)!r} is not a file")
    _check_container(output, encoder)
    if output.exists() and output.resolve() == input_path.resolve():
        raise EnhanceError(f"{FUNC}: output {str(output)!r} is the input file")
    if output.is_dir():
        raise EnhanceError(f"{FUNC}: output {str(output)!r} is a folder; give a file name")
    _check_writable(output)


def _check_writable(output: Path) -> None:
    """The folder of ``output`` (or the deepest part of it that exists) takes new files: tried
    with a real temporary file, which also catches read-only mounts and full quotas."""
    folder = output.absolute().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise EnhanceError(f"{FUNC}: cannot write {str(output)!r}: {str(existing)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".vsmsvsr-write-check-")
    except OSError as exc:
        raise EnhanceError(f"{FUNC}: cannot write {str(output)!r}: the folder {str(existing)!r} is not "
                           f"writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)


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


def apply_steps(clip: "vs.VideoNode", settings: EnhanceSettings,
                weights: Mapping[str, Path | None] | None = None) -> "vs.VideoNode":
    """``clip`` through the filters of ``settings.process_order``, in order.

    ``weights``: ``{step: file}`` from :func:`resolve_weights`; a missing step uses
    ``settings.weights`` (else the filter's official default).
    """
    weights = dict(settings.weights) | dict(weights or {})
    for name in settings.process_order:
        clip = STEPS[name].apply(clip, settings, weights.get(name))
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


# --------------------------------------------------------------------------------------------
# encoder tags

# x264's names of the H.273 codes (ffmpeg takes the numbers).
_X264_MATRIX = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "YCgCo",
                9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
                13: "chroma-derived-c", 14: "ICtCp"}
_X264_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
                   9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432"}
_X264_TRANSFER = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear",
                  9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e", 13: "iec61966-2-1",
                  14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}


@dataclass(frozen=True)
class VideoTags:
    """Colour description written into the bitstream (H.273 codes; ``None`` = leave unspecified).

    ``full_range``: VapourSynth's ``_Range`` (0 limited, 1 full) as a bool.
    """

    matrix: int | None
    full_range: bool | None
    primaries: int | None
    transfer: int | None
    chromaloc: int | None

    @classmethod
    def of(cls, clip: "vs.VideoNode") -> "VideoTags":
        """Tags from the props of ``clip``'s first frame (its family decides which apply)."""
        import vapoursynth as vs

        props = clip.get_frame(0).props
        family = clip.format.color_family

        def code(key: str, table: Mapping[int, str]) -> int | None:
            value = props.get(key)
            return int(value) if value is not None and int(value) in table else None

        subsampled = family == vs.YUV and (clip.format.subsampling_w or clip.format.subsampling_h)
        rng = props.get("_Range")
        return cls(
            matrix=code("_Matrix", _X264_MATRIX) if family == vs.YUV else None,
            full_range=None if rng is None else int(rng) == int(vs.RANGE_FULL),
            primaries=code("_Primaries", _X264_PRIMARIES),
            transfer=code("_Transfer", _X264_TRANSFER),
            chromaloc=int(props.get("_ChromaLocation", 0)) if subsampled else None,
        )

    def x264_args(self) -> list[str]:
        args = []
        if self.full_range is not None:
            args += ["--range", "pc" if self.full_range else "tv"]
        if self.matrix is not None:
            args += ["--colormatrix", _X264_MATRIX[self.matrix]]
        if self.primaries is not None:
            args += ["--colorprim", _X264_PRIMARIES[self.primaries]]
        if self.transfer is not None:
            args += ["--transfer", _X264_TRANSFER[self.transfer]]
        if self.chromaloc is not None and 0 <= self.chromaloc <= 5:
            args += ["--chromaloc", str(self.chromaloc)]
        return args

    def ffmpeg_args(self) -> list[str]:
        args = []
        if self.full_range is not None:
            args += ["-color_range", "pc" if self.full_range else "tv"]
        if self.matrix is not None:
            args += ["-colorspace", str(self.matrix)]
        if self.primaries is not None:
            args += ["-color_primaries", str(self.primaries)]
        if self.transfer is not None:
            args += ["-color_trc", str(self.transfer)]
        if self.chromaloc is not None and 0 <= self.chromaloc <= 5:
            args += ["-chroma_sample_location", str(self.chromaloc + 1)]  # AVChromaLocation = H.273 + 1
        return args


# --------------------------------------------------------------------------------------------
# encoding


def _x264_command(settings: EncodeSettings, tools: Mapping[str, str], clip: "vs.VideoNode", tags: VideoTags,
                  video_path: Path) -> list[str]:
    """x264 reading y4m on stdin, writing Matroska (exact rate: its timestamps come from the y4m header)."""
    import vapoursynth as vs

    cmd = [tools["x264"], "--demuxer", "y4m", "--preset", settings.preset]
    cmd += ["--qp", "0"] if settings.lossless else ["--crf", f"{settings.quality:g}"]
    cmd += ["--output-depth", str(clip.format.bits_per_sample)]
    if clip.format.color_family == vs.GRAY:
        cmd += ["--output-csp", "i400"]
    return [*cmd, *tags.x264_args(), "--no-progress", *settings.encoder_args, "-o", str(video_path), "-"]


def _ffmpeg_command(settings: EncodeSettings, tools: Mapping[str, str], tags: VideoTags, audio_from: Path | None,
                    duration: Fraction | None, container: str, out_path: Path) -> list[str]:
    """ffmpeg encoding y4m from stdin and copying the audio of ``audio_from``, straight into ``container``.

    One process: the container gets its timestamps from the y4m rate itself (a remux of Matroska's
    millisecond timestamps into MP4 would not keep 24000/1001 exact).
    """
    codec = "libx265" if settings.encoder == "x265" else "libx264"
    cmd = [tools["ffmpeg"], "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "yuv4mpegpipe", "-i", "pipe:0"]
    if audio_from is not None:
        cmd += ["-i", str(audio_from)]
    cmd += ["-map", "0:v:0"]
    if audio_from is not None:
        cmd += ["-map", "1:a?", "-c:a", "copy"]  # every audio stream, none if the input has none
        if container != "matroska":
            cmd += ["-strict", "experimental"]  # FLAC and Opus in MP4, which ffmpeg 5 still flags
    cmd += ["-c:v", codec, "-preset", settings.preset]
    if settings.lossless:
        cmd += ["-x265-params", "lossless=1"] if codec == "libx265" else ["-qp", "0"]
    else:
        cmd += ["-crf", f"{settings.quality:g}"]
    cmd += [*tags.ffmpeg_args(), *settings.encoder_args]
    if duration is not None:
        cmd += ["-t", f"{float(duration):.6f}"]
    return [*cmd, "-f", container, "-y", str(out_path)]


def _mux_command(ffmpeg: str, video_path: Path, audio_from: Path | None, duration: Fraction | None,
                 container: str, out_path: Path) -> list[str]:
    """The encoded video plus the audio streams of ``audio_from``, all copied."""
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(video_path)]
    if audio_from is not None:
        cmd += ["-i", str(audio_from)]
    cmd += ["-map", "0:v:0"]
    if audio_from is not None:
        cmd += ["-map", "1:a?"]
    cmd += ["-c", "copy"]
    if duration is not None:
        cmd += ["-t", f"{float(duration):.6f}"]
    return [*cmd, "-f", container, "-y", str(out_path)]


def _check_container(output: Path, encoder: str) -> str:
    container = CONTAINERS.get(output.suffix.lower())
    if container is None:
        raise EnhanceError(f"{FUNC}: output {str(output)!r} must end in one of {', '.join(CONTAINERS)}")
    if encoder == "x264" and container != "matroska":
        raise EnhanceError(f"{FUNC}: the x264 program writes Matroska: use a .mkv output, or "
                           f"--encoder ffmpeg for {output.suffix}")
    return container


def _last_error(log_file: Any) -> str:
    """The tool's error lines (x264's ``[error]`` lines, else everything: ffmpeg runs at -loglevel error)."""
    log_file.seek(0)
    lines = [line.strip() for line in log_file.read().decode(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "[error]" in line] or lines or ["(no message)"]
    return " | ".join(errors[-3:])


def encode(
    clip: "vs.VideoNode",
    output: str | os.PathLike,
    settings: EncodeSettings = EncodeSettings(),
    *,
    audio_from: str | os.PathLike | None = None,
    audio_duration: Fraction | None = None,
    progress: bool = True,
    label: str = "enhance",
) -> Path:
    """Encode ``clip`` into ``output`` with the audio streams of ``audio_from``.

    ``output``: ``.mkv``; also ``.mp4``/``.mov`` with the ffmpeg encoders (``x265``, ``ffmpeg``),
    which write the container themselves: the x264 program writes Matroska, whose millisecond
    timestamps would not stay exact (24000/1001) when remuxed into MP4.

    ``clip`` must be integer YUV or GRAY (see :func:`delivery_clip`); its exact frame rate goes
    into the YUV4MPEG header and from there into the file's timestamps. The colour tags of its
    first frame (``_Matrix``, ``_Range``, ``_Primaries``, ``_Transfer``, ``_ChromaLocation``) are
    written into the bitstream. Audio streams are copied unchanged (``audio_duration`` cuts them,
    e.g. when only the first frames were processed); no audio stream when ``audio_from`` has none.

    The encoder writes a hidden temporary file beside ``output`` (x264: a second one, the video
    alone, then muxed with the audio), renamed to ``output`` at the end; on any failure (also Ctrl-C) both are removed and an
    existing ``output`` is left as it was. A progress bar (frames/s, ETA) goes to stderr.
    Raises :class:`EncodeError` with the encoder's or muxer's last error line.
    """
    import vapoursynth as vs

    from vsmsvsr.progress import frame_bar

    output = Path(output)
    container = _check_container(output, settings.encoder)
    audio = Path(audio_from) if audio_from is not None else None
    fmt = clip.format
    if fmt is None or fmt.sample_type != vs.INTEGER or fmt.color_family not in (vs.YUV, vs.GRAY):
        raise EnhanceError(f"{FUNC}: encode needs integer YUV or GRAY, got {fmt.name if fmt else 'a variable format'}")
    tools = settings.tools()

    folder = output.parent
    created = [] if folder.is_dir() else [p for p in (folder, *folder.parents) if not p.exists()]
    token = secrets.token_hex(4)
    video_tmp = folder / f".{output.name}.{token}.video.mkv"
    muxed_tmp = folder / f".{output.name}.{token}.part{output.suffix}"
    encoder = None
    try:
        with tempfile.TemporaryFile() as encoder_log, frame_bar(
            total=clip.num_frames, desc=label, file=sys.stderr, disable=not progress, dynamic_ncols=True,
        ) as bar:
            # Frame 0 gives the colour tags: computed now (the filters cache it) and counted by the
            # bar's clock, before the encoder starts.
            tags = VideoTags.of(clip)
            folder.mkdir(parents=True, exist_ok=True)
            if settings.encoder == "x264":
                command = _x264_command(settings, tools, clip, tags, video_tmp)
            else:
                command = _ffmpeg_command(settings, tools, tags, audio, audio_duration, container, muxed_tmp)
            log.debug("encoder: %s", " ".join(command))
            encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=encoder_log)
            failure: BaseException | None = None
            try:
                clip.output(encoder.stdin, y4m=True, progress_update=lambda done, total: bar.advance_to(done))
            except (OSError, vs.Error) as exc:  # the pipe broke, or a filter failed
                failure = exc
            finally:
                try:
                    encoder.stdin.close()
                except OSError:
                    pass
            code = encoder.wait()
            if code != 0:
                hint = ""
                if audio is not None and container != "matroska":
                    hint = f" (if the input's audio codec does not fit {output.suffix}, write .mkv)"
                raise EncodeError(f"{FUNC}: {settings.program} failed (exit {code}): "
                                  f"{_last_error(encoder_log)}{hint}")
            if failure is not None:
                if isinstance(failure, vs.Error):
                    raise EncodeError(f"{FUNC}: processing failed: {str(failure).strip()}") from failure
                raise failure
        if settings.encoder == "x264":
            with tempfile.TemporaryFile() as mux_log:
                mux = subprocess.run(_mux_command(tools["ffmpeg"], video_tmp, audio, audio_duration, container,
                                                  muxed_tmp),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=mux_log)
                if mux.returncode != 0:
                    raise EncodeError(f"{FUNC}: ffmpeg could not mux the video with the audio of "
                                      f"{str(audio)!r}: {_last_error(mux_log)}")
        os.replace(muxed_tmp, output)
    except BaseException:
        if encoder is not None and encoder.poll() is None:
            encoder.kill()
            encoder.wait()
        video_tmp.unlink(missing_ok=True)
        muxed_tmp.unlink(missing_ok=True)
        for made in created:  # only the folders this call made, deepest first, and only if empty
            try:
                made.rmdir()
            except OSError:
                break
        raise
    video_tmp.unlink(missing_ok=True)
    return output


# --------------------------------------------------------------------------------------------
# the whole job


def enhance(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    settings: EnhanceSettings,
    encode_settings: EncodeSettings = EncodeSettings(),
    *,
    progress: bool = True,
) -> Path:
    """Run ``settings.process_order`` on ``input_path`` and encode the result into ``output``.

    Order of work: paths and encoder programs are checked, then the weights of every step are
    resolved (official files downloaded), then the graph is built (each filter checks its own
    arguments), then frames are encoded. Returns ``output``.
    """
    input_path, output = Path(input_path), Path(output)
    _check_paths(input_path, output, encode_settings.encoder)
    for note in settings.notes():
        log.warning("%s", note)
    encode_settings.tools()
    weights = resolve_weights(settings, progress=progress)

    source = open_source(input_path)
    if settings.max_frames is not None and settings.max_frames < source.num_frames:
        source = source[: settings.max_frames]
        audio_duration = Fraction(source.num_frames) / source.fps
    else:
        audio_duration = None
    result = delivery_clip(apply_steps(source, settings, weights), source, encode_settings.encoder)
    log.info("%s: %s: %dx%d, %d frames at %s fps -> %s -> %dx%d %s, %d frames at %s fps -> %s",
             FUNC, input_path.name, source.width, source.height, source.num_frames, _fps(source),
             " -> ".join(settings.process_order), result.width, result.height, result.format.name,
             result.num_frames, _fps(result), output)
    encode(result, output, encode_settings, audio_from=input_path, audio_duration=audio_duration,
           progress=progress, label=settings.label)
    log.info("%s: wrote %s", FUNC, output)
    return output


def _fps(clip: "vs.VideoNode") -> str:
    fps = clip.fps
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"

