"""Run a loaded model on one temporal window of frames: ``Engine(model)(frames) -> frames x4``.

    from vsmsvsr.engine import Engine, Backend
    engine = Engine("PP-MSVSR")                                # backend="auto"
    hr = engine(frames)          # (t, 3, h, w) float32 RGB in [0, 1] -> (t, 3, 4h, 4w) float32

One call runs one window (all t frames together, batch 1). The output is the model's raw output,
not clipped to [0, 1].

Backends (``backend=`` a name or one of the :class:`Backend` configurations):

===========  =========================================  ======================================
name         configuration                              what runs
===========  =========================================  ======================================
dygraph      ``Backend.Dygraph()``                      the Paddle layer itself, eager mode
cpu          ``Backend.PaddleInferenceCPU()``           Paddle Inference on the CPU, oneDNN
cpu-plain    ``Backend.PaddleInferenceCPU(onednn=       Paddle Inference on the CPU, Paddle's
             False)``                                   own CPU kernels
gpu          ``Backend.PaddleInferenceGPU()``           Paddle Inference on a CUDA GPU
trt          ``Backend.PaddleInferenceGPU(              Paddle Inference with TensorRT
             tensorrt=True)``                           subgraphs
auto         first available of trt, gpu, cpu, dygraph
===========  =========================================  ======================================

Availability is probed when an :class:`Engine` is built, never at import. An explicitly chosen
backend that is not available raises ``ValueError`` naming the backend and the reason; only
``"auto"`` picks another one (and says so in the log).

Static programs. The Paddle Inference backends run programs exported with ``paddle.jit.save``,
once per model (architecture source + weights digest), input shape and Paddle version, and cached
on disk: ``<cache>/static/`` where ``<cache>`` is :func:`vsmsvsr.weights.cache_dir`
(``$VSMSVSR_HOME`` or the user cache dir) unless ``cache_dir`` is given. Every program is written
to a temporary folder and renamed into place, so a crash or a concurrent writer never leaves a
half-written program behind. Paddle 3.x writes ``model.json`` (PIR), Paddle 2.6 ``model.pdmodel``.

Whole network or segments. On the GPU the whole network is one static program. On the CPU the
default is *segmented*: the network's own Python ``forward`` runs eagerly and calls small static
programs instead of its layers:

* every parameterised child layer (SPyNet, the feature extractor, each offset head, each
  residual trunk...) is one program; containers (LayerDict/LayerList) and layers holding a
  deformable convolution are looked into instead;
* MSVSR's two per-frame x4 stages (``auxiliary_stage``, ``upsample``) are one program per frame
  each, so that their 4x-resolution LeakyReLUs, concatenations and additions stay inside Paddle
  Inference and no 4x tensor is copied between eager mode and a predictor. Frames taller than
  ``STRIP_PIXELS / width`` rows go through them in horizontal strips with ``STRIP_HALO`` rows of
  context on each side, cropped away afterwards: the stages are convolutions of bounded reach,
  so the result is the same (rounding-level), and their memory no longer grows with the frame
  (at 720x404 they held ~5 GB whole);
* deformable convolutions stay eager and run as slices of their deformable groups on ``threads``
  worker threads: Paddle's CPU kernel samples its columns on one thread (~0.2 s per call at
  180x320), its eager kernels release the GIL, and the groups are independent, so the slices sum
  to the same convolution (rounding-level differences). 1.9x on this op with 2 threads.

Why not one program: with oneDNN, Paddle caches a reordered copy of the input of every
convolution op *instance* for the lifetime of the predictor. A whole-network program of a
10-frame window unrolls thousands of convolutions; PP-MSVSR at 10 x 180x320 then holds 16.5 GB
(measured; 4.9 GB segmented, 3.4 GB PaddleGAN's dygraph). A segment is called once per frame with
the same shapes, so its caches are reused: memory no longer grows with the program, and the
segments are shared by windows of any length. Batched calls (SPyNet on all frame pairs, the
feature extractor on all frames) are split into single samples, which is exact because every
segment treats batch items independently. ``segmented=False`` exports the whole network as one
program instead (fine without oneDNN or for short windows).

Paddle Inference passes. With oneDNN on Paddle 3.x (PIR) two passes are deleted:
``conv_activation_onednn_fuse_pass`` (crashes with a segmentation fault on conv + LeakyReLU in
Paddle 3.3) and ``onednn_placement_pass`` (places ``bilinear_interp`` on oneDNN, whose attributes
the executor cannot convert: ``NotImplementedError ... ArrayAttribute<DoubleAttribute>``). All
remaining fusions keep the output within the spec tolerance of dygraph (rel_l2 <= 1e-5,
max_abs <= 1e-4 * max(1, max|g|)); ``tests/test_engine.py`` checks every CPU backend.

Threads: ``threads`` sets the math-library threads of the Paddle Inference predictors (default:
the CPUs this process may use) and, for the dygraph backend, Paddle's process-wide math threads
(default: left as they are, i.e. what ``FLAGS_paddle_num_threads`` says, 1 unless changed).
"""
from __future__ import annotations

import collections
import concurrent.futures
import copy
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from vsmsvsr import programs
from vsmsvsr._paddle import load_paddle, native_stderr_filtered

if TYPE_CHECKING:  # pragma: no cover
    import paddle

__all__ = ["Backend", "BackendChoice", "BackendLike", "Engine", "LayerRunner", "ProgramRunner", "choose_backend", "available_backends", "BACKEND_NAMES", "run_window"]

log = logging.getLogger(__name__)

_WHO = "vsmsvsr.Engine"

#: Bump when the exported programs change for the same model, shape and Paddle version.
EXPORT_FORMAT = 1

#: Frames must be at least this high and wide (MSVSR's own limit).
MIN_SIZE = 64

#: MSVSR's per-frame x4 stages run on strips of at most this many input pixels (plus halo).
STRIP_PIXELS = 128 * 1024
#: Rows of context above and below a strip: more than the reach of either x4 stage in input
#: pixels (PP-MSVSR-L's upsample: input conv + 5 residual blocks + 3 convs at 1x/2x/4x ≈ 13).
STRIP_HALO = 16

#: Predictors kept per engine (shape classes of whole-network programs); the oldest is dropped.
_MAX_WHOLE_PREDICTORS = 3

# Paddle Inference passes deleted under oneDNN with PIR programs (see module docstring).
_PIR_ONEDNN_DELETED_PASSES = ("conv_activation_onednn_fuse_pass", "onednn_placement_pass")


# --------------------------------------------------------------------------------------------
# backend configurations


class Backend:
    """Backend configurations (vs-mlrt style). Instances are frozen dataclasses.

    ``Backend.Dygraph(threads=None)``
        The Paddle layer in eager mode, on the model's device. ``threads``: Paddle's math-library
        threads, set process-wide before every call (``None``: leave them alone).
    ``Backend.PaddleInferenceCPU(threads=None, onednn=True, segmented=True)``
        Paddle Inference on the CPU. ``threads``: math-library threads of the predictors
        (``None``: the CPUs this process may use). ``onednn``: oneDNN kernels (else Paddle's own CPU
        kernels). ``segmented``: one static program per parameterised child layer (bounded memory,
        see the module docstring) instead of one for the whole network.
    ``Backend.PaddleInferenceGPU(device_id=0, fp16=False, tensorrt=False, workspace_mb=1024)``
        Paddle Inference on CUDA GPU ``device_id``, whole-network program. ``fp16``: half precision
        (mixed precision pass; with ``tensorrt``, TensorRT's FP16 mode). ``tensorrt``: TensorRT
        subgraphs, engines serialised next to the program. ``workspace_mb``: TensorRT workspace.
    """

    @dataclass(frozen=True)
    class Dygraph:
        threads: Optional[int] = None
        name = "dygraph"

    @dataclass(frozen=True)
    class PaddleInferenceCPU:
        threads: Optional[int] = None
        onednn: bool = True
        segmented: bool = True

        @property
        def name(self) -> str:
            return "cpu" if self.onednn else "cpu-plain"

    @dataclass(frozen=True)
    class PaddleInferenceGPU:
        device_id: int = 0
        fp16: bool = False
        tensorrt: bool = False
        workspace_mb: int = 1024

        @property
        def name(self) -> str:
            return "trt" if self.tensorrt else "gpu"

    def __init__(self) -> None:  # pragma: no cover - namespace only
        raise TypeError("Backend is a namespace; use Backend.Dygraph(), Backend.PaddleInferenceCPU(), ...")


BackendConfig = Union[Backend.Dygraph, Backend.PaddleInferenceCPU, Backend.PaddleInferenceGPU]
#: What ``Engine(backend=...)`` accepts.
BackendLike = Union[str, BackendConfig]
#: Backend names accepted as strings.
BACKEND_NAMES = ("auto", "dygraph", "cpu", "cpu-plain", "gpu", "trt")
_CONFIG_TYPES = (Backend.Dygraph, Backend.PaddleInferenceCPU, Backend.PaddleInferenceGPU)


# --------------------------------------------------------------------------------------------
# availability probing (called when an Engine is built, never at import)


def _cuda_problem(device_id: int) -> str | None:
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        return f"this Paddle build ({_paddle_label()}) has no CUDA support; install paddlepaddle-gpu"
    try:
        count = paddle.device.cuda.device_count()
    except Exception as exc:  # noqa: BLE001 - a broken driver shows up here
        return f"Paddle cannot query the GPUs ({exc})"
    if count == 0:
        return "Paddle sees no GPU"
    if device_id >= count:
        return f"GPU {device_id} requested, but Paddle sees {count} GPU(s)"
    return None


def _inference_problem() -> str | None:
    try:
        import paddle.inference as pi
    except Exception as exc:  # noqa: BLE001
        return f"paddle.inference cannot be imported ({exc})"
    if not hasattr(pi, "Config") or not hasattr(pi, "create_predictor"):
        return "paddle.inference has no Config/create_predictor"
    return None


def _onednn_problem() -> str | None:
    from paddle.base import core

    compiled = getattr(core, "is_compiled_with_onednn", None) or getattr(core, "is_compiled_with_mkldnn", None)
    if compiled is None or not compiled():
        return f"this Paddle build ({_paddle_label()}) has no oneDNN support"
    return None


def _tensorrt_problem() -> str | None:
    import paddle.inference as pi

    try:
        compiled = tuple(pi.get_trt_compile_version())
    except Exception as exc:  # noqa: BLE001
        return f"Paddle cannot report its TensorRT version ({exc})"
    if not any(compiled):
        return f"this Paddle build ({_paddle_label()}) was compiled without TensorRT"
    try:
        runtime = tuple(pi.get_trt_runtime_version())
    except Exception as exc:  # noqa: BLE001
        return f"the TensorRT runtime library cannot be loaded ({exc})"
    if not any(runtime):
        return "the TensorRT runtime library (libnvinfer) is not installed"
    return None


def _problem(config: BackendConfig) -> str | None:
    """Why ``config`` cannot run here, or None if it can."""
    if isinstance(config, Backend.Dygraph):
        return None
    problem = _inference_problem()
    if problem:
        return problem
    if isinstance(config, Backend.PaddleInferenceCPU):
        return _onednn_problem() if config.onednn else None
    problem = _cuda_problem(config.device_id)
    if problem is None and config.tensorrt:
        problem = _tensorrt_problem()
    return problem


def available_backends(device_id: int = 0) -> dict[str, str | None]:
    """Every backend name -> ``None`` if it can run here, else the reason why not.

    Probes Paddle (imports it); ``device_id`` is the GPU checked for ``gpu``/``trt``.
    """
    load_paddle()
    configs = {
        "dygraph": Backend.Dygraph(),
        "cpu": Backend.PaddleInferenceCPU(),
        "cpu-plain": Backend.PaddleInferenceCPU(onednn=False),
        "gpu": Backend.PaddleInferenceGPU(device_id=device_id),
        "trt": Backend.PaddleInferenceGPU(device_id=device_id, tensorrt=True),
    }
    return {name: _problem(cfg) for name, cfg in configs.items()}


def _paddle_label() -> str:
    import paddle

    return f"paddlepaddle {paddle.__version__}"


# --------------------------------------------------------------------------------------------
# argument validation


def _check_threads(threads: Any, what: str) -> None:
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"{_WHO}: {what} must be None or an int, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"{_WHO}: {what} must be >= 1, got {threads}")


def _parse_device(device: Any) -> tuple[str, int] | None:
    from vsmsvsr.models import parse_device

    return parse_device(device, _WHO)


def _check_config(config: BackendConfig) -> None:
    if isinstance(config, (Backend.Dygraph, Backend.PaddleInferenceCPU)):
        _check_threads(config.threads, "backend threads")
    if isinstance(config, Backend.PaddleInferenceGPU):
        if isinstance(config.device_id, bool) or not isinstance(config.device_id, int) or config.device_id < 0:
            raise ValueError(f"{_WHO}: backend device_id must be an int >= 0, got {config.device_id!r}")
        if isinstance(config.workspace_mb, bool) or not isinstance(config.workspace_mb, int) or config.workspace_mb < 1:
            raise ValueError(f"{_WHO}: backend workspace_mb must be an int >= 1, got {config.workspace_mb!r}")


def _candidates(backend: Any, device: tuple[str, int] | None, fp16: bool,
                threads: int | None) -> tuple[list[BackendConfig], bool]:
    """(backend configurations to try in order, whether the choice was "auto")."""
    if isinstance(backend, _CONFIG_TYPES):
        if threads is not None:
            raise ValueError(f"{_WHO}: give threads inside the backend configuration "
                             f"({type(backend).__name__}(threads=...)), not as a separate argument")
        if fp16:
            raise ValueError(f"{_WHO}: give fp16 inside the backend configuration "
                             "(Backend.PaddleInferenceGPU(fp16=True)), not as a separate argument")
        _check_config(backend)
        if device is not None:
            kind, index = device
            if kind == "cpu" and isinstance(backend, Backend.PaddleInferenceGPU):
                raise ValueError(f"{_WHO}: backend {backend.name!r} runs on a GPU, but device='cpu'")
            if kind == "gpu" and isinstance(backend, Backend.PaddleInferenceCPU):
                raise ValueError(f"{_WHO}: backend {backend.name!r} runs on the CPU, but device={device[0]}:{index}")
            if kind == "gpu" and isinstance(backend, Backend.PaddleInferenceGPU) and index != backend.device_id:
                raise ValueError(f"{_WHO}: device gpu:{index} disagrees with the backend's device_id "
                                 f"{backend.device_id}")
        return [backend], False
    if not isinstance(backend, str):
        raise TypeError(f"{_WHO}: backend must be a name ({', '.join(BACKEND_NAMES)}) or a Backend "
                        f"configuration, got {type(backend).__name__}")
    name = backend.strip().lower()
    if name not in BACKEND_NAMES:
        raise ValueError(f"{_WHO}: unknown backend {backend!r}; valid: {', '.join(BACKEND_NAMES)}")
    kind, index = device if device is not None else (None, 0)
    gpu = [Backend.PaddleInferenceGPU(device_id=index, fp16=fp16, tensorrt=True),
           Backend.PaddleInferenceGPU(device_id=index, fp16=fp16)]
    cpu = [Backend.PaddleInferenceCPU(threads=threads), Backend.PaddleInferenceCPU(threads=threads, onednn=False)]
    dygraph = Backend.Dygraph(threads=threads)
    if name == "auto":
        if fp16:
            if kind == "cpu":
                raise ValueError(f"{_WHO}: fp16=True needs a GPU backend ('gpu' or 'trt'), but device='cpu'; "
                                 "use fp16=False on the CPU")
            return gpu, True  # fp16 is a GPU-only request: nothing else qualifies
        if kind == "cpu":
            return cpu + [dygraph], True
        if kind == "gpu":
            return gpu + [dygraph], True
        return gpu + cpu + [dygraph], True
    if name in ("gpu", "trt"):
        if kind == "cpu":
            raise ValueError(f"{_WHO}: backend {name!r} runs on a GPU, but device='cpu'")
        return [gpu[0] if name == "trt" else gpu[1]], False
    if fp16:
        raise ValueError(f"{_WHO}: fp16 is only available with the 'gpu' and 'trt' backends, "
                         f"not with {name!r}")
    if name == "dygraph":
        return [dygraph], False
    if kind == "gpu":
        raise ValueError(f"{_WHO}: backend {name!r} runs on the CPU, but device=gpu:{index}")
    return [cpu[0] if name == "cpu" else cpu[1]], False


# --------------------------------------------------------------------------------------------
# static programs on disk


def _default_cache_root() -> Path:
    from vsmsvsr.weights import cache_dir

    return cache_dir() / "static"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _paddle_identity() -> dict[str, Any]:
    import paddle

    ident: dict[str, Any] = {"paddle": paddle.__version__,
                             "commit": getattr(getattr(paddle, "version", None), "commit", "")}
    try:
        ident["pir"] = bool(paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"])
    except Exception:  # noqa: BLE001 - the flag does not exist in every version
        ident["pir"] = None
    return ident


def _model_digest(model: "paddle.nn.Layer") -> str:
    """sha256 over the model class's source file and every state-dict entry (name, shape, bytes)."""
    h = hashlib.sha256()
    cls = type(model)
    h.update(f"{cls.__module__}.{cls.__qualname__}\n".encode())
    try:
        source = inspect.getsourcefile(cls)
        if source:
            h.update(Path(source).read_bytes())
    except (TypeError, OSError):
        pass
    for key, value in model.state_dict().items():
        arr = np.ascontiguousarray(value.numpy())
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _program_file(folder: Path) -> Path | None:
    for name in ("model.json", "model.pdmodel"):
        if (folder / name).is_file() and (folder / "model.pdiparams").is_file():
            return folder / name
    return None


#: Program folders this process has loaded or exported: the cache cap never removes them.
_PROGRAMS_IN_USE: set[Path] = set()


class _ProgramStore:
    """Exported static programs under ``root``, one folder per (model, part, input shapes)."""

    def __init__(self, root: Path, model_label: str, model_digest: str) -> None:
        self.root = root
        self.model_label = model_label
        self.model_dir = root / f"{_slug(model_label)}-{model_digest[:16]}"
        self.model_digest = model_digest
        self.exported = 0
        self.reused = 0
        self.used = _PROGRAMS_IN_USE  # never evicted by this process's cap enforcement
        # exports since the last report: one line when a job starts exporting, one when it is done
        self._batch: list[str] = []
        self._batch_seconds = 0.0

    def report(self) -> None:
        """Log one line for the programs exported since the last report, if any (called by the
        runners after each call, so a window's dozen segments give one line, not a dozen)."""
        if self._batch:
            shapes = sorted(set(self._batch))
            log.info("%s: exported %d static program(s) for %s at %s in %.1f s", _WHO, len(self._batch),
                     self.model_label, ", ".join(shapes), self._batch_seconds)
            self._batch.clear()
            self._batch_seconds = 0.0

    def get(self, part: str, layer: "paddle.nn.Layer", shapes: Sequence[Sequence[int]]) -> Path:
        """Folder holding the static program of ``layer`` for inputs of ``shapes`` (float32)."""
        import paddle

        meta = {"format": EXPORT_FORMAT, "model_digest": self.model_digest, "part": part,
                "input_shapes": [list(s) for s in shapes], **_paddle_identity()}
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        shape_label = "_".join("x".join(str(d) for d in s) for s in shapes)
        if len(shape_label) > 60:
            shape_label = shape_label[:60]
        folder = self.model_dir / f"{_slug(part)}-{shape_label}-{key}"
        if _program_file(folder) is not None and (folder / "meta.json").is_file():
            self.reused += 1
            self.used.add(folder)
            programs.mark_used(folder)
            log.debug("%s: reusing static program %s", _WHO, folder)
            return folder
        size = f"{shapes[0][-1]}x{shapes[0][-2]}" if shapes and len(shapes[0]) >= 2 else "?"
        if not self._batch:
            log.info("%s: exporting static programs for %s at %s (once per model and input size; cached "
                     "in %s) ...", _WHO, self.model_label, size, self.root)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=self.model_dir))
        try:
            start = time.perf_counter()
            specs = [paddle.static.InputSpec(list(s), "float32", f"x{i}") for i, s in enumerate(shapes)]
            with warnings.catch_warnings():
                # Paddle's own zeros_like/ones_like read Tensor.place while tracing and warn that PIR
                # tensors have none, once per call site: noise on the user's stderr, not their concern.
                warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface",
                                        category=UserWarning)
                with native_stderr_filtered():  # Paddle's C++ "PIR not support input out tensor" line
                    paddle.jit.save(layer, str(tmp / "model"), input_spec=specs)
            if _program_file(tmp) is None:
                raise RuntimeError(f"paddle.jit.save wrote no program into {tmp}: {sorted(os.listdir(tmp))}")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            try:
                os.rename(tmp, folder)
            except OSError:
                if _program_file(folder) is None:  # not a concurrent writer: a real error
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process was faster; use its copy
            self.exported += 1
            self.used.add(folder)
            seconds = time.perf_counter() - start
            self._batch.append(size)
            self._batch_seconds += seconds
            log.debug("%s: exported static program %s (%.1f s)", _WHO, folder, seconds)
            programs.enforce_limit(self.root, programs.cache_limit(), keep=self.used)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder


# --------------------------------------------------------------------------------------------
# Paddle Inference predictors


def _inference_config(folder: Path, backend: BackendConfig, threads: int) -> Any:
    import paddle.inference as pi

    program = _program_file(folder)
    assert program is not None  # the store only hands out complete folders
    config = pi.Config(str(program), str(folder / "model.pdiparams"))
    pir = program.suffix == ".json"
    if isinstance(backend, Backend.PaddleInferenceCPU):
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(threads)
        if backend.onednn:
            enable = getattr(config, "enable_onednn", None) or config.enable_mkldnn  # 3.x / 2.6 name
            enable()
            # Shape-keyed oneDNN primitive caches: a predictor here always sees one shape, and an
            # unbounded cache held ~1 GB more for a 4-frame 180x320 PP-MSVSR window (measured).
            set_capacity = getattr(config, "set_onednn_cache_capacity", None) or config.set_mkldnn_cache_capacity
            set_capacity(1)
            if pir:
                for name in _PIR_ONEDNN_DELETED_PASSES:
                    config.delete_pass(name)
        else:
            disable = getattr(config, "disable_onednn", None) or getattr(config, "disable_mkldnn", None)
            if disable is not None:
                disable()
    else:
        precision = pi.PrecisionType.Half if backend.fp16 else pi.PrecisionType.Float32
        if backend.tensorrt:
            config.enable_use_gpu(256, backend.device_id)
            config.enable_tensorrt_engine(
                workspace_size=backend.workspace_mb << 20, max_batch_size=1, min_subgraph_size=3,
                precision_mode=precision, use_static=True, use_calib_mode=False)
            trt_dir = folder / ("trt-fp16" if backend.fp16 else "trt-fp32")
            trt_dir.mkdir(exist_ok=True)
            config.set_optim_cache_dir(str(trt_dir))
        elif backend.fp16:
            try:
                config.enable_use_gpu(256, backend.device_id, precision)
            except TypeError:  # older signature without precision_mode
                config.enable_use_gpu(256, backend.device_id)
                config.exp_enable_use_gpu_fp16()
        else:
            config.enable_use_gpu(256, backend.device_id)
    config.switch_ir_optim(True)
    config.disable_glog_info()
    return config


class _Predictor:
    """A Paddle Inference predictor with named float32 inputs; returns its outputs as numpy."""

    def __init__(self, folder: Path, backend: BackendConfig, threads: int) -> None:
        import paddle.inference as pi

        self.folder = folder
        self.predictor = pi.create_predictor(_inference_config(folder, backend, threads))
        self.inputs = list(self.predictor.get_input_names())
        self.outputs = list(self.predictor.get_output_names())

    def run(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(arrays) != len(self.inputs):
            raise RuntimeError(f"{_WHO}: program {self.folder} takes {len(self.inputs)} inputs, got {len(arrays)}")
        for name, arr in zip(self.inputs, arrays):
            handle = self.predictor.get_input_handle(name)
            handle.reshape(list(arr.shape))
            handle.copy_from_cpu(np.ascontiguousarray(arr, dtype=np.float32))
        self.predictor.run()
        return [self.predictor.get_output_handle(name).copy_to_cpu() for name in self.outputs]


# --------------------------------------------------------------------------------------------
# runners: (1, t, 3, h, w) float32 numpy -> (1, t, 3, 4h, 4w) float32 numpy


def _main_output(out: Any) -> Any:
    """MSVSR returns (aux, out) or out; the engine keeps out."""
    return out[-1] if isinstance(out, (tuple, list)) else out


class _MainOutput:
    """Builds a Layer whose forward returns only the main output (for whole-network export)."""

    @staticmethod
    def wrap(net: "paddle.nn.Layer") -> "paddle.nn.Layer":
        import paddle

        class MainOutput(paddle.nn.Layer):
            def __init__(self, inner: "paddle.nn.Layer") -> None:
                super().__init__()
                self.inner = inner

            def forward(self, frames):  # noqa: D401 - paddle forward
                return _main_output(self.inner(frames))

        wrapped = MainOutput(net)
        wrapped.eval()
        return wrapped


def _static_copy(model: "paddle.nn.Layer") -> "paddle.nn.Layer":
    """A copy for static use: only the main output, no data-dependent mirror test."""
    net = copy.deepcopy(model)
    if hasattr(net, "return_aux"):
        net.return_aux = False
    if hasattr(net, "check_mirror"):
        net.check_mirror = False
    net.eval()
    return net


class _DygraphRunner:
    def __init__(self, model: "paddle.nn.Layer", threads: int | None) -> None:
        self.model = model
        self.threads = threads
        params = list(model.parameters())
        self.place = params[0].place if params else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import paddle

        if self.threads is not None:
            from paddle.base import core

            core.set_num_threads(self.threads)
        with paddle.no_grad():
            out = _main_output(self.model(paddle.to_tensor(x, place=self.place)))
        return out.numpy()


class _WholeRunner:
    """The whole network as one static program per input shape."""

    def __init__(self, net: "paddle.nn.Layer", store: _ProgramStore, backend: BackendConfig, threads: int) -> None:
        self.net = _MainOutput.wrap(_static_copy(net))
        self.store, self.backend, self.threads = store, backend, threads
        self.predictors: collections.OrderedDict[tuple, _Predictor] = collections.OrderedDict()

    def predictor(self, shape: tuple[int, ...]) -> _Predictor:
        pred = self.predictors.get(shape)
        if pred is None:
            folder = self.store.get("whole", self.net, [shape])
            pred = self.predictors[shape] = _Predictor(folder, self.backend, self.threads)
            while len(self.predictors) > _MAX_WHOLE_PREDICTORS:
                self.predictors.popitem(last=False)
        else:
            self.predictors.move_to_end(shape)
        return pred

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.predictor(tuple(x.shape)).run([x])[0]


class _SegmentedRunner:
    """The network's own forward, eager, with every parameterised child layer a static program."""

    def __init__(self, net: "paddle.nn.Layer", store: _ProgramStore, backend: BackendConfig, threads: int) -> None:
        self.store, self.backend, self.threads = store, backend, threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.net = _static_copy(net)
        if hasattr(net, "check_mirror"):
            self.net.check_mirror = net.check_mirror  # the glue is eager: the exact shortcut may stay
        self.segments = _install_msvsr_frame_segments(self.net, _static_copy(net), self)
        self.segments += _install_segments(self.net, self)
        if not self.segments:
            raise ValueError(f"{_WHO}: {type(net).__name__} has no parameterised child layer to run segmented; "
                             "use segmented=False")
        self.predictors: dict[tuple, _Predictor] = {}

    def pool(self) -> "concurrent.futures.ThreadPoolExecutor":
        """Worker threads for the split deformable convolutions (created on first use)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.threads,
                                                               thread_name_prefix="vsmsvsr-dcn")
        return self._pool

    def predictor(self, part: str, layer: "paddle.nn.Layer", shapes: tuple) -> _Predictor:
        pred = self.predictors.get((part, shapes))
        if pred is None:
            folder = self.store.get(part, layer, shapes)
            pred = self.predictors[part, shapes] = _Predictor(folder, self.backend, self.threads)
        return pred

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import paddle

        with paddle.no_grad():
            out = _main_output(self.net(paddle.to_tensor(x, place=paddle.CPUPlace())))
        return out.numpy()


def _install_segments(net: "paddle.nn.Layer", runner: _SegmentedRunner) -> list[str]:
    """Replace every parameterised child of ``net`` by a static segment; returns their dotted names.

    Containers (LayerDict/LayerList) are looked into. A child that contains a deformable
    convolution is looked into too, so that its deformable convolutions stay eager and run split
    over threads (:class:`_ParallelDeformConv`), while its plain sub-layers become segments.
    """
    import paddle
    from paddle.vision.ops import DeformConv2D

    containers = (paddle.nn.LayerDict, paddle.nn.LayerList)
    names: list[str] = []

    def replace_child(parent: "paddle.nn.Layer", name: str, new: "paddle.nn.Layer") -> None:
        if isinstance(parent, paddle.nn.LayerDict):
            parent[name] = new
        else:
            setattr(parent, name, new)

    def visit(parent: "paddle.nn.Layer", prefix: str) -> None:
        for name, child in list(parent.named_children()):
            path = f"{prefix}{name}"
            if isinstance(child, DeformConv2D):
                replace_child(parent, name, _ParallelDeformConv(child, runner))
            elif isinstance(child, containers) or any(isinstance(sub, DeformConv2D) for sub in child.sublayers()):
                visit(child, path + ".")
            elif any(True for _ in child.parameters()):
                replace_child(parent, name, _make_segment(path, child, runner))
                names.append(path)

    visit(net, "")
    return names


def _install_msvsr_frame_segments(net: "paddle.nn.Layer", plain: "paddle.nn.Layer",
                                  runner: "_SegmentedRunner") -> list[str]:
    """MSVSR only: its two per-frame x4 stages as one static program per frame each.

    ``auxiliary_stage`` and ``upsample`` work on every frame independently, at up to 4x the input
    resolution (tensors of 118 MB per frame at 180x320). As layer segments, their LeakyReLUs,
    concatenations and skip additions would run eagerly on one thread and every 4x tensor would
    be copied in and out of a predictor; as one program per frame they stay inside Paddle
    Inference. ``plain`` is an unsegmented copy of the network whose layers the programs hold.
    Other networks, or an MSVSR whose methods no longer have the expected signatures, are left
    to the layer segments.
    """
    import paddle

    try:
        from vsmsvsr.models.msvsr import MSVSR
    except ImportError:  # pragma: no cover - the model package is part of vsmsvsr
        return []
    if not isinstance(net, MSVSR) or getattr(net, "return_aux", False):
        return []
    expected = {"auxiliary_stage": ["lqs", "spatial", "stage1", "s2b", "s2f"], "upsample": ["lqs", "branches"]}
    for name, params in expected.items():
        if list(inspect.signature(getattr(net, name)).parameters) != params:
            log.debug("%s: MSVSR.%s has another signature; using layer segments", _WHO, name)
            return []

    class AuxFrame(paddle.nn.Layer):
        def __init__(self, inner: "paddle.nn.Layer") -> None:
            super().__init__()
            self.inner = inner

        def forward(self, lq, spatial, stage1, s2b, s2f):
            return self.inner.auxiliary_stage(lq, [spatial], [stage1], [s2b], [s2f])[1][0]

    class UpsampleFrame(paddle.nn.Layer):
        def __init__(self, inner: "paddle.nn.Layer") -> None:
            super().__init__()
            self.inner = inner

        def forward(self, lq, spatial, stage1, s2b, s2f, s3b, s3f):
            return self.inner.upsample(lq, [[spatial], [stage1], [s2b], [s2f], [s3b], [s3f]])

    aux = _make_segment("frame.auxiliary_stage", AuxFrame(plain), runner)
    up = _make_segment("frame.upsample", UpsampleFrame(plain), runner)

    def in_strips(stage, scale: int, lq, feats):
        """``stage(lq, *feats)`` on row strips with halo, cropped and joined (rows are axis -2)."""
        h, w = feats[0].shape[-2:]
        parts = []
        for top, bottom, start, stop in strip_rows(h, w):
            out = stage(lq[..., top:bottom, :], *[f[..., top:bottom, :] for f in feats])
            parts.append(out[..., (start - top) * scale:(stop - top) * scale, :])
        return parts[0] if len(parts) == 1 else paddle.concat(parts, axis=-2)

    def auxiliary_stage(lqs, spatial, stage1, s2b, s2f):
        return None, [in_strips(aux, 1, lqs[:, i:i + 1], [spatial[i], stage1[i], s2b[i], s2f[i]])
                      for i in range(len(spatial))]

    def upsample(lqs, branches):
        frames = [in_strips(up, 4, lqs[:, i:i + 1], [b[i] for b in branches]) for i in range(lqs.shape[1])]
        return paddle.concat(frames, axis=1)

    # instance attributes shadow the methods of this private copy only
    object.__setattr__(net, "auxiliary_stage", auxiliary_stage)
    object.__setattr__(net, "upsample", upsample)
    return ["frame.auxiliary_stage", "frame.upsample"]


def strip_rows(h: int, w: int, pixels: int | None = None, halo: int | None = None) -> list[tuple[int, int, int, int]]:
    """Row strips covering ``h`` rows of width ``w``: ``(top, bottom, start, stop)`` per strip.

    Rows ``start:stop`` (the strip's own, disjoint, covering ``0:h`` in order) are computed from
    rows ``top:bottom`` = the own rows plus up to ``halo`` rows of context on each side. Own rows
    are at most ``pixels // w`` (and at least ``halo``) per strip and as even as possible, so a
    frame gives few distinct strip shapes (each one is a program). One strip if it all fits.
    """
    pixels = STRIP_PIXELS if pixels is None else pixels
    halo = STRIP_HALO if halo is None else halo
    rows = max(pixels // max(w, 1), halo, 1)
    if h <= rows + 2 * halo:
        return [(0, h, 0, h)]
    count = -(-h // rows)
    bounds = [h * k // count for k in range(count + 1)]
    return [(max(0, a - halo), min(h, b + halo), a, b) for a, b in zip(bounds, bounds[1:])]


def _deform_parts(layer: "paddle.nn.Layer", threads: int) -> int:
    """How many independent slices (by deformable group) a deformable conv is split into."""
    groups = int(layer._deformable_groups)
    if int(getattr(layer, "_groups", 1)) != 1:
        return 1
    parts = max(1, min(threads, groups))
    while groups % parts:
        parts -= 1
    return parts


def _ParallelDeformConv(layer: "paddle.nn.Layer", runner: _SegmentedRunner) -> "paddle.nn.Layer":
    """A ``DeformConv2D`` run eagerly as ``parts`` deformable-group slices on parallel threads.

    Paddle's CPU deformable convolution samples its im2col columns on one thread (about 0.2 s
    per call at 180x320 with 32 channels, whatever the thread setting), and its eager kernels
    release the GIL. The deformable groups of a modulated deformable convolution are independent
    (group g samples only its own input channels with its own offsets and mask), so the
    convolution is the sum over slices of groups of the same convolution restricted to each
    slice, plus the bias: the same products, summed in a different order (rounding-level
    differences, rel_l2 ~1e-7).
    """
    import paddle
    from paddle.vision.ops import deform_conv2d

    parts = _deform_parts(layer, runner.threads)

    class ParallelDeformConv(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.layer = layer
            self.parts = parts

        def forward(self, x, offset, mask=None):
            inner = self.layer
            if self.parts == 1 or mask is None:
                return inner(x, offset, mask)
            c = x.shape[1] // self.parts
            g = int(inner._deformable_groups) // self.parts
            taps = int(inner._kernel_size[0]) * int(inner._kernel_size[1])

            def run(i: int):
                with paddle.no_grad():
                    return deform_conv2d(
                        x[:, i * c:(i + 1) * c], offset[:, i * g * 2 * taps:(i + 1) * g * 2 * taps],
                        inner.weight[:, i * c:(i + 1) * c], None, stride=inner._stride, padding=inner._padding,
                        dilation=inner._dilation, deformable_groups=g, groups=1,
                        mask=mask[:, i * g * taps:(i + 1) * g * taps])

            outs = list(runner.pool().map(run, range(self.parts)))
            out = outs[0]
            for o in outs[1:]:
                out = out + o
            if inner.bias is not None:
                out = out + inner.bias.reshape([1, -1, 1, 1])
            return out

    return ParallelDeformConv()


def _make_segment(path: str, layer: "paddle.nn.Layer", runner: _SegmentedRunner) -> "paddle.nn.Layer":
    import paddle

    class StaticSegment(paddle.nn.Layer):
        """Calls ``layer`` through its static program; one program per per-sample input shapes."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, *args, **kwargs):
            if kwargs or not args or not all(isinstance(a, paddle.Tensor) for a in args):
                return self.layer(*args, **kwargs)  # not a plain tensor call: stay eager
            n = args[0].shape[0]
            if n > 1 and all(len(a.shape) > 0 and a.shape[0] == n for a in args):
                # one sample at a time: exact (segments are batch-independent), bounded memory
                arrays = [a.numpy() for a in args]
                parts = [self._run([arr[i:i + 1] for arr in arrays]) for i in range(n)]
                outs = [np.concatenate(chunk, axis=0) for chunk in zip(*parts)]
            else:
                outs = self._run([a.numpy() for a in args])
            tensors = [paddle.to_tensor(o, place=paddle.CPUPlace()) for o in outs]
            return tensors[0] if len(tensors) == 1 else tuple(tensors)

        def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
            shapes = tuple(tuple(int(d) for d in a.shape) for a in arrays)
            return runner.predictor(path, self.layer, shapes).run(arrays)

    segment = StaticSegment()
    segment.eval()
    return segment


# --------------------------------------------------------------------------------------------
# backend choice, shared by Engine and LayerRunner


@dataclass(frozen=True)
class BackendChoice:
    """The backends that can run here, in the order to try them.

    Attributes:
        usable: available configurations, best first (one entry unless ``auto``).
        auto: ``backend="auto"`` was asked for: a failing backend falls back to the next one.
        device: the ``device`` argument as given (``None``, ``"cpu"``, ``"gpu:N"``...).
    """

    usable: tuple
    auto: bool
    device: Optional[str] = None

    @property
    def load_device(self) -> str | None:
        """Where to load a model's weights: the dygraph backend runs the model where the user
        asked; the Paddle Inference backends export it on the CPU (and, segmented, glue on it)."""
        return self.device if isinstance(self.usable[0], Backend.Dygraph) else "cpu"


def choose_backend(backend: BackendLike = "auto", device: str | None = None, fp16: bool = False,
                   threads: int | None = None, *, loads_model: bool = True) -> BackendChoice:
    """Validate the backend arguments and probe what can run here (imports Paddle).

    ``backend``, ``device``, ``fp16`` and ``threads`` mean what they mean for :class:`Engine`.
    ``loads_model``: the model will be loaded by name onto ``device`` (so a GPU ``device`` must
    exist even for the dygraph backend). ``ValueError``/``TypeError`` naming ``vsmsvsr.Engine``
    when nothing requested can run.
    """
    if not isinstance(fp16, bool):
        raise TypeError(f"{_WHO}: fp16 must be a bool, got {type(fp16).__name__}")
    _check_threads(threads, "threads")
    parsed_device = _parse_device(device)
    load_paddle()
    candidates, auto = _candidates(backend, parsed_device, fp16, threads)
    usable: list[BackendConfig] = []
    reasons: list[str] = []
    for cand in candidates:
        problem = _problem(cand)
        if problem is None and isinstance(cand, Backend.Dygraph) and loads_model \
                and parsed_device is not None and parsed_device[0] == "gpu":
            problem = _cuda_problem(parsed_device[1])
        if problem is None:
            usable.append(cand)
        else:
            reasons.append(f"{cand.name}: {problem}")
    if not usable:
        label = "auto" if auto else candidates[0].name
        if fp16:
            # fp16 narrowed the candidates to the GPU backends: say so, not only why CUDA is missing.
            raise ValueError(f"{_WHO}: fp16=True needs a GPU backend ('gpu' or 'trt': Paddle Inference on "
                             f"CUDA), and none can run here ({'; '.join(reasons)}); use fp16=False to run "
                             "on the CPU")
        raise ValueError(f"{_WHO}: backend {label!r} is not available: {'; '.join(reasons)}")
    return BackendChoice(tuple(usable), auto, device)


# --------------------------------------------------------------------------------------------
# the engine


ModelArg = Union[str, "paddle.nn.Layer"]


class Engine:
    """Runs a video SR model on one temporal window: ``engine(frames) -> frames x4``.

    Args:
        model: a model name (``"PP-MSVSR"``, ``"PP-MSVSR-L"``, ``"PP-MSVSR-BD"``, see
            :func:`vsmsvsr.models.list_models`) or an already built ``paddle.nn.Layer`` taking
            ``(1, t, 3, h, w)`` and returning ``(1, t, 3, 4h, 4w)`` or a tuple ending with it.
        weights: with a model name: ``None`` for the official weights, a ``.pdparams`` path or a
            state dict (see :func:`vsmsvsr.models.load_model`). Must be ``None`` with a Layer.
        backend: ``"auto"`` (default), ``"dygraph"``, ``"cpu"``, ``"cpu-plain"``, ``"gpu"``,
            ``"trt"`` or a :class:`Backend` configuration. See the module docstring.
        device: ``None``, ``"cpu"``, ``"gpu"`` or ``"gpu:N"``: restricts ``"auto"`` to that device,
            picks the GPU of ``"gpu"``/``"trt"``, and is where the dygraph backend loads a named
            model (a Layer runs where its parameters are; the Layer is set to eval mode).
        fp16: half precision on the GPU backends (with a backend name only). Not bit-comparable
            with float32; the fp32 tolerance does not apply.
        threads: math-library threads (with a backend name only; see the module docstring).
        cache_dir: folder of the static programs (default ``vsmsvsr.weights.cache_dir()/static``).

    Every argument is validated, and the backend probed, before weights are read. Errors:
    ``TypeError``/``ValueError`` (``vsmsvsr.weights.WeightsError`` for bad weights). A failure of
    the chosen backend at run time raises; with ``backend="auto"`` the engine logs a warning and
    moves on to the next available backend.

    Attributes:
        backend: the configuration in use (a :class:`Backend` dataclass).
        exported: static programs this engine has exported (0 if all came from the disk cache).
        reused: static programs it found in the disk cache.
    """

    def __init__(self, model: ModelArg, weights: Any = None, *, backend: BackendLike = "auto",
                 device: str | None = None, fp16: bool = False, threads: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        import paddle

        # ---- validate everything before touching weights
        if isinstance(model, str):
            from vsmsvsr.models import get_spec

            get_spec(model, who=_WHO)
        elif not isinstance(model, paddle.nn.Layer):
            raise TypeError(f"{_WHO}: model must be a model name or a paddle.nn.Layer, got {type(model).__name__}")
        elif weights is not None:
            raise ValueError(f"{_WHO}: weights must be None when model is a Layer (load them into the Layer)")
        if weights is not None and not isinstance(weights, (str, os.PathLike, Mapping)):
            raise TypeError(f"{_WHO}: weights must be None, a file path or a state dict, got {type(weights).__name__}")
        if not isinstance(fp16, bool):
            raise TypeError(f"{_WHO}: fp16 must be a bool, got {type(fp16).__name__}")
        _check_threads(threads, "threads")
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"{_WHO}: cache_dir must be None or a path, got {type(cache_dir).__name__}")
        choice = choose_backend(backend, device, fp16, threads, loads_model=isinstance(model, str))
        usable, auto = list(choice.usable), choice.auto

        # ---- model
        if isinstance(model, str):
            from vsmsvsr.models import load_model

            self.model_name = model
            self.model = load_model(model, weights, device=choice.load_device)
            if hasattr(self.model, "return_aux"):
                self.model.return_aux = False  # our own instance: skip stacking the aux images
        else:
            self.model_name = type(model).__name__
            self.model = model
            self.model.eval()
        self._cache_root = Path(cache_dir) if cache_dir is not None else None
        self._store: _ProgramStore | None = None
        self._auto = auto
        self._usable = usable
        self._lock = threading.RLock()
        self._runner: Callable[[np.ndarray], np.ndarray] | None = None
        self.backend: BackendConfig = usable[0]
        self._runner = self._make_runner(self.backend)
        if auto:
            log.info("%s: backend 'auto' chose %r", _WHO, self.backend.name)

    # ------------------------------------------------------------------ internals

    @property
    def store(self) -> _ProgramStore:
        if self._store is None:
            root = self._cache_root if self._cache_root is not None else _default_cache_root()
            self._store = _ProgramStore(root, self.model_name, _model_digest(self.model))
        return self._store

    @property
    def exported(self) -> int:
        return self._store.exported if self._store is not None else 0

    @property
    def reused(self) -> int:
        return self._store.reused if self._store is not None else 0

    def _make_runner(self, backend: BackendConfig) -> Callable[[np.ndarray], np.ndarray]:
        if isinstance(backend, Backend.Dygraph):
            return _DygraphRunner(self.model, backend.threads)
        threads = getattr(backend, "threads", None) or _cpu_count()
        if isinstance(backend, Backend.PaddleInferenceCPU) and backend.segmented:
            return _SegmentedRunner(self.model, self.store, backend, threads)
        return _WholeRunner(self.model, self.store, backend, threads)

    def _check_frames(self, frames: Any) -> np.ndarray:
        if not isinstance(frames, np.ndarray):
            raise TypeError(f"{_WHO}: frames must be a numpy array (t, 3, h, w), got {type(frames).__name__}")
        if frames.dtype != np.float32:
            raise ValueError(f"{_WHO}: frames must be float32 RGB in [0, 1], got dtype {frames.dtype}")
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"{_WHO}: frames must have shape (t, 3, h, w) with t >= 1, got {frames.shape}")
        h, w = frames.shape[2:]
        if h < MIN_SIZE or w < MIN_SIZE:
            raise ValueError(f"{_WHO}: frames must be at least {MIN_SIZE}x{MIN_SIZE} (h x w), got {h}x{w}")
        return np.ascontiguousarray(frames)[None]

    def _fall_back(self, exc: Exception) -> None:
        """auto only: drop the failing backend and build the next usable one."""
        failed = self._usable.pop(0)
        if not self._usable:
            raise exc
        log.warning("%s: backend %r failed (%s: %s); 'auto' falls back to %r",
                    _WHO, failed.name, type(exc).__name__, exc, self._usable[0].name)
        self.backend = self._usable[0]
        self._runner = self._make_runner(self.backend)

    # ------------------------------------------------------------------ public

    def prepare(self, t: int, h: int, w: int) -> None:
        """Export/load what a window of ``t`` frames of ``h`` x ``w`` needs, without returning it.

        Runs one window of zeros (static programs are exported or read from the cache and their
        predictors built), so that the first real call costs only its own time.
        """
        for v, what in ((t, "t"), (h, "h"), (w, "w")):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{_WHO}.prepare: {what} must be an int, got {type(v).__name__}")
        self(np.zeros((t, 3, h, w), np.float32))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """Super-resolve one window: ``frames`` (t, 3, h, w) float32 RGB in [0, 1], h, w >= 64.

        Returns (t, 3, 4h, 4w) float32, the model's main output (not clipped). Thread-safe: calls
        are serialised.
        """
        x = self._check_frames(frames)
        with self._lock:
            while True:
                try:
                    out = self._runner(x)
                    break
                except Exception as exc:  # noqa: BLE001 - auto falls back, explicit choices raise
                    if not self._auto:
                        raise
                    self._fall_back(exc)
            if self._store is not None:
                self._store.report()
        return np.asarray(out, dtype=np.float32)[0]

    def __repr__(self) -> str:
        return f"Engine({self.model_name!r}, backend={self.backend!r})"


class _ProgramRunner:
    """Any layer as one static program per input shapes: ``runner(arrays) -> outputs``."""

    def __init__(self, net: "paddle.nn.Layer", store: _ProgramStore, backend: BackendConfig, threads: int) -> None:
        self.net, self.store, self.backend, self.threads = net, store, backend, threads
        self.predictors: collections.OrderedDict[tuple, _Predictor] = collections.OrderedDict()

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        shapes = tuple(tuple(int(d) for d in a.shape) for a in arrays)
        pred = self.predictors.get(shapes)
        if pred is None:
            folder = self.store.get("whole", self.net, shapes)
            pred = self.predictors[shapes] = _Predictor(folder, self.backend, self.threads)
            while len(self.predictors) > _MAX_WHOLE_PREDICTORS:
                self.predictors.popitem(last=False)
        else:
            self.predictors.move_to_end(shapes)
        return pred.run(arrays)


class _EagerRunner:
    """Any layer in dygraph mode: ``runner(arrays) -> outputs``."""

    def __init__(self, net: "paddle.nn.Layer", threads: int | None) -> None:
        self.net, self.threads = net, threads
        params = list(net.parameters())
        self.place = params[0].place if params else None

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        import paddle

        if self.threads is not None:
            from paddle.base import core

            core.set_num_threads(self.threads)
        with paddle.no_grad():
            out = self.net(*[paddle.to_tensor(a, place=self.place) for a in arrays])
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o.numpy() for o in outs]


class LayerRunner:
    """Runs any ``paddle.nn.Layer`` that maps float32 tensors to tensors on the chosen backend.

        choice = choose_backend("auto", device="cpu")
        net = load_model("DeOldify", device=choice.load_device)
        run = LayerRunner(net, choice, label="DeOldify")
        (y,) = run(x)                       # x: numpy float32 (1, 3, 512, 512)

    The Paddle Inference backends export the layer once per input shapes (cached on disk like
    :class:`Engine`'s programs) and run it as one program; the dygraph backend calls it eagerly.
    There is no segmentation: the layers this serves (DeOldify, DeepRemaster) run one program per
    call with a handful of convolutions per resolution, so oneDNN's per-op caches stay small.
    With ``choice.auto`` a backend that fails at run time is dropped, with a warning, for the next.

    Args:
        layer: the network, in eval mode, with its weights loaded on ``choice.load_device``.
            Its ``forward`` takes the arrays of a call as positional tensors and returns a tensor
            or a tuple of tensors.
        choice: from :func:`choose_backend`.
        label: names the layer's programs in the cache (with a digest of its weights).
        cache_dir: folder of the static programs (default ``vsmsvsr.weights.cache_dir()/static``).

    Calls are serialised (thread-safe). Returns a list of float32 numpy arrays.
    """

    def __init__(self, layer: "paddle.nn.Layer", choice: BackendChoice, *, label: str,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.layer = layer
        self.layer.eval()
        self.label = label
        self._usable = list(choice.usable)
        self._auto = choice.auto
        self._cache_root = Path(cache_dir) if cache_dir is not None else None
        self._store: _ProgramStore | None = None
        self._lock = threading.RLock()
        self.backend: BackendConfig = self._usable[0]
        self._runner = self._make_runner(self.backend)

    @property
    def store(self) -> _ProgramStore:
        if self._store is None:
            root = self._cache_root if self._cache_root is not None else _default_cache_root()
            self._store = _ProgramStore(root, self.label, _model_digest(self.layer))
        return self._store

    def _make_runner(self, backend: BackendConfig) -> Callable[[Sequence[np.ndarray]], list[np.ndarray]]:
        if isinstance(backend, Backend.Dygraph):
            return _EagerRunner(self.layer, backend.threads)
        threads = getattr(backend, "threads", None) or _cpu_count()
        return _ProgramRunner(self.layer, self.store, backend, threads)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        inputs = [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
        with self._lock:
            while True:
                try:
                    outs = self._runner(inputs)
                    break
                except Exception as exc:  # noqa: BLE001 - auto falls back, explicit choices raise
                    if not self._auto or len(self._usable) == 1:
                        raise
                    failed = self._usable.pop(0)
                    log.warning("%s: backend %r failed for %s (%s: %s); 'auto' falls back to %r", _WHO,
                                failed.name, self.label, type(exc).__name__, exc, self._usable[0].name)
                    self.backend = self._usable[0]
                    self._runner = self._make_runner(self.backend)
            if self._store is not None:
                self._store.report()
        return [np.asarray(o, dtype=np.float32) for o in outs]

    def __repr__(self) -> str:
        return f"LayerRunner({self.label!r}, backend={self.backend!r})"


class ProgramRunner:
    """A static inference program that was not exported here (the official ``DAIN_weight.tar``),
    run as it is through Paddle Inference: ``runner(*arrays) -> outputs``.

    The program and parameters are written once into ``<cache>/static/programs/<label>-<digest>/``
    (``model.json`` or ``model.pdmodel`` + ``model.pdiparams``, atomically) so Paddle Inference
    can read them. ``backend`` must be a Paddle Inference configuration. Calls are serialised.
    """

    def __init__(self, program: bytes, params: bytes, pir: bool, backend: BackendConfig, *, label: str,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if isinstance(backend, Backend.Dygraph):
            raise ValueError(f"{_WHO}: a static program needs a Paddle Inference backend, not 'dygraph'")
        root = Path(cache_dir) if cache_dir is not None else _default_cache_root()
        digest = hashlib.sha256(program + b"\0" + params).hexdigest()[:16]
        folder = root / "programs" / f"{_slug(label)}-{digest}"
        if _program_file(folder) is None:
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".program-", dir=folder.parent))
            try:
                (tmp / ("model.json" if pir else "model.pdmodel")).write_bytes(program)
                (tmp / "model.pdiparams").write_bytes(params)
                try:
                    os.rename(tmp, folder)
                except OSError:
                    if _program_file(folder) is None:
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        programs.mark_used(folder)
        self.label = label
        self.backend = backend
        self.folder = folder
        threads = getattr(backend, "threads", None) or _cpu_count()
        self._predictor = _Predictor(folder, backend, threads)
        self._lock = threading.Lock()

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        with self._lock:
            outs = self._predictor.run([np.ascontiguousarray(a, dtype=np.float32) for a in arrays])
        return [np.asarray(o, dtype=np.float32) for o in outs]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------
# windows of any size: padding and spatial tiles


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of ``tile``-pixel tiles covering ``size``, ``tile - overlap`` apart; the last tile
    ends flush with ``size`` (it may overlap its neighbour more)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _blend_weights(starts: list[int], tile: int) -> list[np.ndarray]:
    """1-D weights per tile: linear ramps across the pixels shared with each neighbour, so that
    overlapping tiles cross-fade (the weights of two neighbours sum to 1 there)."""
    weights = []
    for i, start in enumerate(starts):
        weight = np.ones(tile, np.float32)
        if i > 0:  # shared with the previous tile: [start, previous end)
            shared = starts[i - 1] + tile - start
            weight[:shared] = np.minimum(weight[:shared], (np.arange(shared) + 0.5) / shared)
        if i < len(starts) - 1:  # shared with the next tile: [next start, end)
            shared = start + tile - starts[i + 1]
            weight[tile - shared:] = np.minimum(weight[tile - shared:], (np.arange(shared)[::-1] + 0.5) / shared)
        weights.append(weight)
    return weights


def run_window(engine: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, *, scale: int = 4,
               tile: int = 0, tile_overlap: int = 16, min_size: int = MIN_SIZE) -> np.ndarray:
    """Super-resolve one window of any size: ``frames`` (t, 3, h, w) -> (t, 3, scale·h, scale·w).

    Frames smaller than ``min_size`` are reflect-padded for the network and the result is cropped
    back. With ``tile > 0`` the frame is cut into tiles of at most ``tile`` x ``tile`` input pixels
    overlapping by ``tile_overlap``; every tile runs through the whole window (the recurrence sees
    all frames) and neighbouring tiles are cross-faded linearly across their shared pixels, so no
    seam shows. Tiles bound the memory of one call to one tile's worth (chiefly for GPUs).
    """
    t, c, h, w = frames.shape
    ph, pw = max(h, min_size), max(w, min_size)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="reflect")
    if tile <= 0 or (ph <= tile and pw <= tile):
        return engine(frames)[:, :, : h * scale, : w * scale]
    th, tw = min(tile, ph), min(tile, pw)
    ys, xs = _tile_starts(ph, th, tile_overlap), _tile_starts(pw, tw, tile_overlap)
    wys = [np.repeat(v, scale) for v in _blend_weights(ys, th)]
    wxs = [np.repeat(v, scale) for v in _blend_weights(xs, tw)]
    acc = np.zeros((t, c, ph * scale, pw * scale), np.float32)
    total = np.zeros((ph * scale, pw * scale), np.float32)
    for y, wy in zip(ys, wys):
        for x, wx in zip(xs, wxs):
            part = engine(np.ascontiguousarray(frames[:, :, y:y + th, x:x + tw]))
            weight = wy[:, None] * wx[None, :]
            region = (slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            acc[(slice(None), slice(None), *region)] += part * weight
            total[region] += weight
    return (acc / total)[:, :, : h * scale, : w * scale]
