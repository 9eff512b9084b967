"""VapourSynth filters of vsmsvsr (importing this imports VapourSynth)."""

from __future__ import annotations

from .colorize import Colorize
from .interpolate import Interpolate
from .planning import plan
from .remaster import Remaster
from .scene import SceneDetect
from .upscale import Upscale

__all__ = ["Colorize", "Interpolate", "Remaster", "SceneDetect", "Upscale", "plan"]
