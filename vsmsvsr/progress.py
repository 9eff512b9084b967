"""A progress bar whose rate and ETA a person can read when frames arrive in bursts.

A temporal model delivers the frames of a window together after computing them for minutes: a
plain bar's rate then swings between "?" and hundreds of frames/s ("10/50 [00:40<00:00,
79.31frame/s]"). :class:`BurstRate` measures the rate between the ends of whole bursts (the last
:data:`WINDOWS` of them), so start-up (weights, program export) and the wait inside a window are
both averaged over; a steady stream without bursts (no model, or windows shorter than
:data:`BURST_GAP`) gets a moving average over the last :data:`HORIZON` seconds instead.
"""
from __future__ import annotations

import collections
import time
from typing import Any

__all__ = ["BurstRate", "frame_bar"]

#: A pause this long (seconds) between two deliveries separates two bursts (windows).
BURST_GAP = 1.0
#: Bursts averaged over.
WINDOWS = 3
#: Seconds of a steady stream averaged over.
HORIZON = 10.0


class BurstRate:
    """Frames per second from ``update(done, t)`` calls (``done``: frames delivered so far)."""

    def __init__(self) -> None:
        self._ends: collections.deque[tuple[float, int]] = collections.deque(maxlen=WINDOWS + 1)
        self._recent: collections.deque[tuple[float, int]] = collections.deque()
        self._last: tuple[float, int] | None = None
        self._bursty = False

    def update(self, done: int, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        if self._last is not None and t - self._last[0] > BURST_GAP:
            self._ends.append(self._last)  # the previous delivery closed a burst
            self._bursty = True
        self._last = (t, done)
        self._recent.append((t, done))
        while len(self._recent) > 2 and t - self._recent[1][0] >= HORIZON:
            self._recent.popleft()

    def rate(self) -> float | None:
        """Frames/s, or ``None`` while there is not yet enough to say."""
        if self._bursty:
            if len(self._ends) < 2:
                return None  # the first burst carries the start-up: wait for a second one
            (t0, n0), (t1, n1) = self._ends[0], self._ends[-1]
            return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 > n0 else None
        if len(self._recent) < 2:
            return None
        (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 - t0 >= 1.0 and n1 > n0 else None


def frame_bar(**kwargs: Any):
    """A ``tqdm`` bar (unit ``frame``) whose rate and ETA come from a :class:`BurstRate`; advance
    it with ``bar.advance_to(done)``."""
    from tqdm import tqdm

    class FrameBar(tqdm):
        def __init__(self, **kw: Any) -> None:
            self.burst_rate = BurstRate()
            super().__init__(unit="frame", **kw)

        def advance_to(self, done: int) -> None:
            self.burst_rate.update(done)
            self.update(done - self.n)

        @property
        def format_dict(self):  # noqa: ANN202 - tqdm's
            d = super().format_dict
            # 0 makes tqdm print "?" for both the rate and the time left
            d["rate"] = getattr(self, "burst_rate", None) and self.burst_rate.rate() or 0
            return d

    return FrameBar(**kwargs)
