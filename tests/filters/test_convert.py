"""Colour conversion to and from the work formats: per-frame tags, and building a graph renders nothing."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

from tests.footage import CITY, source
from tests.keyed import save_keyed_weights
from vsmsvsr.filters.convert import ColorTags, from_rgbs, per_frame_tags, to_rgbs

core = vs.core


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    import paddle

    from vsmsvsr.models import build_model

    folder = tmp_path_factory.mktemp("weights")
    paths = {"msvsr": save_keyed_weights("msvsr", folder / "ppmsvsr.pdparams"),
             "deoldify": save_keyed_weights("deoldify_artistic", folder / "deoldify_art.pdparams"),
             "dain": str(folder / "dain.pdparams")}
    paddle.save(build_model("DAIN").state_dict(), paths["dain"])
    return paths


def _chain(msvsr: str, deoldify: str, dain: str) -> str:
    # grey 64x64 -> Colorize -> Upscale -> Interpolate: three models, each needing the one before
    return textwrap.dedent(f"""
        import vapoursynth as vs
        import vsmsvsr as msvsr
        core = vs.core
        clip = core.bs.VideoSource({str(CITY)!r}, cachemode=0)
        clip = core.std.ShufflePlanes(core.std.CropAbs(clip, width=64, height=64, left=320, top=160)[:4], 0, vs.GRAY)
        clip = msvsr.Colorize(clip, model="DeOldify-artistic", weights={deoldify!r}, render_factor=7)
        clip = msvsr.Upscale(clip, weights={msvsr!r}, window=4, overlap=0, scene_change=False)
        clip = msvsr.Interpolate(clip, factor=2, weights={dain!r}, scene_change=False)
    """)


def test_building_a_chain_runs_no_model(weights, monkeypatch):
    from vsmsvsr import engine

    calls = []
    for cls in (engine.Engine, engine.LayerRunner):
        original = cls.__call__

        def spy(self, *args, _original=original, **kwargs):
            calls.append(type(self).__name__)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__call__", spy)
    namespace: dict = {}
    exec(_chain(weights["msvsr"], weights["deoldify"], weights["dain"]), namespace)
    out = namespace["clip"]
    assert (out.width, out.height, out.num_frames, out.format.id) == (256, 256, 8, vs.YUV420P8)
    assert calls == []  # nothing rendered while building
    out.get_frame(0)  # a copied source frame: Upscale's window, hence Colorize's frames
    assert "Engine" in calls and "LayerRunner" in calls


def test_vspipe_info_on_a_chain_runs_no_model(weights, tmp_path):
    script = tmp_path / "chain.vpy"
    script.write_text(_chain(weights["msvsr"], weights["deoldify"], weights["dain"]) + "clip.set_output()\n")
    home = tmp_path / "home"
    vspipe = Path(sys.executable).with_name("vspipe")
    proc = subprocess.run([str(vspipe), "--info", str(script)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, VSMSVSR_HOME=str(home)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Width: 256" in proc.stdout and "Frames: 8" in proc.stdout
    assert not (home / "static").exists()  # the CPU backend exports a program before a model's first run


def test_tags_are_read_per_frame(tmp_path):
    """Two halves tagged differently are each converted with their own matrix and range."""
    base = core.std.CropAbs(source(CITY), width=64, height=64, left=320, top=160)[:2]
    a = core.std.SetFrameProps(base[0], _Matrix=1, _Range=int(vs.RANGE_LIMITED))
    b = core.std.SetFrameProps(base[1], _Matrix=6, _Range=int(vs.RANGE_FULL))
    clip = a + b
    rgb = per_frame_tags(clip, lambda tags: to_rgbs(clip, tags), core.std.BlankClip(clip, format=vs.RGBS, keep=True))
    for n, (matrix, rng) in enumerate([(1, vs.RANGE_LIMITED), (6, vs.RANGE_FULL)]):
        expected = to_rgbs(clip, ColorTags(matrix, int(rng), 0)).get_frame(n)
        got = rgb.get_frame(n)
        assert all(np.array_equal(np.asarray(got[p]), np.asarray(expected[p])) for p in range(3))
    back = per_frame_tags(clip, lambda tags: from_rgbs(rgb, clip, tags), core.std.BlankClip(clip, keep=True))
    for n in range(2):
        f, g = back.get_frame(n), clip.get_frame(n)
        assert (f.props["_Matrix"], f.props["_Range"]) == (g.props["_Matrix"], g.props["_Range"])
        assert np.abs(np.asarray(f[0], dtype=int) - np.asarray(g[0], dtype=int)).max() <= 1
