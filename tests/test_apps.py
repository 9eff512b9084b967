"""PaddleGAN-style predictors: PaddleGAN's output paths, the filters' frames, the input's audio."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import vapoursynth as vs

from tests.media import (FPS, assert_frame_times, assert_same_frames, audio_md5, city_clip, decode, msvsr_weights,
                         random_weights, write_video)
from vsmsvsr import apps, pipeline

core = vs.core


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def video(media) -> Path:
    """6 frames, 64x64, 24000/1001 fps, FFV1 + FLAC sine; a dot in the name, as PaddleGAN cuts at the first."""
    return write_video(media / "city.clip.mkv", city_clip())


def test_ppmsvsr_predictor_writes_the_filters_frames_where_paddlegan_does(media, video, tmp_path):
    from vsmsvsr.filters import Upscale

    weights = msvsr_weights(media / "ppmsvsr_keyed.pdparams")
    predictor = apps.PPMSVSRPredictor(output=str(tmp_path), weight_path=str(weights), num_frames=4, lossless=True,
                                      device="cpu", progress=False)
    out = predictor.run(str(video))
    assert out == str(tmp_path / "PPMSVSR" / "city_PPMSVSR_out.mkv")
    reference = Upscale(pipeline.open_source(video), weights=str(weights), window=4, device="cpu")
    assert_same_frames(decode(Path(out)), reference)
    assert_frame_times(Path(out), 6, FPS)
    assert audio_md5(Path(out)) == audio_md5(video)


def test_dain_predictor_writes_the_filters_frames_and_falls_back_to_the_cpu(media, video, tmp_path, caplog):
    import paddle

    from vsmsvsr.filters import Interpolate

    weights = random_weights("DAIN", media / "dain_random.pdparams")
    with caplog.at_level(logging.WARNING):
        predictor = apps.DAINPredictor(output=str(tmp_path), weight_path=str(weights), time_step=0.5, use_gpu=True,
                                       lossless=True, progress=False)
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    assert predictor.settings.device == ("gpu" if has_gpu else "cpu")
    assert any("no GPU here; running on the CPU" in r.getMessage() for r in caplog.records) is not has_gpu
    out = predictor.run(str(video))
    assert out == str(tmp_path / "DAIN" / "videos-output" / "city.mkv")
    reference = Interpolate(pipeline.open_source(video), factor=2, weights=str(weights),
                            device=predictor.settings.device)
    assert_same_frames(decode(Path(out)), reference)
    assert_frame_times(Path(out), 12, 2 * FPS)
    assert audio_md5(Path(out)) == audio_md5(video)


def test_deoldify_predictor_colourises_an_image_like_the_filter(media, tmp_path):
    from vsmsvsr.filters import Colorize

    weights = random_weights("DeOldify-artistic", media / "deoldify_art_random.pdparams")
    grey = np.asarray(city_clip(frames=1, size=96).get_frame(0)[0])
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), grey)
    predictor = apps.DeOldifyPredictor(output=str(tmp_path / "output"), weight_path=str(weights), artistic=True,
                                       render_factor=7, device="cpu", progress=False)
    out = predictor.run(str(image))
    assert out == str(tmp_path / "output" / "DeOldify" / "still.png")
    result = cv2.imread(out, cv2.IMREAD_COLOR)
    assert result.shape == (96, 96, 3)
    # The filter on the same picture, converted to RGB the same way.
    rgb = core.std.BlankClip(width=96, height=96, format=vs.RGB24, length=1)
    rgb = core.std.ModifyFrame(rgb, rgb, lambda n, f: _filled(f, grey))
    expected = core.resize.Bicubic(Colorize(rgb, model="DeOldify-artistic", weights=str(weights), render_factor=7,
                                            device="cpu"), format=vs.RGB24, dither_type="error_diffusion")
    frame = expected.get_frame(0)
    assert np.array_equal(result, np.stack([np.asarray(frame[p]) for p in (2, 1, 0)], axis=-1))


def _filled(f: vs.VideoFrame, grey: np.ndarray) -> vs.VideoFrame:
    out = f.copy()
    for p in range(3):
        np.copyto(np.asarray(out[p]), grey)
    return out


def test_invalid_arguments_fail_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path))  # an empty cache: any fetch would download
    with pytest.raises(pipeline.EnhanceError, match="num_frames must be >= 1, got 0"):
        apps.PPMSVSRLargePredictor(num_frames=0)
    with pytest.raises(pipeline.EnhanceError, match="time_step must be > 0 and < 1"):
        apps.DAINPredictor(time_step=1.5, use_gpu=False)
    with pytest.raises(pipeline.EnhanceError, match="reference_dir '/nonexistent' is not a folder"):
        apps.DeepRemasterPredictor(colorization=True, reference_dir="/nonexistent")
    with pytest.raises(TypeError, match="DeOldifyPredictor: unexpected argument 'fp16'"):
        apps.DeOldifyPredictor(fp16=True)
    assert list(tmp_path.iterdir()) == []


def test_official_weights_are_fetched_when_the_predictor_is_built(tmp_path, monkeypatch):
    from vsmsvsr import weights

    monkeypatch.setenv("VSMSVSR_HOME", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/applications/deep_remaster.pdparams"  # discard port: connection refused
    monkeypatch.setitem(weights.OFFICIAL, "DeepRemaster", weights.WeightFile("DeepRemaster", url))
    with pytest.raises(weights.WeightsError, match="127.0.0.1:9.*place it at"):
        apps.DeepRemasterPredictor(output=str(tmp_path / "output"))
    assert not (tmp_path / "output").exists()
