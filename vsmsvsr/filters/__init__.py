"""VapourSynth filters of vsmsvsr (importing this imports VapourSynth)."""

from __future__ import annotations

from .scene import SceneDetect
from .upscale import Upscale

__all__ = ["SceneDetect", "Upscale"]
