"""VapourSynth filters of vsmsvsr (importing this imports VapourSynth)."""

from __future__ import annotations

from .scene import SceneDetect

__all__ = ["SceneDetect"]
