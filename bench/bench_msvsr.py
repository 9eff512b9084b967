#!/usr/bin/env python3
"""Benchmark PP-MSVSR / PP-MSVSR-L: PaddleGAN-style dygraph vs every vsmsvsr.Engine backend.

Not a test: prints tables. For each model, on one window of ``--frames`` frames of ``--size``:

* ``(a) PaddleGAN``: the network exactly as PaddleGAN's ``PPMSVSRPredictor`` runs it: the layer
  returning ``(aux, out)``, ``paddle.to_tensor`` of the window, ``paddle.no_grad()``, ``outs[-1]``,
  ``.numpy()``, Paddle's default threads (``FLAGS_paddle_num_threads``, 1 by default).
* every requested engine backend (default: every available one except the whole-network CPU
  programs, which hold ~1.6 GB per frame at 180x320 with oneDNN; ask for ``cpu-whole`` /
  ``cpu-plain-whole`` explicitly).
* ``openvino-bf16`` (ask for it): the OpenVINO backend with ``precision="bf16"`` (not fp32).
* ``cpu-before`` (ask for it): the ``cpu`` backend as it was before the compiled deformable
  convolution and the allocator parameters (``VSMSVSR_DEFORM=paddle``, ``VSMSVSR_MALLOC=system``).
* ``cpu-keep-offsets`` (ask for it): the ``cpu`` backend on a network with ``keep_offsets=True``,
  i.e. PaddleGAN's data flow, which keeps stage 2's offsets and masks for the whole window instead
  of recomputing them for stage 3 (vsmsvsr's default): the memory/time trade of that choice.

Every configuration runs in its own process, so "peak RSS" (``ru_maxrss``) is that
configuration's alone (it includes Python, Paddle and the model, ~0.4 GB). Same weights (keyed
test weights by default; ``--weights official`` downloads PaddleGAN's files), same frames
(uniform noise, seed 0) for every configuration; ``rel_l2`` compares each output with (a).

The machine may be shared: ``load`` is the 1-minute load average when a configuration
finished; a load above the number of CPUs means its times are inflated by other processes.

Timing: (a) runs ``--repeat`` windows, the best is reported. An engine first runs one window
("first": includes exporting/loading static programs and building predictors), then ``--repeat``
timed windows (best reported).

FLOPs: counted analytically with forward post-hooks on every ``Conv2D`` and ``DeformConv2D`` during
the first dygraph window (2 x output elements x Cin/groups x kh x kw; a deformable conv adds
8 FLOPs per sampled input value for the bilinear sampling and modulation); elementwise ops,
grid_sample and interpolation are not counted (< 1 %). (a) and ``cpu-keep-offsets`` run
PaddleGAN's data flow; the other configurations also run stage 2's offset heads a second time
(their FLOPs are counted in (a) and added). GFLOP/s = FLOPs per window / seconds per
window; the peak is a float32 numpy matmul (OpenBLAS/MKL, as numpy is built) of 4096 x 4096 with
all the CPUs this process may use, best of 3.

``--profile`` adds, for the segmented CPU backends, the time spent in each static segment (summed
over the window) and in the eager glue between them.

    python bench/bench_msvsr.py                       # both models, 10 x 180x320, repeat 1
    python bench/bench_msvsr.py --models PP-MSVSR --backends baseline,cpu --profile
"""
from __future__ import annotations

import argparse
import collections
import functools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ENGINE_BACKENDS = ("dygraph", "openvino", "openvino-bf16", "cpu", "cpu-before", "cpu-plain", "cpu-whole", "cpu-plain-whole", "cpu-keep-offsets",
                   "gpu", "gpu-fp16", "trt", "trt-fp16")
DEFAULT_SKIP = {"cpu-whole", "cpu-plain-whole", "cpu-keep-offsets", "cpu-before", "openvino-bf16"}
PADDLEGAN_FLOW = {"baseline", "cpu-keep-offsets"}  # configurations that keep stage 2's offsets
KEYED = {"PP-MSVSR": "msvsr", "PP-MSVSR-L": "msvsr_large", "PP-MSVSR-BD": "msvsr"}


# ------------------------------------------------------------------ child side


def _weights(model: str, kind: str):
    if kind == "official":
        return None
    from tests.keyed import model_weights

    return model_weights(KEYED[model])


def _frames(t: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (t, 3, h, w)).astype(np.float32)


def _flop_counter(model):
    """Attach MAC-counting hooks to every Conv2D / DeformConv2D; returns (counter, remove)."""
    import paddle
    from paddle.vision.ops import DeformConv2D

    counts = collections.Counter()
    handles = []
    # stage 2's offset heads: run once more per frame when keep_offsets is False
    heads = {id(sub) for name, sub in model.named_sublayers()
             if name.startswith(("deform_align.stage2_backward.conv_offset", "deform_align.stage2_forward.conv_offset"))}

    def hook(layer, inputs, output):
        w = layer.weight
        macs = int(np.prod(output.shape)) * int(w.shape[1] * w.shape[2] * w.shape[3])
        if isinstance(layer, DeformConv2D):
            counts["dcn_gemm"] += 2 * macs
            # bilinear sampling (4 mul + 3 add) + modulation per sampled input value
            samples = int(output.shape[0] * output.shape[2] * output.shape[3]) * int(inputs[0].shape[1]) \
                * int(w.shape[2] * w.shape[3])
            counts["dcn_sampling"] += 8 * samples
        else:
            counts["conv"] += 2 * macs
            if id(layer) in heads:
                counts["stage2_offset_heads"] += 2 * macs  # part of "conv", not added to the total

    def last_of_head(last, layer, inputs, output):
        # an offset head's last convolution runs as two F.conv2d on its weights (msvsr._offset_logits),
        # not as a layer: counted from the activation before it, (n, C, h, w) -> (n, 27*G, h, w)
        macs = int(np.prod(output.shape)) * int(last.weight.shape[0] * last.weight.shape[2] * last.weight.shape[3])
        counts["conv"] += 2 * macs
        if id(last) in heads:
            counts["stage2_offset_heads"] += 2 * macs

    for layer in model.sublayers():
        if isinstance(layer, (paddle.nn.Conv2D, DeformConv2D)):
            handles.append(layer.register_forward_post_hook(hook))
    for name, head in model.named_sublayers():
        if name.endswith("conv_offset"):
            handles.append(head[-2].register_forward_post_hook(functools.partial(last_of_head, head[-1])))

    def remove():
        for h in handles:
            h.remove()

    return counts, remove


def _child(args) -> dict:
    import paddle

    t, (h, w) = args.frames, args.size
    frames = _frames(t, h, w)
    result: dict = {"model": args.model, "config": args.config}
    weights = _weights(args.model, args.weights)
    times = []
    flops = None
    profile = None
    if args.config == "baseline":
        from vsmsvsr.models import load_model

        model = load_model(args.model, weights, device="cpu")  # PaddleGAN: MSVSR(...), set_dict, eval
        model.keep_offsets = True  # PaddleGAN's data flow
        counts, remove = _flop_counter(model)
        for i in range(args.repeat):
            start = time.perf_counter()
            data_feed_in = paddle.to_tensor(frames[None])
            with paddle.no_grad():
                outs = model(data_feed_in)
                if isinstance(outs, (list, tuple)):
                    outs = outs[-1]
                outs = outs[0].numpy()
            times.append(time.perf_counter() - start)
            if i == 0:
                remove()
                flops = dict(counts)
        out = outs
        result["first_s"] = None
    else:
        from vsmsvsr import engine as engine_mod
        from vsmsvsr.engine import Backend, Engine

        if args.config == "cpu-before":  # the cpu backend as it was: Paddle's deformable conv, glibc defaults
            os.environ["VSMSVSR_DEFORM"] = "paddle"
            os.environ["VSMSVSR_MALLOC"] = "system"
        backend = {
            "cpu-before": "cpu",
            "openvino-bf16": Backend.OpenVINOCPU(threads=args.threads, precision="bf16"),
            "cpu-whole": Backend.PaddleInferenceCPU(threads=args.threads, segmented=False),
            "cpu-plain-whole": Backend.PaddleInferenceCPU(threads=args.threads, onednn=False, segmented=False),
            "gpu-fp16": "gpu", "trt-fp16": "trt",
        }.get(args.config, args.config)
        kwargs = {"fp16": args.config.endswith("fp16")}
        if isinstance(backend, str):
            kwargs["threads"] = args.threads
        if args.config == "cpu-keep-offsets":
            from vsmsvsr.models import load_model

            layer = load_model(args.model, weights, device="cpu")
            layer.keep_offsets = True
            eng = Engine(layer, backend=Backend.PaddleInferenceCPU(threads=args.threads), cache_dir=args.cache)
        else:
            eng = Engine(args.model, weights, backend=backend, cache_dir=args.cache, **kwargs)
        result["backend"] = repr(eng.backend)
        counts = remove = None
        if args.config == "dygraph":
            counts, remove = _flop_counter(eng.model)
        seg_time = collections.Counter()
        if args.profile:
            original = engine_mod.paddle_inference._Predictor.run

            def timed_run(self, arrays):
                start = time.perf_counter()
                try:
                    return original(self, arrays)
                finally:
                    part = self.folder.name.split("-")[0]
                    seg_time[part] += time.perf_counter() - start

            engine_mod.paddle_inference._Predictor.run = timed_run
        start = time.perf_counter()
        out = eng(frames)
        result["first_s"] = time.perf_counter() - start
        if remove is not None:
            remove()
            flops = dict(counts)
        result["exported"], result["reused"] = eng.exported, eng.reused
        for _ in range(args.repeat):
            seg_time.clear()
            start = time.perf_counter()
            out = eng(frames)
            times.append(time.perf_counter() - start)
        if args.profile and seg_time:
            profile = dict(seg_time)
    result["times"] = times
    result["loadavg"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["flops"] = flops
    result["profile"] = profile
    np.save(args.out, np.asarray(out, dtype=np.float32))
    return result


# ------------------------------------------------------------------ parent side


def _matmul_peak(n: int = 4096) -> float:
    a = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(2).standard_normal((n, n)).astype(np.float32)
    a @ b  # warm-up
    best = min(_timed(lambda: a @ b) for _ in range(3))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _run_child(model: str, config: str, args, out_path: Path) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--model", model, "--config", config,
           "--frames", str(args.frames), "--size", f"{args.size[0]}x{args.size[1]}", "--repeat", str(args.repeat),
           "--weights", args.weights, "--out", str(out_path), "--cache", args.cache]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    if args.profile:
        cmd.append("--profile")
    print(f"  running {model} / {config} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        print(f"  {model} / {config} failed (exit {proc.returncode}):\n{tail}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def _rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a64 - b64) / np.linalg.norm(b64))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="PP-MSVSR,PP-MSVSR-L")
    p.add_argument("--frames", type=int, default=10, help="frames per window (default 10)")
    p.add_argument("--size", default="180x320", help="frame size HxW (default 180x320)")
    p.add_argument("--repeat", type=int, default=1, help="timed windows per configuration (default 1)")
    p.add_argument("--backends", default=None,
                   help="comma list of baseline and engine backends: " + ",".join(("baseline",) + ENGINE_BACKENDS)
                   + " (default: baseline and every available one except the whole-network CPU ones)")
    p.add_argument("--threads", type=int, default=None, help="engine threads (default: engine default)")
    p.add_argument("--weights", choices=("keyed", "official"), default="keyed")
    p.add_argument("--cache", default=None, help="static program cache (default: a temporary folder)")
    p.add_argument("--profile", action="store_true", help="time each static segment of segmented CPU backends")
    # child-process arguments
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.size = tuple(int(v) for v in args.size.lower().split("x"))
        assert len(args.size) == 2
    except (ValueError, AssertionError):
        p.error(f"--size must be HxW, got {args.size!r}")
    if args.frames < 1 or args.repeat < 1:
        p.error("--frames and --repeat must be >= 1")

    if args.child:
        print(json.dumps(_child(args)))
        return 0

    from vsmsvsr.engine import available_backends

    problems = available_backends()
    base_of = {"cpu-before": "cpu", "openvino-bf16": "openvino", "cpu-whole": "cpu", "cpu-plain-whole": "cpu-plain", "cpu-keep-offsets": "cpu",
               "gpu-fp16": "gpu", "trt-fp16": "trt"}
    if args.backends:
        configs = [c.strip() for c in args.backends.split(",") if c.strip()]
        bad = [c for c in configs if c not in ("baseline",) + ENGINE_BACKENDS]
        if bad:
            p.error(f"unknown backends {bad}; valid: baseline, {', '.join(ENGINE_BACKENDS)}")
    else:
        configs = ["baseline"] + [c for c in ENGINE_BACKENDS
                                  if c not in DEFAULT_SKIP and problems[base_of.get(c, c)] is None]
    skipped = [c for c in configs if c != "baseline" and problems[base_of.get(c, c)] is not None]
    configs = [c for c in configs if c not in skipped]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    tmp = tempfile.TemporaryDirectory(prefix="bench_msvsr_")
    if args.cache is None:
        args.cache = os.path.join(tmp.name, "static")

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    peak = _matmul_peak()
    import paddle

    t, (h, w) = args.frames, args.size
    print(f"# PP-MSVSR benchmark: {t} frames of {h}x{w} per window, repeat {args.repeat}, weights {args.weights}")
    print(f"# paddle {paddle.__version__}, numpy {np.__version__}, {cpus} CPU(s) usable")
    print(f"# matmul peak (numpy float32 4096^3, {cpus} threads): {peak:.1f} GFLOP/s")
    for name in skipped:
        print(f"# skipped {name}: {problems[base_of.get(name, name)]}")

    rows = []
    profiles = []
    for model in models:
        flops = None
        ref = None
        results = []
        for config in configs:
            out_path = Path(tmp.name) / f"{model}-{config}.npy"
            res = _run_child(model, config, args, out_path)
            if res is None:
                continue
            out = np.load(out_path)
            if config == "baseline":
                ref = out
            res["rel_l2"] = _rel_l2(out, ref) if ref is not None and config != "baseline" else None
            out_path.unlink()
            if res["flops"] and (flops is None or config == "baseline"):
                flops = res["flops"]
            results.append(res)
        base_time = next((min(r["times"]) for r in results if r["config"] == "baseline"), None)
        extra = flops.pop("stage2_offset_heads", 0) if flops else 0
        counted_by = next((r["config"] for r in results if r["flops"]), None)
        if flops and counted_by not in PADDLEGAN_FLOW:  # counted on vsmsvsr's flow: heads ran twice
            extra //= 2
            flops["conv"] -= extra
        total_flops = sum(flops.values()) if flops else None
        for r in results:
            sec = min(r["times"])
            work = None if not total_flops else total_flops + (0 if r["config"] in PADDLEGAN_FLOW else extra)
            gflops = work / sec / 1e9 if work else None
            rows.append([
                model, "(a) PaddleGAN dygraph" if r["config"] == "baseline" else r["config"],
                f"{sec:.2f}", "-" if r["first_s"] is None else f"{r['first_s']:.2f}",
                f"{t / sec:.3f}", "-" if base_time is None else f"{base_time / sec:.2f}x",
                f"{r['maxrss_mb']:.0f}",
                "-" if gflops is None else f"{gflops:.1f}", "-" if gflops is None else f"{100 * gflops / peak:.0f}%",
                "-" if r["rel_l2"] is None else f"{r['rel_l2']:.1e}",
                "-" if r.get("loadavg") is None else f"{r['loadavg']:.1f}",
            ])
            if r.get("profile"):
                profiles.append((model, r["config"], sec, r["profile"]))
        if flops:
            per_frame = total_flops / t / 1e9
            parts = ", ".join(f"{k} {v / total_flops:.1%}" for k, v in sorted(flops.items(), key=lambda kv: -kv[1]))
            print(f"# {model}: {per_frame:.1f} GFLOP per output frame ({parts}); "
                  f"at the matmul peak a window takes >= {total_flops / peak / 1e9:.1f} s")
            print(f"# {model}: recomputing stage 2's offsets for stage 3 (default; not in (a) or "
                  f"cpu-keep-offsets) adds {extra / t / 1e9:.1f} GFLOP per frame (+{extra / total_flops:.1%})")

    header = ["model", "config", "s/window", "first s", "frames/s", "vs (a)", "peak RSS MB", "GFLOP/s",
              "of peak", "rel_l2 vs (a)", "load"]
    _print_table(header, rows)
    for model, config, sec, prof in profiles:
        print(f"\n# {model} / {config}: time per static segment over one window ({sec:.2f} s)")
        inside = sum(prof.values())
        prof_rows = [[k, f"{v:.2f}", f"{v / sec:.0%}"] for k, v in sorted(prof.items(), key=lambda kv: -kv[1])]
        prof_rows.append(["(eager glue: concat, grid_sample, add, lrelu, interpolate, copies)",
                          f"{sec - inside:.2f}", f"{(sec - inside) / sec:.0%}"])
        _print_table(["segment", "s", "share"], prof_rows)
    return 0


def _print_table(header, rows) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    print(" | ".join(h.ljust(wd) for h, wd in zip(header, widths)))
    print("-|-".join("-" * wd for wd in widths))
    for row in rows:
        print(" | ".join(str(x).ljust(wd) for x, wd in zip(row, widths)))


if __name__ == "__main__":
    sys.exit(main())
