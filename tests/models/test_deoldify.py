"""DeOldify port: weight compatibility with PaddleGAN and fidelity against PaddleGAN's golden outputs.

The stable model holds 874 MB of float32 weights: each variant's keyed weights are generated once,
written to disk and dropped; the models loaded from those files are shared by the module.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
import pytest

from tests.keyed import (assert_close_to_golden, expected_shapes, golden, golden_cases, key_rows, load_spec,
                         model_weights, sha256_16, sha256_all)
from vsmsvsr.models import build_model, load_model
from vsmsvsr.models.deoldify import DeOldify
from vsmsvsr.weights import WeightsError

SPEC_OF = {"DeOldify": "deoldify_stable", "DeOldify-artistic": "deoldify_artistic"}  # model -> golden spec
PARAMS = {"DeOldify": 218_479_991, "DeOldify-artistic": 63_767_523}
TRAINABLE = {"DeOldify": 218_222_197, "DeOldify-artistic": 63_646_881}


@dataclass(frozen=True)
class KeyedFile:
    path: Path  # plain state dict saved with paddle.save: the official DeOldify layout
    wrong_checksums: list[str]  # keys whose regenerated weights differ from keys.json's sha256_16
    sha256_all: str


@pytest.fixture(scope="module")
def keyed_files(tmp_path_factory) -> dict[str, KeyedFile]:
    """Keyed weights of both variants, checksummed and saved; the arrays are not kept in memory."""
    folder = tmp_path_factory.mktemp("deoldify_weights")
    files = {}
    for name, spec in SPEC_OF.items():
        sub = load_spec(spec)["submodels"]["generator"]
        weights = model_weights(spec)
        wrong = [k for k in sub["sha256_16"] if sha256_16(weights[k]) != sub["sha256_16"][k]]
        digest = sha256_all(weights, [row[0] for row in sub["keys"]])
        for key in list(weights):  # one array at a time, to bound memory
            weights[key] = paddle.to_tensor(weights[key])
        path = folder / f"{spec}.pdparams"
        paddle.save(weights, str(path))
        del weights
        files[name] = KeyedFile(path, wrong, digest)
    return files


@pytest.fixture(scope="module")
def models(keyed_files) -> dict[str, paddle.nn.Layer]:
    return {name: load_model(name, weights=f.path, device="cpu") for name, f in keyed_files.items()}


@pytest.fixture(scope="module")
def outputs(models):
    """Memoised forward passes: (name, case) -> output as numpy."""
    cache: dict = {}

    def run(name: str, case: str) -> np.ndarray:
        if (name, case) not in cache:
            x = paddle.to_tensor(golden(SPEC_OF[name], case, "main"))
            with paddle.no_grad():
                cache[name, case] = models[name](x).numpy()
        return cache[name, case]

    return run


# ------------------------------------------------------------------ keyed weights and structure


@pytest.mark.parametrize("name", list(SPEC_OF))
def test_keyed_weights_match_checksums(keyed_files, name):
    sub = load_spec(SPEC_OF[name])["submodels"]["generator"]
    assert not keyed_files[name].wrong_checksums, f"regenerated weights differ for {keyed_files[name].wrong_checksums[:5]}"
    assert keyed_files[name].sha256_all == sub["sha256_all"]


@pytest.mark.parametrize("name", list(SPEC_OF))
def test_parameters_and_state_dict_layout_match_paddlegan(name):
    spec = SPEC_OF[name]
    counts = load_spec(spec)["submodels"]["generator"]["counts"]
    model = build_model(name)
    assert not model.training
    params = model.parameters()
    assert sum(int(np.prod(p.shape)) for p in params) == PARAMS[name] == counts["parameters_numel"]
    # BN statistics and the spectral-norm vectors u, v are stored but never trained
    assert sum(int(np.prod(p.shape)) for p in params if not p.stop_gradient) == TRAINABLE[name] \
        == counts["trainable_numel"]
    state = model.state_dict()
    assert len(state) == counts["state_dict_num_keys"]
    assert sum(int(np.prod(v.shape)) for v in state.values()) == counts["state_dict_numel"]
    assert list(state) == [row[0] for row in key_rows(spec)]  # same keys, same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_shapes(spec)


def test_unknown_model_type_is_refused():
    with pytest.raises(ValueError, match=r"DeOldify: model_type must be one of 'stable', 'artistic', got 'photo'"):
        DeOldify("photo")


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("name", list(SPEC_OF))
@pytest.mark.parametrize("case", ["a", "b"])  # a: 64x64; b: 80x48, odd sizes in the decoder
def test_outputs_match_paddlegan_golden(outputs, name, case):
    assert case in golden_cases(SPEC_OF[name])
    assert_close_to_golden(outputs(name, case), golden(SPEC_OF[name], case, "out"), f"{name}/{case} out")


@pytest.mark.parametrize("name", ["DeOldify-artistic"])  # the stable variant: same layers, 3.4x the weights
def test_openvino_compiles_the_whole_model_and_matches_paddlegan_golden(models, outputs, name, tmp_path, caplog):
    """DeOldify as one OpenVINO program (spectral norm, self-attention: matmul, softmax, sum,
    square and sqrt traced as legacy operators), checked when built, within the spec of PaddleGAN's
    golden output and of dygraph."""
    import logging

    from vsmsvsr.engine import LayerRunner, available_backends, choose_backend
    from vsmsvsr.engine import openvino as ov_backend

    if available_backends()["openvino"] is not None:
        pytest.skip(f"OpenVINO cannot run here: {available_backends()['openvino']}")
    x = golden(SPEC_OF[name], "a", "main")  # 64x64 (at 80x48 the check refuses it, see below)
    run = LayerRunner(models[name], choose_backend("openvino"), label=name, cache_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="vsmsvsr.engine"):
        (got,) = run(x)
    assert not run._runner.refused, run._runner.refused
    assert isinstance(run._runner.programs[(x.shape,)], ov_backend.CompiledSegment)
    assert_close_to_golden(got, golden(SPEC_OF[name], "a", "out"), f"{name} on OpenVINO vs PaddleGAN")
    assert_close_to_golden(got, outputs(name, "a"), f"{name} on OpenVINO vs dygraph")


def test_odd_sizes_where_openvino_resizes_differently_are_refused_by_the_check(models, outputs, tmp_path):
    """At 80x48 the decoder resizes (nearest) to odd skip sizes, which OpenVINO computes differently
    (rel-L2 ~1e-2 on the keyed weights): the build-time check refuses the program and Paddle
    Inference gives PaddleGAN's numbers."""
    from vsmsvsr.engine import LayerRunner, available_backends, choose_backend

    if available_backends()["openvino"] is not None:
        pytest.skip(f"OpenVINO cannot run here: {available_backends()['openvino']}")
    x = golden("deoldify_artistic", "b", "main")
    run = LayerRunner(models["DeOldify-artistic"], choose_backend("openvino"), label="DeOldify-artistic",
                      cache_dir=tmp_path)
    (got,) = run(x)
    assert "differs from the eager layer" in run._runner.refused
    assert_close_to_golden(got, golden("deoldify_artistic", "b", "out"), "DeOldify-artistic refused by OpenVINO")


def test_normalised_kernels_follow_the_loaded_weights(models, outputs):
    """Spectral and weight norm divide out the scale of weight_orig / weight_v at every forward."""
    model = models["DeOldify-artistic"]
    state = model.state_dict()
    scaled = ["layers.3.0.0.weight_orig", "layers.5.conv2.3.value.weight_orig", "layers.8.conv.0.weight_v"]
    originals = {k: state[k].numpy() for k in scaled + ["layers.8.conv.0.weight_g"]}
    x = paddle.to_tensor(golden("deoldify_artistic", "b", "main"))
    try:
        for key in scaled:
            state[key].set_value(originals[key] * 4.0)
        with paddle.no_grad():
            rescaled = model(x).numpy()
        state["layers.8.conv.0.weight_g"].set_value(originals["layers.8.conv.0.weight_g"] * 4.0)
        with paddle.no_grad():
            regained = model(x).numpy()
    finally:
        for key, value in originals.items():
            state[key].set_value(value)
    reference = outputs("DeOldify-artistic", "b")
    np.testing.assert_allclose(rescaled, reference, rtol=0, atol=1e-5)
    assert np.abs(regained - reference).max() > 1e-2  # the magnitude g is not normalised away


def test_static_graph_with_dynamic_sizes_matches_golden(models):
    """The exported form (paddle.jit.to_static, any H and W) computes the same as dygraph."""
    from paddle.static import InputSpec

    model = models["DeOldify-artistic"]
    static_forward = paddle.jit.to_static(model.forward, input_spec=[InputSpec([None, 3, None, None], "float32")],
                                          full_graph=True)
    for case in ("a", "b"):
        y = static_forward(paddle.to_tensor(golden("deoldify_artistic", case, "main"))).numpy()
        assert_close_to_golden(y, golden("deoldify_artistic", case, "out"), f"static {case}")


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (3, 64, 64)])
def test_bad_input_shape_is_refused(models, shape):
    with pytest.raises(ValueError, match=r"DeOldify: input must be \(B, 3, H, W\)"):
        models["DeOldify-artistic"](paddle.zeros(shape))


# ------------------------------------------------------------------ loading


def test_weights_of_the_other_variant_are_refused(keyed_files):
    with pytest.raises(WeightsError, match=r"DeOldify weights \(.*deoldify_artistic\.pdparams\).*do not fit this model: "
                                           r"378 missing keys: layers\.0\.4\.0\.conv3\.weight.*"
                                           r"66 unexpected keys: layers\.4\.conv1\.0\.weight_orig.*"
                                           r"102 wrong shapes: layers\.0\.4\.0\.conv1\.weight: file \(64, 64, 3, 3\), "
                                           r"model \(64, 64, 1, 1\)"):
        load_model("DeOldify", weights=keyed_files["DeOldify-artistic"].path)
