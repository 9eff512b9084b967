"""msvsr.Interpolate (DAIN): exact rates and durations, pass-through, cuts, determinism, errors."""
from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest
import vapoursynth as vs

from tests.footage import CITY, source
from vsmsvsr.filters.interpolate import Interpolate

core = vs.core


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """DAIN with Paddle's default random initialisation (there is no golden data for DAIN)."""
    import paddle

    from vsmsvsr.models import build_model

    paddle.seed(11)
    path = tmp_path_factory.mktemp("weights") / "dain_random.pdparams"
    paddle.save(build_model("DAIN").state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    # 96x64 crop of the real clip, YUV420P8; one cut between frames 115 and 116.
    return core.std.CropAbs(source(CITY), width=96, height=64, left=320, top=160)


def _planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    return [np.array(frame[p], copy=True) for p in range(frame.format.num_planes)]


def _frames(clip, order=None):
    order = range(clip.num_frames) if order is None else order
    return {n: _planes(clip.get_frame(n)) for n in order}


def _equal(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(("src", "kwargs", "num_src", "num_out"), [
    ((24000, 1001), dict(fps_num=60000, fps_den=1001), 12, 30),
    ((25, 1), dict(factor=2), 6, 12),
    ((30, 1), dict(fps_num=24), 10, 8),
])
def test_frame_counts_rates_and_durations_are_exact(weights, city, src, kwargs, num_src, num_out):
    clip = core.std.AssumeFPS(city[20:20 + num_src], fpsnum=src[0], fpsden=src[1])
    out = Interpolate(clip, weights=weights, **kwargs)
    dst = Fraction(kwargs.get("fps_num", 0), kwargs.get("fps_den", 1)) or Fraction(*src) * kwargs["factor"]
    assert (out.fps_num, out.fps_den) == (dst.numerator, dst.denominator)
    assert out.num_frames == num_out
    assert out.format.id == clip.format.id and (out.width, out.height) == (clip.width, clip.height)
    ratio = dst / Fraction(*src)
    for n in range(num_out):
        frame = out.get_frame(n)
        assert Fraction(frame.props["_DurationNum"], frame.props["_DurationDen"]) == 1 / dst
        tau = Fraction(n) / ratio
        if tau.denominator == 1:  # coincides with a source frame: passed through untouched
            assert _equal(_planes(frame), _planes(clip.get_frame(int(tau)))), n
        elif tau > num_src - 1:   # after the last source frame: it is held
            assert _equal(_planes(frame), _planes(clip.get_frame(num_src - 1))), n
        else:                     # synthesised: not a copy of either neighbour
            i = int(tau)
            assert not _equal(_planes(frame), _planes(clip.get_frame(i))), n
            assert not _equal(_planes(frame), _planes(clip.get_frame(i + 1))), n


def test_no_frame_at_a_cut_mixes_the_two_shots(weights, city):
    clip = city[110:122]  # the cut lies between clip frames 5 and 6
    out = Interpolate(clip, factor=Fraction(5, 2), weights=weights)
    # output frames with source time in (5, 6) show the old shot's last frame, unchanged
    for n in (13, 14):
        assert _equal(_planes(out.get_frame(n)), _planes(clip.get_frame(5))), n
    assert _equal(_planes(out.get_frame(15)), _planes(clip.get_frame(6)))
    # ... while blending would cross-fade them (so the test can fail)
    blended = Interpolate(clip, factor=Fraction(5, 2), weights=weights, at_cut="blend")
    assert not _equal(_planes(blended.get_frame(13)), _planes(clip.get_frame(5)))


def test_random_order_and_threads_are_bit_identical(weights, city):
    clip = city[30:38]
    sequential = _frames(Interpolate(clip, factor=Fraction(5, 2), weights=weights))
    order = list(sequential)
    random.Random(5).shuffle(order)
    shuffled = _frames(Interpolate(clip, factor=Fraction(5, 2), weights=weights), order)
    assert all(_equal(sequential[n], shuffled[n]) for n in order)
    threads = core.num_threads
    try:
        core.num_threads = 4
        out = Interpolate(clip, factor=Fraction(5, 2), weights=weights)
        futures = {n: out.get_frame_async(n) for n in reversed(order)}
        assert all(_equal(sequential[n], _planes(f.result())) for n, f in futures.items())
    finally:
        core.num_threads = threads


def test_remove_duplicates_retimes_repeated_frames(weights, city):
    # animation "on twos": every picture shown twice
    pictures = city[40:44]
    doubled = core.std.Interleave([pictures, pictures])
    plain = Interpolate(doubled, factor=1, weights=weights)
    retimed = Interpolate(doubled, factor=1, weights=weights, remove_duplicates=True)
    # without the option, factor 1 passes every frame through, duplicates included
    assert all(_equal(_planes(plain.get_frame(n)), _planes(doubled.get_frame(n))) for n in range(8))
    # with it, the first frame of each run passes through and the repeat becomes an in-between
    for n in (0, 2, 4):
        assert _equal(_planes(retimed.get_frame(n)), _planes(doubled.get_frame(n)))
    for n in (1, 3, 5):
        frame = _planes(retimed.get_frame(n))
        assert not _equal(frame, _planes(doubled.get_frame(n - 1)))
        assert not _equal(frame, _planes(doubled.get_frame(n + 1)))


@pytest.mark.parametrize("fmt", [vs.RGBS, vs.GRAY16, vs.YUV444P10])
def test_formats(weights, city, fmt):
    info = core.get_video_format(fmt)
    if info.color_family == vs.GRAY:
        clip = core.resize.Point(core.std.ShufflePlanes(city[:3], 0, vs.GRAY), format=fmt)
    else:
        clip = core.resize.Bicubic(city[:3], format=fmt, matrix_in_s="170m")
    out = Interpolate(clip, factor=2, weights=weights)
    assert out.format.id == fmt and out.num_frames == 6
    assert _equal(_planes(out.get_frame(2)), _planes(clip.get_frame(1)))
    out.get_frame(1)


def test_argument_errors_name_the_filter_and_come_before_weights(city, tmp_path):
    missing = str(tmp_path / "nothing.pdparams")
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: give either factor or fps_num"):
        Interpolate(city, weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: give either factor or fps_num"):
        Interpolate(city, factor=2, fps_num=50, weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: factor must be > 0"):
        Interpolate(city, factor=0, weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: factor must be a number or a fraction"):
        Interpolate(city, factor="fast", weights=missing)
    with pytest.raises(TypeError, match=r"vsmsvsr\.Interpolate: fps_num must be an int"):
        Interpolate(city, fps_num=59.94, weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: at_cut must be one of"):
        Interpolate(city, factor=2, at_cut="smear", weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: model must be one of DAIN"):
        Interpolate(city, factor=2, model="RIFE", weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: the clip has a variable frame rate"):
        vfr = core.std.Splice([city[:5], core.std.AssumeFPS(city[5:10], fpsnum=30)], mismatch=True)
        Interpolate(vfr, factor=2, weights=missing)
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: .*nothing\.pdparams"):
        Interpolate(city, factor=2, weights=missing)


def test_official_program_runs_as_it_is_where_its_times_fit(weights, city, tmp_path, monkeypatch):
    """program=True runs a DAIN_weight.tar-style static program (here exported from the native
    network, in the official layout) for the pairs whose times it has baked in (0.5)."""
    import tarfile

    from vsmsvsr.models import load_model
    from vsmsvsr.models.dain_weights import export_static

    folder = export_static(load_model("DAIN", weights=weights), tmp_path / "DAIN_weight", 128, 128, times=(0.5,))
    tar = tmp_path / "DAIN_weight.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(folder, arcname="DAIN_weight")
    from vsmsvsr.engine import ProgramRunner

    calls = []
    original = ProgramRunner.__call__
    monkeypatch.setattr(ProgramRunner, "__call__", lambda self, *a: calls.append(a[0].shape) or original(self, *a))
    clip = city[30:34]  # 96x64: padded to 128x128, the program's size
    native = Interpolate(clip, factor=2, weights=str(tar), backend="cpu-plain", program=False)
    official = Interpolate(clip, factor=2, weights=str(tar), backend="cpu-plain", program=True)
    for n in (1, 3, 5):
        a, b = _planes(native.get_frame(n)), _planes(official.get_frame(n))
        assert max(int(np.abs(x.astype(int) - y.astype(int)).max()) for x, y in zip(a, b)) <= 1, n
    assert calls == [(2, 1, 3, 128, 128)] * 3  # the program computed the three in-between frames
    # times it has not baked in (2/5, 4/5 of a 5/2 conversion) go to the native network
    calls.clear()
    Interpolate(clip, factor=Fraction(5, 2), weights=str(tar), backend="cpu-plain", program=True).get_frame(1)
    assert calls == []
    with pytest.raises(ValueError, match=r"vsmsvsr\.Interpolate: program=True needs the official static program"):
        Interpolate(clip, factor=2, weights=weights, backend="cpu-plain", program=True)
