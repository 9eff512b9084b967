"""The progress bar's rate and ETA when frames arrive a window at a time."""
from __future__ import annotations

import io
import re

from vsmsvsr.progress import BurstRate, frame_bar


def _windows(rate: BurstRate, start_up: float, per_window: float, frames: int, windows: int) -> float:
    t = start_up
    for k in range(windows):
        for j in range(frames):  # a window's frames arrive within milliseconds
            rate.update(k * frames + j + 1, t + j * 0.001)
        t += per_window
    return t


def test_rate_comes_from_whole_windows_not_from_the_burst():
    rate = BurstRate()
    _windows(rate, start_up=100.0, per_window=40.0, frames=10, windows=1)
    assert rate.rate() is None  # one window: the start-up is in it, nothing to say yet
    rate = BurstRate()
    _windows(rate, start_up=100.0, per_window=40.0, frames=10, windows=5)
    assert abs(rate.rate() - 10 / 40) < 0.01  # not 10 frames per millisecond, not 50 per 260 s


def test_a_steady_stream_gets_a_moving_average():
    rate = BurstRate()
    for n in range(1, 501):
        rate.update(n, n / 100)  # 100 frames/s, no pauses
    assert abs(rate.rate() - 100) < 1


def test_bar_shows_seconds_per_frame_and_the_time_left_of_the_remaining_windows():
    bar = frame_bar(total=50, desc="PPMSVSR", file=io.StringIO())
    _windows(bar.burst_rate, start_up=100.0, per_window=40.0, frames=10, windows=3)
    bar.update(30)
    line = bar.format_meter(**bar.format_dict)
    bar.close()
    assert "4.00s/frame" in line, line
    assert re.search(r"<01:(19|20),", line), line  # 20 frames left at 4 s each
    fresh = frame_bar(total=50, file=io.StringIO())
    fresh.update(10)
    assert "?frame/s" in fresh.format_meter(**fresh.format_dict)
    fresh.close()
