"""msvsr.Remaster (and Colorize with DeepRemaster): windows, references, formats, sizes, errors."""
from __future__ import annotations

import random

import numpy as np
import pytest
import vapoursynth as vs

from tests.footage import CITY, source
from tests.keyed import model_weights
from vsmsvsr.filters.colorize import Colorize
from vsmsvsr.filters.remaster import Remaster
from vsmsvsr.models.remaster import processing_size
from vsmsvsr.references import ReferenceError

core = vs.core

WINDOW, OVERLAP = 3, 1


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """DeepRemaster with the spec's keyed weights, in the official {'modelR', 'modelC'} container."""
    import paddle

    path = tmp_path_factory.mktemp("weights") / "deepremaster_keyed.pdparams"
    paddle.save({tag: {k: paddle.to_tensor(v) for k, v in model_weights("deepremaster", tag).items()}
                 for tag in ("modelR", "modelC")}, str(path))
    return str(path)


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    # 96x64 crop of the real clip, YUV420P8, 25 fps.
    return core.std.CropAbs(source(CITY), width=96, height=64, left=320, top=160)


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory, city):
    """Two colour frames of the real clip written as PNG files."""
    import cv2

    folder = tmp_path_factory.mktemp("refs")
    rgb = core.resize.Bicubic(city, format=vs.RGB24, matrix_in_s="170m")
    for i, n in enumerate((10, 150)):
        frame = rgb.get_frame(n)
        image = np.stack([np.asarray(frame[p]) for p in (2, 1, 0)], axis=-1)  # BGR for cv2
        cv2.imwrite(str(folder / f"ref{i}.png"), image)
    return folder


def _remaster(clip, weights, **kwargs):
    kwargs.setdefault("window", WINDOW)
    kwargs.setdefault("overlap", OVERLAP)
    kwargs.setdefault("mindim", 64)
    return Remaster(clip, weights=weights, **kwargs)


def _planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    return [np.array(frame[p], copy=True) for p in range(frame.format.num_planes)]


def _frames(clip, order=None):
    order = range(clip.num_frames) if order is None else order
    return {n: _planes(clip.get_frame(n)) for n in order}


def _same(a, b, frames) -> bool:
    return all(all(np.array_equal(x, y) for x, y in zip(a[n], b[n])) for n in frames)


def test_processing_size_follows_paddlegan():
    assert processing_size(720, 404, 360) == (640, 352)
    assert processing_size(1920, 1080, 360) == (640, 352)   # 360 / 16 = 22.5 rounds to even
    assert processing_size(640, 360, 360) == (640, 352)
    assert processing_size(90, 52, 48) == (80, 48)


def test_restoration_changes_luma_only(weights, city):
    clip = core.std.SetFrameProps(city[:5], UserTag="kept")
    out = _remaster(clip, weights)
    assert out.format.id == clip.format.id
    assert (out.width, out.height, out.num_frames, out.fps) == (clip.width, clip.height, clip.num_frames, clip.fps)
    for n in range(5):
        a, b = clip.get_frame(n), out.get_frame(n)
        assert not np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
        for p in (1, 2):
            np.testing.assert_array_equal(np.asarray(b[p]), np.asarray(a[p]))
        assert b.props["UserTag"] == "kept"


def test_random_order_and_threads_are_bit_identical(weights, city, reference_dir):
    clip = city[:8]
    sequential = _frames(_remaster(clip, weights, colorize=True, references=reference_dir))
    order = list(range(clip.num_frames))
    random.Random(3).shuffle(order)
    assert _same(sequential, _frames(_remaster(clip, weights, colorize=True, references=reference_dir), order),
                 range(clip.num_frames))
    threads = core.num_threads
    try:
        core.num_threads = 4
        out = _remaster(clip, weights, colorize=True, references=reference_dir)
        futures = {n: out.get_frame_async(n) for n in reversed(range(clip.num_frames))}
        assert _same(sequential, {n: _planes(f.result()) for n, f in futures.items()}, range(clip.num_frames))
    finally:
        core.num_threads = threads
    # the windows matter: without context the boundary frame differs (so the test can fail)
    assert not _same(sequential, _frames(_remaster(clip, weights, colorize=True, references=reference_dir,
                                                   overlap=0), [WINDOW - 1]), [WINDOW - 1])


def test_second_scene_is_independent_of_the_first(weights):
    city = core.std.CropAbs(source(CITY), width=96, height=64, left=300, top=150)
    second = city[140:145]
    a = _remaster(city[20:24] + second, weights, colorize=True)
    b = _remaster(city[60:64] + second, weights, colorize=True)
    frames = range(4, 9)
    assert _same(_frames(a, frames), _frames(b, frames), frames)


def test_references_steer_the_colour_from_folder_list_or_clip(weights, city, reference_dir):
    clip = city[:3]
    none = _frames(_remaster(clip, weights, colorize=True), [1])
    folder = _frames(_remaster(clip, weights, colorize=True, references=reference_dir), [1])
    files = _frames(_remaster(clip, weights, colorize=True, references=sorted(reference_dir.iterdir())), [1])
    as_clip = core.resize.Bicubic(city, format=vs.RGB24, matrix_in_s="170m")
    from_clip = _frames(_remaster(clip, weights, colorize=True, references=as_clip[10] + as_clip[150]), [1])
    assert not _same(none, folder, [1])
    assert _same(folder, files, [1])
    # the clip gives the same pictures as the PNG files of the same frames
    for x, y in zip(folder[1][1:], from_clip[1][1:]):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_colorize_with_deepremaster_is_remaster_with_colorize(weights, city, reference_dir):
    clip = city[:4]
    a = Colorize(clip, model="DeepRemaster", weights=weights, references=reference_dir, mindim=64,
                 window=WINDOW, overlap=OVERLAP)
    b = _remaster(clip, weights, colorize=True, references=reference_dir)
    assert _same(_frames(a), _frames(b), range(4))


@pytest.mark.parametrize(("fmt", "expected"), [(vs.GRAY8, vs.YUV420P8), (vs.RGBS, vs.RGBS),
                                              (vs.YUV444P16, vs.YUV444P16)])
def test_colorized_formats(weights, city, fmt, expected):
    if fmt == vs.GRAY8:
        clip = core.std.ShufflePlanes(city[:2], 0, vs.GRAY)
    else:
        clip = core.resize.Bicubic(city[:2], format=fmt, matrix_in_s="170m")
    out = _remaster(clip, weights, colorize=True)
    assert out.format.id == expected
    assert (out.width, out.height) == (clip.width, clip.height)
    frame = out.get_frame(1)
    assert all(np.isfinite(np.asarray(frame[p], np.float32)).all() for p in range(frame.format.num_planes))


def test_sizes_that_are_not_multiples_of_16_keep_their_size(weights, city):
    clip = core.std.CropAbs(city, width=90, height=52)[:2]
    out = _remaster(clip, weights, mindim=48, colorize=True)
    assert (out.width, out.height, out.format.id) == (90, 52, clip.format.id)
    out.get_frame(1)


def test_reduced_processing_keeps_fine_detail(weights):
    """Luma comes back as a residual: detail above the processing size survives."""
    city = core.std.CropAbs(source(CITY), width=192, height=128, left=300, top=150)[:2]
    out = _remaster(city, weights, mindim=64)
    y_in = np.asarray(city.get_frame(0)[0], np.float32)
    y_out = np.asarray(out.get_frame(0)[0], np.float32)

    def highpass(y):
        return y[1:-1, 1:-1] - 0.25 * (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:])

    corr = np.corrcoef(highpass(y_in).ravel(), highpass(y_out).ravel())[0, 1]
    assert corr > 0.8, corr


def test_reference_errors(weights, city, tmp_path):
    with pytest.raises(ReferenceError, match=r"vsmsvsr\.Remaster: references folder or file .*absent.* does not exist"):
        Remaster(city, weights=weights, colorize=True, references=str(tmp_path / "absent"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ReferenceError, match=r"vsmsvsr\.Remaster: no reference images .* in .*empty"):
        Remaster(city, weights=weights, colorize=True, references=empty)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    with pytest.raises(ReferenceError, match=r"vsmsvsr\.Remaster: reference image .*broken\.png.* cannot be read"):
        Remaster(city, weights=weights, colorize=True, references=[broken])
    with pytest.raises(ReferenceError, match=r"vsmsvsr\.Remaster: reference image .*gone\.jpg.* does not exist"):
        Remaster(city, weights=weights, colorize=True, references=[tmp_path / "gone.jpg"])
    with pytest.raises(ValueError, match=r"vsmsvsr\.Remaster: references are only used with colorize=True"):
        Remaster(city, weights=weights, references=empty)


def test_argument_errors_name_the_filter_and_come_before_weights(city, tmp_path):
    missing = str(tmp_path / "nothing.pdparams")
    with pytest.raises(ValueError, match=r"vsmsvsr\.Remaster: mindim must be >= 16, got 8"):
        Remaster(city, weights=missing, mindim=8)
    with pytest.raises(TypeError, match=r"vsmsvsr\.Remaster: colorize must be a bool"):
        Remaster(city, weights=missing, colorize="yes")
    with pytest.raises(ValueError, match=r"vsmsvsr\.Remaster: window must be"):
        Remaster(city, weights=missing, window=0)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Remaster: .*nothing\.pdparams"):
        Remaster(city, weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Colorize: .*nothing\.pdparams"):
        Colorize(city, model="DeepRemaster", weights=missing)


def test_wrong_weights_are_refused(city, tmp_path):
    import paddle

    path = tmp_path / "r_only.pdparams"
    paddle.save({"modelR": {k: paddle.to_tensor(v) for k, v in model_weights("deepremaster", "modelR").items()}},
                str(path))
    with pytest.raises(ValueError, match=r"vsmsvsr\.Remaster: DeepRemaster weights .*missing keys: colorization\."):
        Remaster(city, weights=str(path))
