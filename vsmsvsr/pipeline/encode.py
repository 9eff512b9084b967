"""Encoding a clip: YUV4MPEG into x264 (then ffmpeg muxes the audio) or ffmpeg (libx264/libx265),
colour tags into the bitstream, audio copied, and the output written atomically. Knows nothing of
PaddleGAN or the models."""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from vsmsvsr.pipeline.errors import FUNC, EncodeError, EnhanceError

if TYPE_CHECKING:  # pragma: no cover
    import vapoursynth as vs

log = logging.getLogger("vsmsvsr.enhance")


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


def _run_encoder(clip: "vs.VideoNode", command: list[str], program: str, *, hint: str = "",
                 wrap: "Callable[[Any], Any] | None" = None,
                 progress_update: "Callable[[int, int], None] | None" = None) -> None:
    """Start the encoder ``command``, write ``clip`` into its stdin as YUV4MPEG (through
    ``wrap(stdin)`` when given), wait for it. :class:`EncodeError` with the encoder's last error
    line (then ``hint``), or naming the filter that failed; the encoder is killed if anything
    (Ctrl-C included) stops this early."""
    import vapoursynth as vs

    encoder = None
    try:
        with tempfile.TemporaryFile() as encoder_log:
            encoder = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=encoder_log)
            sink = encoder.stdin if wrap is None else wrap(encoder.stdin)
            failure: BaseException | None = None
            try:
                clip.output(sink, y4m=True, progress_update=progress_update)
            except (OSError, vs.Error) as exc:  # the pipe broke, or a filter failed
                failure = exc
            finally:
                try:
                    encoder.stdin.close()
                except OSError:
                    pass
            code = encoder.wait()
            if code != 0:
                raise EncodeError(f"{FUNC}: {program} failed (exit {code}): {_last_error(encoder_log)}{hint}")
            if failure is not None:
                if isinstance(failure, vs.Error):
                    raise EncodeError(f"{FUNC}: processing failed: {str(failure).strip()}") from failure
                raise failure
    except BaseException:
        if encoder is not None and encoder.poll() is None:
            encoder.kill()
            encoder.wait()
        raise


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
            hint = ""
            if audio is not None and container != "matroska":
                hint = f" (if the input's audio codec does not fit {output.suffix}, write .mkv)"
            _run_encoder(clip, command, settings.program, hint=hint,
                         progress_update=lambda done, total: bar.advance_to(done))
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
# chunked jobs: segments and their join


class FrameHasher:
    """A writable stream for ``clip.output(..., y4m=True)`` that forwards every byte to ``sink``
    and keeps the SHA-256 of each frame's raw pixels (the YUV4MPEG frame payload: the planes one
    after another, rows without padding), so a chunk's frames can be checked without decoding.

    ``frame_bytes``: the payload size of one frame (:func:`frame_bytes`).
    """

    def __init__(self, sink: Any, frame_bytes: int) -> None:
        import hashlib

        self._sink, self._size, self._new = sink, frame_bytes, hashlib.sha256
        self._header_done = False  # the stream header line ends at its first newline
        self._skip = 0  # bytes of the current b"FRAME\n" line still to pass over
        self._left = 0  # payload bytes of the current frame still to hash
        self._digest: Any = None  # the current frame's hash; None between frames
        self.hashes: list[str] = []

    def to(self, sink: Any) -> "FrameHasher":
        """This hasher, forwarding to ``sink`` from now on."""
        self._sink = sink
        return self

    def write(self, data: bytes) -> int:
        # The payload is hashed from the writer's buffer as it passes: no copy of a frame is kept.
        if self._sink is not None:
            self._sink.write(data)
        view = memoryview(data)
        if not self._header_done:
            end = bytes(view).find(b"\n")
            if end < 0:  # still inside the header line
                return len(data)
            self._header_done, view = True, view[end + 1:]
        while len(view):
            if self._digest is None:
                self._digest, self._skip, self._left = self._new(), 6, self._size
            if self._skip:
                n = min(self._skip, len(view))
                self._skip, view = self._skip - n, view[n:]
                continue
            n = min(self._left, len(view))
            self._digest.update(view[:n])
            self._left, view = self._left - n, view[n:]
            if not self._left:
                self.hashes.append(self._digest.hexdigest())
                self._digest = None
        return len(data)

    def flush(self) -> None:
        if self._sink is not None:
            self._sink.flush()


def frame_bytes(clip: "vs.VideoNode") -> int:
    """Bytes of one frame's pixels, planes packed (as in YUV4MPEG)."""
    fmt = clip.format
    total = 0
    for plane in range(fmt.num_planes):
        w = clip.width >> (fmt.subsampling_w if plane else 0)
        h = clip.height >> (fmt.subsampling_h if plane else 0)
        total += w * h * fmt.bytes_per_sample
    return total


def frame_hash(frame: "vs.VideoFrame") -> str:
    """SHA-256 of one rendered frame's pixels, the same bytes :class:`FrameHasher` hashes."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for plane in range(frame.format.num_planes):
        digest.update(np.ascontiguousarray(np.asarray(frame[plane])).tobytes())
    return digest.hexdigest()


def segment_suffix(encoder: str) -> str:
    """The container of a chunk's segment: Matroska for the x264 program (the only one it
    writes), MP4 for the ffmpeg encoders (its time base is the exact frame rate, which the join
    keeps when the output is MP4/MOV)."""
    return ".mkv" if encoder == "x264" else ".mp4"


def encode_segment(
    clip: "vs.VideoNode",
    path: str | os.PathLike,
    settings: EncodeSettings = EncodeSettings(),
    *,
    progress_update: "Callable[[int, int], None] | None" = None,
) -> list[str]:
    """Encode ``clip`` (a chunk of a job's output, integer YUV/GRAY) alone into ``path``
    (:func:`segment_suffix`: Matroska or MP4):
    video only, the encoder and settings of a single pass, so the segment starts with a key frame
    and refers to no frame outside it (a closed GOP at each end). The colour tags of its first
    frame go into the bitstream, as :func:`encode` writes those of frame 0.

    Written to a hidden temporary file beside ``path`` and renamed at the end; on failure nothing
    is left. Returns the SHA-256 of every frame's raw pixels (:class:`FrameHasher`).
    """
    path = Path(path)
    tools = settings.tools()
    tags = VideoTags.of(clip)
    # the temporary name keeps the suffix: the x264 program picks its container by it
    tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}"
    if settings.encoder == "x264":
        command = _x264_command(settings, tools, clip, tags, tmp)
    else:
        command = _ffmpeg_command(settings, tools, tags, None, None, "mp4", tmp)
    hasher = FrameHasher(None, frame_bytes(clip))
    try:
        _run_encoder(clip, command, settings.program, wrap=hasher.to, progress_update=progress_update)
        if len(hasher.hashes) != clip.num_frames:
            raise EncodeError(f"{FUNC}: a segment of {clip.num_frames} frames gave {len(hasher.hashes)}")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return hasher.hashes


def join_segments(
    segments: "list[Path]",
    output: str | os.PathLike,
    settings: EncodeSettings = EncodeSettings(),
    *,
    audio_from: str | os.PathLike | None = None,
    audio_duration: Fraction | None = None,
    fps: Fraction | None = None,
) -> Path:
    """Join the ``segments`` of :func:`encode_segment` into ``output`` without re-encoding
    (ffmpeg's concat demuxer, streams copied), with the audio streams of ``audio_from`` muxed once.

    Written to a hidden temporary file beside ``output`` and renamed over it only when complete;
    an existing ``output`` is untouched on failure.

    Timestamps: the concat demuxer places each segment after the previous one's duration, in
    microseconds, so a segment can start a fraction of a millisecond off the exact frame time. For
    MP4/MOV output (exact time bases) every timestamp is put back on the frame grid of ``fps``
    (ffmpeg's ``setts``): the same timestamps as a single pass. Matroska stores milliseconds
    anyway; there a joined file's timestamps may differ from a single pass's by that rounding.
    """
    output = Path(output)
    container = _check_container(output, settings.encoder)
    ffmpeg = settings.tools()["ffmpeg"]
    token = secrets.token_hex(4)
    listing = output.parent / f".{output.name}.{token}.segments.txt"
    muxed_tmp = output.parent / f".{output.name}.{token}.part{output.suffix}"
    # the concat demuxer's own quoting: every ' becomes '\''
    listing.write_text("".join("file '" + str(Path(s).absolute()).replace("'", "'\\''") + "'\n" for s in segments))
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing)]
    audio = Path(audio_from) if audio_from is not None else None
    if audio is not None:
        cmd += ["-i", str(audio)]
    cmd += ["-map", "0:v:0"]
    if audio is not None:
        cmd += ["-map", "1:a?"]
        if container != "matroska":
            cmd += ["-strict", "experimental"]
    cmd += ["-c", "copy"]
    if fps is not None and container != "matroska" and settings.encoder != "x264":
        # MP4 segments and output share the time base 1/fps.numerator: TB is exact there
        grid = [f"round(round({t}*TB*{fps.numerator}/{fps.denominator})*{fps.denominator}/{fps.numerator}/TB)"
                for t in ("PTS", "DTS")]
        cmd += ["-bsf:v", f"setts=pts={grid[0]}:dts={grid[1]}"]
    if audio_duration is not None:
        cmd += ["-t", f"{float(audio_duration):.6f}"]
    cmd += ["-f", container, "-y", str(muxed_tmp)]
    try:
        with tempfile.TemporaryFile() as mux_log:
            done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=mux_log)
            if done.returncode != 0:
                raise EncodeError(f"{FUNC}: ffmpeg could not join the {len(segments)} segments"
                                  f"{' with the audio of ' + repr(str(audio)) if audio else ''}: {_last_error(mux_log)}")
        os.replace(muxed_tmp, output)
    except BaseException:
        muxed_tmp.unlink(missing_ok=True)
        raise
    finally:
        listing.unlink(missing_ok=True)
    return output
