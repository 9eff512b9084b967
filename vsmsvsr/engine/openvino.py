"""The OpenVINO CPU backend: the segmented runner with its segments compiled by OpenVINO.

The network's forward stays eager (as with the ``cpu`` backend) and every segment (parameterised
child layer, or a model's per-frame stage) is exported once per input shapes as a legacy Paddle
program (``pixel_shuffle`` rewritten as reshape/transpose: OpenVINO's Paddle frontend reads
neither PIR programs nor that op), stored like every program (atomic, size-capped cache), read by
OpenVINO and compiled for the CPU.

Converters can be silently wrong (paddle2onnx writes wrong LeakyReLU slopes; OpenVINO's
deformable convolution has wrong borders without ``bilinear_interpolation_pad``), so every
compiled segment is checked when it is built: it runs a probe input (uniform noise in [0, 1],
seeded by the segment's name and shapes) and its output must match the eager layer within
rel-L2 :data:`CHECK_TOLERANCE` (fp32; :data:`BF16_TOLERANCE` with ``precision="bf16"``, which is
an explicit opt-in that does not meet the fp32 spec). A segment that cannot be exported, converted
or compiled, or that fails the check, is refused with one log line and runs through Paddle
Inference (the ``cpu`` backend's predictor) instead; the rest stay on OpenVINO. Why not the whole
network: OpenVINO's memory grows ~0.85 GB per frame with the unrolled window (measured), and
Paddle 3.3 cannot export MSVSR's ``grid_sample`` as a legacy program.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vsmsvsr.engine import paddle_inference
from vsmsvsr.engine.backends import Backend, BackendConfig
from vsmsvsr.engine.dygraph import _EagerRunner
from vsmsvsr.engine.programs import _ProgramStore, _program_file
from vsmsvsr.engine.segmented import _SegmentedRunner
from vsmsvsr.weights import _write_atomic

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"

#: Largest rel-L2 between a compiled fp32 segment and the eager layer on the probe input.
CHECK_TOLERANCE = 1e-5
#: The same for ``precision="bf16"`` (bf16 keeps 8 bits of mantissa: ~4e-3 measured): only a
#: broken conversion fails it.
BF16_TOLERANCE = 5e-2

_core_lock = threading.Lock()
_core: list[Any] = []


def _ov_core() -> Any:
    """One ``openvino.Core`` per process (it holds the plugins)."""
    with _core_lock:
        if not _core:
            import openvino

            _core.append(openvino.Core())
        return _core[0]


def openvino_problem(precision: str = "fp32") -> str | None:
    """Why OpenVINO cannot run here (``None`` if it can)."""
    try:
        importlib.import_module("openvino")
    except Exception as exc:  # noqa: BLE001
        return f"openvino is not installed ({type(exc).__name__}: {exc}); pip install openvino"
    try:
        devices = _ov_core().available_devices
    except Exception as exc:  # noqa: BLE001
        return f"OpenVINO cannot start ({type(exc).__name__}: {exc})"
    if "CPU" not in devices:
        return f"OpenVINO has no CPU device here (devices: {', '.join(devices) or 'none'})"
    if precision == "bf16":
        caps = _ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in caps:
            return f"this CPU has no bf16 support (OpenVINO's CPU capabilities: {', '.join(caps)})"
    return None


def probe_inputs(part: str, shapes: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """The check's input: uniform [0, 1) float32 noise, seeded by the segment name and shapes."""
    seed = int.from_bytes(hashlib.sha256(f"{part}|{shapes}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    return [rng.random(tuple(s), dtype=np.float32) for s in shapes]


def rel_l2(got: Sequence[np.ndarray], want: Sequence[np.ndarray]) -> float:
    """Largest relative L2 error over the outputs (inf for a shape mismatch or non-finite values)."""
    if len(got) != len(want):
        return float("inf")
    worst = 0.0
    for g, w in zip(got, want):
        if g.shape != w.shape or not np.all(np.isfinite(g)):
            return float("inf")
        norm = float(np.linalg.norm(w.astype(np.float64)))
        err = float(np.linalg.norm(g.astype(np.float64) - w))
        worst = max(worst, err / norm if norm > 0 else err)
    return worst


class CompiledSegment:
    """One OpenVINO-compiled program: ``run(arrays) -> outputs`` (float32 numpy, in order)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.shapes = [tuple(int(d) for d in out.get_shape()) for out in compiled.outputs]

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The outputs, as fresh float32 arrays the caller owns. No copies on the way: the inputs
        are read in place (``share_inputs``) and the program writes into the new output arrays."""
        import openvino

        outs = [np.empty(shape, dtype=np.float32) for shape in self.shapes]
        for i, out in enumerate(outs):
            self.request.set_output_tensor(i, openvino.Tensor(out, shared_memory=True))
        # by name: the program's inputs are x0, x1, ... (the export's InputSpecs), in any order
        self.request.infer({f"x{i}": np.ascontiguousarray(a, dtype=np.float32) for i, a in enumerate(arrays)},
                           share_inputs=True)
        return outs


class ConversionRefused(RuntimeError):
    """OpenVINO's Paddle frontend cannot convert a program (an operator it has no rule for): the
    same with every process of this OpenVINO version, so the refusal is remembered."""


def compile_program(folder: Any, backend: "Backend.OpenVINOCPU", threads: int) -> CompiledSegment:
    """Read a legacy Paddle program folder into OpenVINO and compile it for the CPU.

    The compiled blob is kept in ``<folder>/openvino`` (OpenVINO's model cache): a later process
    loads it instead of compiling again (seconds per segment at video sizes).
    """
    program = _program_file(folder)
    if program is None or program.suffix != ".pdmodel":
        raise RuntimeError(f"{folder} holds no legacy Paddle program")
    core = _ov_core()
    try:
        model = core.read_model(str(program))
    except RuntimeError as exc:  # the frontend's verdict on this program ("No creator found for conv3d")
        raise ConversionRefused(str(exc)) from exc
    config = {"INFERENCE_PRECISION_HINT": "bf16" if backend.precision == "bf16" else "f32",
              "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads),
              "CACHE_DIR": str(Path(folder) / "openvino")}
    return CompiledSegment(core.compile_model(model, "CPU", config))


def _check_key(backend: "Backend.OpenVINOCPU", threads: int) -> str:
    """Everything a compiled program's numbers depend on besides the program: OpenVINO's version,
    the precision, the threads, the CPU."""
    import openvino

    caps = ",".join(sorted(_ov_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
    return hashlib.sha256(f"{openvino.__version__}|{backend.precision}|{threads}|{caps}".encode()).hexdigest()[:16]


def _check_record(folder: Any, key: str) -> Path:
    """Where the passed check of ``folder``'s program is remembered (beside the compiled blob)."""
    return Path(folder) / "openvino" / f"checked-{key}.json"


def _refusal_record(folder: Path, key: str) -> Path:
    """Where a refusal of ``folder``'s program is remembered: beside the folder, which is removed
    (nothing but OpenVINO reads a legacy program); ``vsmsvsr cache clear`` removes it."""
    return folder.with_name(f"{folder.name}.openvino-{key}.refused")


def _why(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1].strip()[:200] if lines else ''}"


def _refuse(store: _ProgramStore, folder: Path, record: Path, why: str) -> str:
    """Remember a refusal that every later process would reach again, and drop the program (a
    process compiling it at this moment falls back to Paddle Inference, as on any failure)."""
    try:
        _write_atomic(record, why.encode())
    except OSError:  # a read-only cache: the next process finds out again
        return why
    store.discard(folder)
    return why


def checked_program(store: _ProgramStore, part: str, layer: "paddle.nn.Layer", shapes: tuple,
                    backend: "Backend.OpenVINOCPU", threads: int) -> tuple[CompiledSegment | None, str]:
    """(the compiled, checked program, "") or (None, why it was refused).

    The check (a seeded probe through the compiled program and the eager layer, rel-L2 within
    :data:`CHECK_TOLERANCE`) runs when a program is first compiled with this OpenVINO, precision,
    thread count and CPU; its pass is then written beside the compiled blob, so later processes
    load the same compiled program without running the eager layer again. So is a refusal that
    would be the same next time (the check failed, or OpenVINO cannot convert the program): later
    engines go straight to Paddle Inference, without exporting, converting or checking again
    (each costs seconds: a DeOldify at an odd size paid ~3 s per engine). Other failures (memory,
    files) are not remembered.
    """
    key = _check_key(backend, threads)
    refusal = _refusal_record(store.folder(part, shapes, legacy=True), key)
    if refusal.is_file():
        return None, f"{refusal.read_text(errors='replace').strip()} (remembered)"
    try:
        folder = store.get(part, layer, shapes, legacy=True)
        compiled = compile_program(folder, backend, threads)
        record = _check_record(folder, key)
        if record.is_file():
            return compiled, ""
        probe = probe_inputs(part, shapes)
        got = compiled.run(probe)
    except ConversionRefused as exc:
        return None, _refuse(store, folder, refusal, _why(exc))
    except Exception as exc:  # noqa: BLE001 - any failure: Paddle Inference runs the segment
        return None, _why(exc)
    error = rel_l2(got, _EagerRunner(layer, None)(probe))
    tolerance = BF16_TOLERANCE if backend.precision == "bf16" else CHECK_TOLERANCE
    if not error <= tolerance:
        return None, _refuse(store, folder, refusal,
                             f"its output differs from the eager layer: rel-L2 {error:.2e} > {tolerance:g}")
    log.debug("%s: OpenVINO program %s %s checked: rel-L2 %.2e", _WHO, part, shapes, error)
    try:
        tmp = record.with_name(f".{record.name}.{os.getpid()}")
        tmp.write_text(json.dumps({"rel_l2": error, "tolerance": tolerance, "part": part,
                                   "shapes": [list(s) for s in shapes]}))
        os.replace(tmp, record)
    except OSError:  # a read-only cache: the next process checks again
        pass
    return compiled, ""


class _OpenVINOSegmentedRunner(_SegmentedRunner):
    """The segmented runner whose segments are OpenVINO programs, checked when built; a refused
    segment runs through Paddle Inference (oneDNN) and says why once."""

    def __init__(self, net: "paddle.nn.Layer", store: _ProgramStore, backend: BackendConfig, threads: int) -> None:
        super().__init__(net, store, backend, threads)
        self.fallback = Backend.PaddleInferenceCPU(threads=threads)
        self.refused: dict[str, str] = {}  # segment name -> why OpenVINO does not run it

    def predictor(self, part: str, layer: "paddle.nn.Layer", shapes: tuple) -> Any:
        pred = self.predictors.get((part, shapes))
        if pred is not None:
            return pred
        compiled, why = (None, self.refused[part]) if part in self.refused else \
            checked_program(self.store, part, layer, shapes, self.backend, self.threads)
        if compiled is None:
            if part not in self.refused:
                self.refused[part] = why
                log.info("%s: OpenVINO refused segment %s of %s (%s); Paddle Inference runs it", _WHO, part,
                         self.store.model_label, why)
            folder = self.store.get(part, layer, shapes)
            compiled = paddle_inference._Predictor(folder, self.fallback, self.threads)
        self.predictors[part, shapes] = compiled
        return compiled


class _OpenVINOProgramRunner:
    """A whole layer (DeOldify, DeepRemaster, DAIN) as one checked OpenVINO program per input
    shapes, or, where OpenVINO refuses it, the ``cpu`` backend's Paddle Inference program."""

    def __init__(self, net: "paddle.nn.Layer", store: _ProgramStore, backend: BackendConfig, threads: int) -> None:
        self.net, self.store, self.backend, self.threads = net, store, backend, threads
        self.fallback = paddle_inference._ProgramRunner(net, store, Backend.PaddleInferenceCPU(threads=threads),
                                                        threads)
        self.programs: dict[tuple, CompiledSegment | None] = {}
        self.refused = ""

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        shapes = tuple(tuple(int(d) for d in a.shape) for a in arrays)
        if shapes not in self.programs:
            compiled = None
            if not self.refused:
                compiled, why = checked_program(self.store, "whole", self.net, shapes, self.backend, self.threads)
                if compiled is None:
                    self.refused = why
                    log.info("%s: OpenVINO refused %s (%s); Paddle Inference runs it", _WHO,
                             self.store.model_label, why)
            self.programs[shapes] = compiled
        compiled = self.programs[shapes]
        return compiled.run(arrays) if compiled is not None else self.fallback(arrays)
