"""MSVSR port: weight compatibility with PaddleGAN and fidelity against PaddleGAN's golden outputs."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

import vsmsvsr.weights as wmod
from tests.keyed import (assert_close_to_golden, expected_shapes, golden, golden_cases, key_rows, load_spec,
                         model_weights, sha256_16, sha256_all)
from vsmsvsr.models import MODEL_SPECS, build_model, list_models, load_model
from vsmsvsr.weights import WeightsError

SPEC_OF = {"PP-MSVSR": "msvsr", "PP-MSVSR-L": "msvsr_large"}  # model name -> golden spec
PARAMS = {"PP-MSVSR": 1_453_607, "PP-MSVSR-L": 7_417_197}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory) -> dict[str, str]:
    """Keyed weights of each model, saved with paddle.save in the official layout {'generator': sd}."""
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name, spec in SPEC_OF.items():
        path = folder / f"{spec}.pdparams"
        paddle.save({"generator": {k: paddle.to_tensor(v) for k, v in model_weights(spec).items()}}, str(path))
        files[name] = str(path)
    return files


@pytest.fixture(scope="module")
def models(weight_files) -> dict[str, paddle.nn.Layer]:
    return {name: load_model(name, weights=path, device="cpu") for name, path in weight_files.items()}


@pytest.fixture(scope="module")
def outputs(models):
    """Memoised forward passes: (name, case) -> (aux, out, flow) as numpy."""
    cache: dict = {}

    def run(name: str, case: str):
        if (name, case) not in cache:
            model = models[name]
            x = paddle.to_tensor(golden(SPEC_OF[name], case, "main"))
            with paddle.no_grad():
                aux, out = model(x)
                flow = model.spynet(x[:, 0], x[:, 1])
            cache[name, case] = aux.numpy(), out.numpy(), flow.numpy()
        return cache[name, case]

    return run


# ------------------------------------------------------------------ keyed weights and structure


@pytest.mark.parametrize("spec", ["msvsr", "msvsr_large"])
def test_keyed_weights_match_checksums(spec):
    sub = load_spec(spec)["submodels"]["generator"]
    weights = model_weights(spec)
    wrong = [k for k in sub["sha256_16"] if sha256_16(weights[k]) != sub["sha256_16"][k]]
    assert not wrong, f"regenerated weights differ for {wrong[:5]}"
    assert sha256_all(weights, [row[0] for row in sub["keys"]]) == sub["sha256_all"]


@pytest.mark.parametrize("name", ["PP-MSVSR", "PP-MSVSR-L"])
def test_parameters_and_state_dict_layout_match_paddlegan(name):
    spec = SPEC_OF[name]
    model = build_model(name)
    assert not model.training
    n_params = sum(int(np.prod(p.shape)) for p in model.parameters())
    assert n_params == PARAMS[name] == load_spec(spec)["submodels"]["generator"]["counts"]["parameters_numel"]
    state = model.state_dict()
    assert len(state) == load_spec(spec)["submodels"]["generator"]["counts"]["state_dict_num_keys"]
    assert list(state) == [row[0] for row in key_rows(spec)]  # same keys, same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_shapes(spec)
    # the normalisation constants are buffers saved with the weights
    np.testing.assert_array_equal(state["spynet.mean"].numpy().ravel(), np.float32([0.485, 0.456, 0.406]))
    np.testing.assert_array_equal(state["spynet.std"].numpy().ravel(), np.float32([0.229, 0.224, 0.225]))


def test_bd_variant_is_the_pp_msvsr_architecture():
    assert MODEL_SPECS["PP-MSVSR-BD"].weights == "PP-MSVSR-BD"
    assert list(build_model("PP-MSVSR-BD").state_dict()) == [row[0] for row in key_rows("msvsr")]
    assert [m for m in list_models() if m.startswith("PP-MSVSR")] == ["PP-MSVSR", "PP-MSVSR-L", "PP-MSVSR-BD"]


def test_building_touches_neither_network_nor_disk(monkeypatch):
    def forbidden(*_, **__):
        raise AssertionError("network or weight file access while building a model")

    monkeypatch.setattr(wmod, "fetch", forbidden)
    monkeypatch.setattr(wmod, "load_state_dict", forbidden)
    monkeypatch.setattr("urllib.request.urlopen", forbidden)
    monkeypatch.setattr("paddle.load", forbidden)
    for name in list_models():
        build_model(name)


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("name", ["PP-MSVSR", "PP-MSVSR-L"])
@pytest.mark.parametrize("case", ["a", "b"])
def test_outputs_match_paddlegan_golden(outputs, name, case):
    assert case in golden_cases(SPEC_OF[name])
    aux, out, flow = outputs(name, case)
    spec = SPEC_OF[name]
    assert_close_to_golden(flow, golden(spec, case, "flow"), f"{name}/{case} flow")
    assert_close_to_golden(aux, golden(spec, case, "aux"), f"{name}/{case} aux")
    assert_close_to_golden(out, golden(spec, case, "out"), f"{name}/{case} out")


def test_return_aux_false_gives_identical_main_output(models, outputs):
    model = models["PP-MSVSR"]
    x = paddle.to_tensor(golden("msvsr", "b", "main"))
    model.return_aux = False
    try:
        with paddle.no_grad():
            out = model(x)
    finally:
        model.return_aux = True
    assert isinstance(out, paddle.Tensor)
    np.testing.assert_array_equal(out.numpy(), outputs("PP-MSVSR", "b")[1])


@pytest.mark.parametrize("name", ["PP-MSVSR", "PP-MSVSR-L"])
def test_recomputed_stage2_offsets_give_paddlegans_output_bit_for_bit(models, outputs, name):
    """keep_offsets=False (default) recomputes stage 2's offset/mask pairs for stage 3 instead of
    keeping them for the window; keep_offsets=True is PaddleGAN's data flow. Same bits either way."""
    model = models[name]
    assert model.keep_offsets is False
    x = paddle.to_tensor(golden(SPEC_OF[name], "a", "main"))
    t = x.shape[1]
    calls = {"stage2_backward": 0, "stage2_forward": 0}
    originals = {}
    for branch in calls:
        align = model.deform_align[branch]
        originals[branch] = align.offsets

        def counted(*args, _branch=branch, _inner=align.offsets):
            calls[_branch] += 1
            return _inner(*args)

        align.offsets = counted
    try:
        model.keep_offsets = True
        with paddle.no_grad():
            aux_kept, out_kept = model(x)
        kept_calls = dict(calls)
    finally:
        model.keep_offsets = False
        for branch in calls:
            del model.deform_align[branch].offsets
    # stage 2 aligns t-1 frames per direction; the default run (outputs()) computed them twice
    assert kept_calls == {"stage2_backward": t - 1, "stage2_forward": t - 1}
    aux, out, _ = outputs(name, "a")
    np.testing.assert_array_equal(out_kept.numpy(), out)
    np.testing.assert_array_equal(aux_kept.numpy(), aux)


def test_default_run_recomputes_each_stage2_pair_once(models):
    model = models["PP-MSVSR"]
    x = paddle.to_tensor(np.random.default_rng(5).uniform(0, 1, (1, 4, 3, 64, 64)).astype("float32"))
    calls = []
    align = model.deform_align["stage2_forward"]
    inner = align.offsets
    align.offsets = lambda *args: calls.append(1) or inner(*args)
    try:
        with paddle.no_grad():
            model(x)
    finally:
        del align.offsets
    assert len(calls) == 2 * (4 - 1)  # once in stage 2, once more when stage 3 needs the pair


def test_mirror_shortcut_is_exact_and_saves_a_flow_pass(models):
    model = models["PP-MSVSR"]
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0, 1, (2, 1, 1, 3, 64, 64)).astype("float32")
    x = paddle.to_tensor(np.concatenate([a, b, b, a], axis=1))  # t=4, mirror-extended
    calls = []
    spynet_forward = model.spynet.forward
    model.spynet.forward = lambda *args: calls.append(1) or spynet_forward(*args)
    try:
        with paddle.no_grad():
            _, with_shortcut = model(x)
            shortcut_calls = len(calls)
            model.check_mirror = False
            _, without = model(x)
    finally:
        model.check_mirror = True
        del model.spynet.forward
    assert shortcut_calls == 1 and len(calls) == 3  # one spynet pass instead of two
    np.testing.assert_array_equal(with_shortcut.numpy(), without.numpy())
    assert not model._is_mirror_extended(paddle.to_tensor(np.concatenate([a, b, a, b], axis=1)))


def test_single_frame_runs_without_flow(models):
    x = paddle.to_tensor(np.random.default_rng(3).uniform(0, 1, (1, 1, 3, 64, 64)).astype("float32"))
    with paddle.no_grad():
        aux, out = models["PP-MSVSR"](x)
    assert aux.shape == out.shape == [1, 1, 3, 256, 256]
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("shape", [(1, 2, 3, 63, 64), (1, 2, 3, 64, 32), (2, 3, 64, 64), (1, 2, 1, 64, 64)])
def test_bad_input_shape_is_refused(models, shape):
    with pytest.raises(ValueError, match=r"MSVSR: (frames must be at least 64x64|input must be \(n, t, 3, h, w\))"):
        models["PP-MSVSR"](paddle.zeros(shape))


# ------------------------------------------------------------------ loading


def test_plain_and_in_memory_state_dicts_load(tmp_path, models):
    weights = model_weights("msvsr")
    plain = tmp_path / "plain.pdparams"
    paddle.save(weights, str(plain))
    reference = models["PP-MSVSR"].state_dict()
    for source in (str(plain), weights, {"generator": weights}):
        state = load_model("PP-MSVSR", weights=source).state_dict()
        assert all(np.array_equal(state[k].numpy(), reference[k].numpy()) for k in reference)


def test_weights_of_another_model_are_refused(weight_files):
    with pytest.raises(WeightsError, match=r"PP-MSVSR-L weights .*do not fit.*missing keys.*wrong shapes"):
        load_model("PP-MSVSR-L", weights=weight_files["PP-MSVSR"])


def test_missing_extra_and_misshaped_keys_are_refused():
    weights = model_weights("msvsr")
    missing = {k: v for k, v in weights.items() if k != "conv_last.bias"}
    with pytest.raises(WeightsError, match=r"1 missing keys: conv_last\.bias"):
        load_model("PP-MSVSR", weights={"generator": missing})
    with pytest.raises(WeightsError, match=r"1 unexpected keys: extra\.weight"):
        load_model("PP-MSVSR", weights={**weights, "extra.weight": np.zeros(3, "float32")})
    misshaped = {**weights, "conv_last.weight": np.zeros((3, 32, 1, 1), "float32")}
    with pytest.raises(WeightsError, match=r"1 wrong shapes: conv_last\.weight: file \(3, 32, 1, 1\), model \(3, 32, 3, 3\)"):
        load_model("PP-MSVSR", weights=misshaped)


def test_arguments_are_validated_before_weights_are_touched(monkeypatch):
    def forbidden(*_, **__):
        raise AssertionError("weights touched before argument validation")

    monkeypatch.setattr(wmod, "fetch", forbidden)
    monkeypatch.setattr(wmod, "load_state_dict", forbidden)
    with pytest.raises(ValueError, match=r"vsmsvsr\.load_model: unknown model 'MSVSR'; valid: PP-MSVSR, PP-MSVSR-L, PP-MSVSR-BD"):
        load_model("MSVSR")
    with pytest.raises(ValueError, match=r"did you mean 'PP-MSVSR'"):
        load_model("pp-msvsr")
    with pytest.raises(ValueError, match=r"vsmsvsr\.build_model: unknown model"):
        build_model("DeOldify-photo")
    with pytest.raises(ValueError, match=r"vsmsvsr\.load_model: device must be 'cpu', 'gpu' or 'gpu:N', got 'tpu'"):
        load_model("PP-MSVSR", device="tpu")
    with pytest.raises(TypeError, match=r"vsmsvsr\.load_model: weights must be None, a file path or a state dict"):
        load_model("PP-MSVSR", weights=42)
    if not paddle.device.is_compiled_with_cuda():
        with pytest.raises(ValueError, match=r"no CUDA support; install paddlepaddle-gpu"):
            load_model("PP-MSVSR", device="gpu:0")


def test_unreadable_file_is_a_weights_error(tmp_path):
    junk = tmp_path / "junk.pdparams"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(WeightsError, match=r"not a \.pdparams file"):
        load_model("PP-MSVSR", weights=junk)
    with pytest.raises(WeightsError, match=r"no such file"):
        load_model("PP-MSVSR", weights=tmp_path / "absent.pdparams")


@pytest.mark.parametrize("name", list(SPEC_OF))
def test_the_program_forms_of_the_stages_compute_the_same_images_and_features(models, name):
    """What the engine compiles (convolutions of shuffled tensors as convolutions before the
    shuffle, convolutions of concatenations one per part) is the eager stage up to the order of sums."""
    model = models[name]
    c = model.mid_channels
    rng = np.random.default_rng(7)
    lq = paddle.to_tensor(rng.random((1, 1, 3, 64, 72), dtype=np.float32))
    branches = [[paddle.to_tensor(rng.standard_normal((1, c, 64, 72), dtype=np.float32))] for _ in range(6)]

    def rel(a, b):
        return float(np.linalg.norm(a.numpy() - b.numpy()) / np.linalg.norm(b.numpy()))

    with paddle.no_grad():
        assert rel(model.upsample(lq, branches, model.moved_tails()), model.upsample(lq, branches)) < 1e-6
        (feat,) = model.auxiliary_stage(lq, *branches[:4], model.moved_aux())[1]
        assert rel(feat, model.auxiliary_stage(lq, *branches[:4])[1][0]) < 1e-6
        feats = [b[0] for b in branches[:3]]
        assert rel(model._fuse_stage1_of_parts(feats), model._fuse_stage1(feats)) < 1e-6
        for name in model.backbone.keys():
            feats = [b[0] for b in branches[:model.backbone[name].covn1.weight.shape[1] // c]]
            assert rel(model._fuse_of_parts(name, feats), model._fuse(name, feats)) < 1e-6
