#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU and driver: installs the vsmsvsr[gpu] extra (pip
# only: paddlepaddle-gpu 2.6.2 + the nvidia-*-cu11 CUDA 11.8 wheels) into its own venv, checks
# every GPU backend against CPU dygraph (fp32 rel-L2 <= 1e-5; fp16 PSNR >= 50 dB vs fp32), and
# prints frames/s and GPU memory of PP-MSVSR 270x480 -> x4, then checks and times DeOldify, DeepRemaster
# (R+C) and DAIN through their filters at 854x480 (keyed / random weights: the official ones cannot
# be downloaded on an offline machine). Exit status: 0 if every check passed.
#   bash bench/gpu_check.sh            (about 5-10 minutes, most of it pip)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2 || {
    echo "gpu_check: no NVIDIA driver here (nvidia-smi failed)" >&2; exit 2; }
venv="${GPU_VENV:-.venv-gpu}"
python="${PYTHON:-$(command -v python3.12 || command -v python3)}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q -e ".[gpu,test]" >&2
"$venv/bin/python" - <<'PY'
import subprocess, sys, time
import numpy as np
sys.path.insert(0, ".")
from tests.keyed import model_weights
from vsmsvsr.engine import Engine, available_backends

problems = available_backends()
print("backends:", {k: (v or "ok") for k, v in problems.items()})
w = model_weights("msvsr")
rng = np.random.default_rng(0)
small = rng.random((3, 3, 64, 72), dtype=np.float32)
ref = Engine("PP-MSVSR", w, backend="dygraph", device="cpu")(small)
failed = []
for name in ("gpu", "trt"):
    if problems[name] is not None:
        print(f"{name}: not available: {problems[name]}"); failed.append(name); continue
    out32 = Engine("PP-MSVSR", w, backend=name)(small)
    rel = float(np.linalg.norm(out32 - ref) / np.linalg.norm(ref))
    out16 = Engine("PP-MSVSR", w, backend=name, precision="fp16")(small)
    mse = float(np.mean((np.clip(out16, 0, 1) - np.clip(out32, 0, 1)) ** 2))
    psnr = 10 * np.log10(1 / mse) if mse > 0 else float("inf")
    ok = rel <= 1e-5 and psnr >= 50
    failed += [] if ok else [name]
    print(f"{name}: fp32 rel-L2 {rel:.2e} (<= 1e-5), fp16 PSNR {psnr:.1f} dB (>= 50): {'ok' if ok else 'FAILED'}")
    for precision in ("fp32", "fp16"):
        eng = Engine("PP-MSVSR", w, backend=name, precision=precision)
        frames = rng.random((10, 3, 270, 480), dtype=np.float32)
        eng(frames)
        start = time.perf_counter(); eng(frames); secs = time.perf_counter() - start
        # Paddle Inference allocates outside paddle.device.cuda's counters: ask the driver
        used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True).stdout.split()[0]
        print(f"{name} {precision}: PP-MSVSR 10 x 270x480 -> x4: {10 / secs:.2f} frames/s, "
              f"GPU memory in use {int(used) / 1024:.1f} GiB")
        del eng

# ---- DeOldify, DeepRemaster, DAIN through their filters: fidelity on a small clip, speed at 480p
import atexit
import shutil
import tempfile
from pathlib import Path
import vapoursynth as vs
import vsmsvsr as msvsr
from tests.keyed import save_keyed_weights
from tests.media import random_weights
core = vs.core
tmp = Path(tempfile.mkdtemp(prefix="gpu_check-"))
atexit.register(shutil.rmtree, tmp, True)  # weights and programs: GBs
files = {"DeOldify": save_keyed_weights("deoldify_stable", tmp / "deoldify.pdparams"),
         "DeepRemaster": save_keyed_weights("deepremaster", tmp / "remaster.pdparams"),
         "DAIN": str(random_weights("DAIN", tmp / "dain.pdparams"))}

def noise_clip(width, height, count, seed=1):
    g = np.random.default_rng(seed)
    data = g.random((count, height, width), dtype=np.float32)
    blank = core.std.BlankClip(format=vs.GRAYS, width=width, height=height, length=count, fpsnum=24, fpsden=1)
    def fill(n, f):
        out = f.copy(); np.copyto(np.asarray(out[0]), data[n]); return out
    return core.std.ModifyFrame(blank, blank, fill)

def run(name, clip, small=False, **kw):
    if name == "DeOldify":
        return msvsr.Colorize(clip, model="DeOldify", weights=files[name], scene_change=False,
                              render_factor=8 if small else 32, **kw)
    if name == "DeepRemaster":  # the small check at a small processing size: the CPU reference stays quick
        return msvsr.Remaster(clip, colorize=True, weights=files[name], scene_change=False,
                              mindim=64 if small else 360, **kw)
    return msvsr.Interpolate(clip, factor=2, weights=files[name], scene_change=False, **kw)

def planes(clip):
    rgb = core.resize.Point(clip, format=vs.RGBS, matrix_in_s="170m") if clip.format.color_family == vs.YUV else clip
    return np.stack([np.stack([np.asarray(f[p]) for p in range(rgb.format.num_planes)]) for f in rgb.frames()])

for name in ("DeOldify", "DeepRemaster", "DAIN"):
    small = noise_clip(96, 64, 4)
    ref = planes(run(name, small, True, backend="dygraph", device="cpu"))
    for backend in ("gpu", "trt"):
        if problems[backend] is not None:
            continue
        out32 = planes(run(name, small, True, backend=backend))
        rel = float(np.linalg.norm(out32 - ref) / np.linalg.norm(ref))
        out16 = planes(run(name, small, True, backend=backend, precision="fp16"))
        mse = float(np.mean((np.clip(out16, 0, 1) - np.clip(out32, 0, 1)) ** 2))
        psnr = 10 * np.log10(1 / mse) if mse > 0 else float("inf")
        ok = rel <= 1e-5 and psnr >= 50
        failed += [] if ok else [f"{name} {backend}"]
        print(f"{name} {backend}: fp32 rel-L2 {rel:.2e} (<= 1e-5), fp16 PSNR {psnr:.1f} dB (>= 50): "
              f"{'ok' if ok else 'FAILED'}")
        for precision in ("fp32", "fp16"):
            big = run(name, noise_clip(854, 480, 12), backend=backend, precision=precision)
            big.get_frame(1)  # first frame/window: export, build, warm-up
            start = time.perf_counter()
            count = 0
            for n in range(6, big.num_frames):
                big.get_frame(n); count += 1
            secs = time.perf_counter() - start
            used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True).stdout.split()[0]
            print(f"{name} {backend} {precision}: 854x480: {count / secs:.2f} output frames/s, "
                  f"GPU memory in use {int(used) / 1024:.1f} GiB")
            del big
print("FAILED: " + ", ".join(failed) if failed else "all GPU checks passed")
sys.exit(1 if failed else 0)
PY
