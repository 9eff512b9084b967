"""The dygraph backend (the Paddle layer itself, eager) and the layer helpers the other runners share."""
from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"


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
