"""DAIN port: custom ops against numpy loops, interpolation behaviour, and reading static-program weights."""
from __future__ import annotations

import os
import tarfile

import numpy as np
import paddle
import pytest

from vsmsvsr.models import build_model, load_model
from vsmsvsr.models import dain_weights as dw
from vsmsvsr.models.dain import DAIN, SIZE_MULTIPLE, _masked_backward_warp, backward_warp, correlation
from vsmsvsr.weights import WeightsError

SIZE = 64  # smallest frame the network takes
TIMES = (0.25, 0.5)


def _frames(seed: int, batch: int = 1, h: int = SIZE, w: int = SIZE) -> tuple[paddle.Tensor, paddle.Tensor]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (2, batch, 3, h, w)).astype(np.float32)
    return paddle.to_tensor(x[0]), paddle.to_tensor(x[1])


def _run(model: DAIN, frames, times=TIMES) -> np.ndarray:
    with paddle.no_grad():
        return np.stack([y.numpy() for y in model.interpolate(*frames, times)])


# ------------------------------------------------------------------ custom ops vs numpy loops


def _correlation_loop(f1: np.ndarray, f2: np.ndarray, d: int) -> np.ndarray:
    """PaddleGAN's CUDA correlation (kernel 1, strides 1, pad = max displacement = d), one output at a time."""
    b, c, h, w = f1.shape
    n = 2 * d + 1
    out = np.zeros((b, n * n, h, w), np.float64)
    for k in range(b):
        for dy in range(-d, d + 1):
            for dx in range(-d, d + 1):
                for y in range(h):
                    for x in range(w):
                        if 0 <= y + dy < h and 0 <= x + dx < w:
                            acc = np.dot(f1[k, :, y, x].astype(np.float64), f2[k, :, y + dy, x + dx])
                            out[k, (dy + d) * n + dx + d, y, x] = acc / c
    return out


@pytest.mark.parametrize("d", [1, 4])
def test_correlation_matches_numpy_loop(d):
    rng = np.random.default_rng(1)
    f1 = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    f2 = rng.standard_normal((2, 5, 6, 7)).astype(np.float32)
    got = correlation(paddle.to_tensor(f1), paddle.to_tensor(f2), d).numpy()
    assert got.shape == (2, (2 * d + 1) ** 2, 6, 7)
    np.testing.assert_allclose(got, _correlation_loop(f1, f2, d), rtol=1e-5, atol=1e-6)


def test_correlation_matches_paddles_own_op_where_it_runs():
    """The official program's ``correlation`` op has only a GPU kernel (hence the port); on a GPU
    build both must agree, with PaddleGAN's attributes."""
    from paddle.incubate.layers.nn import correlation as paddle_correlation

    rng = np.random.default_rng(4)
    f1 = paddle.to_tensor(rng.standard_normal((2, 32, 8, 9)).astype(np.float32))
    f2 = paddle.to_tensor(rng.standard_normal((2, 32, 8, 9)).astype(np.float32))
    attrs = dict(pad_size=4, kernel_size=1, max_displacement=4, stride1=1, stride2=1, corr_type_multiply=1)
    if not paddle.device.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0:
        with pytest.raises((NotImplementedError, RuntimeError), match="GPU"):
            paddle_correlation(f1.cpu(), f2.cpu(), **attrs)
        return
    f1, f2 = f1.cuda(), f2.cuda()
    np.testing.assert_allclose(correlation(f1, f2, 4).numpy(), paddle_correlation(f1, f2, **attrs).numpy(),
                               rtol=1e-5, atol=1e-6)


def _bilinear_loop(img: np.ndarray, flow: np.ndarray, masked: bool) -> np.ndarray:
    """img (B, C, H, W) sampled at pixel + flow, zeros outside; masked: zero unless every tap is inside."""
    b, c, h, w = img.shape
    out = np.zeros(img.shape, np.float64)
    for k in range(b):
        for y in range(h):
            for x in range(w):
                sx, sy = x + flow[k, 0, y, x], y + flow[k, 1, y, x]
                x0, y0 = int(np.floor(sx)), int(np.floor(sy))
                ax, ay = sx - x0, sy - y0
                value, coverage = np.zeros(c), 0.0
                for yy, wy in ((y0, 1 - ay), (y0 + 1, ay)):
                    for xx, wx in ((x0, 1 - ax), (x0 + 1, ax)):
                        if 0 <= yy < h and 0 <= xx < w:
                            value += wy * wx * img[k, :, yy, xx]
                            coverage += wy * wx
                out[k, :, y, x] = value * (coverage >= 0.999 if masked else 1.0)
    return out


def test_backward_warp_matches_numpy_bilinear_sampling():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 1, (2, 3, 5, 6)).astype(np.float32)
    flow = rng.uniform(-2, 2, (2, 2, 5, 6)).astype(np.float32)
    got = backward_warp(paddle.to_tensor(img), paddle.to_tensor(flow)).numpy()
    np.testing.assert_allclose(got, _bilinear_loop(img, flow, masked=False), atol=1e-5)


def test_pwcnet_warp_zeroes_samples_that_touch_outside():
    rng = np.random.default_rng(3)
    img = rng.uniform(0.5, 1, (1, 4, 6, 6)).astype(np.float32)
    flow = rng.uniform(-1.5, 1.5, (1, 2, 6, 6)).astype(np.float32)
    got = _masked_backward_warp(paddle.to_tensor(img), paddle.to_tensor(flow)).numpy()
    want = _bilinear_loop(img, flow, masked=True)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (want == 0).any() and (want != 0).any()


# ------------------------------------------------------------------ architecture


def test_parameter_count_and_paddlegan_layout():
    model = DAIN()
    sd = model.state_dict()
    assert sum(int(np.prod(v.shape)) for v in sd.values()) == 9_638_021
    assert sum(int(np.prod(v.shape)) for k, v in sd.items() if k.startswith("flownets.")) == 9_374_274  # PWC-DC-Net
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    # channel counts that follow from PaddleGAN's pwcnet.py / basicblock.py (81 = (2*4+1)^2 costs)
    assert shapes["flownets.conv6aa.weight"] == (196, 128, 3, 3)
    assert shapes["flownets.conv6_0.weight"] == (128, 81, 3, 3)
    assert shapes["flownets.conv5_0.weight"] == (128, 81 + 128 + 4, 3, 3)
    assert shapes["flownets.upfeat6.weight"] == (81 + 448, 2, 4, 4)
    assert shapes["flownets.predict_flow2.weight"] == (2, 81 + 32 + 4 + 448, 3, 3)
    assert shapes["flownets.dc_conv5.weight"] == (64, 96, 3, 3)
    assert shapes["rectifyNet.block1.weight"] == (64, 13, 7, 7)
    assert "rectifyNet.block2.conv1.bias" not in shapes
    assert shapes["rectifyNet.block5.bias"] == (3,)
    assert list(shapes)[:3] == ["flownets.conv1a.weight", "flownets.conv1a.bias", "flownets.conv1aa.weight"]


def test_native_parameter_order_covers_every_parameter_once():
    order = dw.native_parameter_order()
    keys = [k for k, _ in order]
    assert sorted(keys) == sorted(DAIN().state_dict())
    # forward order: PWC-Net encoder, decoders coarse to fine, context net, then the rectification net
    assert keys[:2] == ["flownets.conv1a.weight", "flownets.conv1a.bias"]
    coarse_to_fine = ["flownets.conv6_0.weight", "flownets.conv5_0.weight", "flownets.dc_conv1.weight"]
    assert [keys.index(k) for k in coarse_to_fine] == sorted(keys.index(k) for k in coarse_to_fine)
    assert keys[-2:] == ["rectifyNet.block5.weight", "rectifyNet.block5.bias"]


# ------------------------------------------------------------------ behaviour


def _constant_flow_model(flow_px: tuple[float, float]) -> DAIN:
    """DAIN whose PWC-Net outputs ``flow_px / 20`` everywhere and whose rectification adds nothing."""
    model = build_model("DAIN")
    sd = model.state_dict()
    for key in ("flownets.predict_flow2", "flownets.dc_conv7", "rectifyNet.block5"):
        sd[f"{key}.weight"].set_value(paddle.zeros_like(sd[f"{key}.weight"]))
        sd[f"{key}.bias"].set_value(paddle.zeros_like(sd[f"{key}.bias"]))
    sd["flownets.predict_flow2.bias"].set_value(paddle.to_tensor(np.array(flow_px, np.float32) / 20.0))
    return model


def test_zero_flow_blends_the_two_frames():
    model = _constant_flow_model((0.0, 0.0))
    f0, f1 = _frames(10)
    with paddle.no_grad():
        y = model(f0, f1, 0.3).numpy()
    np.testing.assert_allclose(y, (f0.numpy() + f1.numpy()) / 2, atol=1e-5)  # grid round trip: ~1 ulp


def test_flows_are_scaled_by_t_and_one_minus_t():
    # flow 0->1 = flow 1->0 = (4, 8) px; at t = 0.25 frame 0 is sampled 1 px right, 2 px down,
    # frame 1 3 px right, 6 px down (PaddleGAN warps with +t * flow, no projection)
    model = _constant_flow_model((4.0, 8.0))
    f0, f1 = _frames(11, batch=2)
    with paddle.no_grad():
        y = model(f0, f1, 0.25).numpy()

    def shifted(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
        out = np.zeros_like(x)
        out[:, :, : SIZE - dy, : SIZE - dx] = x[:, :, dy:, dx:]
        return out

    want = (shifted(f0.numpy(), 1, 2) + shifted(f1.numpy(), 3, 6)) / 2
    np.testing.assert_allclose(y, want, atol=1e-5)


def test_interpolate_equals_forward_at_each_time():
    model = build_model("DAIN")
    frames = _frames(12, w=2 * SIZE)
    many = _run(model, frames, (0.2, 0.7))
    with paddle.no_grad():
        for i, t in enumerate((0.2, 0.7)):
            np.testing.assert_array_equal(model(*frames, t).numpy(), many[i])
    assert many.shape == (2, 1, 3, SIZE, 2 * SIZE)
    assert not np.allclose(many[0], many[1], atol=1e-3)  # t matters


@pytest.mark.parametrize("t, error, match", [
    (0.0, ValueError, r"t must be in \(0, 1\)"),
    (1.0, ValueError, r"t must be in \(0, 1\)"),
    (-0.5, ValueError, r"t must be in \(0, 1\)"),
    ("0.5", TypeError, "t must be a float"),
    (True, TypeError, "t must be a float"),
])
def test_bad_time_is_refused(t, error, match):
    f0, f1 = _frames(13)
    with pytest.raises(error, match=match):
        DAIN()(f0, f1, t)


def test_bad_frames_are_refused():
    model = DAIN()
    with pytest.raises(ValueError, match=f"multiples of {SIZE_MULTIPLE}, got 64x96"):
        model(*_frames(14, w=96))
    f0, _ = _frames(14)
    with pytest.raises(ValueError, match="same shape"):
        model(f0, _frames(14, w=128)[1])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(f0[:, :1], f0[:, :1])


# ------------------------------------------------------------------ weights: static programs


@pytest.fixture(scope="module")
def source_model() -> DAIN:
    return build_model("DAIN")


@pytest.fixture(scope="module")
def exported(source_model, tmp_path_factory):
    """source_model exported at 64x64 for TIMES, as a folder and as a tar laid out like DAIN_weight.tar."""
    root = tmp_path_factory.mktemp("dain_export")
    folder = dw.export_static(source_model, root / "DAIN_weight", SIZE, SIZE, times=TIMES)
    tar_path = root / "DAIN_weight.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(folder, arcname="DAIN_weight")
    return folder, tar_path


def _program_file(folder) -> str:
    return next(str(p) for p in folder.iterdir() if "model" in p.name)


def test_native_order_equals_the_exported_programs_order(source_model, exported):
    folder, _ = exported
    with open(_program_file(folder), "rb") as f:
        program_order = dw.program_parameter_order(f.read())
    key_of = {p.name: k for k, p in source_model.named_parameters()}
    assert [(key_of[name], shape) for name, shape in program_order] == list(dw.native_parameter_order())


def test_read_weights_returns_the_exported_values(source_model, exported):
    folder, tar_path = exported
    want = {k: v.numpy() for k, v in source_model.state_dict().items()}
    for path in (folder, tar_path, folder.parent):  # the folder, the tar, the folder holding the folder
        got = dw.read_weights(path)
        assert list(got) == [k for k, _ in dw.native_parameter_order()]
        assert all(np.array_equal(got[k], want[k]) for k in want), path


def test_load_model_reproduces_the_exported_network(source_model, exported, tmp_path):
    folder, tar_path = exported
    frames = _frames(20)
    want = _run(source_model, frames)
    pdparams = tmp_path / "dain.pdparams"
    paddle.save(source_model.state_dict(), str(pdparams))
    for weights in (tar_path, folder, pdparams):
        model = load_model("DAIN", weights=weights, device="cpu")
        np.testing.assert_array_equal(_run(model, frames), want, err_msg=str(weights))


def test_program_info_reports_feed_fetch_and_time_offsets(exported):
    _, tar_path = exported
    info = dw.program_info(tar_path)
    assert info.feeds == (("image", (2, 1, 3, SIZE, SIZE), "float32"),)
    assert [f[1:] for f in info.fetches] == [((len(TIMES), 1, 3, SIZE, SIZE), "float32")]
    assert info.time_offsets == TIMES


@pytest.fixture(scope="module")
def legacy_folder(source_model, tmp_path_factory):
    """A legacy ProgramDesc (the official file's format) written by Paddle itself, using source_model's
    convs in DAIN's order of use, with the flow-scaling ops of a 2-offset program.

    Paddle 3 cannot export the whole network in that format (sum and grid_sample have no legacy
    op builders any more), so the program applies each conv to a small constant input instead.
    """
    layers = dict(source_model.named_sublayers())
    names = list(dict.fromkeys(k.rsplit(".", 1)[0] for k, _ in dw.native_parameter_order()))

    class ConvChain(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.dain = source_model

        def forward(self, image):
            outs = []
            for name in names:
                layer = layers[name]
                transposed = isinstance(layer, paddle.nn.Conv2DTranspose)
                channels = layer.weight.shape[0 if transposed else 1]
                outs.append(layer(paddle.zeros([1, channels, 2, 2], "float32") + image[0, 0, 0, 0, 0]))
            flow = outs[-1]
            return outs + [flow * 20.0 * 0.25, flow * 20.0 * 0.75]

    folder = tmp_path_factory.mktemp("dain_legacy")
    chain = ConvChain()
    chain.eval()
    with paddle.pir_utils.OldIrGuard():
        spec = paddle.static.InputSpec([2, 1, 3, 64, 64], "float32", "image")
        paddle.jit.save(chain, str(folder / "dain"), input_spec=[spec])
    os.replace(folder / "dain.pdmodel", folder / "model")
    os.replace(folder / "dain.pdiparams", folder / "params")
    return folder


def test_legacy_program_is_read(source_model, legacy_folder, tmp_path):
    got = dw.read_weights(legacy_folder)
    want = source_model.state_dict()
    assert all(np.array_equal(got[k], want[k].numpy()) for k in want)
    info = dw.program_info(legacy_folder)
    assert info.feeds == (("image", (2, 1, 3, 64, 64), "float32"),)
    assert info.time_offsets == (0.25, 0.75)
    tar_path = tmp_path / "DAIN_weight.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(legacy_folder / "model", arcname="DAIN_weight/model")
        tar.add(legacy_folder / "params", arcname="DAIN_weight/params")
    model = load_model("DAIN", weights=tar_path, device="cpu")
    key = "rectifyNet.block1.weight"
    assert np.array_equal(model.state_dict()[key].numpy(), want[key].numpy())


# ------------------------------------------------------------------ weights: refusals


def _export_layer(layer: paddle.nn.Layer, folder) -> None:
    layer.eval()
    prefix = str(folder / "m")
    paddle.jit.save(layer, prefix, input_spec=[paddle.static.InputSpec([1, 3, 8, 8], "float32", "image")])
    os.replace(next(p for p in (prefix + ".json", prefix + ".pdmodel") if os.path.exists(p)), folder / "model")
    os.replace(prefix + ".pdiparams", folder / "params")


def test_program_of_another_network_is_refused_at_the_first_mismatch(tmp_path):
    # conv1a's shapes, then a conv DAIN does not have
    _export_layer(paddle.nn.Sequential(paddle.nn.Conv2D(3, 16, 3, 2, 1), paddle.nn.Conv2D(16, 17, 3, 1, 1)), tmp_path)
    with pytest.raises(WeightsError, match=r"parameter #2 in order of use is .* \(17, 16, 3, 3\), "
                                           r"DAIN expects flownets\.conv1aa\.weight \(16, 16, 3, 3\)"):
        load_model("DAIN", weights=tmp_path)


def test_program_with_too_few_parameters_is_refused(tmp_path):
    _export_layer(paddle.nn.Conv2D(3, 16, 3, 2, 1), tmp_path)
    with pytest.raises(WeightsError,
                       match=r"uses 2 parameters, DAIN has 136 \(first missing: flownets\.conv1aa\.weight"):
        dw.read_weights(tmp_path)


def test_damaged_parameter_files_are_refused(exported, tmp_path):
    folder, _ = exported
    data = (folder / "params").read_bytes()
    program = (folder / _program_file(folder)).read_bytes()
    with pytest.raises(WeightsError, match="truncated"):
        dw.convert_program(program, data[:-10], "cut")
    with pytest.raises(WeightsError, match="4 bytes after the 136 variables"):
        dw.convert_program(program, data + b"\0\0\0\0", "long")
    with pytest.raises(WeightsError, match="not a Paddle static program"):
        dw.convert_program(b"\x07garbage" * 10, data, "garbage")


def test_unreadable_paths_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="no such file"):
        dw.read_weights(tmp_path / "missing.tar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no program file"):
        dw.read_weights(tmp_path / "empty")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar nor a pickle" * 100)
    with pytest.raises(WeightsError, match="not a .pdparams file"):
        load_model("DAIN", weights=junk)
    no_params = tmp_path / "no_params.tar"
    with tarfile.open(no_params, "w") as tar:
        (tmp_path / "model").write_bytes(b"x")
        tar.add(tmp_path / "model", arcname="DAIN_weight/model")
    with pytest.raises(WeightsError, match="no parameter file"):
        dw.read_weights(no_params)


def test_one_file_is_read_once_for_weights_program_and_times(exported, monkeypatch):
    """Interpolate on a GPU reads the weights, the program and its times: one read of the tar."""
    _, tar_path = exported
    dw.forget()
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(tarfile, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    dw.read_weights(tar_path)
    first = len(opened)  # is_tarfile opens it too
    assert first >= 1
    dw.official_program(tar_path)
    dw.program_info(tar_path)
    assert len(opened) == first
    dw.forget()
    dw.program_info(tar_path)
    assert len(opened) == 2 * first
    dw.forget()
