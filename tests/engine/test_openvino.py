"""The OpenVINO backend (vsmsvsr/engine/openvino.py): its output matches dygraph within the spec on
the golden input, every compiled program is checked when built, and a wrong one is refused (that
segment then runs through Paddle Inference) with one log line; bf16 is an explicit opt-in."""
from __future__ import annotations

import json
import logging

import numpy as np
import paddle
import pytest

from tests.engine.conftest import MODEL
from tests.keyed import assert_close_to_golden, golden
from vsmsvsr.engine import Backend, Engine, LayerRunner, available_backends, choose_backend
from vsmsvsr.engine import openvino as ov_backend
from vsmsvsr.engine import programs

pytestmark = pytest.mark.skipif(available_backends()["openvino"] is not None,
                                reason=f"OpenVINO cannot run here: {available_backends()['openvino']}")


def _compiled_outputs_changed(monkeypatch, change) -> None:
    """Every program OpenVINO compiles from now on returns ``change(output)``: a converter that is
    silently wrong."""
    real = ov_backend.compile_program

    class Changed:
        def __init__(self, inner):
            self.inner = inner

        def run(self, arrays):
            return [change(o) for o in self.inner.run(arrays)]

    monkeypatch.setattr(ov_backend, "compile_program", lambda *a, **k: Changed(real(*a, **k)))


def _ov_segments(eng: Engine) -> list:
    return [p for p in eng._runner.predictors.values() if isinstance(p, ov_backend.CompiledSegment)]


def test_openvino_matches_dygraph_and_paddlegan(weights, frames, reference, cache, caplog):
    eng = Engine(MODEL, weights, backend="openvino", cache_dir=cache)
    assert isinstance(eng.backend, Backend.OpenVINOCPU)
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        out = eng(frames)
    assert_close_to_golden(out, reference, "Engine(openvino)")
    assert_close_to_golden(out[None], golden("msvsr", "b", "out"), "Engine(openvino) vs PaddleGAN")
    # most of the network really runs on OpenVINO: every segment but SPyNet (grid_sample cannot be
    # exported as a legacy program by Paddle 3.3), and the refusal is said once, naming the segment
    assert len(_ov_segments(eng)) >= 10, eng._runner.refused
    assert set(eng._runner.refused) <= {"spynet"}
    refusals = [r.getMessage() for r in caplog.records if "OpenVINO refused" in r.getMessage()]
    assert len(refusals) == len(eng._runner.refused)
    np.testing.assert_array_equal(eng(frames), out)  # the same compiled programs, the same numbers


def test_a_wrong_compiled_program_is_refused_and_paddle_inference_runs_it(weights, frames, reference, tmp_path,
                                                                         monkeypatch, caplog):
    """A converter that silently changes the numbers (as paddle2onnx's LeakyReLU slopes did) is
    caught by the build-time check: no wrong frame is ever produced."""
    _compiled_outputs_changed(monkeypatch, lambda o: o * 1.001)  # rel-L2 1e-3: plausible, wrong
    eng = Engine(MODEL, weights, backend="openvino", cache_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        out = eng(frames)
    assert not _ov_segments(eng)
    assert eng._runner.refused and all("rel-L2" in why for name, why in eng._runner.refused.items()
                                       if name != "spynet")
    assert_close_to_golden(out, reference, "openvino with every program refused")
    msgs = [r.getMessage() for r in caplog.records if "OpenVINO refused" in r.getMessage()]
    assert any("frame.upsample" in m and "differs from the eager layer" in m for m in msgs)


def test_a_layer_runs_on_openvino_or_is_refused_whole(tmp_path, monkeypatch, caplog):
    """LayerRunner on openvino: a layer OpenVINO compiles gives the eager numbers; a wrong program
    is refused and the layer runs on Paddle Inference, with the same numbers."""
    paddle.seed(3)
    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3, padding=1), paddle.nn.LeakyReLU(0.2),
                                 paddle.nn.Conv2D(8, 12, 3, padding=1), paddle.nn.PixelShuffle(2))
    layer.eval()
    x = np.random.default_rng(1).random((1, 3, 20, 24), dtype=np.float32)
    with paddle.no_grad():
        want = layer(paddle.to_tensor(x)).numpy()
    run = LayerRunner(layer, choose_backend("openvino"), label="toy", cache_dir=tmp_path / "a")
    (got,) = run(x)
    assert isinstance(run._runner.programs[(x.shape,)], ov_backend.CompiledSegment)  # pixel_shuffle rewritten
    assert_close_to_golden(got, want, "toy layer on OpenVINO")

    _compiled_outputs_changed(monkeypatch, np.zeros_like)
    run = LayerRunner(layer, choose_backend("openvino"), label="toy", cache_dir=tmp_path / "b")
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        (got,) = run(x)
    assert run._runner.programs[(x.shape,)] is None and "rel-L2" in run._runner.refused
    assert_close_to_golden(got, want, "toy layer refused by OpenVINO")
    assert sum("OpenVINO refused toy" in r.getMessage() for r in caplog.records) == 1


def test_pixel_shuffle_rewrite_is_exact():
    x = paddle.to_tensor(np.random.default_rng(2).random((2, 36, 5, 7), dtype=np.float32))
    want = paddle.nn.functional.pixel_shuffle(x, 3).numpy()
    with programs._legacy_tracing():
        got = paddle.nn.PixelShuffle(3)(x).numpy()
    np.testing.assert_array_equal(got, want)
    assert paddle.nn.functional.pixel_shuffle.__name__ == "pixel_shuffle"  # restored


def test_probe_input_is_deterministic_and_rel_l2_catches_nan():
    a = ov_backend.probe_inputs("x", ((1, 3, 4, 4),))
    b = ov_backend.probe_inputs("x", ((1, 3, 4, 4),))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], ov_backend.probe_inputs("y", ((1, 3, 4, 4),))[0])
    ok = np.ones((2, 2), np.float32)
    assert ov_backend.rel_l2([ok], [ok]) == 0
    assert ov_backend.rel_l2([ok * np.nan], [ok]) == float("inf")
    assert ov_backend.rel_l2([ok[:1]], [ok]) == float("inf")


def test_bf16_is_opt_in_and_validated(weights, frames, reference, cache):
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Engine: precision must be one of 'fp32', 'bf16', 'fp16', "
                                         r"got 'int8'"):
        Engine(MODEL, weights, precision="int8")
    with pytest.raises(ValueError, match=r"precision='bf16' is only available with the 'openvino' backend, "
                                         r"not with 'cpu'"):
        Engine(MODEL, weights, backend="cpu", precision="bf16")
    with pytest.raises(ValueError, match=r"fp16=True contradicts precision='bf16'"):
        Engine(MODEL, weights, fp16=True, precision="bf16")
    with pytest.raises(ValueError, match=r"OpenVINOCPU precision must be 'fp32' or 'bf16', got 'fp16'"):
        Engine(MODEL, weights, backend=Backend.OpenVINOCPU(precision="fp16"))
    # fp32 is what auto gives; bf16 only when asked for
    assert Engine(MODEL, weights, cache_dir=cache).backend == Backend.OpenVINOCPU()
    problem = ov_backend.openvino_problem("bf16")
    if problem is not None:
        with pytest.raises(ValueError, match="bf16"):
            Engine(MODEL, weights, precision="bf16", cache_dir=cache)
        return
    eng = Engine(MODEL, weights, precision="bf16", cache_dir=cache)
    assert eng.backend == Backend.OpenVINOCPU(precision="bf16")
    out = eng(frames)
    err = float(np.linalg.norm(out - reference) / np.linalg.norm(reference))
    assert 1e-6 < err < 5e-2  # really bf16 (not fp32), and close


def test_every_msvsr_segment_runs_on_openvino_and_a_second_engine_exports_nothing(weights, frames, reference,
                                                                                    cache, monkeypatch):
    """SPyNet and the steps between deformable convolutions (flow warps, tanh, sigmoid: Paddle 3.3
    traces them only into PIR programs; they are written as legacy operators) compile on
    OpenVINO, nothing is refused; a later engine reads everything from the cache."""
    first = Engine(MODEL, weights, backend="openvino", cache_dir=cache)
    first(frames)
    assert first._runner.refused == {}
    assert any(part == "spynet" for part, _ in first._runner.predictors)
    assert any(part.startswith("step.align_") for part, _ in first._runner.predictors)

    def no_export(*args, **kwargs):
        raise AssertionError("paddle.jit.save called with a warm cache")

    monkeypatch.setattr(paddle.jit, "save", no_export)
    eng = Engine(MODEL, weights, backend="openvino", cache_dir=cache)
    assert_close_to_golden(eng(frames), reference, "openvino from the cache")
    assert eng.exported == 0 and eng._runner.refused == {}


class _Gram(paddle.nn.Layer):
    """A layer with ``paddle.cos``, which Paddle 3.3 cannot trace into a legacy program (and the
    legacy tracing does not rewrite: no model uses it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1)

    def forward(self, x):
        return paddle.cos(self.conv(x))


def test_a_refused_legacy_export_is_remembered(tmp_path, monkeypatch, caplog):
    """A layer Paddle cannot export as a legacy program runs on Paddle Inference, and a later
    runner neither traces it again nor exports anything."""
    paddle.seed(4)
    layer = _Gram()
    layer.eval()
    x = np.random.default_rng(2).random((1, 3, 12, 10), dtype=np.float32)
    with paddle.no_grad():
        want = layer(paddle.to_tensor(x)).numpy()
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        (got,) = LayerRunner(layer, choose_backend("openvino"), label="gram", cache_dir=tmp_path)(x)
    assert_close_to_golden(got, want, "gram layer refused by OpenVINO")
    assert list(tmp_path.rglob("*.refused"))
    assert any("OpenVINO refused gram" in r.getMessage() and "cos()" in r.getMessage() for r in caplog.records)

    def no_export(*args, **kwargs):
        raise AssertionError("paddle.jit.save called with a warm cache")

    monkeypatch.setattr(paddle.jit, "save", no_export)
    again = LayerRunner(layer, choose_backend("openvino"), label="gram", cache_dir=tmp_path)
    (got,) = again(x)
    assert_close_to_golden(got, want, "gram layer from the cache")
    assert again.exported == 0 and "cos()" in again._runner.refused


def test_a_failed_legacy_trace_leaves_nothing_behind_in_paddles_tracer(tmp_path):
    """Paddle's legacy tracer keeps the parameters of a failed trace under ``id(program)``; a later
    program at the same address inherited them and its export failed with a KeyError naming one
    of them (seen in long processes, such as the test suite's CI run). The store removes them."""
    from paddle.jit.dy2static.program_translator import ProgramTranslator

    recorder = ProgramTranslator.get_instance()._params_recorder.params_dict
    before = set(recorder)
    paddle.seed(8)
    layer = _Gram()
    layer.eval()
    store = programs._ProgramStore(tmp_path, "gram", "0" * 16)
    with pytest.raises(TypeError):
        store.get("whole", layer, [(1, 3, 12, 10)], legacy=True)
    assert set(recorder) == before


def _counting(monkeypatch, name: str) -> list:
    """Record the calls of ``ov_backend.<name>`` (still calling it)."""
    calls: list = []
    real = getattr(ov_backend, name)
    monkeypatch.setattr(ov_backend, name, lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_a_failed_check_is_remembered_and_the_refused_program_removed(tmp_path, monkeypatch, caplog):
    """A program the check refused (as DeOldify's at odd sizes is) is refused again by every later
    engine without exporting, compiling or checking it; its legacy program, which nothing else
    reads, is removed, and ``clear`` removes the record."""
    paddle.seed(5)
    layer = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3, padding=1), paddle.nn.Tanh())
    layer.eval()
    x = np.random.default_rng(3).random((1, 3, 12, 16), dtype=np.float32)
    with paddle.no_grad():
        want = layer(paddle.to_tensor(x)).numpy()
    _compiled_outputs_changed(monkeypatch, lambda o: o + 0.01)
    first = LayerRunner(layer, choose_backend("openvino"), label="tanh", cache_dir=tmp_path)
    (got,) = first(x)
    assert "rel-L2" in first._runner.refused
    assert_close_to_golden(got, want, "refused layer on Paddle Inference")
    (record,) = tmp_path.rglob("*.openvino-*.refused")
    assert not list(tmp_path.rglob("whole.legacy-*/model.pdmodel"))  # the refused program is gone

    compiles = _counting(monkeypatch, "compile_program")
    eager = _counting(monkeypatch, "_EagerRunner")
    monkeypatch.setattr(paddle.jit, "save", lambda *a, **k: pytest.fail("exported with a warm cache"))
    again = LayerRunner(layer, choose_backend("openvino"), label="tanh", cache_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        (got_again,) = again(x)
    np.testing.assert_array_equal(got_again, got)
    assert compiles == [] and eager == [] and again.exported == 0
    assert "rel-L2" in again._runner.refused and "(remembered)" in again._runner.refused
    assert any("OpenVINO refused tanh" in r.getMessage() for r in caplog.records)
    programs.clear(tmp_path)
    assert not record.exists()


def test_an_operator_openvino_cannot_convert_is_remembered(tmp_path, monkeypatch):
    """OpenVINO's Paddle frontend has no conv3d (DeepRemaster): refused once, remembered."""
    paddle.seed(6)
    layer = paddle.nn.Conv3D(2, 3, 3, padding=1)
    layer.eval()
    x = np.random.default_rng(4).random((1, 2, 3, 8, 8), dtype=np.float32)
    with paddle.no_grad():
        want = layer(paddle.to_tensor(x)).numpy()
    first = LayerRunner(layer, choose_backend("openvino"), label="c3d", cache_dir=tmp_path)
    (got,) = first(x)
    assert "conv3d" in first._runner.refused, first._runner.refused
    assert_close_to_golden(got, want, "conv3d on Paddle Inference")
    assert len(list(tmp_path.rglob("*.openvino-*.refused"))) == 1
    compiles = _counting(monkeypatch, "compile_program")
    again = LayerRunner(layer, choose_backend("openvino"), label="c3d", cache_dir=tmp_path)
    np.testing.assert_array_equal(again(x)[0], got)
    assert compiles == [] and "conv3d" in again._runner.refused


def test_a_failure_that_may_pass_next_time_is_not_remembered(tmp_path, monkeypatch):
    """Running out of memory while compiling says nothing about the program: the next engine tries."""
    paddle.seed(7)
    layer = paddle.nn.Conv2D(3, 4, 3, padding=1)
    layer.eval()
    x = np.random.default_rng(5).random((1, 3, 10, 10), dtype=np.float32)

    def out_of_memory(*args, **kwargs):
        raise MemoryError("std::bad_alloc")

    with monkeypatch.context() as m:
        m.setattr(ov_backend, "compile_program", out_of_memory)
        refused = LayerRunner(layer, choose_backend("openvino"), label="oom", cache_dir=tmp_path)
        (got,) = refused(x)
    assert "MemoryError" in refused._runner.refused and not list(tmp_path.rglob("*.refused"))
    again = LayerRunner(layer, choose_backend("openvino"), label="oom", cache_dir=tmp_path)
    assert_close_to_golden(again(x)[0], got, "compiled after a failure")
    assert isinstance(again._runner.programs[(x.shape,)], ov_backend.CompiledSegment)


def test_a_passed_check_is_remembered_with_the_compiled_program(weights, frames, tmp_path, monkeypatch):
    """The first process compiles and checks each segment; a later one loads the compiled program
    and the remembered pass (keyed by OpenVINO's version, precision, threads and CPU) without
    running the eager layer again, and computes the same numbers. Without the record it checks."""
    first = Engine(MODEL, weights, backend="openvino", cache_dir=tmp_path)
    want = first(frames)
    records = sorted(tmp_path.rglob("checked-*.json"))
    assert len(records) == len(_ov_segments(first)) >= 10
    assert all(json.loads(r.read_text())["rel_l2"] <= ov_backend.CHECK_TOLERANCE for r in records)

    probes = []
    real_eager = ov_backend._EagerRunner
    monkeypatch.setattr(ov_backend, "_EagerRunner", lambda *a: probes.append(a) or real_eager(*a))
    again = Engine(MODEL, weights, backend="openvino", cache_dir=tmp_path)
    np.testing.assert_array_equal(again(frames), want)
    assert probes == [] and len(_ov_segments(again)) == len(_ov_segments(first))

    for r in records:
        r.unlink()
    checked = Engine(MODEL, weights, backend="openvino", cache_dir=tmp_path)
    np.testing.assert_array_equal(checked(frames), want)
    assert len(probes) == len(records)
