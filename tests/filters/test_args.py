"""Input a user got wrong, across the filters: each case is a clear error naming the filter (when
the filter is called, before any weights are read), or works."""
from __future__ import annotations

import numpy as np
import pytest
import vapoursynth as vs

from tests.footage import CITY, source
from tests.keyed import save_keyed_weights
from vsmsvsr import Colorize, Interpolate, Remaster, Upscale
from vsmsvsr.weights import WeightsError

core = vs.core


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    return core.std.CropAbs(source(CITY), width=64, height=64, left=320, top=160)


@pytest.fixture(scope="module")
def msvsr(tmp_path_factory) -> str:
    return save_keyed_weights("msvsr", tmp_path_factory.mktemp("weights") / "ppmsvsr_keyed.pdparams")


@pytest.fixture(scope="module")
def remaster(tmp_path_factory) -> str:
    return save_keyed_weights("deepremaster", tmp_path_factory.mktemp("weights") / "deepremaster_keyed.pdparams")


@pytest.fixture(scope="module")
def deoldify(tmp_path_factory) -> str:
    return save_keyed_weights("deoldify_artistic", tmp_path_factory.mktemp("weights") / "deoldify_art_keyed.pdparams")


@pytest.fixture(scope="module")
def dain(tmp_path_factory) -> str:
    import paddle

    from vsmsvsr.models import build_model

    path = tmp_path_factory.mktemp("weights") / "dain_random.pdparams"
    paddle.save(build_model("DAIN").state_dict(), str(path))
    return str(path)


# ------------------------------------------------------------------ each filter, its own models


@pytest.mark.parametrize("model", ["DeOldify", "DAIN", "DeepRemaster"])
def test_upscale_accepts_only_vsr_models(city, tmp_path, model):
    with pytest.raises(ValueError, match=rf"^vsmsvsr\.Upscale: model must be one of PP-MSVSR, PP-MSVSR-L, "
                                         rf"PP-MSVSR-BD, got '{model}'$"):
        Upscale(city, model=model, weights=str(tmp_path / "never-read.pdparams"))


@pytest.mark.parametrize("model", ["PP-MSVSR", "DAIN"])
def test_colorize_accepts_only_colour_models(city, model):
    with pytest.raises(ValueError, match=rf"^vsmsvsr\.Colorize: model must be one of DeOldify, DeOldify-artistic, "
                                         rf"DeepRemaster, got '{model}'$"):
        Colorize(city, model=model)


@pytest.mark.parametrize("model", ["PP-MSVSR", "DeOldify", "DeepRemaster"])
def test_interpolate_accepts_only_interpolation_models(city, model):
    with pytest.raises(ValueError, match=rf"^vsmsvsr\.Interpolate: model must be one of DAIN, got '{model}'$"):
        Interpolate(city, factor=2, model=model)


def test_model_case_is_suggested(city):
    with pytest.raises(ValueError, match=r"got 'pp-msvsr' \(did you mean 'PP-MSVSR'\?\)"):
        Upscale(city, model="pp-msvsr")


def test_filters_accept_exactly_the_models_of_their_task():
    from vsmsvsr.models import MODEL_SPECS, models_for

    assert models_for("vsr") == ("PP-MSVSR", "PP-MSVSR-L", "PP-MSVSR-BD")
    assert models_for("colorize", "restore") == ("DeOldify", "DeOldify-artistic", "DeepRemaster")
    assert models_for("interp") == ("DAIN",)
    assert {spec.task for spec in MODEL_SPECS.values()} == {"vsr", "colorize", "restore", "interp"}


# ------------------------------------------------------------------ sizes beyond the clip or the machine


def _planes(clip: vs.VideoNode) -> list[list[np.ndarray]]:
    return [[np.array(f[p]) for p in range(f.format.num_planes)] for f in clip.frames(close=True)]


def test_a_window_longer_than_the_clip_is_the_whole_clip(city, msvsr):
    clip = city[:4]
    huge = Upscale(clip, weights=msvsr, window=10**6, overlap=10**6, scene_change=False)
    whole = Upscale(clip, weights=msvsr, window=4, overlap=3, scene_change=False)
    for a, b in zip(_planes(huge), _planes(whole)):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_remaster_window_longer_than_the_clip_builds(city, remaster):
    out = Remaster(city[:3], weights=remaster, window=10**6, overlap=10**6, mindim=64)
    assert out.num_frames == 3


@pytest.mark.parametrize("mindim", [100000, 257])
def test_remaster_mindim_is_bounded_by_the_clip(city, mindim):
    # 64x64: up to max(360, 4 * 64) = 360
    with pytest.raises(ValueError, match=rf"^vsmsvsr\.Remaster: mindim must be <= 360 for a 64x64 clip \(4x its "
                                         rf"short side, at most 2160\), got {mindim}$") if mindim > 360 else \
            pytest.raises(WeightsError, match="no such file"):
        Remaster(city, mindim=mindim, weights="/nonexistent/deep_remaster.pdparams")


@pytest.mark.parametrize("factor", [float("inf"), float("-inf"), float("nan")])
def test_interpolate_factor_must_be_finite(city, factor):
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Interpolate: factor must be a finite number > 0"):
        Interpolate(city, factor=factor)


def test_interpolate_beyond_vapoursynths_frame_limit_is_an_error(city):
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Interpolate: 3 frames at 25000000000/1 fps would be "
                                         r"3000000000 frames, more than VapourSynth's limit of 2147483647"):
        Interpolate(city[:3], factor=1e9)
    with pytest.raises(ValueError, match=r"more than VapourSynth's limit"):
        Interpolate(city[:3], fps_num=10**12)


# ------------------------------------------------------------------ weights, precision


@pytest.mark.parametrize("call", [
    lambda clip, w: Upscale(clip, weights=w),
    lambda clip, w: Colorize(clip, weights=w),
    lambda clip, w: Colorize(clip, model="DeepRemaster", weights=w),
    lambda clip, w: Remaster(clip, weights=w),
], ids=["Upscale", "Colorize", "Colorize-DeepRemaster", "Remaster"])
def test_a_weights_folder_is_refused_naming_the_filter(city, tmp_path, call):
    with pytest.raises(ValueError, match=rf"^vsmsvsr\.(Upscale|Colorize|Remaster): weights must be a file, got "
                                         rf"folder '{tmp_path}'$"):
        call(city, str(tmp_path))


def test_fp16_on_a_machine_without_gpu_names_fp16(city, msvsr):
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("this machine has a GPU: fp16 is available")
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Upscale: fp16=True needs a GPU backend \('gpu' or 'trt'.*"
                                         r"use fp16=False"):
        Upscale(city, weights=msvsr, fp16=True)
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Upscale: fp16=True needs a GPU backend .*device='cpu'"):
        Upscale(city, weights=msvsr, fp16=True, device="cpu")


# ------------------------------------------------------------------ interlaced frames, grey of odd size


def test_interlaced_frames_are_refused_naming_the_frame_and_a_deinterlacer(city, msvsr, deoldify, dain):
    clip = core.std.SetFrameProps(city[:4], _FieldBased=0)
    tff = core.std.Splice([clip[:2], core.std.SetFieldBased(clip[2:3], 2), clip[3:]])
    # Upscale's window holds all four frames: frame 0 cannot be made without the interlaced frame 2
    with pytest.raises(vs.Error, match=r"vsmsvsr\.Upscale: frame 2 is interlaced \(_FieldBased=2, top field first\)"
                                       r".*core\.bwdif\.Bwdif\(clip, field=1\).*QTGMC"):
        Upscale(tff, weights=msvsr, window=4, overlap=0, scene_change=False).get_frame(0)
    bff = core.std.Splice([clip[:1], core.std.SetFieldBased(clip[1:2], 1), clip[2:]])
    out = Colorize(bff, model="DeOldify-artistic", weights=deoldify, render_factor=7)
    out.get_frame(0)  # per frame: a progressive frame is fine
    with pytest.raises(vs.Error, match=r"vsmsvsr\.Colorize: frame 1 is interlaced \(_FieldBased=1, bottom field "
                                       r"first\).*field=0"):
        out.get_frame(1)
    # Interpolate's copied frames are checked too: output frame 2 of x2 is source frame 1 itself
    with pytest.raises(vs.Error, match=r"vsmsvsr\.Interpolate: frame 1 is interlaced"):
        Interpolate(bff, factor=2, weights=dain, scene_change=False).get_frame(2)


def test_remaster_colorize_of_odd_grey_gives_yuv444(city, remaster):
    gray = core.std.CropAbs(core.std.ShufflePlanes(city[:2], 0, vs.GRAY), width=63, height=64)
    out = Remaster(gray, colorize=True, weights=remaster, mindim=64, window=2, overlap=0)
    assert out.format.id == vs.YUV444P8 and (out.width, out.height) == (63, 64)
    out.get_frame(0)
