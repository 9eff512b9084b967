"""The runners a filter holds: :class:`Engine` (a VSR model on one temporal window) and
:class:`LayerRunner` (any layer, one program per input shapes). Both choose their backend once and,
with ``backend="auto"``, fall back to the next one when a backend fails."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

import numpy as np

from vsmsvsr._paddle import load_paddle
from vsmsvsr.engine.backends import BackendChoice, BackendConfig, BackendLike, _check_threads, choose_backend
from vsmsvsr.engine.paddle_inference import _cpu_count
from vsmsvsr.engine.programs import _ProgramStore, _default_cache_root, _model_digest

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"

#: Frames must be at least this high and wide (MSVSR's own limit).
MIN_SIZE = 64


# --------------------------------------------------------------------------------------------
# the engine


ModelArg = Union[str, "paddle.nn.Layer"]


class _Runner:
    """What :class:`Engine` and :class:`LayerRunner` share: the backends that can run here, the
    program store (created on first use), one lock (a Paddle predictor is not thread-safe), and
    the fallback of ``backend="auto"``: a backend that fails at run time is dropped, with a warning,
    for the next usable one. ``_kind`` is what the backends build (see :class:`Backend`)."""

    _kind = "layer"

    def _start(self, net: "paddle.nn.Layer", label: str, choice: BackendChoice,
               cache_dir: str | os.PathLike[str] | None) -> None:
        self._net, self._label = net, label
        self._usable = list(choice.usable)
        self._auto = choice.auto
        self._cache_root = Path(cache_dir) if cache_dir is not None else None
        self._store: _ProgramStore | None = None
        self._lock = threading.RLock()
        self.backend: BackendConfig = self._usable[0]
        if self.backend.runs_on == "cpu":
            from vsmsvsr.engine.allocator import keep_large_blocks

            keep_large_blocks()
        self._runner = self._make_runner(self.backend)

    @property
    def store(self) -> _ProgramStore:
        if self._store is None:
            root = self._cache_root if self._cache_root is not None else _default_cache_root()
            self._store = _ProgramStore(root, self._label, _model_digest(self._net))
        return self._store

    @property
    def exported(self) -> int:
        """Static programs exported by this runner (0 if all came from the disk cache)."""
        return self._store.exported if self._store is not None else 0

    @property
    def reused(self) -> int:
        """Static programs found in the disk cache."""
        return self._store.reused if self._store is not None else 0

    def _make_runner(self, backend: BackendConfig) -> Callable:
        return backend.make_runner(self._kind, self._net, lambda: self.store, _cpu_count())

    def _run(self, inputs: Any) -> Any:
        with self._lock:
            while True:
                try:
                    out = self._runner(inputs)
                    break
                except Exception as exc:  # noqa: BLE001 - auto falls back, explicit choices raise
                    if not self._auto or len(self._usable) == 1:
                        raise
                    failed = self._usable.pop(0)
                    log.warning("%s: backend %r failed for %s (%s: %s); 'auto' falls back to %r", _WHO,
                                failed.name, self._label, type(exc).__name__, exc, self._usable[0].name)
                    self.backend = self._usable[0]
                    self._runner = self._make_runner(self.backend)
            if self._store is not None:
                self._store.report()
        return out


class Engine(_Runner):
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
        fp16: half precision on the GPU backends (with a backend name only); the same as
            ``precision="fp16"``. Not bit-comparable with float32; the fp32 tolerance does not apply.
        precision: ``None``/``"fp32"`` (default; every backend ``auto`` picks matches dygraph within
            rel-L2 1e-5), ``"bf16"`` (OpenVINO on a CPU with bf16/AMX: faster, rel-L2 ~4e-3) or
            ``"fp16"`` (GPU backends). With a backend name only.
        threads: math-library threads (with a backend name only; see the module docstring).
        cache_dir: folder of the static programs (default ``vsmsvsr.weights.cache_dir()/static``).
        model_attributes: with a model name, attributes set on the loaded model before the
            backend takes it (a ``ModelSpec.spare``'s, for example: same numbers, more memory).

    Every argument is validated, and the backend probed, before weights are read. Errors:
    ``TypeError``/``ValueError`` (``vsmsvsr.weights.WeightsError`` for bad weights). A failure of
    the chosen backend at run time raises; with ``backend="auto"`` the engine logs a warning and
    moves on to the next available backend.

    Attributes:
        backend: the configuration in use (a :class:`Backend` dataclass).
        exported: static programs this engine has exported (0 if all came from the disk cache).
        reused: static programs it found in the disk cache.
    """

    _kind = "window"

    def __init__(self, model: ModelArg, weights: Any = None, *, backend: BackendLike = "auto",
                 device: str | None = None, fp16: bool = False, threads: int | None = None,
                 cache_dir: str | os.PathLike[str] | None = None, precision: str | None = None,
                 model_attributes: Mapping[str, Any] | None = None) -> None:
        paddle = load_paddle()

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
        _check_threads(threads, "threads")
        if model_attributes is not None:
            if not isinstance(model, str):
                raise ValueError(f"{_WHO}: model_attributes needs a model name (set them on the Layer yourself)")
            if not isinstance(model_attributes, Mapping) or not all(isinstance(k, str) for k in model_attributes):
                raise TypeError(f"{_WHO}: model_attributes must be a mapping of attribute names to values, "
                                f"got {type(model_attributes).__name__}")
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(f"{_WHO}: cache_dir must be None or a path, got {type(cache_dir).__name__}")
        choice = choose_backend(backend, device, fp16, threads, loads_model=isinstance(model, str),
                                precision=precision)

        # ---- model
        if isinstance(model, str):
            from vsmsvsr.models import load_model

            self.model_name = model
            self.model = load_model(model, weights, device=choice.load_device)
            if hasattr(self.model, "return_aux"):
                self.model.return_aux = False  # our own instance: skip stacking the aux images
            for attr, value in (model_attributes or {}).items():
                if not hasattr(self.model, attr):
                    raise ValueError(f"{_WHO}: {model} has no attribute {attr!r} (model_attributes)")
                setattr(self.model, attr, value)
        else:
            self.model_name = type(model).__name__
            self.model = model
            self.model.eval()
        self._start(self.model, self.model_name, choice, cache_dir)
        if choice.auto:
            log.info("%s: backend 'auto' chose %r", _WHO, self.backend.name)

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
        out = self._run(self._check_frames(frames))
        return np.asarray(out, dtype=np.float32)[0]

    def __repr__(self) -> str:
        return f"Engine({self.model_name!r}, backend={self.backend!r})"


class LayerRunner(_Runner):
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
        self._start(layer, label, choice, cache_dir)

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        outs = self._run([np.ascontiguousarray(a, dtype=np.float32) for a in arrays])
        return [np.asarray(o, dtype=np.float32) for o in outs]

    def __repr__(self) -> str:
        return f"LayerRunner({self.label!r}, backend={self.backend!r})"
