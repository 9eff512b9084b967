"""Frame-rate conversion timing in exact fractions (pure Python, no VapourSynth).

Output frame ``k`` of a conversion by ``ratio = dst_rate / src_rate`` shows source time
``tau(k) = k / ratio`` (in source frames; source frame ``i`` starts at time ``i``). The output
has ``ceil(num_src * ratio)`` frames: every output time in ``[0, num_src)``, so the durations of
input and output agree to less than one output frame.

What frame ``k`` is made of (:func:`frame_plan`), with ``i = floor(tau)`` and ``t = tau - i``:

* ``t == 0``: source frame ``i`` itself (passed through untouched);
* past the last source frame, or across a cut (``at_cut="repeat"``): source frame ``i`` repeated;
* otherwise: the interpolation of frames ``i`` and ``i + 1`` at ``t`` (``at_cut="blend"``: a
  plain cross-fade of the two across a cut).

With duplicate removal, a run of repeated source frames (animation on twos, telecine leftovers,
frozen frames) stands for one picture shown at the run's first time: between the first frames of
two consecutive runs, ``a`` and ``b``, frames are interpolated at ``t = (tau - a) / (b - a)``
instead of showing a still followed by a jump. Runs are looked at up to :data:`MAX_RUN` frames,
so every plan depends on a bounded neighbourhood of flags (:func:`flag_window`) and never on
scanning the clip: output is independent of request order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Literal

__all__ = ["MAX_RUN", "FramePlan", "flag_window", "frame_plan", "output_length", "pair_times", "rate_ratio",
           "source_time"]

#: Longest run of duplicates looked through by ``remove_duplicates`` (source frames).
MAX_RUN = 8

Flag = Callable[[int], bool]


def rate_ratio(src_num: int, src_den: int, dst_num: int, dst_den: int) -> Fraction:
    """``(dst_num / dst_den) / (src_num / src_den)`` exactly."""
    return Fraction(dst_num, dst_den) / Fraction(src_num, src_den)


def output_length(num_src: int, ratio: Fraction) -> int:
    """Output frames: those whose time lies in ``[0, num_src)``, i.e. ``ceil(num_src * ratio)``."""
    return math.ceil(num_src * ratio)


def source_time(k: int, ratio: Fraction) -> Fraction:
    """Source time of output frame ``k``, in source frames."""
    return Fraction(k) / ratio


@dataclass(frozen=True)
class FramePlan:
    """How output frame is made.

    Attributes:
        kind: ``"copy"`` (source frame ``a`` as it is), ``"interpolate"`` (network on ``a``, ``b``
            at ``t``) or ``"blend"`` (``(1 - t) * a + t * b``).
        a, b: source frames (``b == a`` for copies).
        t: position between ``a`` and ``b``, in (0, 1) (0 for copies).
    """

    kind: Literal["copy", "interpolate", "blend"]
    a: int
    b: int
    t: Fraction = Fraction(0)


def flag_window(i: int) -> range:
    """Source frames whose flags :func:`frame_plan` may read for an output time in ``[i, i + 1)``."""
    return range(i - MAX_RUN, i + MAX_RUN + 2)


def frame_plan(tau: Fraction, num_src: int, is_cut: Flag, is_dup: Flag | None = None,
               at_cut: str = "repeat") -> FramePlan:
    """The plan of an output frame at source time ``tau`` (``0 <= tau < num_src``).

    ``is_cut(j)``: a cut lies between ``j - 1`` and ``j``. ``is_dup(j)``: frame ``j`` repeats
    frame ``j - 1`` (``None``: no duplicate removal). Both are asked only inside
    :func:`flag_window` of ``floor(tau)`` and only for ``1 <= j < num_src``.
    """
    i = math.floor(tau)
    if is_dup is None:
        a, b = i, i + 1
        if tau == i:
            return FramePlan("copy", i, i)
    else:
        # a: first frame of the run holding i (a cut also starts a run); b: first frame after it.
        a = i
        while a > 0 and i - a < MAX_RUN and is_dup(a) and not is_cut(a):
            a -= 1
        b = i + 1
        while b < num_src and b - i <= MAX_RUN and is_dup(b) and not is_cut(b):
            b += 1
        if tau == a:
            return FramePlan("copy", a, a)
    if b >= num_src:
        return FramePlan("copy", a, a)            # after the last picture: hold it
    t = (tau - a) / (b - a)
    if is_cut(b):
        if at_cut == "blend":
            return FramePlan("blend", a, b, t)
        return FramePlan("copy", a, a)            # the old shot lasts until the cut
    return FramePlan("interpolate", a, b, t)


def pair_times(a: int, b: int, ratio: Fraction, num_src: int, is_cut: Flag, is_dup: Flag | None = None,
               at_cut: str = "repeat") -> tuple[Fraction, ...]:
    """Every ``t`` at which some output frame interpolates the pair ``(a, b)``, ascending.

    One batched network call per pair computes them all, so the result for each frame does not
    depend on which frame of the pair was asked for first.
    """
    first = math.ceil(a * ratio)
    last = math.ceil(b * ratio)  # output frames with tau in [a, b)
    times = []
    for k in range(first, last):
        plan = frame_plan(source_time(k, ratio), num_src, is_cut, is_dup, at_cut)
        if plan.kind == "interpolate" and (plan.a, plan.b) == (a, b):
            times.append(plan.t)
    return tuple(times)
