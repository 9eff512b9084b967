"""The chunks of an enhance job as Ray tasks (``vsmsvsr-enhance --ray ADDRESS|local``).

One task per chunk, asking Ray for ``ray_cpus`` CPUs and ``ray_gpus`` GPUs; Ray retries a task
whose worker died (``max_retries``). Each task builds the job's graph with the parameters the
driver resolved (:class:`vsmsvsr.pipeline.chunks.Machine`: backend and memory budgets), so every
worker computes the frames a single pass computes, renders its chunk's frame range and encodes
it as a segment. A worker process keeps its graph (models loaded) for the next chunk of the same
job.

How files travel:

* object store (default): the driver puts the input file, the weights (and DeepRemaster's
  reference images) into Ray's object store once; a worker writes them into a temporary folder
  of its own, and returns its segment's bytes, which the driver writes into the job folder.
* shared paths (``ray_shared``): the input, the weights and the job folder are at the same paths
  on every node (NFS, a cluster file system); workers read them there and write their segment
  into the job folder themselves (a hidden temporary name, renamed when complete).

Results come back in chunk order: the manifest and the progress bar advance as the chunks before
them are done, exactly as in a local run.
"""
from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from vsmsvsr.pipeline.errors import FUNC, EncodeError, EnhanceError

if TYPE_CHECKING:  # pragma: no cover
    from vsmsvsr.pipeline.chunks import Chunk, ChunkOptions, Machine
    from vsmsvsr.pipeline.encode import EncodeSettings
    from vsmsvsr.pipeline.steps import EnhanceSettings

log = logging.getLogger("vsmsvsr.enhance")

#: Times Ray runs a chunk again after its worker died (a node lost, a process killed).
MAX_RETRIES = 3


def _import_ray():
    try:
        import ray
    except ImportError:
        raise EnhanceError(f"{FUNC}: --ray needs Ray: pip install 'vsmsvsr[ray]'") from None
    return ray


def _files(path: Path) -> dict[str, bytes]:
    """A file (key ``''``) or a folder's files (keys: relative paths), as bytes."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {"": path.read_bytes()}


def _materialise(files: Mapping[str, bytes], target: Path) -> Path:
    if set(files) == {""}:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[""])
        return target
    for rel, data in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    return target


def run_on_ray(options: "ChunkOptions", pending: "list[Chunk]", folder: Path, input_path: Path,
               settings: "EnhanceSettings", encode_settings: "EncodeSettings", weights: Mapping[str, Path],
               machine: "Machine", finished: Callable[["Chunk", list[str]], None], digest: str = "") -> None:
    """Render ``pending`` on the Ray cluster ``options.ray``; ``finished(chunk, frame_hashes)``
    is called in chunk order, each segment already in ``folder``."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     configure_logging=False)
        if options.ray == "local":
            # A cluster of this machine only, every listener on the loopback address.
            ray.init(_node_ip_address="127.0.0.1", **quiet)
        else:
            ray.init(address=options.ray, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        started = True
    refs: list = []
    try:
        fields = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        fields["weights"] = {}
        job = {
            "settings": fields, "encode": encode_settings, "machine": machine, "shared": options.ray_shared,
            "folder": str(folder.absolute()), "input_name": input_path.name,
            # a worker keeps one job's graph: the job folder and the manifest's digest name the job
            "key": f"{folder.absolute()}:{digest}",
        }
        if options.ray_shared:
            job["input"] = str(input_path.absolute())
            job["weights"] = {step: str(Path(p).absolute()) for step, p in weights.items()}
            job["reference_dir"] = None if settings.reference_dir is None else str(Path(settings.reference_dir).absolute())
        else:
            job["input"] = ray.put(_files(input_path))
            job["weights"] = {step: (Path(p).name, ray.put(_files(Path(p)))) for step, p in weights.items()}
            job["reference_dir"] = None if settings.reference_dir is None else ray.put(_files(Path(settings.reference_dir)))
        gpus = options.ray_gpus if options.ray_gpus is not None else (1 if machine.backend in ("gpu", "trt") else 0)
        task = ray.remote(_render_chunk).options(num_cpus=options.ray_cpus, num_gpus=gpus, max_retries=MAX_RETRIES,
                                                 retry_exceptions=False)
        job_ref = ray.put(job)
        refs = [task.remote(job_ref, chunk) for chunk in pending]
        for chunk, ref in zip(pending, refs):
            try:
                hashes, data = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                if isinstance(cause, (EnhanceError, EncodeError, ValueError, TypeError)):
                    raise type(cause)(str(cause)) from None
                raise EncodeError(f"{FUNC}: chunk {chunk.index} failed on Ray: {str(cause).strip()}") from None
            if data is not None:
                tmp = folder / f".{chunk.segment}.part"
                tmp.write_bytes(data)
                os.replace(tmp, folder / chunk.segment)
            finished(chunk, hashes)
    except BaseException:
        for ref in refs:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or gone
                pass
        raise
    finally:
        if started:
            ray.shutdown()


# --------------------------------------------------------------------------------------------
# the worker side

_GRAPHS: dict[str, Any] = {}


def _worker_graph(job: dict):
    """The job's output clip in this worker process, built once per job (models stay loaded)."""
    if job["key"] in _GRAPHS:
        return _GRAPHS[job["key"]]
    import ray

    from vsmsvsr.pipeline.chunks import build_result
    from vsmsvsr.pipeline.source import open_source
    from vsmsvsr.pipeline.steps import EnhanceSettings

    fields = dict(job["settings"])
    if job["shared"]:
        input_path = Path(job["input"])
        weights = {step: Path(p) for step, p in job["weights"].items()}
        fields["reference_dir"] = job["reference_dir"]
    else:
        local = Path(tempfile.mkdtemp(prefix="vsmsvsr-ray-"))
        atexit.register(shutil.rmtree, local, True)
        input_path = _materialise(ray.get(job["input"]), local / "input" / job["input_name"])
        weights = {step: _materialise(ray.get(ref), local / "weights" / step / name)
                   for step, (name, ref) in job["weights"].items()}
        refs = job["reference_dir"]
        fields["reference_dir"] = None if refs is None else _materialise(ray.get(refs), local / "references")
    settings = EnhanceSettings(**fields)
    source = open_source(input_path)
    if settings.max_frames is not None and settings.max_frames < source.num_frames:
        source = source[: settings.max_frames]
    result = build_result(source, settings, weights, job["machine"], job["encode"].encoder)
    _GRAPHS.clear()  # one job per worker process at a time
    _GRAPHS[job["key"]] = result
    return result


def _render_chunk(job: dict, chunk: "Chunk") -> tuple[list[str], bytes | None]:
    """One chunk on a Ray worker: ``(frame hashes, segment bytes or None when written in place)``."""
    from vsmsvsr.pipeline.encode import encode_segment

    result = _worker_graph(job)
    clip = result[chunk.start:chunk.stop]
    if job["shared"]:
        hashes = encode_segment(clip, Path(job["folder"]) / chunk.segment, job["encode"])
        return hashes, None
    with tempfile.TemporaryDirectory(prefix="vsmsvsr-chunk-") as tmp:
        path = Path(tmp) / chunk.segment
        hashes = encode_segment(clip, path, job["encode"])
        return hashes, path.read_bytes()
