"""The whole enhance job: check paths, resolve weights, build the graph, encode."""
from __future__ import annotations

import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from vsmsvsr.pipeline.chunks import ChunkOptions, default_chunk_frames, job_folder, run_chunked
from vsmsvsr.pipeline.encode import EncodeSettings, _check_container, encode
from vsmsvsr.pipeline.errors import FUNC, EnhanceError
from vsmsvsr.pipeline.source import delivery_clip, open_source
from vsmsvsr.pipeline.steps import EnhanceSettings, apply_steps, resolve_weights

if TYPE_CHECKING:  # pragma: no cover
    import vapoursynth as vs

log = logging.getLogger("vsmsvsr.enhance")


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


# --------------------------------------------------------------------------------------------
# the whole job


def enhance(
    input_path: str | os.PathLike,
    output: str | os.PathLike,
    settings: EnhanceSettings,
    encode_settings: EncodeSettings = EncodeSettings(),
    *,
    progress: bool = True,
    chunks: ChunkOptions = ChunkOptions(),
) -> Path:
    """Run ``settings.process_order`` on ``input_path`` and encode the result into ``output``.

    Order of work: paths and encoder programs are checked, then the weights of every step are
    resolved (official files downloaded), then the graph is built (each filter checks its own
    arguments), then frames are encoded. Returns ``output``.

    ``chunks``: a job longer than one chunk (:func:`vsmsvsr.pipeline.chunks.default_chunk_frames`
    output frames unless ``chunks.chunk_frames`` says otherwise; ``0`` = one pass) is rendered
    chunk by chunk into a job folder beside ``output`` and can be resumed, or spread over a Ray
    cluster (``chunks.ray``): see :mod:`vsmsvsr.pipeline.chunks`.
    """
    input_path, output = Path(input_path), Path(output)
    if not isinstance(chunks, ChunkOptions):
        raise EnhanceError(f"{FUNC}: chunks must be a ChunkOptions, got {chunks!r}")
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
    chunk_frames = default_chunk_frames(settings) if chunks.chunk_frames is None else chunks.chunk_frames
    folder = job_folder(output)
    one_pass = chunks.ray is None and not chunks.resume and not folder.exists() and (
        chunk_frames == 0 or _output_frames(source, settings) <= chunk_frames)
    if one_pass:
        result = delivery_clip(apply_steps(source, settings, weights), source, encode_settings.encoder)
        _log_job(input_path, source, settings, result, output)
        encode(result, output, encode_settings, audio_from=input_path, audio_duration=audio_duration,
               progress=progress, label=settings.label)
    else:
        run_chunked(input_path, output, source, settings, encode_settings, weights, chunks, chunk_frames,
                    audio_duration=audio_duration, progress=progress,
                    describe=lambda result: _log_job(input_path, source, settings, result, output))
    log.info("%s: wrote %s", FUNC, output)
    return output


def _output_frames(source: "vs.VideoNode", settings: EnhanceSettings) -> int:
    """Frames the job's output will have (DAIN multiplies them), without building the graph."""
    from vsmsvsr import retime

    frames = source.num_frames
    for name in settings.process_order:
        if name == "DAIN":
            frames = retime.output_length(frames, Fraction(settings.factor))
    return frames


def _log_job(input_path: Path, source: "vs.VideoNode", settings: EnhanceSettings, result: "vs.VideoNode",
             output: Path) -> None:
    log.info("%s: %s: %dx%d, %d frames at %s fps -> %s -> %dx%d %s, %d frames at %s fps -> %s",
             FUNC, input_path.name, source.width, source.height, source.num_frames, _fps(source),
             " -> ".join(settings.process_order), result.width, result.height, result.format.name,
             result.num_frames, _fps(result), output)


def _fps(clip: "vs.VideoNode") -> str:
    fps = clip.fps
    return str(fps.numerator) if fps.denominator == 1 else f"{fps.numerator}/{fps.denominator}"
