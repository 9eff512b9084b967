"""Backend configurations (one frozen dataclass each), what can run here, and the choice of one.

A configuration says what it is (``name``), why it cannot run here (``problem()``, probing Paddle
when called, never at import) and how to run a model (``make_runner``, in the module that
implements it). ``AUTO_ORDER`` is the order ``backend="auto"`` tries them in. Adding a backend:
its dataclass here with those three members, its module, and its name in :data:`BACKEND_NAMES`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Union

from vsmsvsr._paddle import load_paddle
from vsmsvsr.device import Device

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"


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
        see the package docstring) instead of one for the whole network.
    ``Backend.OpenVINOCPU(threads=None, precision="fp32")``
        OpenVINO on the CPU: the segmented runner with every segment an OpenVINO program, checked
        against the eager layer when built (a refused segment runs through Paddle Inference);
        a layer (DeOldify, DeepRemaster, DAIN) is one checked program. ``precision``: ``"fp32"``
        or ``"bf16"`` (AMX/AVX-512 bf16; 2.7-4x faster, rel-L2 ~4e-3: an explicit opt-in).
    ``Backend.PaddleInferenceGPU(device_id=0, fp16=False, tensorrt=False, workspace_mb=1024)``
        Paddle Inference on CUDA GPU ``device_id``, whole-network program. ``fp16``: half precision
        (mixed precision pass; with ``tensorrt``, TensorRT's FP16 mode). ``tensorrt``: TensorRT
        subgraphs, engines serialised next to the program. ``workspace_mb``: TensorRT workspace.

    Every configuration implements the same small protocol: ``name``; ``runs_on`` (``"cpu"``,
    ``"gpu"``, or ``None`` for wherever the model's weights are); ``problem()``, why it cannot run
    here (``None`` if it can); ``make_runner(kind, net, store, threads)``, a callable running
    ``net`` (``kind="window"``: a whole VSR model on ``(1, t, 3, h, w)``, its main output;
    ``"layer"``: any layer on a list of arrays). ``store()`` gives the program store on first use.
    """

    @dataclass(frozen=True)
    class Dygraph:
        threads: Optional[int] = None
        name = "dygraph"
        runs_on = None

        def problem(self) -> str | None:
            return None

        def make_runner(self, kind: str, net: Any, store: Any, threads: int) -> Any:
            from vsmsvsr.engine import dygraph

            return dygraph._DygraphRunner(net, self.threads) if kind == "window" else \
                dygraph._EagerRunner(net, self.threads)

    @dataclass(frozen=True)
    class PaddleInferenceCPU:
        threads: Optional[int] = None
        onednn: bool = True
        segmented: bool = True
        runs_on = "cpu"

        @property
        def name(self) -> str:
            return "cpu" if self.onednn else "cpu-plain"

        def problem(self) -> str | None:
            return _inference_problem() or (_onednn_problem() if self.onednn else None)

        def make_runner(self, kind: str, net: Any, store: Any, threads: int) -> Any:
            from vsmsvsr.engine import paddle_inference, segmented

            threads = self.threads or threads
            if kind == "layer":
                return paddle_inference._ProgramRunner(net, store(), self, threads)
            if self.segmented:
                return segmented._SegmentedRunner(net, store(), self, threads)
            return paddle_inference._WholeRunner(net, store(), self, threads)

    @dataclass(frozen=True)
    class PaddleInferenceGPU:
        device_id: int = 0
        fp16: bool = False
        tensorrt: bool = False
        workspace_mb: int = 1024
        runs_on = "gpu"

        @property
        def name(self) -> str:
            return "trt" if self.tensorrt else "gpu"

        def problem(self) -> str | None:
            problem = _inference_problem() or _cuda_problem(self.device_id)
            return problem or (_tensorrt_problem() if self.tensorrt else None)

        def make_runner(self, kind: str, net: Any, store: Any, threads: int) -> Any:
            from vsmsvsr.engine import paddle_inference

            if kind == "layer":
                return paddle_inference._ProgramRunner(net, store(), self, threads)
            return paddle_inference._WholeRunner(net, store(), self, threads)

    @dataclass(frozen=True)
    class OpenVINOCPU:
        threads: Optional[int] = None
        precision: str = "fp32"
        runs_on = "cpu"

        @property
        def name(self) -> str:
            return "openvino"

        def problem(self) -> str | None:
            from vsmsvsr.engine.openvino import openvino_problem

            return _inference_problem() or openvino_problem(self.precision)

        def make_runner(self, kind: str, net: Any, store: Any, threads: int) -> Any:
            from vsmsvsr.engine import openvino

            threads = self.threads or threads
            if kind == "layer":
                return openvino._OpenVINOProgramRunner(net, store(), self, threads)
            return openvino._OpenVINOSegmentedRunner(net, store(), self, threads)

    def __init__(self) -> None:  # pragma: no cover - namespace only
        raise TypeError("Backend is a namespace; use Backend.Dygraph(), Backend.PaddleInferenceCPU(), ...")


BackendConfig = Union[Backend.Dygraph, Backend.PaddleInferenceCPU, Backend.OpenVINOCPU, Backend.PaddleInferenceGPU]
#: What ``Engine(backend=...)`` accepts.
BackendLike = Union[str, BackendConfig]
_CONFIG_TYPES = (Backend.Dygraph, Backend.PaddleInferenceCPU, Backend.OpenVINOCPU, Backend.PaddleInferenceGPU)

#: Backend names (listing order): name -> configuration for (GPU index, precision, threads).
_BY_NAME = {
    "dygraph": lambda index, precision, threads: Backend.Dygraph(threads=threads),
    "openvino": lambda index, precision, threads: Backend.OpenVINOCPU(
        threads=threads, precision="bf16" if precision == "bf16" else "fp32"),
    "cpu": lambda index, precision, threads: Backend.PaddleInferenceCPU(threads=threads),
    "cpu-plain": lambda index, precision, threads: Backend.PaddleInferenceCPU(threads=threads, onednn=False),
    "gpu": lambda index, precision, threads: Backend.PaddleInferenceGPU(device_id=index, fp16=precision == "fp16"),
    "trt": lambda index, precision, threads: Backend.PaddleInferenceGPU(device_id=index, fp16=precision == "fp16",
                                                                         tensorrt=True),
}
#: What ``backend="auto"`` tries, fastest first (those that cannot run here are skipped).
AUTO_ORDER = ("trt", "gpu", "openvino", "cpu", "cpu-plain", "dygraph")
assert set(AUTO_ORDER) == set(_BY_NAME)  # a new backend gets a place in both (checked at import)
#: Backend names accepted as strings.
BACKEND_NAMES = ("auto", *_BY_NAME)
#: Precisions a filter or engine may ask for; ``fp32`` is the default and the spec's.
PRECISIONS = ("fp32", "bf16", "fp16")
#: Names whose configuration takes ``fp16`` / ``bf16``.
_FP16_NAMES = tuple(n for n in _BY_NAME if getattr(_BY_NAME[n](0, "fp16", None), "fp16", False))
_BF16_NAMES = tuple(n for n in _BY_NAME if getattr(_BY_NAME[n](0, "bf16", None), "precision", "") == "bf16")


# --------------------------------------------------------------------------------------------
# availability probing (called when an Engine is built, never at import)


def _cuda_problem(device_id: int) -> str | None:
    from vsmsvsr.device import cuda_problem

    return cuda_problem(device_id)


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
    return config.problem()


def available_backends(device_id: int = 0) -> dict[str, str | None]:
    """Every backend name -> ``None`` if it can run here, else the reason why not.

    Probes Paddle (imports it); ``device_id`` is the GPU checked for ``gpu``/``trt``.
    """
    load_paddle()
    return {name: _BY_NAME[name](device_id, "fp32", None).problem() for name in BACKEND_NAMES if name != "auto"}


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


def _parse_device(device: Any) -> "Device | None":
    from vsmsvsr.device import parse_device

    return parse_device(device, _WHO)


def _check_config(config: BackendConfig) -> None:
    if isinstance(config, (Backend.Dygraph, Backend.PaddleInferenceCPU, Backend.OpenVINOCPU)):
        _check_threads(config.threads, "backend threads")
    if isinstance(config, Backend.OpenVINOCPU) and config.precision not in ("fp32", "bf16"):
        raise ValueError(f"{_WHO}: OpenVINOCPU precision must be 'fp32' or 'bf16', got {config.precision!r}")
    if isinstance(config, Backend.PaddleInferenceGPU):
        if isinstance(config.device_id, bool) or not isinstance(config.device_id, int) or config.device_id < 0:
            raise ValueError(f"{_WHO}: backend device_id must be an int >= 0, got {config.device_id!r}")
        if isinstance(config.workspace_mb, bool) or not isinstance(config.workspace_mb, int) or config.workspace_mb < 1:
            raise ValueError(f"{_WHO}: backend workspace_mb must be an int >= 1, got {config.workspace_mb!r}")


def resolve_precision(precision: Any, fp16: Any, who: str = _WHO) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` from ``precision`` (``None`` = fp32) and the older
    ``fp16=True`` (an alias of ``precision="fp16"``); ``TypeError``/``ValueError`` naming ``who``."""
    if not isinstance(fp16, bool):
        raise TypeError(f"{who}: fp16 must be a bool, got {type(fp16).__name__}")
    if precision is None:
        return "fp16" if fp16 else "fp32"
    if not isinstance(precision, str):
        raise TypeError(f"{who}: precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                        f"got {type(precision).__name__}")
    value = precision.strip().lower()
    if value not in PRECISIONS:
        raise ValueError(f"{who}: precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    if fp16 and value != "fp16":
        raise ValueError(f"{who}: fp16=True contradicts precision={precision!r} (fp16=True is precision='fp16')")
    return value


def _candidates(backend: Any, device: tuple[str, int] | None, precision: str,
                threads: int | None) -> tuple[list[BackendConfig], bool]:
    """(backend configurations to try in order, whether the choice was "auto")."""
    fp16 = precision == "fp16"
    if isinstance(backend, _CONFIG_TYPES):
        if threads is not None:
            raise ValueError(f"{_WHO}: give threads inside the backend configuration "
                             f"({type(backend).__name__}(threads=...)), not as a separate argument")
        if precision != "fp32":
            raise ValueError(f"{_WHO}: give the precision inside the backend configuration "
                             "(Backend.PaddleInferenceGPU(fp16=True), Backend.OpenVINOCPU(precision='bf16')), "
                             "not as a separate argument")
        _check_config(backend)
        if device is not None:
            kind, index = device
            if kind == "cpu" and backend.runs_on == "gpu":
                raise ValueError(f"{_WHO}: backend {backend.name!r} runs on a GPU, but device='cpu'")
            if kind == "gpu" and backend.runs_on == "cpu":
                raise ValueError(f"{_WHO}: backend {backend.name!r} runs on the CPU, but device={device[0]}:{index}")
            if kind == "gpu" and backend.runs_on == "gpu" and index != backend.device_id:
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
    if name == "auto":
        if fp16 and kind == "cpu":
            raise ValueError(f"{_WHO}: fp16=True needs a GPU backend ('gpu' or 'trt'), but device='cpu'; "
                             "use fp16=False on the CPU")
        if precision == "bf16" and kind == "gpu":
            raise ValueError(f"{_WHO}: precision='bf16' runs on the CPU (OpenVINO), but device={device[0]}:{index}")
        # fp16 and bf16 are requests only some backends take: only those qualify
        allowed = {"fp16": _FP16_NAMES, "bf16": _BF16_NAMES}.get(precision, tuple(_BY_NAME))
        names = [n for n in AUTO_ORDER if n in allowed]
        configs = [_BY_NAME[n](index, precision, threads) for n in names]
        return [c for c in configs if kind is None or c.runs_on in (None, kind)], True
    config = _BY_NAME[name](index, precision, threads)
    if precision == "bf16" and name not in _BF16_NAMES:
        raise ValueError(f"{_WHO}: precision='bf16' is only available with the "
                         f"{' and '.join(map(repr, _BF16_NAMES))} backend, not with {name!r}")
    if fp16 and name not in _FP16_NAMES:
        raise ValueError(f"{_WHO}: fp16 is only available with the {' and '.join(map(repr, _FP16_NAMES))} "
                         f"backends, not with {name!r}")
    if kind == "cpu" and config.runs_on == "gpu":
        raise ValueError(f"{_WHO}: backend {name!r} runs on a GPU, but device='cpu'")
    if kind == "gpu" and config.runs_on == "cpu":
        raise ValueError(f"{_WHO}: backend {name!r} runs on the CPU, but device=gpu:{index}")
    return [config], False


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
        return self.device if self.usable[0].runs_on is None else "cpu"


def choose_backend(backend: BackendLike = "auto", device: str | None = None, fp16: bool = False,
                   threads: int | None = None, *, loads_model: bool = True,
                   precision: str | None = None) -> BackendChoice:
    """Validate the backend arguments and probe what can run here (imports Paddle).

    ``backend``, ``device``, ``fp16`` and ``threads`` mean what they mean for :class:`Engine`.
    ``loads_model``: the model will be loaded by name onto ``device`` (so a GPU ``device`` must
    exist even for the dygraph backend). ``ValueError``/``TypeError`` naming ``vsmsvsr.Engine``
    when nothing requested can run.
    """
    precision = resolve_precision(precision, fp16)
    fp16 = precision == "fp16"
    _check_threads(threads, "threads")
    parsed_device = _parse_device(device)
    load_paddle()
    candidates, auto = _candidates(backend, parsed_device, precision, threads)
    usable: list[BackendConfig] = []
    reasons: list[str] = []
    for cand in candidates:
        problem = _problem(cand)
        if problem is None and cand.runs_on is None and loads_model \
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
