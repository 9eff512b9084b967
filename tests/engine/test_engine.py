"""vsmsvsr.engine: every CPU backend matches dygraph within the spec tolerance, the static-program
cache is reused, and bad arguments fail clearly.

PP-MSVSR with the keyed test weights (tests/data/weights_rule.md) on the golden input of case ``b``
(3 frames of 64x72), so that the dygraph backend is also checked against PaddleGAN's own output.
(``build_model``'s random initialisation is not used: its outputs reach 1e6 and are chaotic.)
"""
from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.engine.conftest import MODEL
from tests.keyed import assert_close_to_golden
from vsmsvsr import engine as engine_mod
from vsmsvsr.engine import paddle_inference, segmented
from vsmsvsr.engine import BACKEND_NAMES, Backend, Engine, available_backends


def _export_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "vsmsvsr.engine" and r.levelno >= logging.INFO
            and re.search(r"exported \d+ static program", r.getMessage())]


# ------------------------------------------------------------------ fidelity of each CPU backend

CPU_BACKENDS = {
    "cpu (oneDNN, segmented)": "cpu",
    "cpu-plain (segmented)": "cpu-plain",
    "oneDNN, whole network": Backend.PaddleInferenceCPU(segmented=False),
    "plain, whole network": Backend.PaddleInferenceCPU(onednn=False, segmented=False),
}


@pytest.mark.parametrize("backend", list(CPU_BACKENDS.values()), ids=list(CPU_BACKENDS))
def test_cpu_backend_matches_dygraph(backend, weights, frames, reference, cache):
    eng = Engine(MODEL, weights, backend=backend, cache_dir=cache, threads=2 if isinstance(backend, str) else None)
    assert isinstance(eng.backend, Backend.PaddleInferenceCPU)
    out = eng(frames)
    assert out.shape == reference.shape and out.dtype == np.float32
    assert_close_to_golden(out, reference, f"Engine({eng.backend})")
    # a second call on the same predictors gives the same result
    np.testing.assert_array_equal(eng(frames), out)


def test_dygraph_backend_is_the_model_itself(weights, frames, reference):
    from vsmsvsr.models import load_model

    model = load_model(MODEL, weights, device="cpu")
    with paddle.no_grad():
        _, direct = model(paddle.to_tensor(frames[None]))
    np.testing.assert_array_equal(reference, direct.numpy()[0])


def test_segmented_keeps_mirror_shortcut_exact(weights, frames, cache):
    """An even, mirror-extended window takes MSVSR's flow shortcut in the eager glue; same numbers."""
    mirrored = np.concatenate([frames[:2], frames[:2][::-1]])  # a b b a
    ref = Engine(MODEL, weights, backend="dygraph")(mirrored)
    eng = Engine(MODEL, weights, backend="cpu", cache_dir=cache)
    assert_close_to_golden(eng(mirrored), ref, "segmented, mirrored window")


def test_auto_picks_a_cpu_backend_here(weights, cache):
    problems = available_backends()
    if problems["gpu"] is None:
        pytest.skip("a GPU is available; auto would pick it")
    eng = Engine(MODEL, weights, cache_dir=cache)
    expected = next(n for n in ("openvino", "cpu", "cpu-plain") if problems[n] is None)
    assert eng.backend.name == expected


def test_auto_falls_back_when_a_backend_fails(weights, frames, reference, cache, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("predictor exploded")

    monkeypatch.setattr(paddle_inference, "_Predictor", broken)
    from vsmsvsr.engine import openvino as ov_backend

    monkeypatch.setattr(ov_backend, "compile_program", broken)  # refused, then Paddle Inference: broken
    eng = Engine(MODEL, weights, backend="auto", device="cpu", cache_dir=cache)
    with caplog.at_level(logging.WARNING, logger="vsmsvsr.engine"):
        out = eng(frames)
    assert eng.backend.name == "dygraph"
    np.testing.assert_array_equal(out, reference)
    assert any("falls back" in r.getMessage() and "predictor exploded" in r.getMessage() for r in caplog.records)


def test_explicit_backend_failure_raises(weights, frames, cache, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("predictor exploded")

    monkeypatch.setattr(paddle_inference, "_Predictor", broken)
    eng = Engine(MODEL, weights, backend="cpu", cache_dir=cache)
    with pytest.raises(RuntimeError, match="predictor exploded"):
        eng(frames)
    assert eng.backend.name == "cpu"


def test_parallel_deform_conv_matches_the_layer():
    from paddle.vision.ops import DeformConv2D

    paddle.seed(7)
    layer = DeformConv2D(32, 32, 3, padding=1, deformable_groups=8)
    layer.eval()
    rng = np.random.default_rng(7)
    x = paddle.to_tensor(rng.standard_normal((1, 32, 20, 24)).astype("float32"))
    offset = paddle.to_tensor(rng.normal(0, 4, (1, 8 * 18, 20, 24)).astype("float32"))  # many taps fall outside
    mask = paddle.to_tensor(rng.uniform(0, 1, (1, 8 * 9, 20, 24)).astype("float32"))
    layer.bias.set_value(paddle.to_tensor(rng.standard_normal(32).astype("float32")))  # default init is 0

    class Runner:  # the part of _SegmentedRunner the split convolution uses
        threads = 2
        _pool = None
        pool = segmented._SegmentedRunner.pool

    split = segmented._ParallelDeformConv(layer, Runner())
    assert split.parts == 2
    with paddle.no_grad():
        want, got = layer(x, offset, mask).numpy(), split(x, offset, mask).numpy()
    assert_close_to_golden(got, want, "split deformable conv")
    assert segmented._deform_parts(layer, 3) == 2 and segmented._deform_parts(layer, 1) == 1


# ------------------------------------------------------------------ static program cache


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_static_programs_are_cached_on_disk_and_reused(weights, frames, tmp_path, caplog):
    backend = Backend.PaddleInferenceCPU(segmented=False)
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        first = Engine(MODEL, weights, backend=backend, cache_dir=tmp_path)
        out1 = first(frames)
    assert first.exported == 1 and first.reused == 0
    assert len(_export_records(caplog)) == 1
    files = _snapshot(tmp_path)
    program = [f for f in files if f.endswith(("model.json", "model.pdmodel"))]
    assert len(program) == 1 and any(f.endswith("model.pdiparams") for f in files)
    assert not [p for p in tmp_path.rglob(".export-*")], "temporary export folder left behind"

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        second = Engine(MODEL, weights, backend=backend, cache_dir=tmp_path)
        out2 = second(frames)
    assert second.exported == 0 and second.reused == 1
    assert _export_records(caplog) == []
    assert _snapshot(tmp_path) == files  # nothing rewritten
    np.testing.assert_array_equal(out1, out2)


def test_segmented_programs_are_per_sample_and_shared_across_window_lengths(weights, frames, tmp_path, caplog):
    eng = Engine(MODEL, weights, backend="cpu", cache_dir=tmp_path)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        warnings.simplefilter("always")
        eng(frames)
    assert eng.exported > 10
    assert [str(w.message) for w in caught] == []  # exporting puts no Paddle noise on stderr
    # two lines for the dozen programs of a window: one when exporting starts, one summary
    lines = [r.getMessage() for r in caplog.records if r.name == "vsmsvsr.engine" and r.levelno >= logging.INFO
             and "static program" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("vsmsvsr.Engine: exporting static programs for PP-MSVSR at 72x64")
    assert lines[1].startswith(f"vsmsvsr.Engine: exported {eng.exported} static program(s) for PP-MSVSR at")
    folders = {p.parent.name.split("-")[0] for p in tmp_path.rglob("meta.json")}
    assert {"spynet", "feat_extract", "step.align_stage1", "step.align_stage2_backward",
            "step.realign_stage3_forward", "step.fuse_stage2_forward", "step.fuse_stage1",
            "frame.auxiliary_stage", "frame.upsample"} <= folders
    # deformable convolutions stay with the engine's kernel: no segment holds one; the offset heads
    # and branch convolutions only run inside the step programs (with the glue around them), the
    # x4 layers only inside the per-frame programs
    assert not folders & {"deform_align.stage3_forward", "stage1_align", "upsample2", "aux_upsample2",
                          "deform_align.stage3_forward.conv_offset", "backbone.stage2_forward"}
    # the segments only see single samples of the frame size: a longer window reuses them all
    again = Engine(MODEL, weights, backend="cpu", cache_dir=tmp_path)
    again(np.concatenate([frames, frames[:1]]))
    assert again.exported == 0 and again.reused == eng.exported


def test_cache_key_follows_the_weights(weights, tmp_path):
    from vsmsvsr.models import load_model

    a = Engine(load_model(MODEL, weights, device="cpu"), backend="cpu", cache_dir=tmp_path)
    changed = dict(weights)
    key = "conv_last.bias"
    changed[key] = changed[key] + np.float32(1e-3)
    b = Engine(load_model(MODEL, changed, device="cpu"), backend="cpu", cache_dir=tmp_path)
    same = Engine(load_model(MODEL, weights, device="cpu"), backend="cpu", cache_dir=tmp_path)
    assert a.store.model_dir != b.store.model_dir
    assert a.store.model_dir == same.store.model_dir
    assert a.store.model_dir.parent == tmp_path


def test_failed_export_leaves_nothing_behind(weights, frames, tmp_path, monkeypatch):
    def failing_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(paddle.jit, "save", failing_save)
    eng = Engine(MODEL, weights, backend=Backend.PaddleInferenceCPU(segmented=False), cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        eng(frames)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not [p for p in tmp_path.rglob(".export-*")]


def test_default_cache_location_follows_vsmsvsr_home(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path))
    eng = Engine(MODEL, weights, backend="cpu")
    assert eng.store.model_dir.parent == tmp_path / "static"


# ------------------------------------------------------------------ availability and arguments


@pytest.mark.parametrize("name", ["gpu", "trt"])
def test_unavailable_gpu_backend_raises_before_reading_weights(name, tmp_path):
    problems = available_backends()
    if problems[name] is None:
        pytest.skip(f"{name} is available here")
    missing = tmp_path / "missing.pdparams"  # never opened: the backend is refused first
    with pytest.raises(ValueError, match=rf"vsmsvsr.Engine: backend '{name}' is not available: {name}: ") as err:
        Engine(MODEL, missing, backend=name)
    assert problems[name] in str(err.value)


def test_dygraph_on_a_missing_gpu_raises(tmp_path):
    if available_backends()["gpu"] is None:
        pytest.skip("a GPU is available here")
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Engine: backend 'dygraph' is not available: .*CUDA"):
        Engine(MODEL, tmp_path / "missing.pdparams", backend="dygraph", device="gpu")


def test_model_attributes_are_set_on_the_loaded_model_and_checked(weights, tmp_path):
    eng = Engine(MODEL, weights, backend="dygraph", model_attributes={"keep_offsets": True})
    assert eng.model.keep_offsets is True
    with pytest.raises(ValueError, match="PP-MSVSR has no attribute 'keep_everything'"):
        Engine(MODEL, weights, backend="dygraph", model_attributes={"keep_everything": True})
    layer = Engine(MODEL, weights, backend="dygraph").model
    with pytest.raises(ValueError, match="model_attributes needs a model name"):
        Engine(layer, backend="dygraph", model_attributes={"keep_offsets": True})


def test_unavailable_backend_config_raises(tmp_path):
    if available_backends(3)["gpu"] is None:
        pytest.skip("GPU 3 exists here")
    with pytest.raises(ValueError, match="backend 'gpu' is not available"):
        Engine(MODEL, tmp_path / "missing.pdparams", backend=Backend.PaddleInferenceGPU(device_id=3))


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"backend": "cuda"}, ValueError, "unknown backend 'cuda'; valid: " + ", ".join(BACKEND_NAMES)),
        ({"backend": 3}, TypeError, "backend must be a name"),
        ({"backend": "cpu", "fp16": True}, ValueError, "fp16 is only available with the 'gpu' and 'trt'"),
        ({"backend": "auto", "fp16": True, "device": "cpu"}, ValueError, "fp16=True needs a GPU backend"),
        ({"backend": "cpu", "device": "gpu:0"}, ValueError, "runs on the CPU, but device=gpu:0"),
        ({"backend": "gpu", "device": "cpu"}, ValueError, "runs on a GPU, but device='cpu'"),
        ({"device": "tpu"}, ValueError, "device must be 'cpu', 'gpu' or 'gpu:N'"),
        ({"threads": 0}, ValueError, "threads must be >= 1, got 0"),
        ({"threads": 1.5}, TypeError, "threads must be None or an int"),
        ({"fp16": "yes"}, TypeError, "fp16 must be a bool"),
        ({"cache_dir": 5}, TypeError, "cache_dir must be None or a path"),
        ({"backend": Backend.PaddleInferenceCPU(), "threads": 2}, ValueError, "give threads inside the backend"),
        ({"backend": Backend.PaddleInferenceCPU(threads=0)}, ValueError, "backend threads must be >= 1"),
        ({"model_attributes": ["keep_offsets"]}, TypeError, "model_attributes must be a mapping"),
        ({"model_attributes": {1: True}}, TypeError, "model_attributes must be a mapping"),
    ],
)
def test_bad_arguments_raise_before_reading_weights(kwargs, exc, match, tmp_path):
    with pytest.raises(exc, match=r"^vsmsvsr\.Engine: .*" + match.replace("(", r"\(").replace(")", r"\)")):
        Engine(MODEL, tmp_path / "missing.pdparams", **kwargs)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Engine: unknown model 'PP-MSVSR-XL'"):
        Engine("PP-MSVSR-XL")
    with pytest.raises(TypeError, match=r"^vsmsvsr\.Engine: model must be a model name or a paddle.nn.Layer"):
        Engine(42)
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Engine: weights must be None when model is a Layer"):
        Engine(paddle.nn.Conv2D(3, 3, 3), "x.pdparams")


@pytest.fixture(scope="module")
def dygraph_engine(weights) -> Engine:
    return Engine(MODEL, weights, backend="dygraph")


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.zeros((3, 3, 64, 64), np.float64), ValueError, "frames must be float32 RGB in \\[0, 1\\], got dtype float64"),
        (np.zeros((3, 3, 64, 64), np.uint8), ValueError, "got dtype uint8"),
        (np.zeros((1, 3, 3, 64, 64), np.float32), ValueError, r"frames must have shape \(t, 3, h, w\) with t >= 1, got \(1, 3, 3, 64, 64\)"),
        (np.zeros((3, 1, 64, 64), np.float32), ValueError, r"got \(3, 1, 64, 64\)"),
        (np.zeros((0, 3, 64, 64), np.float32), ValueError, r"t >= 1, got \(0, 3, 64, 64\)"),
        (np.zeros((3, 3, 48, 64), np.float32), ValueError, "frames must be at least 64x64 \\(h x w\\), got 48x64"),
        (np.zeros((3, 3, 64, 63), np.float32), ValueError, "got 64x63"),
        ([[0.0]], TypeError, "frames must be a numpy array"),
    ],
)
def test_bad_frames_raise(dygraph_engine, bad, exc, match):
    with pytest.raises(exc, match=r"^vsmsvsr\.Engine: .*" + match):
        dygraph_engine(bad)


def test_prepare_validates_and_warms_up(weights, cache):
    eng = Engine(MODEL, weights, backend="cpu", cache_dir=cache)
    with pytest.raises(TypeError, match=r"^vsmsvsr\.Engine\.prepare: h must be an int"):
        eng.prepare(3, 64.0, 64)
    eng.prepare(2, 64, 64)
    assert eng.exported + eng.reused > 0


def test_backend_names_and_configs():
    assert Backend.Dygraph().name == "dygraph"
    assert Backend.PaddleInferenceCPU().name == "cpu"
    assert Backend.PaddleInferenceCPU(onednn=False).name == "cpu-plain"
    assert Backend.PaddleInferenceGPU().name == "gpu"
    assert Backend.PaddleInferenceGPU(tensorrt=True).name == "trt"
    assert Backend.OpenVINOCPU().name == "openvino" and Backend.OpenVINOCPU().precision == "fp32"
    assert set(available_backends()) == set(BACKEND_NAMES) - {"auto"}
    with pytest.raises(AttributeError):
        Backend.PaddleInferenceCPU().onednn = False  # frozen


# ------------------------------------------------------------------ run_window: padding and tiles


def _nearest_x4(calls: list):
    def fake_engine(frames: np.ndarray) -> np.ndarray:
        calls.append(frames.shape)
        return np.repeat(np.repeat(frames, 4, axis=2), 4, axis=3)

    return fake_engine


def test_run_window_pads_small_frames_and_crops_back():
    frames = np.random.default_rng(3).uniform(0, 1, (3, 3, 40, 70)).astype(np.float32)
    calls: list = []
    out = engine_mod.run_window(_nearest_x4(calls), frames)
    assert calls == [(3, 3, 64, 70)]
    np.testing.assert_array_equal(out, np.repeat(np.repeat(frames, 4, axis=2), 4, axis=3))


def test_run_window_tiles_cross_fade_to_the_untiled_result():
    frames = np.random.default_rng(4).uniform(0, 1, (2, 3, 100, 150)).astype(np.float32)
    calls: list = []
    out = engine_mod.run_window(_nearest_x4(calls), frames, tile=64, tile_overlap=16)
    assert len(calls) > 1 and all(s[2] <= 64 and s[3] <= 64 for s in calls)
    np.testing.assert_allclose(out, np.repeat(np.repeat(frames, 4, axis=2), 4, axis=3), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ x4 stages in row strips

def test_strip_rows_cover_every_row_once_with_bounded_halo():
    for h, w, pixels, halo in [(404, 720, 128 * 1024, 16), (64, 72, 72 * 20, 16), (1080, 1920, 128 * 1024, 16),
                               (100, 64, 64 * 64, 16), (50, 50, 10, 4)]:
        strips = engine_mod.strip_rows(h, w, pixels, halo)
        own = [r for _, _, a, b in strips for r in range(a, b)]
        assert own == list(range(h))  # disjoint, in order, covering every row
        for top, bottom, start, stop in strips:
            assert max(0, start - halo) == top and min(h, stop + halo) == bottom
            assert stop - start <= max(pixels // w, halo)
        assert len({b - t for t, b, _, _ in strips}) <= 4  # few distinct program shapes
    assert engine_mod.strip_rows(180, 320) == [(0, 180, 0, 180)]  # fits: one strip, no halo


def test_tall_frames_go_through_the_x4_stages_in_strips_with_the_same_result(weights, frames, reference,
                                                                             tmp_path, monkeypatch):
    monkeypatch.setattr(segmented, "STRIP_PIXELS", 72 * 20)  # 64x72 frames: 4 strips of 16 rows
    out = Engine(MODEL, weights, backend="cpu", cache_dir=tmp_path / "a")(frames)
    heights = set(_program_heights(tmp_path / "a", "frame.upsample"))
    assert heights and max(heights) < 64, heights  # the stage really ran on strips
    assert_close_to_golden(out, reference, "Engine(cpu) in strips")
    # the halo is what makes strips exact: without it the strip edges show
    monkeypatch.setattr(segmented, "STRIP_HALO", 1)
    thin = Engine(MODEL, weights, backend="cpu", cache_dir=tmp_path / "b")(frames)
    assert np.abs(thin - reference).max() > 1e-3


def _program_heights(root: Path, part: str) -> list[int]:
    """Input heights of the exported programs of ``part`` (from the folder names' shapes)."""
    heights = []
    for meta in root.rglob("meta.json"):
        name = meta.parent.name
        if name.startswith(part + "-"):
            first = name[len(part) + 1:].split("_")[0]  # e.g. 1x1x3x32x72
            heights.append(int(first.split("x")[-2]))
    return heights
