"""Chunked, resumable enhance jobs.

The job's output clip is cut into chunks of whole temporal windows. Each chunk is rendered by
requesting its frame range from the job's graph and encoded alone as a Matroska segment
(:func:`vsmsvsr.pipeline.encode.encode_segment`: a key frame first, no reference outside it);
the segments are joined without re-encoding and the audio is muxed once
(:func:`vsmsvsr.pipeline.encode.join_segments`).

Why the frames do not depend on the split: every filter computes frame ``n`` from a fixed window
grid with its context frames recomputed (never carried over from an earlier request), so a chunk
rendered alone, in another process or on another machine, gives the frames a single pass gives,
provided what depends on the machine is the same. That is the memory budget (it decides
Upscale's tiles) and the backend: :func:`resolve_machine` resolves both once, the manifest keeps
them, and every chunk (resumed or remote) uses the recorded values.

The job folder sits beside the output, hidden and named after it
(``.<output name>.vsmsvsr-job/``). It holds the finished segments and ``manifest.json``: a digest
of the settings (and what they were, to say what changed), the resolved machine parameters, the
chunk table, and per finished chunk its segment's SHA-256 and the SHA-256 of each frame's raw
pixels. Running the same command again skips finished chunks whose segment still matches the
manifest; other settings are refused. The folder is removed after the output is written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from vsmsvsr.pipeline.errors import FUNC, EnhanceError
from vsmsvsr.pipeline.steps import STEPS, EnhanceSettings

if TYPE_CHECKING:  # pragma: no cover
    import vapoursynth as vs

    from vsmsvsr.pipeline.encode import EncodeSettings

log = logging.getLogger("vsmsvsr.enhance")

#: A default chunk is this many windows of the job's Upscale (``--num_frames``): long enough that
#: loading the models and the context frames recomputed at its ends cost little, short enough that
#: a crash loses minutes, not hours.
CHUNK_WINDOWS = 10
JOB_FOLDER_SUFFIX = ".vsmsvsr-job"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ChunkOptions:
    """How a job is split, resumed, spread and checked.

    Attributes:
        chunk_frames: output frames per chunk; ``None``: :func:`default_chunk_frames`; ``0``: one
            pass, no job folder (also what a job of a single chunk does).
        resume: require an existing job folder (re-running the same command resumes anyway).
        restart: discard an existing job folder and start over.
        verify: after the chunks are rendered, recompute this many frames here (spread over the
            clip, chunk boundaries first) and compare their hashes with the chunks' (0: none).
        ray: ``None`` (this process), ``"local"`` (a Ray cluster started for the job on this
            machine, bound to 127.0.0.1) or the address of a running cluster (``"HOST:PORT"``).
        ray_shared: the input, the weights and the output's folder are at the same paths on
            every Ray node (a shared file system): workers read them there and write their
            segments into the job folder. Otherwise they travel through Ray's object store.
        ray_cpus: CPUs each chunk task asks Ray for (default 1).
        ray_gpus: GPUs each chunk task asks for (``None``: 1 when the job runs on a GPU, else 0).
    """

    chunk_frames: int | None = None
    resume: bool = False
    restart: bool = False
    verify: int = 0
    ray: str | None = None
    ray_shared: bool = False
    ray_cpus: float = 1
    ray_gpus: float | None = None

    def __post_init__(self) -> None:
        for name in ("chunk_frames", "verify"):
            value = getattr(self, name)
            if value is None and name == "chunk_frames":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EnhanceError(f"{FUNC}: {name} must be an int >= 0, got {value!r}")
        for name in ("resume", "restart", "ray_shared"):
            if not isinstance(getattr(self, name), bool):
                raise EnhanceError(f"{FUNC}: {name} must be a bool, got {getattr(self, name)!r}")
        if self.resume and self.restart:
            raise EnhanceError(f"{FUNC}: give resume or restart, not both")
        if self.ray is not None and (not isinstance(self.ray, str) or not self.ray.strip()):
            raise EnhanceError(f"{FUNC}: ray must be 'local' or a cluster address such as '10.0.0.5:6379', "
                               f"got {self.ray!r}")
        for name in ("ray_cpus", "ray_gpus"):
            value = getattr(self, name)
            if value is None and name == "ray_gpus":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise EnhanceError(f"{FUNC}: {name} must be a number >= 0, got {value!r}")
        if self.ray is not None and self.chunk_frames == 0:
            raise EnhanceError(f"{FUNC}: ray runs chunks: chunk_frames 0 (one pass) cannot be spread")


@dataclass(frozen=True)
class Chunk:
    """Output frames ``[start, stop)`` of a job, its ``index``-th chunk; its segment is a
    ``suffix`` file (:func:`vsmsvsr.pipeline.encode.segment_suffix`)."""

    index: int
    start: int
    stop: int
    suffix: str = ".mkv"

    @property
    def frames(self) -> int:
        return self.stop - self.start

    @property
    def segment(self) -> str:
        return f"chunk-{self.index:05d}{self.suffix}"


def default_chunk_frames(settings: EnhanceSettings) -> int:
    """:data:`CHUNK_WINDOWS` windows of Upscale (``settings.num_frames`` each) in output frames: a
    chunk then starts where a window starts (no window is computed twice), also when DAIN comes
    after Upscale and multiplies the frames by a whole factor."""
    frames = CHUNK_WINDOWS * settings.num_frames
    after_upscale = False
    for name in settings.process_order:
        after_upscale = after_upscale or STEPS[name].tiles
        if name == "DAIN" and after_upscale:
            factor = Fraction(settings.factor)
            frames = int(frames * factor) if factor.denominator == 1 else frames
    return frames


def chunk_table(num_frames: int, chunk_frames: int, suffix: str = ".mkv") -> tuple[Chunk, ...]:
    """``[0, num_frames)`` cut into chunks of ``chunk_frames`` (the last one may be shorter)."""
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    return tuple(Chunk(i, start, min(start + chunk_frames, num_frames), suffix)
                 for i, start in enumerate(range(0, num_frames, chunk_frames)))


def job_folder(output: str | os.PathLike) -> Path:
    """The job folder of ``output``: hidden, beside it, named after it."""
    output = Path(output)
    return output.parent / f".{output.name}{JOB_FOLDER_SUFFIX}"


# --------------------------------------------------------------------------------------------
# what depends on the machine, resolved once


@dataclass(frozen=True)
class Machine:
    """The job's machine-dependent parameters, resolved once (by the driver) and then passed to
    every chunk: ``backend`` (a concrete name, never ``'auto'``) and each step's memory budget as
    ``(bytes, where it came from, whether the user set it)``."""

    backend: str
    budgets: tuple[tuple[int, str, bool], ...]

    def settings(self, settings: EnhanceSettings) -> EnhanceSettings:
        return dataclasses.replace(settings, backend=self.backend)

    def budget_values(self) -> list[int]:
        from vsmsvsr.engine.memory import Budget

        return [Budget(int(value), source, bool(explicit)) for value, source, explicit in self.budgets]

    def to_json(self) -> dict:
        return {"backend": self.backend, "budgets": [list(b) for b in self.budgets]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Machine":
        return cls(str(data["backend"]), tuple((int(v), str(s), bool(e)) for v, s, e in data["budgets"]))


def resolve_machine(source: "vs.VideoNode", settings: EnhanceSettings) -> Machine:
    """The backend ``settings.backend`` stands for here and every step's budget on ``source``
    (:func:`vsmsvsr.pipeline.steps.step_budgets`), as values that no longer depend on this machine."""
    from vsmsvsr.engine import choose_backend
    from vsmsvsr.pipeline.steps import step_budgets

    try:
        backend = choose_backend(settings.backend, settings.device, precision=settings.precision).usable[0].name
    except (TypeError, ValueError) as exc:
        raise EnhanceError(f"{FUNC}: {exc}") from None
    budgets = step_budgets(source, settings)
    return Machine(backend, tuple((int(b), getattr(b, "source", ""), bool(getattr(b, "explicit", True)))
                                  for b in budgets))


# --------------------------------------------------------------------------------------------
# the settings record and the manifest


def file_sha256(path: str | os.PathLike, _memo: dict = {}) -> str:  # noqa: B006 - a per-process memo
    """SHA-256 of a file (or of a folder's files, for DAIN's unpacked weights), memoised by its
    path, size and modification time."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    if key not in _memo:
        digest = hashlib.sha256()
        for p in files:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]


def job_record(input_path: Path, settings: EnhanceSettings, encode_settings: "EncodeSettings",
               weights: Mapping[str, Path], chunk_frames: int) -> dict[str, str]:
    """Everything the output depends on, as readable strings (the digest's input, and what a
    refused resume names): the input file (name, size, modification time), every setting of the
    job and the encoder, each step's weights by content, the chunk size."""
    stat = input_path.stat()
    record = {"input": f"{input_path.resolve()} ({stat.st_size} bytes, modified {stat.st_mtime_ns})"}
    for field in dataclasses.fields(settings):
        if field.name in ("weights", "backend", "max_memory"):
            continue
        value = getattr(settings, field.name)
        record[field.name] = " ".join(value) if field.name == "process_order" else str(value)
    # an explicit budget changes tiles; the default one is resolved once and kept in the manifest
    record["max_memory"] = "default (resolved when the job started)" if settings.max_memory is None \
        else str(settings.max_memory)
    record["backend"] = settings.backend
    for step in dict.fromkeys(settings.process_order):
        if step in weights:
            record[f"weights {step}"] = f"sha256 {file_sha256(weights[step])[:16]}"
    for field in dataclasses.fields(encode_settings):
        value = getattr(encode_settings, field.name)
        record[field.name] = " ".join(value) if field.name == "encoder_args" else str(value)
    record["chunk_frames"] = str(chunk_frames)
    return record


def record_digest(record: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(record), sort_keys=True).encode()).hexdigest()


class Manifest:
    """``manifest.json`` of a job folder; written atomically (temporary file, then rename) after
    every finished chunk, so a crash leaves the last consistent state."""

    def __init__(self, folder: Path, data: dict) -> None:
        self.folder, self.data = folder, data

    @property
    def path(self) -> Path:
        return self.folder / MANIFEST

    @classmethod
    def read(cls, folder: Path) -> "Manifest | None":
        try:
            data = json.loads((folder / MANIFEST).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise EnhanceError(f"{FUNC}: the job folder {str(folder)!r} has an unreadable {MANIFEST} ({exc}); "
                               "remove the folder (or use --restart) to start over") from None
        if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
            raise EnhanceError(f"{FUNC}: the job folder {str(folder)!r} was written by another version of "
                               "vsmsvsr; remove it (or use --restart) to start over")
        return cls(folder, data)

    def save(self) -> None:
        tmp = self.folder / f".{MANIFEST}.tmp"
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

    @property
    def machine(self) -> Machine:
        return Machine.from_json(self.data["machine"])

    def done(self, chunk: Chunk) -> dict | None:
        """The record of ``chunk`` if it is finished and its segment still matches it."""
        entry = self.data["chunks"].get(str(chunk.index))
        if entry is None or entry.get("start") != chunk.start or entry.get("stop") != chunk.stop:
            return None
        segment = self.folder / chunk.segment
        if not segment.is_file() or file_sha256(segment) != entry.get("sha256"):
            log.warning("%s: chunk %d (frames %d-%d): its segment is missing or does not match the manifest; "
                        "rendering it again", FUNC, chunk.index, chunk.start, chunk.stop - 1)
            return None
        return entry

    def finish(self, chunk: Chunk, frame_hashes: list[str]) -> None:
        self.data["chunks"][str(chunk.index)] = {
            "start": chunk.start, "stop": chunk.stop, "frames": frame_hashes,
            "sha256": file_sha256(self.folder / chunk.segment)}
        self.save()


def _changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    return "; ".join(f"{k}: {old.get(k, '(none)')} -> {new.get(k, '(none)')}" for k in keys)


def open_job(folder: Path, record: dict[str, str], options: ChunkOptions) -> Manifest | None:
    """The manifest of an existing job folder with the same settings (``None`` if there is none);
    :class:`EnhanceError` if the folder was made with other settings (naming what changed)."""
    if options.restart and folder.exists():
        log.info("%s: --restart: removing the job folder %s", FUNC, folder)
        shutil.rmtree(folder)
    manifest = Manifest.read(folder) if folder.is_dir() else None
    if manifest is None:
        if options.resume:
            raise EnhanceError(f"{FUNC}: --resume: there is no job to resume (no {str(folder / MANIFEST)!r})")
        return None
    if manifest.data.get("digest") != record_digest(record):
        raise EnhanceError(f"{FUNC}: the unfinished job in {str(folder)!r} was started with other settings "
                           f"({_changes(manifest.data.get('record', {}), record)}); run it with its settings to "
                           "resume it, or add --restart to discard it and start over")
    return manifest


@contextlib.contextmanager
def job_lock(folder: Path) -> Iterator[None]:
    """Only one process works on a job folder: an exclusive ``flock`` on ``<folder>.lock`` (the
    kernel releases it when a process dies, so a crash leaves no stale lock), removed at the end."""
    import fcntl

    lock_path = folder.with_name(folder.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise EnhanceError(f"{FUNC}: another vsmsvsr-enhance (pid {lock.read().strip() or '?'}) is working on "
                               f"this output's job ({str(folder)!r}); wait for it or stop it first") from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)


def new_manifest(folder: Path, record: dict[str, str], machine: Machine, chunks: tuple[Chunk, ...],
                 num_frames: int) -> Manifest:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(folder, {
        "version": MANIFEST_VERSION, "digest": record_digest(record), "record": record,
        "machine": machine.to_json(), "num_frames": num_frames,
        "table": [[c.start, c.stop] for c in chunks], "chunks": {}, "started": time.time()})
    manifest.save()
    return manifest


def verify_frames(clip: "vs.VideoNode", chunks: tuple[Chunk, ...], manifest: Manifest, count: int) -> list[int]:
    """Recompute ``count`` frames of ``clip`` here and compare their hashes with the chunks'.

    The frames: each chunk's first and last frame (where a split would show), then evenly spread
    ones, up to ``count``. Returns the frames checked; :class:`EnhanceError` names any mismatch.
    """
    from vsmsvsr.pipeline.encode import frame_hash

    candidates = [n for c in chunks for n in (c.start, c.stop - 1)]
    total = clip.num_frames
    candidates += [round(i * (total - 1) / max(count - 1, 1)) for i in range(count)]
    chosen = list(dict.fromkeys(n for n in candidates if 0 <= n < total))[:count]
    by_frame = {}
    for c in chunks:
        hashes = manifest.data["chunks"][str(c.index)]["frames"]
        by_frame.update({c.start + i: h for i, h in enumerate(hashes)})
    bad = [n for n in sorted(chosen) if frame_hash(clip.get_frame(n)) != by_frame[n]]
    if bad:
        raise EnhanceError(f"{FUNC}: --verify: frame(s) {', '.join(map(str, bad))} recomputed here differ from "
                           "the chunks' frames (a machine computed other numbers: check that every node runs the "
                           "same versions of vsmsvsr, Paddle and OpenVINO); the output was not written")
    return sorted(chosen)


# --------------------------------------------------------------------------------------------
# the chunked job


def build_result(source: "vs.VideoNode", settings: EnhanceSettings, weights: Mapping[str, Path], machine: Machine,
                 encoder: str) -> "vs.VideoNode":
    """The job's output clip with the machine parameters of ``machine`` (the same graph in the
    driver, in a resumed run and in every Ray worker)."""
    from vsmsvsr.pipeline.source import delivery_clip
    from vsmsvsr.pipeline.steps import apply_steps

    return delivery_clip(apply_steps(source, machine.settings(settings), weights, machine.budget_values()),
                         source, encoder)


def run_chunked(input_path: Path, output: Path, source: "vs.VideoNode", settings: EnhanceSettings,
                encode_settings: "EncodeSettings", weights: Mapping[str, Path], options: ChunkOptions,
                chunk_frames: int, *, audio_duration: Fraction | None, progress: bool,
                describe: Any = None) -> Path:
    """Render the job chunk by chunk into its job folder (here, or on Ray with ``options.ray``),
    skipping finished chunks, then verify, join, and remove the folder."""
    chunk_frames = chunk_frames or default_chunk_frames(settings)
    folder = job_folder(output)
    record = job_record(input_path, settings, encode_settings, weights, chunk_frames)
    with job_lock(folder):
        return _run_locked(input_path, output, source, settings, encode_settings, weights, options, chunk_frames,
                           folder, record, audio_duration=audio_duration, progress=progress, describe=describe)


def _run_locked(input_path: Path, output: Path, source: "vs.VideoNode", settings: EnhanceSettings,
                encode_settings: "EncodeSettings", weights: Mapping[str, Path], options: ChunkOptions,
                chunk_frames: int, folder: Path, record: dict[str, str], *, audio_duration: Fraction | None,
                progress: bool, describe: Any) -> Path:
    import sys

    from vsmsvsr.pipeline.encode import encode_segment, join_segments, segment_suffix
    from vsmsvsr.progress import frame_bar

    manifest = open_job(folder, record, options)
    machine = manifest.machine if manifest is not None else resolve_machine(source, settings)
    result = build_result(source, settings, weights, machine, encode_settings.encoder)
    if describe is not None:
        describe(result)
    table = chunk_table(result.num_frames, chunk_frames, segment_suffix(encode_settings.encoder))
    if manifest is None:
        manifest = new_manifest(folder, record, machine, table, result.num_frames)
    elif manifest.data.get("table") != [[c.start, c.stop] for c in table]:
        raise EnhanceError(f"{FUNC}: the job folder {str(folder)!r} has another chunk table; add --restart")
    done = {c.index for c in table if manifest.done(c) is not None}
    pending = [c for c in table if c.index not in done]
    where = "here" if options.ray is None else f"on Ray ({options.ray})"
    log.info("%s: %d chunk(s) of up to %d frames (job folder %s); %s, %d to render %s, backend %s",
             FUNC, len(table), chunk_frames, folder,
             f"{len(done)} already done" if done else "none done yet", len(pending), where, machine.backend)
    finished_frames = sum(c.frames for c in table if c.index in done)
    try:
        with frame_bar(total=result.num_frames, desc=settings.label, file=sys.stderr, disable=not progress,
                       dynamic_ncols=True, initial=finished_frames) as bar:
            if options.ray is None:
                for chunk in pending:
                    base = finished_frames
                    hashes = encode_segment(result[chunk.start:chunk.stop], folder / chunk.segment, encode_settings,
                                            progress_update=lambda d, t, base=base: bar.advance_to(base + d))
                    manifest.finish(chunk, hashes)
                    finished_frames += chunk.frames
                    bar.advance_to(finished_frames)
            else:
                from vsmsvsr.pipeline.ray_chunks import run_on_ray

                def finished(chunk: Chunk, hashes: list[str]) -> None:
                    nonlocal finished_frames
                    manifest.finish(chunk, hashes)
                    finished_frames += chunk.frames
                    bar.advance_to(finished_frames)

                run_on_ray(options, pending, folder, input_path, settings, encode_settings, weights, machine,
                           finished, digest=manifest.data["digest"])
    except BaseException:
        kept = sum(1 for c in table if str(c.index) in manifest.data["chunks"])
        log.warning("%s: stopped: %d of %d chunk(s) are done and kept in %s; run the same command again to resume",
                    FUNC, kept, len(table), folder)
        raise
    if options.verify:
        checked = verify_frames(result, table, manifest, options.verify)
        log.info("%s: --verify: frames %s recomputed here match the chunks'", FUNC, ", ".join(map(str, checked)))
    join_segments([folder / c.segment for c in table], output, encode_settings, audio_from=input_path,
                  audio_duration=audio_duration, fps=result.fps)
    shutil.rmtree(folder, ignore_errors=True)
    return output
