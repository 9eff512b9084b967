"""Model specs (name -> architecture, official weights, checkpoint layout) and model loading.

One table, :data:`MODEL_SPECS`. Adding a model = one :class:`ModelSpec` row: its architecture as
an import path ``"module:attribute"`` (imported only when the model is built, so listing models
needs no Paddle) or a callable returning a ``paddle.nn.Layer``, the constructor keyword
arguments, the key of its official file in :data:`vsmsvsr.weights.OFFICIAL` and the layout of
that file.

Weights are always loaded strictly: every key of the model must be in the file with the same
shape and the file must hold nothing else; otherwise :class:`vsmsvsr.weights.WeightsError`.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

from vsmsvsr._paddle import load_paddle
from vsmsvsr.device import cuda_problem, parse_device

if TYPE_CHECKING:  # pragma: no cover
    import paddle

__all__ = ["ModelSpec", "Spare", "MODEL_SPECS", "TASKS", "parse_device", "list_models", "models_for", "check_model", "get_spec", "build_model",
           "load_model", "expected_shapes", "check_weights_file"]

#: What a model does; each filter serves one task (see :func:`models_for`).
TASKS = ("vsr", "interp", "colorize", "restore")

#: weights argument of :func:`load_model`: a file path, an in-memory state dict or container.
WeightsArg = Union[str, os.PathLike, Mapping[str, Any], None]


@dataclass(frozen=True)
class ModelSpec:
    """One model: how to build it and where its official weights are.

    Attributes:
        name: public model name (``"PP-MSVSR"``).
        task: what the model does, one of :data:`TASKS`: ``"vsr"`` (x4 video super-resolution,
            ``msvsr.Upscale``), ``"interp"`` (frame interpolation, ``msvsr.Interpolate``),
            ``"colorize"`` (``msvsr.Colorize``) or ``"restore"`` (``msvsr.Remaster``).
        architecture: ``"package.module:Class"`` or a callable; called with ``kwargs``.
        kwargs: constructor keyword arguments (read-only mapping).
        weights: key of the official file in ``vsmsvsr.weights.OFFICIAL``.
        container: layout of the official file: ``{file key: attribute prefix}``. MSVSR's
            ``{'generator': ''}`` nests the whole state dict under ``'generator'``; DeepRemaster's
            ``{'modelR': 'restoration', 'modelC': 'colorization'}`` keeps each sub-network's state
            dict under its own key, loaded into that attribute of the model. ``None``: a plain
            state dict. A plain state dict with the model's own (prefixed) keys is always accepted.
        reader: ``"module:function"`` turning a weights path into a state dict or container, for
            files that are not ``.pdparams`` (DAIN's static-program tar); ``None`` = the safe
            ``.pdparams`` loader :func:`vsmsvsr.weights.load_state_dict`.
        adapter: ``"module:attribute"`` of the object that tells a filter how to feed the model
            numpy arrays and read its outputs (normalisation, padding, the layer the engine runs);
            ``None`` for models the :class:`vsmsvsr.engine.Engine` runs directly (MSVSR).
        memory: peak memory per backend family (``"openvino"``, ``"cpu"``, ``"dygraph"``; see
            :mod:`vsmsvsr.engine.memory`): ``{family: MemoryModel}``, measured on this project's
            CPU machine by ``bench/calibrate_memory.py``. The filters plan tiles and check budgets
            with it.
        spare: work the model can skip by keeping intermediate results, where the memory budget
            has room for them (a :class:`Spare`; ``None``: nothing to trade).
        description: one line for listings.
    """

    name: str
    task: str
    architecture: Union[str, Callable[..., Any]]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    weights: str | None = None
    container: Mapping[str, str] | None = None
    reader: str | None = None
    adapter: str | None = None
    memory: Mapping[str, Any] = field(default_factory=dict)
    spare: "Spare | None" = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"ModelSpec {self.name!r}: task must be one of {', '.join(TASKS)}, got {self.task!r}")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        if self.container is not None:
            object.__setattr__(self, "container", MappingProxyType(dict(self.container)))
        object.__setattr__(self, "memory", MappingProxyType(dict(self.memory)))

    def resolve(self) -> Callable[..., Any]:
        """The architecture class/factory (imports its module on first use)."""
        if callable(self.architecture):
            return self.architecture
        module, _, attr = self.architecture.partition(":")
        return getattr(importlib.import_module(module), attr)

    def load_adapter(self) -> Any:
        """The model's adapter object (imports its module, hence Paddle), or ``None``."""
        if self.adapter is None:
            return None
        load_paddle()
        module, _, attr = self.adapter.partition(":")
        return getattr(importlib.import_module(module), attr)

    def read(self, path: Path) -> Mapping[str, Any]:
        """The weights file at ``path`` as a state dict or container (never executes pickled code)."""
        if self.reader is None:
            from vsmsvsr.weights import load_state_dict

            return load_state_dict(path)
        module, _, attr = self.reader.partition(":")
        return getattr(importlib.import_module(module), attr)(path)


_MSVSR = "vsmsvsr.models.msvsr:MSVSR"
_GENERATOR = {"generator": ""}
_MSVSR_L_KWARGS = dict(
    mid_channels=64, num_init_blocks=5, num_blocks=7, num_reconstruction_blocks=5, only_last=False,
    use_tiny_spynet=False, deform_groups=8, aux_reconstruction_blocks=2,
)

# Peak memory per backend family, fitted by bench/calibrate_memory.py on this project's CPU machine
# (2 cores, Paddle 3.3.1, OpenVINO 2026.4); its output is pasted here.
from vsmsvsr.engine.memory import MemoryModel  # noqa: E402 - pure Python, no Paddle

# openvino refitted after the auxiliary stage stopped making its 32-channel x4 tensor (peaks 12-19 % lower).
_MSVSR_MEMORY = {"openvino": MemoryModel(4.769e+08, 1738, per_pixel=4.001e+04),
                 "cpu": MemoryModel(5.763e+08, 1240, per_pixel=3.232e+04),
                 "dygraph": MemoryModel(5.269e+08, 1239, per_pixel=2.516e+04)}
# PP-MSVSR-L on the compiled backends: at the calibrated sizes (<= 9 frames) the peak is set by the
# per-frame stages and the fit cannot separate the features each frame keeps; those are taken as
# twice PP-MSVSR's (64 channels instead of 32; dygraph, where the fit separates them, measured 2636
# against PP-MSVSR's 1239), so that long windows are not under-estimated. openvino refitted after
# the x4 tails' convolutions moved before their pixel shuffles (base and per_pixel; the fit gave 2198
# per frame pixel; 1173 was PP-MSVSR's per-frame term then). Its peaks moved little when the
# auxiliary stage lost its x4 tensor (1-8 % lower: this model over-estimates them by at most 8 %).
_MSVSR_L_MEMORY = {"openvino": MemoryModel(5.969e+08, 2 * 1173, per_pixel=1.146e+05),
                   "cpu": MemoryModel(8.542e+08, 2 * 1240, per_pixel=7.096e+04),
                   "dygraph": MemoryModel(6.289e+08, 2636, per_pixel=5.112e+04)}
# DeOldify's openvino figures since OpenVINO compiles it whole (self-attention traced as legacy operators)
_DEOLDIFY_MEMORY = {"openvino": MemoryModel(4.254e+09, 1.863e+04), "cpu": MemoryModel(3.965e+09, 1.331e+04),
                    "dygraph": MemoryModel(2.879e+09, 4425)}
_DEEPREMASTER_MEMORY = {"openvino": MemoryModel(2.203e+09, 354.2, attention=0.001953),
                        "cpu": MemoryModel(1.729e+09, 851.1, attention=0.001953),
                        "dygraph": MemoryModel(1.579e+09, 4034, attention=0.001953)}
# DAIN's openvino figures since OpenVINO compiles it (its grid_sample traced as a legacy operator)
_DAIN_MEMORY = {"openvino": MemoryModel(1.493e+09, 2717), "cpu": MemoryModel(1.068e+09, 2488),
                "dygraph": MemoryModel(5.368e+08, 2411)}

@dataclass(frozen=True)
class Spare:
    """Memory a model can spend to skip recomputation, with the same numbers.

    Attributes:
        per_frame_pixel: extra peak bytes per frame of a call and network pixel.
        attributes: set on the loaded model to keep the results (read-only mapping).
    """

    per_frame_pixel: float
    attributes: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))


# MSVSR keeps stage 2's offsets and masks for stage 3 instead of recomputing them (about 6 % of a
# window's time at 180x320): 2 directions x 27 x deform_groups float32 channels per frame.
_MSVSR_SPARE = Spare(2 * 27 * 4 * 4, {"keep_offsets": True})
_MSVSR_L_SPARE = Spare(2 * 27 * 8 * 4, {"keep_offsets": True})

#: All models by name, in listing order.
MODEL_SPECS: Mapping[str, ModelSpec] = MappingProxyType({
    spec.name: spec
    for spec in (
        ModelSpec("PP-MSVSR", "vsr", _MSVSR, {}, weights="PP-MSVSR", container=_GENERATOR, memory=_MSVSR_MEMORY,
                  spare=_MSVSR_SPARE,
                  description="PP-MSVSR x4 video super-resolution, REDS (bicubic degradation), 1.45 M parameters"),
        ModelSpec("PP-MSVSR-L", "vsr", _MSVSR, _MSVSR_L_KWARGS, weights="PP-MSVSR-L", container=_GENERATOR, memory=_MSVSR_L_MEMORY,
                  spare=_MSVSR_L_SPARE,
                  description="PP-MSVSR-L x4 video super-resolution, REDS, larger and slower, 7.42 M parameters"),
        ModelSpec("PP-MSVSR-BD", "vsr", _MSVSR, {}, weights="PP-MSVSR-BD", container=_GENERATOR, memory=_MSVSR_MEMORY,
                  spare=_MSVSR_SPARE,
                  description="PP-MSVSR x4 video super-resolution, Vimeo90K (blur + downsampling degradation)"),
        ModelSpec("DeOldify", "colorize", "vsmsvsr.models.deoldify:DeOldify", {"model_type": "stable"}, weights="DeOldify",
                  adapter="vsmsvsr.models.deoldify:ADAPTER", memory=_DEOLDIFY_MEMORY,
                  description="DeOldify stable colorization (ResNet-101 encoder, wide U-Net decoder), per frame"),
        ModelSpec("DeOldify-artistic", "colorize", "vsmsvsr.models.deoldify:DeOldify", {"model_type": "artistic"},
                  weights="DeOldify-artistic", adapter="vsmsvsr.models.deoldify:ADAPTER", memory=_DEOLDIFY_MEMORY,
                  description="DeOldify artistic colorization (ResNet-34 encoder, deep U-Net decoder), per frame"),
        ModelSpec("DeepRemaster", "restore", "vsmsvsr.models.remaster:DeepRemaster", {}, weights="DeepRemaster",
                  container={"modelR": "restoration", "modelC": "colorization"},
                  adapter="vsmsvsr.models.remaster:ADAPTER", memory=_DEEPREMASTER_MEMORY,
                  description="DeepRemaster film restoration (R) and reference-based colorization (C)"),
        ModelSpec("DAIN", "interp", "vsmsvsr.models.dain:DAIN", {}, weights="DAIN", reader="vsmsvsr.models.dain_weights:read_weights",
                  adapter="vsmsvsr.models.dain:ADAPTER", memory=_DAIN_MEMORY,
                  description="DAIN depth-aware frame interpolation (PWC-Net flow), any time t in (0, 1)"),
    )
})


def list_models() -> tuple[str, ...]:
    """Names of all models, in listing order."""
    return tuple(MODEL_SPECS)


def models_for(*tasks: str) -> tuple[str, ...]:
    """Names of the models serving any of ``tasks``, in listing order."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"vsmsvsr.models_for: unknown task(s) {', '.join(map(repr, unknown))}; valid: {', '.join(TASKS)}")
    return tuple(name for name, spec in MODEL_SPECS.items() if spec.task in tasks)


def check_model(name: object, tasks: tuple[str, ...], who: str) -> ModelSpec:
    """The spec of ``name`` if it serves one of ``tasks``; else ``ValueError``/``TypeError``
    naming ``who`` and listing the models it accepts (``vsmsvsr.Upscale: model must be one of
    PP-MSVSR, PP-MSVSR-L, PP-MSVSR-BD, got 'DeOldify'``)."""
    valid = models_for(*tasks)
    if not isinstance(name, str):
        raise TypeError(f"{who}: model must be one of {', '.join(valid)}, got {name!r}")
    if name not in valid:
        close = [n for n in valid if n.lower() == name.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{who}: model must be one of {', '.join(valid)}, got {name!r}{hint}")
    return MODEL_SPECS[name]


def get_spec(name: str, *, who: str = "vsmsvsr.get_spec") -> ModelSpec:
    """The spec of model ``name``; ``ValueError`` listing the valid names if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"{who}: model name must be a str, got {type(name).__name__}")
    try:
        return MODEL_SPECS[name]
    except KeyError:
        close = [n for n in MODEL_SPECS if n.lower() == name.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{who}: unknown model {name!r}{hint}; valid: {', '.join(MODEL_SPECS)}") from None


def _resolve_device(device: object, who: str) -> str | None:
    """Validate ``device`` (and that the GPU exists) and return it normalised (``'cpu'``, ``'gpu:N'``) or None."""
    parsed = parse_device(device, who)
    if parsed is None or parsed.kind == "cpu":
        return None if parsed is None else "cpu"
    problem = cuda_problem(parsed.index)
    if problem is not None:
        raise ValueError(f"{who}: device {device!r} requested, but {problem} (or use device='cpu')")
    return str(parsed)


def _check_weights_arg(weights: Any, who: str) -> None:
    if weights is None or isinstance(weights, (str, os.PathLike, Mapping)):
        return
    raise TypeError(f"{who}: weights must be None, a file path or a state dict, got {type(weights).__name__}")


def _instantiate(spec: ModelSpec) -> "paddle.nn.Layer":
    load_paddle()  # before the architecture's module imports it
    return spec.resolve()(**spec.kwargs)


def build_model(name: str) -> "paddle.nn.Layer":
    """Model ``name`` with random weights, in eval mode, on Paddle's current device.

    Touches neither the network nor the disk. ``ValueError`` for an unknown name.
    """
    spec = get_spec(name, who="vsmsvsr.build_model")
    model = _instantiate(spec)
    model.eval()
    return model


def _unwrap(obj: Mapping[str, Any], spec: ModelSpec) -> Mapping[str, Any]:
    """The model's flat state dict from an official container, or ``obj`` itself if it is flat.

    A container is recognised when one of its file keys holds a mapping; its entries are renamed
    ``<prefix>.<key>`` (kept as they are for the prefix ``''``). A sub-network absent from the
    file is then reported by the strict check as that sub-network's missing keys.
    """
    layout = spec.container
    if not layout or not any(isinstance(obj.get(k), Mapping) for k in layout):
        return obj
    flat: dict[str, Any] = {}
    for file_key, prefix in layout.items():
        sub = obj.get(file_key)
        if isinstance(sub, Mapping):
            for key, value in sub.items():
                flat[f"{prefix}.{key}" if prefix else key] = value
    # anything else at the top level is reported by the strict check as unexpected
    flat.update({k: v for k, v in obj.items() if k not in layout})
    return flat


def expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """``{state-dict key: shape}`` of model ``name``'s architecture (built without allocating its
    weights where Paddle can: ``paddle.LazyGuard``)."""
    spec = get_spec(name, who="vsmsvsr.models.expected_shapes")
    paddle = load_paddle()
    guard = getattr(paddle, "LazyGuard", None)
    if guard is None:
        model = _instantiate(spec)
    else:
        with guard():
            model = _instantiate(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_weights_file(name: str, path: str | os.PathLike, *, what: str | None = None) -> None:
    """Raise :class:`vsmsvsr.weights.WeightsError` unless the file at ``path`` reads as model
    ``name``'s weights (its spec's reader: ``.pdparams``, DAIN's tar...) with exactly the keys and
    shapes of its architecture. Nothing is loaded into a model."""
    from vsmsvsr import weights as wmod

    spec = get_spec(name, who="vsmsvsr.models.check_weights_file")
    load_paddle()
    state = _unwrap(spec.read(Path(path)), spec)
    wmod.check_state_dict(expected_shapes(name), state, what=what or f"{name} weights ({path})")


def _as_float32(value: Any) -> Any:
    import numpy as np
    import paddle

    if isinstance(value, paddle.Tensor):
        return value if value.dtype == paddle.float32 else value.astype("float32")
    return np.ascontiguousarray(value, dtype=np.float32)


def load_model(name: str, weights: WeightsArg = None, device: str | None = None) -> "paddle.nn.Layer":
    """Model ``name`` with its weights, in eval mode, float32.

    Args:
        name: a name from :func:`list_models` (``"PP-MSVSR"``, ``"PP-MSVSR-L"``, ``"PP-MSVSR-BD"``).
        weights: ``None`` for the official file (``vsmsvsr.weights.fetch``: cached, downloaded once);
            a path to a ``.pdparams`` file, either in its official layout (``{'generator': state_dict}``
            for MSVSR) or a plain state dict; or such a dict in memory (numpy arrays or tensors).
            Files are read with the safe loader ``vsmsvsr.weights.load_state_dict``.
        device: ``'cpu'``, ``'gpu'`` (= ``'gpu:0'``) or ``'gpu:N'``; ``None`` keeps Paddle's current
            device (``paddle.get_device()``: CPU on a CPU-only build, else what ``paddle.set_device``
            chose, ``gpu:0`` by default). The global device is never changed; feed inputs on the
            same device.

    Name, device and the type of ``weights`` are validated before anything is read or downloaded.
    Raises ``ValueError``/``TypeError`` for bad arguments and ``vsmsvsr.weights.WeightsError`` for
    a file that cannot be read or does not fit the model (missing, unexpected or mis-shaped keys,
    listed in the message).
    """
    who = "vsmsvsr.load_model"
    spec = get_spec(name, who=who)
    _check_weights_arg(weights, who)
    place = _resolve_device(device, who)
    load_paddle()  # before any reader or architecture module imports it

    from vsmsvsr import weights as wmod

    official = None
    try:
        if isinstance(weights, Mapping):
            label, obj = "in-memory state dict", weights
        else:
            path = Path(weights) if weights is not None else wmod.fetch(spec.weights)
            official = path if weights is None else None
            label, obj = str(path), spec.read(path)
        state = _unwrap(obj, spec)

        model = _instantiate(spec)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        wmod.check_state_dict(expected, state, what=f"{who}: {name} weights ({label})")
    except wmod.WeightsError as exc:
        if official is None:
            raise
        # A cached official file that does not load will fail every run: say how to get rid of it.
        raise type(exc)(f"{exc}. {wmod.bad_cache_hint(spec.weights, official)}") from None
    if place is not None:
        model.to(device=place)
    model.set_state_dict({k: _as_float32(state[k]) for k in expected})
    model.eval()
    return model
