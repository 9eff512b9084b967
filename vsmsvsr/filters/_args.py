"""Argument checks shared by the filters: one validator per kind of argument, one wording.

Every check runs when the filter is called, before any weights are read, and raises
``TypeError``/``ValueError`` naming the filter: ``vsmsvsr.Upscale: tile must be >= 64, got 16``.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

import vapoursynth as vs

__all__ = ["SCENE_CHANGE", "check_bool", "check_int", "check_weights_path", "progressive", "scene_change_mode"]

#: ``scene_change`` argument -> mode of :func:`vsmsvsr.filters.scene.scene_cut_clip`.
SCENE_CHANGE = {True: "detect", False: "none", "props": "props"}

core = vs.core


def check_int(value: object, name: str, func: str, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (bools refused; numpy integers accepted)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{func}: {name} must be an int, got {value!r}")
    value = int(value)
    if maximum is None and value < minimum:
        raise ValueError(f"{func}: {name} must be >= {minimum}, got {value}")
    if maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{func}: {name} must be in [{minimum}, {maximum}], got {value}")
    return value


def check_bool(value: object, name: str, func: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{func}: {name} must be a bool, got {value!r}")
    return value


def scene_change_mode(value: object, func: str) -> str:
    """``True`` -> ``"detect"``, ``False`` -> ``"none"``, ``"props"`` -> ``"props"``."""
    if not isinstance(value, (bool, str)) or value not in SCENE_CHANGE:
        raise ValueError(f"{func}: scene_change must be True, False or 'props', got {value!r}")
    return SCENE_CHANGE[value]


def check_weights_path(weights: object, func: str, *, folder_ok: bool = False) -> Path | None:
    """``None`` (the official file) or the path of an existing weights file.

    ``folder_ok``: a folder is accepted too (DAIN's extracted static program).
    """
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(f"{func}: weights must be None or a path, got {type(weights).__name__}")
    from vsmsvsr.weights import WeightsError

    path = Path(weights)
    if path.is_dir() and not folder_ok:
        raise WeightsError(f"{func}: weights must be a file, got folder {str(path)!r}")
    if not path.exists():
        raise WeightsError(f"{func}: weights: no such file: {str(path)!r}")
    return path


_FIELD_ORDER = {1: "bottom field first", 2: "top field first"}


def _check_progressive(n: int, f: vs.VideoFrame, func: str) -> vs.VideoFrame:
    field_based = int(f.props.get("_FieldBased", 0))
    if field_based in _FIELD_ORDER:
        field = 1 if field_based == 2 else 0
        raise vs.Error(
            f"{func}: frame {n} is interlaced (_FieldBased={field_based}, {_FIELD_ORDER[field_based]}); the "
            f"models need progressive frames: deinterlace first, e.g. clip = core.bwdif.Bwdif(clip, "
            f"field={field}) or havsfunc.QTGMC, or clip = core.std.SetFieldBased(clip, 0) if it is "
            "progressive content tagged wrongly")
    return f


def progressive(clip: vs.VideoNode, func: str) -> vs.VideoNode:
    """``clip`` whose frames are checked, when they are rendered, for ``_FieldBased`` 1 or 2:
    such a frame fails with a message naming it and a deinterlacer (temporal models would
    otherwise mix the two fields of every frame). Frames pass through unchanged."""
    return core.std.ModifyFrame(clip, clip, lambda n, f: _check_progressive(n, f, func))
