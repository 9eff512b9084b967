#!/usr/bin/env python3
"""Calibrate each model's memory model (not a test): measure, fit, print the table to paste.

For every (model, backend family) it measures the peak RSS (``ru_maxrss``) of a fresh process
(``tests/memory_probe.py``: fresh program cache, so export and compilation count) at a few sizes
and fits :class:`vsmsvsr.engine.memory.MemoryModel` by least squares (a term that comes out
negative is dropped). Sizes are the network's input:

* PP-MSVSR / PP-MSVSR-L: one Engine call on ``frames`` x ``h`` x ``w`` (a window with its context);
  Upscale adds its own buffers (window cache, tile accumulators) on top, counted analytically.
* DeOldify: the Colorize filter at render_factor 12 and 24 (networks of 192² and 384²; 1 frame).
* DeepRemaster: Remaster(colorize=True) at two mindim values (7 frames per window: 5 + 2 x 1).
* DAIN: Interpolate(factor=2) at two frame sizes (PaddleGAN's padding; 2 frames per call).

    python bench/calibrate_memory.py                       # every model, backends openvino,cpu,dygraph
    python bench/calibrate_memory.py --models PP-MSVSR --backends openvino --json out.json
    python bench/calibrate_memory.py --check              # estimates vs peaks at the tests' sizes

Prints each measurement, the fit and its worst relative error, then the ``MemoryModel`` lines of
``vsmsvsr/models/__init__.py``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: (frames, height, width) of the engine calls fitted for the VSR models: frames within one row
#: strip of the segmented backends (<= 128 K pixels), which is what tiles are.
VSR_POINTS = ((3, 128, 160), (9, 128, 160), (3, 256, 320), (6, 256, 320))
#: Measured and shown, not fitted: frames cut into 2 and 3 row strips, where the per-pixel term
#: over-estimates (the strips' programs hold less than whole frames' would).
VSR_CHECKS = ((2, 512, 320), (2, 1300, 256))
#: DeepRemaster's colorization holds two float32 attention matrices of (t*h*w/64)^2 values: known,
#: not fitted.
ATTENTION = {"DeepRemaster": 2 * 4 / 64**2}


def probe(args: list[str]) -> dict:
    from tests.memory_probe import probe as run_probe

    return run_probe(*args, timeout=3600)


def measure(model: str, backend: str, checks: bool = False) -> list[tuple[int, int, int, int]]:
    """``[(frames, h, w, peak bytes)]`` of ``model`` on ``backend`` (network sizes)."""
    rows = []
    if model.startswith("PP-MSVSR"):
        for frames, h, w in VSR_POINTS + (VSR_CHECKS if checks else ()):
            rows.append((frames, h, w, probe(["engine", model, backend, str(frames), str(h), str(w)])["peak"]))
    elif model.startswith("DeOldify"):
        for factor in (12, 24):
            side = 16 * factor
            peak = probe(["filter", model, backend, "320", "180", "--frames", "2", "--render-factor", str(factor),
                          "--max-memory", "64GB"])["peak"]
            rows.append((1, side, side, peak))
    elif model == "DeepRemaster":
        from vsmsvsr.models.remaster import processing_size

        for mindim in (128, 256):
            pw, ph = processing_size(320, 180, mindim)
            peak = probe(["filter", model, backend, "320", "180", "--frames", "7", "--mindim", str(mindim),
                          "--max-memory", "64GB"])["peak"]
            rows.append((7, ph, pw, peak))
    else:
        from vsmsvsr.models.dain import paddlegan_padding

        for w, h in ((160, 96), (320, 224)):
            ph, pw = h + sum(paddlegan_padding(h)), w + sum(paddlegan_padding(w))
            peak = probe(["filter", model, backend, str(w), str(h), "--frames", "2", "--max-memory", "64GB"])["peak"]
            rows.append((2, ph, pw, peak))
    return rows


def fit(rows: list[tuple[int, int, int, int]], attention: float = 0.0):
    """The :class:`MemoryModel` of ``rows`` by least squares (a term that comes out negative is
    dropped and the rest refitted). ``attention`` is known, not fitted."""
    from vsmsvsr.engine.memory import MemoryModel

    y = np.array([r[3] - attention * float(r[0] * r[1] * r[2]) ** 2 for r in rows], float)
    columns = {"per_frame_pixel": [r[0] * r[1] * r[2] for r in rows]}
    if len({r[0] for r in rows}) > 1:  # sizes and frame counts vary independently
        columns["per_pixel"] = [r[1] * r[2] for r in rows]
    while True:
        names = list(columns)
        matrix = np.stack([np.ones_like(y)] + [np.array(columns[n], float) for n in names], 1)
        coef, *_ = np.linalg.lstsq(matrix, y, rcond=None)
        negative = [n for n, c in zip(names, coef[1:]) if c < 0]
        if not negative or len(names) == 1:
            break
        del columns[min(negative, key=lambda n: coef[1 + names.index(n)])]
    terms = {n: max(float(c), 0.0) for n, c in zip(names, coef[1:])}
    return MemoryModel(float(coef[0]), terms.get("per_frame_pixel", 0.0), terms.get("per_pixel", 0.0), attention)


def literal(model) -> str:
    """``MemoryModel(...)`` as it is written in vsmsvsr/models/__init__.py."""
    parts = [f"{model.base:.4g}", f"{model.per_frame_pixel:.4g}"]
    for name in ("per_pixel", "attention"):
        if getattr(model, name):
            parts.append(f"{name}={getattr(model, name):.4g}")
    return f"MemoryModel({', '.join(parts)})"


def check() -> None:
    """Estimate against measured peak at the sizes of tests/filters/test_memory_budget.py (none of
    them a calibration point), through the filters, as a table."""
    from tests.filters.test_memory_budget import MEASURED

    print("\n## Estimate vs measured peak RSS through the filters (backend auto)\n")
    print("| model | filter arguments | plan | estimate MB | peak MB | error |\n|---|---|---|---:|---:|---:|")
    for model, args in MEASURED:
        result = probe(["filter", model, "auto", *args, "--max-memory", "64GB"])
        error = (result["estimate"] - result["peak"]) / result["peak"]
        print(f"| {model} | {' '.join(args)} | {result['plan'].split(': ', 1)[1].split(', est.')[0]} | "
              f"{result['estimate'] / 1e6:.0f} | {result['peak'] / 1e6:.0f} | {error:+.1%} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="PP-MSVSR,PP-MSVSR-L,DeOldify,DeepRemaster,DAIN")
    ap.add_argument("--backends", default="openvino,cpu,dygraph")
    ap.add_argument("--json", help="also write the measurements and fits here")
    ap.add_argument("--strips", action="store_true",
                    help="VSR models: also measure frames of 2 and 3 row strips (not fitted; 8 and 18 GB)")
    ap.add_argument("--check", action="store_true", help="only compare estimates with measured peaks at the "
                                                          "test sizes (through the filters)")
    args = ap.parse_args()
    if args.check:
        check()
        return
    results = {}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            rows = measure(model, backend, checks=args.strips)
            fitted = fit([r for r in rows if r[:3] not in VSR_CHECKS], ATTENTION.get(model, 0.0))
            print(f"\n## {model} / {backend}\n\n| frames | h | w | peak MB | fit MB | error |\n|---:|---:|---:|---:|---:|---:|")
            worst = 0.0
            for frames, h, w, peak in rows:
                est = fitted.estimate(frames, h, w)
                worst = max(worst, abs(est - peak) / peak) if (frames, h, w) not in VSR_CHECKS else worst
                note = " (not fitted: row strips)" if (frames, h, w) in VSR_CHECKS else ""
                print(f"| {frames} | {h} | {w}{note} | {peak / 1e6:.0f} | {est / 1e6:.0f} | {(est - peak) / peak:+.1%} |")
            print(f"\n{literal(fitted)}  # worst fit error {worst:.1%}", flush=True)
            results[f"{model}/{backend}"] = {"rows": rows, "fit": literal(fitted), "worst": worst}
            if args.json:
                Path(args.json).write_text(json.dumps(results, indent=1))
    print("\n## For vsmsvsr/models/__init__.py\n")
    for key, value in results.items():
        print(f'{key}: {value["fit"]},')


if __name__ == "__main__":
    main()
