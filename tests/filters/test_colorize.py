"""msvsr.Colorize with DeOldify: only chroma changes, formats, channel order, smoothing, errors."""
from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

import vsmsvsr.filters.colorize as colorize_module
from tests.footage import CITY, source
from tests.keyed import model_weights
from vsmsvsr.filters.colorize import Colorize

core = vs.core

RF = 7  # render factor: 112x112 squares keep the suite fast


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """DeOldify-artistic with the spec's keyed weights, as a plain state dict (the official layout)."""
    import paddle

    path = tmp_path_factory.mktemp("weights") / "deoldify_artistic_keyed.pdparams"
    paddle.save({k: paddle.to_tensor(v) for k, v in model_weights("deoldify_artistic").items()}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    # 96x64 crop of the real clip, YUV420P8, 25 fps, made black and white (neutral chroma).
    clip = core.std.CropAbs(source(CITY), width=96, height=64, left=320, top=160)
    return core.std.Expr(clip, ["", "128", "128"])


def _colorize(clip: vs.VideoNode, weights: str, **kwargs) -> vs.VideoNode:
    return Colorize(clip, model="DeOldify-artistic", weights=weights, render_factor=RF, **kwargs)


@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV420P10, vs.YUV444PS])
def test_yuv_luma_is_bit_identical_and_chroma_is_new(weights, city, fmt):
    clip = core.std.SetFrameProps(core.resize.Bicubic(city[:3], format=fmt), UserTag="kept")
    out = _colorize(clip, weights)
    assert out.format.id == fmt
    assert (out.width, out.height, out.num_frames, out.fps) == (clip.width, clip.height, clip.num_frames, clip.fps)
    for n in range(clip.num_frames):
        a, b = clip.get_frame(n), out.get_frame(n)
        np.testing.assert_array_equal(np.asarray(b[0]), np.asarray(a[0]))
        assert not np.array_equal(np.asarray(b[1]), np.asarray(a[1])), "chroma left unchanged"
        assert b.props["UserTag"] == "kept"


@pytest.mark.parametrize(("fmt", "expected"), [(vs.GRAY8, vs.YUV420P8), (vs.GRAY16, vs.YUV420P16),
                                              (vs.GRAYS, vs.YUV420PS)])
def test_gray_becomes_yuv420_at_the_same_depth(weights, city, fmt, expected):
    gray = core.resize.Point(core.std.ShufflePlanes(city[:2], 0, vs.GRAY), format=fmt)
    out = _colorize(gray, weights)
    assert out.format.id == expected
    frame = out.get_frame(1)
    np.testing.assert_array_equal(np.asarray(frame[0]), np.asarray(gray.get_frame(1)[0]))
    # tagged with what was used: the matrix for the size, the range of the grey input (limited:
    # it was cut out of a limited YUV clip), left siting
    assert (frame.props["_Matrix"], frame.props["_Range"], frame.props["_ChromaLocation"]) == (6, 0, 0)
    # an untagged grey clip is limited range, as VapourSynth's resize assumes it, and tagged so
    untagged = core.std.RemoveFrameProps(gray, ["_Range", "_Matrix"])
    assert _colorize(untagged, weights).get_frame(0).props["_Range"] == int(vs.RANGE_LIMITED)
    # a full-range tag is honoured
    full = core.std.SetFrameProps(untagged, _Range=int(vs.RANGE_FULL))
    assert _colorize(full, weights).get_frame(0).props["_Range"] == int(vs.RANGE_FULL)


@pytest.mark.parametrize("size", [(71, 64), (72, 63), (71, 63)])
def test_gray_of_odd_size_becomes_yuv444(weights, city, size):
    """4:2:0 cannot hold an odd width or height: such grey clips come out as YUV 4:4:4, luma kept."""
    gray = core.std.CropAbs(core.std.ShufflePlanes(city[:1], 0, vs.GRAY), width=size[0], height=size[1])
    out = _colorize(gray, weights)
    assert out.format.id == vs.YUV444P8 and (out.width, out.height) == size
    frame = out.get_frame(0)
    np.testing.assert_array_equal(np.asarray(frame[0]), np.asarray(gray.get_frame(0)[0]))
    assert np.asarray(frame[1]).std() > 0  # colour arrived


def test_rgb_stays_rgb_with_its_luma(weights, city):
    rgb = core.resize.Bicubic(city[:2], format=vs.RGBS, matrix_in_s="170m")
    out = _colorize(rgb, weights)
    assert out.format.id == vs.RGBS

    def luma(c):
        return np.asarray(core.resize.Bicubic(c, format=vs.YUV444PS, matrix_s="170m", range_s="full")
                          .get_frame(1)[0])

    np.testing.assert_allclose(luma(out), luma(rgb), atol=1e-5)
    assert np.abs(np.asarray(out.get_frame(1)[0]) - np.asarray(rgb.get_frame(1)[0])).max() > 0.01


def test_colour_channels_are_in_rgb_order(city, monkeypatch):
    """A network that paints everything pure red must give red chroma (Cr high, Cb low)."""
    import paddle

    mean = paddle.to_tensor([0.485, 0.456, 0.406]).reshape([1, 3, 1, 1])
    std = paddle.to_tensor([0.229, 0.224, 0.225]).reshape([1, 3, 1, 1])

    class PaintRed(paddle.nn.Layer):
        def forward(self, x):
            red = paddle.to_tensor([1.0, 0.0, 0.0]).reshape([1, 3, 1, 1])
            return paddle.zeros_like(x) + (red - mean) / std

    monkeypatch.setattr("vsmsvsr.models.load_model", lambda *a, **k: PaintRed())
    frame = Colorize(city[:1], model="DeOldify", render_factor=RF, backend="dygraph").get_frame(0)
    cb, cr = float(np.asarray(frame[1]).mean()), float(np.asarray(frame[2]).mean())
    assert cr > 200 and cb < 110, (cb, cr)  # BT.601 pure red: Cb 90, Cr 240


def test_smoothing_reduces_flicker_and_stops_at_cuts(weights):
    city = core.std.Expr(core.std.CropAbs(source(CITY), width=96, height=64, left=300, top=150),
                         ["", "128", "128"])
    second = city[140:146]
    plain = _colorize(city[20:26] + second, weights)
    smooth = _colorize(city[20:26] + second, weights, smooth=2)

    def flicker(clip, frames):
        return np.mean([np.abs(np.asarray(clip.get_frame(n)[p], np.float32)
                               - np.asarray(clip.get_frame(n - 1)[p], np.float32)).mean()
                        for n in frames for p in (1, 2)])

    assert flicker(smooth, range(1, 6)) < flicker(plain, range(1, 6))
    # The second shot's smoothed colour ignores the first shot entirely.
    other = _colorize(city[60:66] + second, weights, smooth=2)
    for n in range(6, 12):
        for p in (1, 2):
            np.testing.assert_array_equal(np.asarray(smooth.get_frame(n)[p]), np.asarray(other.get_frame(n)[p]))


def test_argument_errors_name_the_filter_and_come_before_weights(city, tmp_path):
    missing = str(tmp_path / "nothing.pdparams")
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: model must be one of DeOldify, DeOldify-artistic"):
        Colorize(city, model="Colorful")
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: render_factor must be in \[7, 64\], got 100"):
        Colorize(city, weights=missing, render_factor=100)
    with pytest.raises(TypeError, match=r"vsmsvsr\.Colorize: render_factor must be an int"):
        Colorize(city, weights=missing, render_factor=32.0)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: references are used by model='DeepRemaster' only"):
        Colorize(city, weights=missing, references=str(tmp_path))
    with pytest.raises(TypeError, match=r"vsmsvsr\.Colorize: unexpected argument\(s\) for DeOldify: mindim"):
        Colorize(city, weights=missing, mindim=360)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: smooth must be in \[0, 15\], got -1"):
        Colorize(city, weights=missing, smooth=-1)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: .*nothing\.pdparams"):
        Colorize(city, weights=missing)


def test_wrong_weights_are_refused_naming_the_filter(city, tmp_path):
    import paddle

    path = tmp_path / "msvsr.pdparams"
    paddle.save({"generator": {k: paddle.to_tensor(v) for k, v in model_weights("msvsr").items()}}, str(path))
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: DeOldify-artistic weights .*do not fit"):
        Colorize(city, model="DeOldify-artistic", weights=str(path))


def test_models_listed_match_the_spec_table():
    from vsmsvsr.models import MODEL_SPECS

    assert set(colorize_module.TASKS) == {MODEL_SPECS[name].task for name in ("DeOldify", "DeepRemaster")}


@pytest.fixture(scope="module")
def remaster_weights(tmp_path_factory) -> str:
    import paddle

    path = tmp_path_factory.mktemp("weights") / "deepremaster_keyed.pdparams"
    paddle.save({tag: {k: paddle.to_tensor(v) for k, v in model_weights("deepremaster", tag).items()}
                 for tag in ("modelR", "modelC")}, str(path))
    return str(path)


@pytest.mark.parametrize("model", ["DeOldify-artistic", "DeepRemaster"])
def test_vspipe_colorizes_a_grayscaled_real_clip(weights, remaster_weights, tmp_path, model):
    """A real colour clip made grey (GRAY8) comes out of vspipe as colour YUV 4:2:0 y4m."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    extra = f"render_factor={RF}" if model != "DeepRemaster" else "mindim=64, window=3, overlap=1"
    script = tmp_path / "colorize.vpy"
    script.write_text(textwrap.dedent(f"""
        import vapoursynth as vs
        import vsmsvsr as msvsr
        clip = vs.core.bs.VideoSource({str(CITY)!r}, cachemode=0)
        clip = vs.core.std.CropAbs(clip, width=96, height=64, left=320, top=160)[:6]
        gray = vs.core.std.ShufflePlanes(clip, 0, vs.GRAY)
        clip = msvsr.Colorize(gray, model={model!r}, weights={(remaster_weights if model == "DeepRemaster" else weights)!r},
                              {extra})
        clip.set_output()
    """))
    vspipe = Path(sys.executable).with_name("vspipe")
    proc = subprocess.run([str(vspipe), "-c", "y4m", str(script), "-"], capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    header, _, body = proc.stdout.partition(b"\n")
    fields = header.split()
    assert fields[0] == b"YUV4MPEG2"
    assert {b"W96", b"H64", b"F25:1", b"C420"} <= set(fields), fields
    frame_bytes = len(b"FRAME\n") + 96 * 64 * 3 // 2
    assert len(body) == 6 * frame_bytes
    # coloured: the chroma of the last frame is not flat grey
    chroma = np.frombuffer(body[-frame_bytes + len(b"FRAME\n") + 96 * 64:], np.uint8)
    assert np.abs(chroma.astype(int) - 128).max() > 3
