"""Memory of Upscale is bounded by its window, never by the clip's length."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _peak_rss_kib(frames: int, *args: object) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.filters.upscale_memory_probe", str(frames), *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_2000_frames_peak_rss_within_10_percent_of_100_frames(tmp_path):
    short = _peak_rss_kib(100, tmp_path / "a.pdparams")
    long = _peak_rss_kib(2000, tmp_path / "b.pdparams")
    assert long <= 1.10 * short, f"100 frames: {short} KiB, 2000 frames: {long} KiB"


def test_720p_class_windows_are_released_over_2000_frames():
    """640x360 -> 2560x1440 (a 44 MB float frame): 200 windows of buffers come and go; the peak of
    2000 frames stays that of 100 (a window that is not released would add ~0.4 GB each)."""
    short = _peak_rss_kib(100, "--plumbing", "640x360")
    long = _peak_rss_kib(2000, "--plumbing", "640x360")
    assert long <= 1.10 * short, f"100 frames: {short} KiB, 2000 frames: {long} KiB"
