"""Paddle Inference: predictor configuration (CPU with or without oneDNN, CUDA, TensorRT) and the
runners that execute static programs: a whole network per input shape, any layer per input
shapes, and a program that was not exported here (the official DAIN program)."""
from __future__ import annotations

import collections
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vsmsvsr.engine.backends import Backend, BackendConfig
from vsmsvsr.engine.dygraph import _MainOutput, _static_copy
from vsmsvsr.engine.programs import _ProgramStore, _default_cache_root, _program_file, _slug, mark_used

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"

#: Predictors kept per engine (shape classes of whole-network programs); the oldest is dropped.
_MAX_WHOLE_PREDICTORS = 3

# Paddle Inference passes deleted under oneDNN with PIR programs (see the package docstring).
_PIR_ONEDNN_DELETED_PASSES = ("conv_activation_onednn_fuse_pass", "onednn_placement_pass")




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
    elif isinstance(backend, Backend.PaddleInferenceGPU):
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
    else:
        raise TypeError(f"{_WHO}: {backend!r} is not a Paddle Inference configuration")
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
        if isinstance(backend, Backend.OpenVINOCPU):
            # the official program is run as it is, by Paddle Inference: OpenVINO compiles only the
            # programs exported here (whose eager layer its check compares with)
            backend = Backend.PaddleInferenceCPU(threads=backend.threads)
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
        mark_used(folder)
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
