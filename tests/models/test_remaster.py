"""DeepRemaster port: weight compatibility with PaddleGAN and fidelity against PaddleGAN's golden outputs."""
from __future__ import annotations

import numpy as np
import paddle
import pytest

from tests.keyed import (assert_close_to_golden, expected_shapes, golden, golden_cases, key_rows, load_spec,
                         model_weights, sha256_16, sha256_all)
from vsmsvsr.models import load_model
from vsmsvsr.models.remaster import DeepRemaster, NetworkC, NetworkR
from vsmsvsr.weights import WeightsError

SPEC = "deepremaster"
TAGS = {"modelR": "restoration", "modelC": "colorization"}  # official file key -> attribute
PARAMS = {"modelR": 9_881_857, "modelC": 54_303_374}


@pytest.fixture(scope="module")
def keyed() -> dict[str, dict[str, np.ndarray]]:
    """Keyed weights of both sub-networks: {'modelR': sd_R, 'modelC': sd_C}."""
    return {tag: model_weights(SPEC, tag) for tag in TAGS}


@pytest.fixture(scope="module")
def model(keyed, tmp_path_factory) -> DeepRemaster:
    """DeepRemaster loaded from a file in the official layout {'modelR': sd_R, 'modelC': sd_C}."""
    path = tmp_path_factory.mktemp("weights") / "deep_remaster.pdparams"
    paddle.save({tag: {k: paddle.to_tensor(v) for k, v in sd.items()} for tag, sd in keyed.items()}, str(path))
    return load_model("DeepRemaster", weights=str(path), device="cpu")


@pytest.fixture(scope="module")
def outputs(model):
    """Memoised forward passes: case -> {'R', 'C', 'C_of_golden_R', 'Cref'} as numpy."""
    cache: dict = {}

    def run(case: str) -> dict[str, np.ndarray]:
        if case not in cache:
            frames = paddle.to_tensor(golden(SPEC, case, "main"))
            refs = paddle.to_tensor(golden(SPEC, case, "refs"))
            golden_r = golden(SPEC, case, "R")
            with paddle.no_grad():
                restored = model.restoration(frames)
                c_of_golden_r = model.colorization(paddle.to_tensor(golden_r)).numpy()
                # C is deterministic: when R reproduces the golden R bit for bit, C(R) is C(golden R)
                same_input = np.array_equal(restored.numpy(), golden_r)
                cache[case] = {
                    "R": restored.numpy(),
                    "C": c_of_golden_r if same_input else model.colorization(restored).numpy(),
                    "C_of_golden_R": c_of_golden_r,
                    "Cref": model.colorization(restored, refs).numpy(),
                }
        return cache[case]

    return run


# ------------------------------------------------------------------ keyed weights and structure


@pytest.mark.parametrize("tag", list(TAGS))
def test_keyed_weights_match_checksums(keyed, tag):
    sub = load_spec(SPEC)["submodels"][tag]
    weights = keyed[tag]
    wrong = [k for k in sub["sha256_16"] if sha256_16(weights[k]) != sub["sha256_16"][k]]
    assert not wrong, f"regenerated {tag} weights differ for {wrong[:5]}"
    assert sha256_all(weights, [row[0] for row in sub["keys"]]) == sub["sha256_all"]


@pytest.mark.parametrize("tag, network", [("modelR", NetworkR), ("modelC", NetworkC)])
def test_state_dict_layout_matches_paddlegan(model, tag, network):
    counts = load_spec(SPEC)["submodels"][tag]["counts"]
    sub = getattr(model, TAGS[tag])
    assert isinstance(sub, network) and not sub.training
    state = sub.state_dict()
    assert list(state) == [row[0] for row in key_rows(SPEC, tag)]  # same keys, same order
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_shapes(SPEC, tag)
    assert len(state) == counts["state_dict_num_keys"]
    assert sum(int(np.prod(p.shape)) for p in sub.parameters()) == PARAMS[tag] == counts["parameters_numel"]
    # batch-norm running statistics are stored but not trained
    trainable = sum(int(np.prod(p.shape)) for p in sub.parameters() if not p.stop_gradient)
    assert trainable == counts["trainable_numel"]


def test_wrapper_keys_are_the_two_networks_prefixed(model):
    keys = list(model.state_dict())
    expected = [f"{TAGS[tag]}.{row[0]}" for tag in TAGS for row in key_rows(SPEC, tag)]
    assert keys == expected


# ------------------------------------------------------------------ fidelity


@pytest.mark.parametrize("case", ["a", "b"])
def test_outputs_match_paddlegan_golden(outputs, case):
    assert case in golden_cases(SPEC)
    out = outputs(case)
    assert_close_to_golden(out["R"], golden(SPEC, case, "R"), f"{case} R")
    # C on its own (golden R as input), then chained after our R, then with references
    assert_close_to_golden(out["C_of_golden_R"], golden(SPEC, case, "C"), f"{case} C(golden R)")
    assert_close_to_golden(out["C"], golden(SPEC, case, "C"), f"{case} C(R)")
    assert_close_to_golden(out["Cref"], golden(SPEC, case, "Cref"), f"{case} C(R, refs)")


def test_references_change_the_colours(outputs):
    # stattn1/2 only run with references; their effect is far above the tolerance
    out = outputs("b")
    assert np.abs(out["Cref"] - out["C"]).max() > 1e-2


def test_wrapper_forward_runs_restoration_then_colorization(model, outputs):
    frames = paddle.to_tensor(golden(SPEC, "b", "main"))
    refs = paddle.to_tensor(golden(SPEC, "b", "refs"))
    with paddle.no_grad():
        restored, ab = model(frames, refs)
    np.testing.assert_array_equal(restored.numpy(), outputs("b")["R"])
    np.testing.assert_array_equal(ab.numpy(), outputs("b")["Cref"])


def test_frame_sizes_are_validated(model):
    with pytest.raises(ValueError, match=r"NetworkR: frame height and width must be multiples of 4, got 30x32"):
        model.restoration(paddle.zeros([1, 1, 2, 30, 32]))
    with pytest.raises(ValueError, match=r"NetworkC: frame height and width must be multiples of 16, got 32x40"):
        model.colorization(paddle.zeros([1, 1, 2, 32, 40]))
    with pytest.raises(ValueError, match=r"NetworkR: frames must be \(B, 1, T, H, W\) grey levels, "
                                         r"got shape \[1, 3, 2, 32, 32\]"):
        model.restoration(paddle.zeros([1, 3, 2, 32, 32]))
    with pytest.raises(ValueError, match=r"NetworkC: refs must be \(B, Nref, 3, Hr, Wr\) RGB images, "
                                         r"got shape \[1, 3, 2, 16, 16\]"):
        model.colorization(paddle.zeros([1, 1, 1, 16, 16]), paddle.zeros([1, 3, 2, 16, 16]))


# ------------------------------------------------------------------ wrong weights


def test_file_without_colorization_weights_is_refused(keyed, tmp_path):
    path = tmp_path / "restoration_only.pdparams"
    paddle.save({"modelR": keyed["modelR"]}, str(path))
    with pytest.raises(WeightsError, match=r"DeepRemaster weights .*restoration_only\.pdparams.*do not fit this model: "
                                           r"228 missing keys: colorization\."):
        load_model("DeepRemaster", weights=str(path))


def test_swapped_networks_are_refused(keyed):
    swapped = {"modelR": keyed["modelC"], "modelC": keyed["modelR"]}
    # every key is missing, and C's keys turn up under restoration
    with pytest.raises(WeightsError, match=r"302 missing keys: restoration\.layers\.1\.conv3d\.weight.*"
                                           r"302 unexpected keys: restoration\.down1\.1\.conv3d\.weight"):
        load_model("DeepRemaster", weights=swapped)


def test_misshaped_key_is_refused(keyed):
    bad = {**keyed, "modelC": {**keyed["modelC"], "up4.1.weight": np.zeros((3, 8, 3, 3, 3), "float32")}}
    with pytest.raises(WeightsError, match=r"1 wrong shapes: colorization\.up4\.1\.weight: file \(3, 8, 3, 3, 3\), "
                                           r"model \(2, 8, 3, 3, 3\)"):
        load_model("DeepRemaster", weights=bad)
