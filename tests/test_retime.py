"""Exact frame-rate conversion timing (vsmsvsr.retime)."""
from __future__ import annotations

import random
from fractions import Fraction

import pytest

from vsmsvsr import retime
from vsmsvsr.retime import FramePlan, frame_plan, output_length, pair_times, rate_ratio, source_time


def no_cut(j: int) -> bool:
    return False


@pytest.mark.parametrize(("src", "dst", "num_src", "num_out"), [
    ((24000, 1001), (60000, 1001), 24, 60),   # 2.5x: exactly 60 frames for one second
    ((24000, 1001), (60000, 1001), 1001, 2503),  # ceil(2502.5): same duration
    ((25, 1), (50, 1), 10, 20),
    ((30, 1), (24, 1), 30, 24),
    ((30000, 1001), (24000, 1001), 5, 4),
])
def test_output_length_keeps_the_duration(src, dst, num_src, num_out):
    ratio = rate_ratio(*src, *dst)
    assert output_length(num_src, ratio) == num_out
    # the last output frame starts inside the source, the next one would not
    assert source_time(num_out - 1, ratio) < num_src <= source_time(num_out, ratio)


def test_times_are_exact_fractions():
    ratio = rate_ratio(24000, 1001, 60000, 1001)
    assert [source_time(k, ratio) for k in range(6)] == [0, Fraction(2, 5), Fraction(4, 5), Fraction(6, 5),
                                                         Fraction(8, 5), 2]
    plans = [frame_plan(source_time(k, ratio), 10, no_cut) for k in range(6)]
    assert plans[0] == FramePlan("copy", 0, 0) and plans[5] == FramePlan("copy", 2, 2)
    assert plans[1] == FramePlan("interpolate", 0, 1, Fraction(2, 5))
    assert plans[3] == FramePlan("interpolate", 1, 2, Fraction(1, 5))


def test_down_conversion_picks_and_interpolates_at_exact_times():
    ratio = rate_ratio(30, 1, 24, 1)
    plans = [frame_plan(source_time(k, ratio), 30, no_cut) for k in range(5)]
    assert plans == [FramePlan("copy", 0, 0), FramePlan("interpolate", 1, 2, Fraction(1, 4)),
                     FramePlan("interpolate", 2, 3, Fraction(1, 2)), FramePlan("interpolate", 3, 4, Fraction(3, 4)),
                     FramePlan("copy", 5, 5)]


def test_cuts_and_clip_end():
    def cut_at_5(j):
        return j == 5

    assert frame_plan(Fraction(9, 2), 10, cut_at_5) == FramePlan("copy", 4, 4)           # old shot held
    assert frame_plan(Fraction(9, 2), 10, cut_at_5, at_cut="blend") == FramePlan("blend", 4, 5, Fraction(1, 2))
    assert frame_plan(Fraction(5), 10, cut_at_5) == FramePlan("copy", 5, 5)
    assert frame_plan(Fraction(19, 2), 10, no_cut) == FramePlan("copy", 9, 9)             # past the last frame


def test_duplicate_runs_are_retimed():
    # pictures: 0, 1, 1, 1, 2, 3 -> frames 2 and 3 repeat frame 1
    dups = {2, 3}

    def is_dup(j):
        return j in dups

    one = Fraction(1)
    assert frame_plan(one * 1, 6, no_cut, is_dup) == FramePlan("copy", 1, 1)
    assert frame_plan(one * 2, 6, no_cut, is_dup) == FramePlan("interpolate", 1, 4, Fraction(1, 3))
    assert frame_plan(one * 3, 6, no_cut, is_dup) == FramePlan("interpolate", 1, 4, Fraction(2, 3))
    assert frame_plan(one * 4, 6, no_cut, is_dup) == FramePlan("copy", 4, 4)
    assert pair_times(1, 4, Fraction(1), 6, no_cut, is_dup) == (Fraction(1, 3), Fraction(2, 3))
    # a cut ends a run: nothing is interpolated across it
    assert frame_plan(one * 2, 6, lambda j: j == 4, is_dup) == FramePlan("copy", 1, 1)


@pytest.mark.parametrize("seed", range(20))
def test_plans_read_only_their_flag_window_and_pairs_are_consistent(seed):
    rng = random.Random(seed)
    num_src = rng.randrange(2, 60)
    cuts = {j for j in range(1, num_src) if rng.random() < 0.1}
    dups = {j for j in range(1, num_src) if rng.random() < 0.5}
    ratio = Fraction(rng.randrange(1, 60), rng.randrange(1, 30))
    for k in range(output_length(num_src, ratio)):
        tau = source_time(k, ratio)
        i = int(tau)
        window = retime.flag_window(i)
        asked = []

        def is_cut(j):
            asked.append(j)
            return j in cuts

        def is_dup(j):
            asked.append(j)
            return j in dups

        plan = frame_plan(tau, num_src, is_cut, is_dup, "repeat")
        assert all(j in window and 1 <= j < num_src for j in asked), (k, asked)
        assert plan.a <= tau and (plan.kind == "copy" or tau < plan.b)
        if plan.kind == "copy":
            assert plan.a == plan.b
        else:
            assert 0 < plan.t < 1
            assert not any(c in cuts for c in range(plan.a + 1, plan.b + 1))
            assert plan.t in pair_times(plan.a, plan.b, ratio, num_src, cuts.__contains__, dups.__contains__)
