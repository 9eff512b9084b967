"""PaddleGAN-style predictors (``ppgan.apps``) on top of :mod:`vsmsvsr.pipeline`.

Drop-in for code written against PaddleGAN's predictors::

    from vsmsvsr.apps import PPMSVSRPredictor      # was: from ppgan.apps import PPMSVSRPredictor
    path = PPMSVSRPredictor(output="output").run("input.mp4")

Same class names, constructor parameters and defaults, and the same output folders. Differences:

- ``run`` returns the output path only (PaddleGAN returns ``(frames pattern, video path)``): no
  PNG frames are written, the frames go straight from the VapourSynth graph into the encoder.
- Videos are Matroska (``.mkv``, PaddleGAN writes ``.mp4``), with the exact frame rate, the
  input's colour tags and its audio streams copied unchanged (PaddleGAN drops the audio).
- Official weights are fetched (downloaded once into the cache) when the predictor is built, as
  PaddleGAN does; an unreachable server raises :class:`vsmsvsr.weights.WeightsError` naming the URL
  and where to place the file.

Keyword-only extras on every predictor: ``encoder``, ``crf``, ``preset``, ``lossless`` (see
:class:`vsmsvsr.pipeline.EncodeSettings`), ``device`` (``None`` = any, ``'cpu'``, ``'gpu'``) and
``progress`` (progress bar on stderr).
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from vsmsvsr import pipeline as _enhance

__all__ = [
    "PPMSVSRPredictor",
    "PPMSVSRLargePredictor",
    "DAINPredictor",
    "DeOldifyPredictor",
    "DeepRemasterPredictor",
]

log = logging.getLogger(__name__)

#: File extensions :class:`DeOldifyPredictor` treats as still images.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _base_name(path: str | os.PathLike) -> str:
    """PaddleGAN's ``os.path.basename(path).split('.')[0]`` (the stem for names starting with a dot)."""
    name = os.path.basename(os.fspath(path))
    return name.split(".")[0] or Path(name).stem


class _Predictor:
    """One step of :data:`vsmsvsr.pipeline.STEPS` as a PaddleGAN predictor."""

    step: ClassVar[str]

    def __init__(self, output: str | os.PathLike, weight_path: str | os.PathLike | None,
                 options: dict[str, Any], *, encoder: str, crf: float | None, preset: str,
                 lossless: bool, device: str | None, progress: bool) -> None:
        self.output = os.fspath(output)
        self.progress = progress
        settings = _enhance.EnhanceSettings((self.step,), weights={self.step: weight_path}, device=device,
                                            **options)
        self.encode_settings = _enhance.EncodeSettings(encoder=encoder, crf=crf, preset=preset, lossless=lossless)
        # Like PaddleGAN: the official file is fetched when the predictor is built.
        self.weight_path = os.fspath(_enhance.resolve_weights(settings, progress=progress)[self.step])
        self.settings = dataclasses.replace(settings, weights={self.step: self.weight_path})

    def video_output_path(self, video_path: str | os.PathLike) -> Path:  # pragma: no cover - per class
        raise NotImplementedError

    def run(self, video_path: str | os.PathLike) -> str:
        """Process ``video_path``; returns the path of the output video."""
        out = self.video_output_path(video_path)
        _enhance.enhance(video_path, out, self.settings, self.encode_settings, progress=self.progress)
        return os.fspath(out)


#: Keyword-only extras of every predictor and their defaults.
EXTRAS = {"encoder": "x264", "crf": None, "preset": "medium", "lossless": False, "device": None, "progress": True}


def _extras(cls: type, **given: Any) -> dict[str, Any]:
    unknown = sorted(set(given) - set(EXTRAS))
    if unknown:
        raise TypeError(f"vsmsvsr.apps.{cls.__name__}: unexpected argument {unknown[0]!r}; "
                        f"the extras are {', '.join(EXTRAS)}")
    return EXTRAS | given


class PPMSVSRPredictor(_Predictor):
    """×4 super-resolution with PP-MSVSR (``msvsr.Upscale(model='PP-MSVSR')``).

    Args:
        output: output folder; the video goes to ``<output>/PPMSVSR/<name>_PPMSVSR_out.mkv``.
        weight_path: ``.pdparams`` file; ``None`` = the official ``PP-MSVSR_reds_x4.pdparams``.
        num_frames: frames per temporal window (default 10, as PaddleGAN's 10-frame chunks).
    """

    step = "PPMSVSR"
    folder = "PPMSVSR"

    def __init__(self, output: str | os.PathLike = "output", weight_path: str | os.PathLike | None = None,
                 num_frames: int = 10, **extras: Any) -> None:
        super().__init__(output, weight_path, {"num_frames": num_frames}, **_extras(type(self), **extras))

    def video_output_path(self, video_path: str | os.PathLike) -> Path:
        return Path(self.output, self.folder, f"{_base_name(video_path)}_{self.folder}_out.mkv")


class PPMSVSRLargePredictor(PPMSVSRPredictor):
    """×4 super-resolution with PP-MSVSR-L; output ``<output>/PPMSVSR-L/<name>_PPMSVSR-L_out.mkv``."""

    step = "PPMSVSRLarge"
    folder = "PPMSVSR-L"


class DAINPredictor(_Predictor):
    """Frame interpolation with DAIN (``msvsr.Interpolate(factor=1/time_step)``).

    Args:
        output: output folder; the video goes to ``<output>/DAIN/videos-output/<name>.mkv``.
        weight_path: DAIN weights; ``None`` = the official ``DAIN_weight.tar``.
        time_step: spacing of output frames in input frames; ``None`` or 0.5 doubles the frame rate.
            The frame rate is multiplied by exactly ``1/time_step`` (PaddleGAN rounds the factor
            down to an integer and the rate to whole frames per second).
        use_gpu: ``True`` runs on the GPU when Paddle has one, else on the CPU with a warning on
            stderr (PaddleGAN's default is ``True``); ``False`` runs on the CPU.
        remove_duplicates: drop duplicated input frames before interpolating, keeping the timing.
    """

    step = "DAIN"

    def __init__(self, output: str | os.PathLike = "output", weight_path: str | os.PathLike | None = None,
                 time_step: float | str | None = None, use_gpu: bool = True, remove_duplicates: bool = False,
                 **extras: Any) -> None:
        if not isinstance(use_gpu, bool):
            raise TypeError(f"vsmsvsr.apps.DAINPredictor: use_gpu must be a bool, got {use_gpu!r}")
        if "device" in extras:
            raise TypeError("vsmsvsr.apps.DAINPredictor: choose the device with use_gpu")
        options = {"time_step": 0.5 if time_step is None else time_step, "remove_duplicates": remove_duplicates}
        self.use_gpu = use_gpu
        super().__init__(output, weight_path, options, **_extras(type(self), device=_gpu_or_cpu(use_gpu), **extras))

    def video_output_path(self, video_path: str | os.PathLike) -> Path:
        return Path(self.output, "DAIN", "videos-output", f"{_base_name(video_path)}.mkv")


def _gpu_or_cpu(use_gpu: bool) -> str:
    if not use_gpu:
        return "cpu"
    from vsmsvsr.device import gpu_count

    if gpu_count() > 0:
        return "gpu"
    log.warning("vsmsvsr.apps.DAINPredictor: use_gpu=True, but Paddle has no GPU here; running on the CPU")
    return "cpu"


class DeOldifyPredictor(_Predictor):
    """Colourisation with DeOldify (``msvsr.Colorize``), for videos and still images.

    Args:
        output: output folder: videos go to ``<output>/DeOldify/<name>/<name>_deoldify_out.mkv``,
            images to ``<output>/DeOldify/<name>.png``.
        weight_path: ``.pdparams`` file; ``None`` = the official ``DeOldify_stable.pdparams`` (or
            ``DeOldify_art.pdparams`` with ``artistic=True``).
        artistic: the artistic model instead of the stable one.
        render_factor: the network sees ``16 * render_factor`` pixels square (default 32).
    """

    step = "DeOldify"

    def __init__(self, output: str | os.PathLike = "output", weight_path: str | os.PathLike | None = None,
                 artistic: bool = False, render_factor: int = 32, **extras: Any) -> None:
        super().__init__(output, weight_path, {"artistic": artistic, "render_factor": render_factor},
                         **_extras(type(self), **extras))

    def video_output_path(self, video_path: str | os.PathLike) -> Path:
        base = _base_name(video_path)
        return Path(self.output, "DeOldify", base, f"{base}_deoldify_out.mkv")

    def image_output_path(self, image_path: str | os.PathLike) -> Path:
        return Path(self.output, "DeOldify", f"{_base_name(image_path)}.png")

    def run(self, input: str | os.PathLike) -> str:  # noqa: A002 - PaddleGAN's parameter name
        """Colourise a video or an image (by extension: :data:`IMAGE_EXTENSIONS`); returns the output path."""
        if Path(input).suffix.lower() in IMAGE_EXTENSIONS:
            return self.run_image(input)
        return super().run(input)

    def run_image(self, image_path: str | os.PathLike) -> str:
        """Colourise one image through the same filter as videos; returns the PNG's path."""
        import cv2
        import numpy as np
        import vapoursynth as vs

        core = vs.core
        bgr = cv2.imread(os.fspath(image_path), cv2.IMREAD_COLOR)  # grey files come as 3 equal channels
        if bgr is None:
            raise _enhance.EnhanceError(f"{_enhance.FUNC}: cannot read the image {os.fspath(image_path)!r}")
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        blank = core.std.BlankClip(width=rgb.shape[1], height=rgb.shape[0], format=vs.RGB24, length=1)

        def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
            out = f.copy()
            for p in range(3):
                np.copyto(np.asarray(out[p]), rgb[..., p])
            return out

        picture = core.std.ModifyFrame(blank, blank, fill)
        colour = _enhance.apply_steps(picture, self.settings)
        # YUV results carry their _Matrix/_Range, which resize reads.
        frame = core.resize.Bicubic(colour, format=vs.RGB24, dither_type="error_diffusion").get_frame(0)
        result = np.stack([np.asarray(frame[p]) for p in (2, 1, 0)], axis=-1)  # planes -> BGR
        out = self.image_output_path(image_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.part.png")
        try:
            if not cv2.imwrite(os.fspath(tmp), result):
                raise OSError(f"{_enhance.FUNC}: could not write {tmp}")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("%s: image saved to %s", _enhance.FUNC, out)
        return os.fspath(out)


class DeepRemasterPredictor(_Predictor):
    """Film restoration (and reference-based colourisation) with DeepRemaster (``msvsr.Remaster``).

    Args:
        output: output folder; the video goes to ``<output>/DeepRemaster/<name>_out.mkv``.
        weight_path: ``.pdparams`` file; ``None`` = the official ``deep_remaster.pdparams``.
        colorization: colourise as well as restore.
        reference_dir: folder of colour reference images (used with ``colorization``).
        mindim: length of the shorter frame edge the network works at (default 360).
    """

    step = "DeepRemaster"

    def __init__(self, output: str | os.PathLike = "output", weight_path: str | os.PathLike | None = None,
                 colorization: bool = False, reference_dir: str | os.PathLike | None = None, mindim: int = 360,
                 **extras: Any) -> None:
        super().__init__(output, weight_path,
                         {"colorization": colorization, "reference_dir": reference_dir, "mindim": mindim},
                         **_extras(type(self), **extras))

    def video_output_path(self, video_path: str | os.PathLike) -> Path:
        return Path(self.output, "DeepRemaster", f"{_base_name(video_path)}_out.mkv")
