"""Scene-cut statistic and decision on small luma planes (pure numpy, no VapourSynth).

The detector works in two local steps so that the decision for any frame depends only on a
bounded neighbourhood of frames (and therefore never on request order, thread count or which
machine renders which part of a clip):

1. ``d(n) = luma_difference(Y[n-1], Y[n])`` for ``n >= 1``: the mean absolute difference of two
   downscaled luma planes (values in ``[0, 1]``), minimised over small global shifts
   (``|dx|, |dy| <= max_shift`` pixels of the small plane). A camera pan of up to
   ``max_shift / STAT_SIZE`` of the longer side per frame (about 9 % with the defaults)
   therefore costs almost nothing, while a cut leaves a large difference whatever the shift.
2. ``cut(n) = d(n) >= threshold and d(n) >= ratio * max(d(m) for m in n-R..n+R, m != n)`` with
   ``R = NEIGHBOURHOOD``: a cut is an isolated spike of the difference. Fast or blurred motion
   beyond the shift search produces large but *steady* differences (also when motion starts
   abruptly, or alternates with duplicated frames as in animation on twos or pulldown), so it
   never forms such a spike. Neighbour differences outside the clip are simply left out.

So ``cut(n)`` (a cut between frames ``n-1`` and ``n``) is a pure function of frames
``n-R-1 .. n+R`` of the clip. Frame 0 is never a cut: a clip end is a boundary, not a cut.
Known limitation of the spike rule: two cuts fewer than ``R + 1`` frames apart (a shot of one or
two frames) mask each other and may both go undetected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DEFAULT_MAX_SHIFT",
    "DEFAULT_RATIO",
    "DEFAULT_THRESHOLD",
    "MIN_STAT_SIDE",
    "NEIGHBOURHOOD",
    "STAT_SIZE",
    "detect_cuts",
    "is_scene_cut",
    "luma_difference",
    "neighbour_diffs",
    "stat_size",
    "validate_criterion",
]

#: Longer side, in pixels, of the downscaled luma plane the statistic is computed on.
STAT_SIZE = 64
#: Shorter side never goes below this many pixels (very wide or tall clips).
MIN_STAT_SIDE = 16
#: Largest global shift, in pixels of the small plane, searched by :func:`luma_difference`.
DEFAULT_MAX_SHIFT = 6
#: Absolute floor on ``d(n)`` (mean absolute luma difference, luma in ``[0, 1]``).
DEFAULT_THRESHOLD = 0.05
#: ``d(n)`` must be at least this many times every neighbouring difference.
DEFAULT_RATIO = 2.0
#: Number of neighbouring differences on each side that a spike is compared with.
NEIGHBOURHOOD = 2


def stat_size(width: int, height: int) -> tuple[int, int]:
    """Size ``(width, height)`` of the small luma plane for a clip of ``width`` x ``height``.

    The longer side becomes :data:`STAT_SIZE` pixels and the aspect ratio is kept (rounded), with
    the shorter side clamped to at least :data:`MIN_STAT_SIDE` pixels.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"vsmsvsr.scenecut.stat_size: size must be positive, got {width}x{height}")
    if width >= height:
        return STAT_SIZE, max(MIN_STAT_SIDE, min(STAT_SIZE, round(STAT_SIZE * height / width)))
    return max(MIN_STAT_SIDE, min(STAT_SIZE, round(STAT_SIZE * width / height))), STAT_SIZE


def luma_difference(prev: np.ndarray, cur: np.ndarray, max_shift: int = DEFAULT_MAX_SHIFT) -> float:
    """Shift-compensated mean absolute difference between two luma planes.

    Args:
        prev, cur: 2-D float arrays of equal shape ``(height, width)``, luma in ``[0, 1]``.
        max_shift: largest global shift tried in each direction, in pixels (``0``: the plain
            frame difference ``mean(|cur - prev|)``). Must be smaller than both sides.

    Returns:
        ``min`` over all integer shifts ``(dx, dy)`` with ``|dx|, |dy| <= max_shift`` of the mean
        of ``|cur[y, x] - prev[y - dy, x - dx]|`` over the pixels both planes cover, as a Python
        float in ``[0, 1]``.
    """
    a = np.asarray(prev, dtype=np.float32)
    b = np.asarray(cur, dtype=np.float32)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            "vsmsvsr.scenecut.luma_difference: expected two 2-D planes of equal shape, "
            f"got {a.shape} and {b.shape}"
        )
    if isinstance(max_shift, bool) or not isinstance(max_shift, int):
        raise TypeError(f"vsmsvsr.scenecut.luma_difference: max_shift must be an int, got {max_shift!r}")
    h, w = a.shape
    if max_shift < 0 or max_shift >= min(h, w):
        raise ValueError(
            f"vsmsvsr.scenecut.luma_difference: max_shift must be in [0, {min(h, w) - 1}] "
            f"for a {w}x{h} plane, got {max_shift}"
        )
    best = math.inf
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            # cur[y, x] is compared with prev[y - dy, x - dx]: content moved by (dx, dy).
            cb = b[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
            pa = a[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
            best = min(best, float(np.mean(np.abs(cb - pa), dtype=np.float64)))
    return best


def validate_criterion(threshold: object, ratio: object, where: str) -> None:
    """Raise TypeError/ValueError naming ``where`` unless ``0 <= threshold <= 1`` and ``ratio >= 1``."""
    for name, value in (("threshold", threshold), ("ratio", ratio)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: {name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{where}: {name} must be finite, got {value!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{where}: threshold must be in [0, 1], got {threshold!r}")
    if ratio < 1.0:
        raise ValueError(f"{where}: ratio must be >= 1, got {ratio!r}")


def is_scene_cut(
    diff: float,
    neighbours: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    ratio: float = DEFAULT_RATIO,
) -> bool:
    """Decide whether ``diff = d(n)`` marks a cut between frames ``n-1`` and ``n``.

    Args:
        diff: ``d(n)`` from :func:`luma_difference`.
        neighbours: the differences ``d(m)`` for ``m`` in ``n-NEIGHBOURHOOD .. n+NEIGHBOURHOOD``,
            ``m != n``, that exist in the clip (``1 <= m < num_frames``); may be empty.
        threshold: absolute floor on ``diff`` (luma in ``[0, 1]``), default
            :data:`DEFAULT_THRESHOLD`.
        ratio: ``diff`` must be at least ``ratio`` times the largest neighbour (>= 1), default
            :data:`DEFAULT_RATIO`.
    """
    validate_criterion(threshold, ratio, "vsmsvsr.scenecut.is_scene_cut")
    return diff >= threshold and diff >= ratio * max(neighbours, default=0.0)


def detect_cuts(
    diffs: Sequence[float],
    threshold: float = DEFAULT_THRESHOLD,
    ratio: float = DEFAULT_RATIO,
) -> list[bool]:
    """Apply :func:`is_scene_cut` to a whole clip (reference implementation, tests, benchmarks).

    Args:
        diffs: ``diffs[n] = d(n)`` for every frame ``n`` of the clip; ``diffs[0]`` is ignored.

    Returns:
        ``cuts[n]`` is True when a cut lies between frames ``n-1`` and ``n``; ``cuts[0]`` is
        always False.
    """
    validate_criterion(threshold, ratio, "vsmsvsr.scenecut.detect_cuts")
    num = len(diffs)
    cuts = [False] * num
    for n in range(1, num):
        cuts[n] = is_scene_cut(diffs[n], neighbour_diffs(diffs, n), threshold, ratio)
    return cuts


def neighbour_diffs(diffs: Sequence[float], n: int) -> list[float]:
    """The neighbouring differences of ``d(n)`` that :func:`is_scene_cut` compares with.

    ``diffs`` is indexed by frame number and covers the whole clip (``len(diffs)`` frames).
    """
    lo = max(1, n - NEIGHBOURHOOD)
    hi = min(len(diffs), n + NEIGHBOURHOOD + 1)
    return [diffs[m] for m in range(lo, hi) if m != n]
