"""Scene-cut statistic and decision rule (pure numpy, no VapourSynth)."""

from __future__ import annotations

import numpy as np
import pytest

from vsmsvsr.scenecut import (
    NEIGHBOURHOOD,
    detect_cuts,
    is_scene_cut,
    luma_difference,
    neighbour_diffs,
    stat_size,
)


def texture(h: int = 36, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((h + 16, w + 16), dtype=np.float32)


def test_luma_difference_compensates_global_shifts():
    big = texture()
    prev = big[8:44, 8:72]
    for dx, dy in [(0, 0), (3, 0), (-6, 2), (5, -5)]:
        cur = big[8 - dy : 44 - dy, 8 - dx : 72 - dx]  # content moved by (dx, dy)
        assert luma_difference(prev, cur, max_shift=6) == pytest.approx(0.0, abs=1e-7)
        if (dx, dy) != (0, 0):
            assert luma_difference(prev, cur, max_shift=0) > 0.2
    cur = big[8:44, 0:64]  # moved by 8 px: beyond a 6 px search
    assert luma_difference(prev, cur, max_shift=6) > 0.2


def test_luma_difference_plain_and_unrelated():
    a, b = texture(seed=1)[:36, :64], texture(seed=2)[:36, :64]
    assert luma_difference(a, b, 0) == pytest.approx(float(np.mean(np.abs(a - b))), rel=1e-6)
    assert luma_difference(a, b, 6) > 0.25  # independent noise: ~1/3 whatever the shift
    assert luma_difference(a, a) == 0.0


@pytest.mark.parametrize(
    "args,exc,match",
    [
        ((np.zeros((4, 4)), np.zeros((4, 5))), ValueError, "expected two 2-D planes of equal shape, got"),
        ((np.zeros(4), np.zeros(4)), ValueError, "expected two 2-D planes"),
        ((np.zeros((8, 8)), np.zeros((8, 8)), 8), ValueError, r"max_shift must be in \[0, 7\]"),
        ((np.zeros((8, 8)), np.zeros((8, 8)), -1), ValueError, "max_shift must be in"),
        ((np.zeros((8, 8)), np.zeros((8, 8)), 1.0), TypeError, "max_shift must be an int"),
    ],
)
def test_luma_difference_rejects_bad_input(args, exc, match):
    with pytest.raises(exc, match="vsmsvsr.scenecut.luma_difference: " + match):
        luma_difference(*args)


def test_spike_rule():
    assert is_scene_cut(0.2, [0.01, 0.02, 0.05, 0.0])
    assert not is_scene_cut(0.2, [0.01, 0.11])  # not twice every neighbour
    assert not is_scene_cut(0.04, [])  # below the floor
    assert is_scene_cut(0.06, [])  # nothing to compare with: floor only
    assert is_scene_cut(0.2, [0.11], ratio=1.5) and not is_scene_cut(0.2, [0.0], threshold=0.3)


def test_detect_cuts_is_local():
    steady_motion = [0.0] + [0.12] * 9  # a fast pan: large but steady
    assert detect_cuts(steady_motion) == [False] * 10
    diffs = [0.0, 0.01, 0.02, 0.3, 0.01, 0.02, 0.01, 0.0, 0.25, 0.01]
    assert [n for n, c in enumerate(detect_cuts(diffs)) if c] == [3, 8]
    # The decision at n only looks at d(n-2..n+2): changing anything further away changes nothing.
    far = list(diffs)
    far[6] = 0.9
    assert detect_cuts(far)[3] is True
    assert neighbour_diffs(diffs, 3) == [0.01, 0.02, 0.01, 0.02]
    assert neighbour_diffs(diffs, 1) == [0.02, 0.3]  # d(0) and d(-1) do not exist
    assert neighbour_diffs(diffs, 9) == [0.0, 0.25]
    assert NEIGHBOURHOOD == 2
    # Frame 0 is never a cut; alternating (duplicated-frame) motion is not either.
    assert detect_cuts([0.9, 0.0, 0.0]) == [False, False, False]
    assert detect_cuts([0.0] + [0.0, 0.15] * 5) == [False] * 11


def test_detect_cuts_rejects_bad_criterion():
    with pytest.raises(ValueError, match=r"vsmsvsr.scenecut.detect_cuts: threshold must be in \[0, 1\]"):
        detect_cuts([0.0, 0.1], threshold=-0.1)
    with pytest.raises(ValueError, match="vsmsvsr.scenecut.is_scene_cut: ratio must be >= 1"):
        is_scene_cut(0.1, [], ratio=0.9)
    with pytest.raises(TypeError, match="ratio must be a number"):
        detect_cuts([0.0], ratio=None)


def test_stat_size():
    assert stat_size(1920, 1080) == (64, 36)
    assert stat_size(640, 480) == (64, 48)
    assert stat_size(1080, 1920) == (36, 64)
    assert stat_size(4000, 100) == (64, 16)  # shorter side clamped
    assert stat_size(8, 8) == (64, 64)
    with pytest.raises(ValueError, match="size must be positive"):
        stat_size(0, 10)
