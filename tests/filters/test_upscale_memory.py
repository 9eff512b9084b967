"""Memory of Upscale is bounded by its window, never by the clip's length."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _peak_rss_kib(frames: int, weights: Path) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.filters.upscale_memory_probe", str(frames), str(weights)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.strip().splitlines()[-1])


def test_2000_frames_peak_rss_within_10_percent_of_100_frames(tmp_path):
    short = _peak_rss_kib(100, tmp_path / "a.pdparams")
    long = _peak_rss_kib(2000, tmp_path / "b.pdparams")
    assert long <= 1.10 * short, f"100 frames: {short} KiB, 2000 frames: {long} KiB"
