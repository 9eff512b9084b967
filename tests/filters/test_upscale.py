"""msvsr.Upscale on real footage: vspipe, determinism, scene cuts, formats, tiling, errors."""
from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from tests.footage import CITY, source
from tests.keyed import model_weights
from vsmsvsr.filters.upscale import Upscale

core = vs.core

# Small windows keep the suite fast; the grid logic is the same at any size.
WINDOW, OVERLAP = 4, 2


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """PP-MSVSR with the spec's keyed weights, in the official container."""
    import paddle

    path = tmp_path_factory.mktemp("weights") / "ppmsvsr_keyed.pdparams"
    sd = {k: paddle.to_tensor(v) for k, v in model_weights("msvsr").items()}
    paddle.save({"generator": sd}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    # 72x64 crop of the real clip, YUV420P8, 25 fps.
    return core.std.CropAbs(source(CITY), width=72, height=64, left=320, top=160)


def _planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    return [np.array(frame[p], copy=True) for p in range(frame.format.num_planes)]


def _all_frames(clip: vs.VideoNode, order=None) -> dict[int, list[np.ndarray]]:
    order = range(clip.num_frames) if order is None else order
    return {n: _planes(clip.get_frame(n)) for n in order}


def _same(a: dict, b: dict, frames) -> bool:
    return all(all(np.array_equal(x, y) for x, y in zip(a[n], b[n])) for n in frames)


def test_vspipe_y4m_end_to_end(weights, tmp_path):
    script = tmp_path / "upscale.vpy"
    script.write_text(textwrap.dedent(f"""
        import vapoursynth as vs
        import vsmsvsr as msvsr
        clip = vs.core.bs.VideoSource({str(CITY)!r}, cachemode=0)
        clip = vs.core.std.CropAbs(clip, width=64, height=64, left=100, top=100)[:9]
        clip = msvsr.Upscale(clip, weights={weights!r}, window={WINDOW}, overlap={OVERLAP})
        clip.set_output()
    """))
    vspipe = Path(sys.executable).with_name("vspipe")
    proc = subprocess.run([str(vspipe), "-c", "y4m", str(script), "-"], capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    header, _, body = proc.stdout.partition(b"\n")
    fields = header.split()
    assert fields[0] == b"YUV4MPEG2"
    assert b"W256" in fields and b"H256" in fields and b"F25:1" in fields and b"C420" in fields
    frame_bytes = len(b"FRAME\n") + 256 * 256 * 3 // 2
    assert len(body) == 9 * frame_bytes
    assert body.count(b"FRAME\n") >= 9 and body[:6] == b"FRAME\n"


def test_random_order_and_threads_are_bit_identical(weights, city):
    clip = city[:9]
    sequential = _all_frames(Upscale(clip, weights=weights, window=WINDOW, overlap=OVERLAP))

    order = list(range(clip.num_frames))
    random.Random(7).shuffle(order)
    shuffled = _all_frames(Upscale(clip, weights=weights, window=WINDOW, overlap=OVERLAP), order)
    assert _same(sequential, shuffled, range(clip.num_frames))

    threads = core.num_threads
    try:
        for count in (1, 4):
            core.num_threads = count
            up = Upscale(clip, weights=weights, window=WINDOW, overlap=OVERLAP)
            futures = {n: up.get_frame_async(n) for n in reversed(range(clip.num_frames))}
            parallel = {n: _planes(fut.result()) for n, fut in futures.items()}
            assert _same(sequential, parallel, range(clip.num_frames)), f"{count} threads"
    finally:
        core.num_threads = threads


def test_windows_overlap_so_output_depends_on_context(weights, city):
    # Guard against a vacuous determinism test: the window grid and its context matter.
    clip = city[:8]
    with_context = _all_frames(Upscale(clip, weights=weights, window=WINDOW, overlap=OVERLAP))
    without = _all_frames(Upscale(clip, weights=weights, window=WINDOW, overlap=0))
    assert not _same(with_context, without, [WINDOW - 1])


def test_second_scene_is_independent_of_the_first(weights):
    city = core.std.CropAbs(source(CITY), width=64, height=64, left=300, top=150)
    second = city[140:149]
    before = Upscale(city[20:27] + second, weights=weights, window=WINDOW, overlap=OVERLAP)
    after = Upscale(city[60:67] + second, weights=weights, window=WINDOW, overlap=OVERLAP)
    frames = range(7, 7 + second.num_frames)
    assert _same(_all_frames(before, frames), _all_frames(after, frames), frames)
    # ... whereas without cut detection the first scene leaks into the second.
    leak_a = Upscale(city[20:27] + second, weights=weights, window=WINDOW, overlap=OVERLAP, scene_change=False)
    leak_b = Upscale(city[60:67] + second, weights=weights, window=WINDOW, overlap=OVERLAP, scene_change=False)
    assert not _same(_all_frames(leak_a, [7]), _all_frames(leak_b, [7]), [7])


@pytest.mark.parametrize("fmt", [vs.YUV420P8, vs.YUV420P10, vs.RGBS, vs.GRAY8, vs.RGBH])
def test_formats_round_trip_with_props(weights, city, fmt):
    info = core.get_video_format(fmt)
    if info.color_family == vs.GRAY:
        clip = core.std.ShufflePlanes(city, 0, vs.GRAY).resize.Point(format=fmt)
    elif info.color_family == vs.RGB:
        clip = core.resize.Bicubic(city, format=fmt, matrix_in_s="170m")
    else:
        clip = core.resize.Bicubic(city, format=fmt)
    clip = core.std.SetFrameProps(clip[:5], UserTag="kept", _SARNum=1, _SARDen=1)
    out = Upscale(clip, weights=weights, window=WINDOW, overlap=OVERLAP)
    assert out.format.id == clip.format.id
    assert (out.width, out.height, out.num_frames) == (clip.width * 4, clip.height * 4, clip.num_frames)
    assert (out.fps_num, out.fps_den) == (clip.fps_num, clip.fps_den)
    frame = out.get_frame(2)
    assert frame.props["UserTag"] == "kept"
    assert frame.props["_DurationNum"] == 1 and frame.props["_DurationDen"] == 25
    # The upscaled picture resembles the input (a format mix-up would not).
    down = core.resize.Bilinear(out, clip.width, clip.height, format=vs.GRAYS if info.color_family == vs.GRAY else None)
    ref = core.resize.Point(clip, format=down.format.id)
    # Compare luma-like pictures: Y, GRAY, or the mean of R, G and B (untrained keyed weights
    # shift single colour channels more than their mean).
    planes = 3 if info.color_family == vs.RGB else 1
    a = np.mean([np.asarray(down.get_frame(2)[p], dtype=np.float64) for p in range(planes)], axis=0)
    b = np.mean([np.asarray(ref.get_frame(2)[p], dtype=np.float64) for p in range(planes)], axis=0)
    peak = (1 << info.bits_per_sample) - 1 if info.sample_type == vs.INTEGER else 1.0
    assert abs(a.mean() - b.mean()) < 0.06 * peak  # same range and plane order
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.8


def test_frames_smaller_than_64_are_padded_and_cropped(weights, city):
    small = core.std.CropAbs(city, width=40, height=36)[:3]
    out = Upscale(small, weights=weights, window=WINDOW, overlap=OVERLAP)
    assert (out.width, out.height) == (160, 144)
    plane = np.asarray(out.get_frame(1)[0], dtype=np.float64)
    assert plane.std() > 1.0  # a real picture, not padding


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def test_tiles_leave_no_visible_seams(weights):
    clip = core.std.CropAbs(source(CITY), width=160, height=128, left=200, top=120)[:4]
    clip = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="170m")
    whole = Upscale(clip, weights=weights, window=WINDOW, overlap=1)
    tiled = Upscale(clip, weights=weights, window=WINDOW, overlap=1, tile=64, tile_overlap=16)
    for n in (0, 3):
        a = np.stack(_planes(whole.get_frame(n)))
        b = np.stack(_planes(tiled.get_frame(n)))
        assert not np.array_equal(a, b)  # really tiled
        assert _psnr(np.clip(a, 0, 1), np.clip(b, 0, 1)) >= 45.0


def test_argument_errors_name_the_filter_and_come_before_weights(city, tmp_path):
    missing = str(tmp_path / "nowhere.pdparams")  # would fail if it were read
    with pytest.raises(ValueError, match=r"^vsmsvsr.Upscale: tile must be >= 64, got 16$"):
        Upscale(city, weights=missing, tile=16)
    with pytest.raises(ValueError, match=r"vsmsvsr.Upscale: model must be one of PP-MSVSR, PP-MSVSR-L, PP-MSVSR-BD, got 'PP-MSVSR-XL'"):
        Upscale(city, model="PP-MSVSR-XL", weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr.Upscale: window must be >= 1, got 0"):
        Upscale(city, weights=missing, window=0)
    with pytest.raises(ValueError, match=r"vsmsvsr.Upscale: scene_change must be"):
        Upscale(city, weights=missing, scene_change="yes")
    variable = core.std.Splice([city[:2], core.std.CropAbs(city, 64, 64)[:2]], mismatch=True)
    with pytest.raises(ValueError, match=r"vsmsvsr.Upscale: the clip has a variable frame size; resize it"):
        Upscale(variable, weights=missing)
    with pytest.raises(TypeError, match=r"vsmsvsr.Upscale: clip must be a vapoursynth.VideoNode"):
        Upscale("clip.mkv")
    from vsmsvsr.weights import WeightsError

    with pytest.raises(WeightsError, match="no such file"):
        Upscale(city, weights=missing)


def test_unavailable_backend_is_an_error_naming_the_filter(weights, city):
    with pytest.raises(ValueError, match=r"^vsmsvsr.Upscale: backend 'trt' is not available"):
        Upscale(city, weights=weights, backend="trt")
