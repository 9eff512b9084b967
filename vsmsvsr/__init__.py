"""vsmsvsr: PaddleGAN's video restoration models as VapourSynth filters.

    import vsmsvsr as msvsr
    clip = msvsr.Upscale(clip, model="PP-MSVSR")

Importing the package has no side effects: Paddle itself is imported only when a model is built.
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

if importlib.util.find_spec("paddle") is None:
    raise ImportError(
        "vsmsvsr needs PaddlePaddle, which is not installed. Install the CPU build with "
        "`pip install 'vsmsvsr[cpu]'` (paddlepaddle) or the CUDA build with "
        "`pip install 'vsmsvsr[gpu]'` (paddlepaddle-gpu)."
    )

# Public names, resolved on first use so that `import vsmsvsr` stays cheap and Paddle-free.
_LAZY = {
    "build_model": "vsmsvsr.models",
    "load_model": "vsmsvsr.models",
    "MODEL_SPECS": "vsmsvsr.models",
    "list_models": "vsmsvsr.models",
    "WeightsError": "vsmsvsr.weights",
    "Engine": "vsmsvsr.engine",
    "Backend": "vsmsvsr.engine",
    "SceneDetect": "vsmsvsr.filters",
    "Colorize": "vsmsvsr.filters",
    "Interpolate": "vsmsvsr.filters",
    "Remaster": "vsmsvsr.filters",
    "Upscale": "vsmsvsr.filters",
    "plan": "vsmsvsr.filters",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsmsvsr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
