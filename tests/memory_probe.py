"""Child process that measures peak memory (peak RSS, ``VmHWM``) of one model call or one filter run.

Used by ``bench/calibrate_memory.py`` (to fit each model's :class:`vsmsvsr.engine.memory.MemoryModel`),
``bench/bench_memory.py`` and ``tests/filters/test_memory_budget.py``. Prints one JSON line on stdout:
``{"peak": bytes, ...}``. Weights are the spec's keyed weights (random for DAIN); every run uses a
fresh program cache (a temporary ``VSMSVSR_HOME``, removed when the probe ends: a DeOldify or
DeepRemaster probe exports 0.5-2 GB), so export and compilation count, as on a user's first run.
Callers use :func:`probe`.

    python -m tests.memory_probe engine PP-MSVSR openvino 6 128 160        # frames, height, width
    python -m tests.memory_probe filter PP-MSVSR openvino 320 180 --frames 12 --max-memory 3GB
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

KEYED = {"PP-MSVSR": "msvsr", "PP-MSVSR-BD": "msvsr", "PP-MSVSR-L": "msvsr_large",
         "DeOldify": "deoldify_stable", "DeOldify-artistic": "deoldify_artistic", "DeepRemaster": "deepremaster"}


ROOT = Path(__file__).resolve().parents[1]


class ProbeFailed(RuntimeError):
    """The probe process failed; ``last_line`` is the last line of its stderr."""

    def __init__(self, args: tuple[str, ...], returncode: int, stderr: str) -> None:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        self.last_line = lines[-1] if lines else f"exit {returncode}"
        super().__init__(f"probe {' '.join(args)} failed (exit {returncode}):\n{stderr[-3000:]}")


def probe(*args: str, timeout: float = 3600) -> dict:
    """Run ``python -m tests.memory_probe ARGS`` in a fresh process with a fresh program cache and
    return its JSON result; raises :class:`ProbeFailed`."""
    env = {k: v for k, v in os.environ.items() if k != "VSMSVSR_HOME"}  # the probe makes its own
    proc = subprocess.run([sys.executable, "-m", "tests.memory_probe", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise ProbeFailed(args, proc.returncode, proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_bytes() -> int:
    """Peak RSS of this process image: ``VmHWM``, not ``ru_maxrss``. Linux carries ``ru_maxrss``
    across ``exec`` from the address space the child was started in, and Python starts children
    with ``vfork``: under a pytest that already holds 4-6 GB, every probe's ``ru_maxrss`` read at
    least that (measured: the suite's probes failed, the same probes alone passed)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def weights_file(model: str, folder: Path) -> str:
    """A weights file for ``model`` in its official layout (keyed; random for DAIN)."""
    if model == "DAIN":
        import paddle

        from tests.media import random_weights

        paddle.seed(0)
        return str(random_weights("DAIN", folder / "dain.pdparams"))
    from tests.keyed import save_keyed_weights

    return save_keyed_weights(KEYED[model], folder / f"{KEYED[model]}.pdparams")


def noise_clip(width: int, height: int, count: int, seed: int = 1):
    """``count`` frames of YUV420P8 noise (a film-like, textured input), 24 fps."""
    import vapoursynth as vs

    core = vs.core
    rng = np.random.default_rng(seed)
    base = rng.integers(16, 235, (height, width), dtype=np.uint8)
    blank = core.std.BlankClip(format=vs.YUV420P8, width=width, height=height, length=count, fpsnum=24, fpsden=1,
                               color=[128, 128, 128])

    def fill(n: int, f):
        out = f.copy()
        np.copyto(np.asarray(out[0]), np.roll(base, 3 * n, axis=1))
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def run_engine(model: str, backend: str, frames: int, height: int, width: int) -> dict:
    from tests.keyed import model_weights
    from vsmsvsr.engine import Engine

    import vapoursynth  # noqa: F401 - the filters' process has it loaded too

    engine = Engine(model, model_weights(KEYED[model]), backend=backend)
    window = np.random.default_rng(0).random((frames, 3, height, width), dtype=np.float32)
    engine(window)
    return {"peak": peak_bytes(), "backend": engine.backend.name}


def city_clip(width: int, height: int, count: int):
    """The first ``count`` frames of cityCC0 (real footage) resized to ``width`` x ``height``."""
    import vapoursynth as vs

    from tests.footage import CITY, source

    clip = source(CITY)[:count]
    return vs.core.resize.Bicubic(clip, width, height)


def run_filter(model: str, backend: str, width: int, height: int, args: argparse.Namespace) -> dict:
    import time

    import vapoursynth as vs

    import vsmsvsr as msvsr

    core = vs.core
    core.max_cache_size = args.cache_mb
    with tempfile.TemporaryDirectory() as tmp:
        weights = weights_file(model, Path(tmp))
        clip = city_clip(width, height, args.frames) if args.city else noise_clip(width, height, args.frames)
        extra = {} if args.max_memory is None else {"max_memory": args.max_memory}
        if args.tile is not None:
            extra["tile"] = args.tile
        if model.startswith("PP-MSVSR"):
            kw = dict(window=args.window, overlap=args.overlap) if args.window else {}
            plan = msvsr.plan(clip, model, backend=backend, **kw, **extra)
            out = msvsr.Upscale(clip, model=model, weights=weights, backend=backend, scene_change=False, **kw, **extra)
        elif model.startswith("DeOldify"):
            kw = dict(render_factor=args.render_factor) if args.render_factor else {}
            plan = msvsr.plan(clip, model, backend=backend, **kw, **extra)
            out = msvsr.Colorize(clip, model=model, weights=weights, backend=backend, scene_change=False, **kw, **extra)
        elif model == "DeepRemaster":
            kw = dict(mindim=args.mindim) if args.mindim else {}
            plan = msvsr.plan(clip, model, backend=backend, colorize=True, **kw, **extra)
            out = msvsr.Remaster(clip, colorize=True, weights=weights, backend=backend, scene_change=False,
                                 **kw, **extra)
        else:
            plan = msvsr.plan(clip, model, backend=backend, **extra)
            out = msvsr.Interpolate(clip, factor=2, weights=weights, backend=backend, scene_change=False, **extra)
        digest = hashlib.sha256()
        lumas = []
        start = time.perf_counter()
        for frame in out.frames():
            for p in range(frame.format.num_planes):
                digest.update(np.asarray(frame[p]).tobytes())
            if args.save:
                lumas.append(np.array(frame[0], copy=True))
        seconds = time.perf_counter() - start
        if args.save:
            np.save(args.save, np.stack(lumas))
    return {"peak": peak_bytes(), "estimate": plan.estimate, "budget": plan.budget, "tile": plan.tile,
            "plan": plan.describe(), "sha256": digest.hexdigest(), "frames": out.num_frames, "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("engine", "filter", "empty"))
    ap.add_argument("model")
    ap.add_argument("backend")
    ap.add_argument("sizes", type=int, nargs="*", help="engine: frames height width; filter: width height")
    ap.add_argument("--frames", type=int, default=4, help="filter: clip length")
    ap.add_argument("--window", type=int, default=0)
    ap.add_argument("--overlap", type=int, default=0)
    ap.add_argument("--max-memory", default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--render-factor", type=int, default=0)
    ap.add_argument("--mindim", type=int, default=0)
    ap.add_argument("--cache-mb", type=int, default=256, help="VapourSynth's frame cache cap")
    ap.add_argument("--city", action="store_true", help="filter: cityCC0 resized instead of noise")
    ap.add_argument("--save", help="filter: write the output's luma planes here (.npy)")
    args = ap.parse_args()
    own_home = None
    if "VSMSVSR_HOME" not in os.environ:
        own_home = os.environ["VSMSVSR_HOME"] = tempfile.mkdtemp(prefix="memory_probe-")
    try:
        result = measure(args)
    finally:
        if own_home is not None:
            shutil.rmtree(own_home, ignore_errors=True)
    print(json.dumps(result), flush=True)


def measure(args: argparse.Namespace) -> dict:
    """What ``args`` asks for: ``{"peak": bytes, ...}``."""
    if args.max_memory is not None and args.max_memory.isdigit():
        args.max_memory = int(args.max_memory)
    if args.mode == "empty":  # what every process pays: the libraries, no model
        import openvino  # noqa: F401
        import vapoursynth  # noqa: F401

        from vsmsvsr._paddle import load_paddle

        load_paddle()
        result = {"peak": peak_bytes()}
    elif args.mode == "engine":
        result = run_engine(args.model, args.backend, *args.sizes)
    else:
        result = run_filter(args.model, args.backend, *args.sizes, args)
    return result


if __name__ == "__main__":
    sys.exit(main())
