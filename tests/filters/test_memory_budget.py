"""max_memory on the filters: the plan, its determinism, the error, and measured peaks (subprocesses)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import vapoursynth as vs

import vsmsvsr as msvsr
from tests.footage import CITY, source
from tests.keyed import save_keyed_weights
from tests.memory_probe import probe
from vsmsvsr.engine.memory import format_bytes

core = vs.core
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    return save_keyed_weights("msvsr", tmp_path_factory.mktemp("weights") / "msvsr.pdparams")


@pytest.fixture(scope="module")
def city() -> vs.VideoNode:
    # 256x144 of the real clip, YUV420P8: big enough that a modest budget needs tiles
    return core.std.CropAbs(source(CITY), width=256, height=144, left=200, top=100)[:3]


def _planes(clip: vs.VideoNode) -> list[list[np.ndarray]]:
    return [[np.array(f[p], copy=True) for p in range(f.format.num_planes)] for f in clip.frames()]


def _tiling_budget(clip: vs.VideoNode, **kw) -> int:
    """A budget between the whole-frame estimate and the smallest tile's: some tile must be chosen."""
    whole = msvsr.plan(clip, "PP-MSVSR", max_memory="64GB", tile=0, **kw)
    smallest = msvsr.plan(clip, "PP-MSVSR", max_memory="64GB", tile=64, **kw)
    assert smallest.estimate < whole.estimate
    return (whole.estimate + smallest.estimate) // 2


def test_the_plan_is_a_pure_function_of_its_arguments(city):
    budget = _tiling_budget(city, window=3, overlap=0)
    plans = {msvsr.plan(city, "PP-MSVSR", window=3, overlap=0, max_memory=budget) for _ in range(3)}
    assert len(plans) == 1
    (plan,) = plans
    assert 0 < plan.tile < 256 and plan.fits and plan.estimate <= budget and plan.budget == budget
    # the same budget written as a string gives the same plan
    assert msvsr.plan(city, "PP-MSVSR", window=3, overlap=0, max_memory=f"{budget}B") == plan
    # a larger budget never chooses smaller tiles
    bigger = msvsr.plan(city, "PP-MSVSR", window=3, overlap=0, max_memory=budget * 2)
    assert bigger.tile == 0 or bigger.tile >= plan.tile


def test_a_planned_upscale_equals_an_explicit_tile_bit_for_bit(city, weights, caplog):
    budget = _tiling_budget(city, window=3, overlap=0)
    plan = msvsr.plan(city, "PP-MSVSR", window=3, overlap=0, max_memory=budget)
    with caplog.at_level(logging.INFO, logger="vsmsvsr"):
        planned = msvsr.Upscale(city, weights=weights, window=3, overlap=0, max_memory=budget, scene_change=False)
    assert plan.describe() in caplog.text
    assert f"tiles {plan.tiles_x}×{plan.tiles_y} of {plan.tile}×{plan.tile}" in caplog.text
    explicit = msvsr.Upscale(city, weights=weights, window=3, overlap=0, tile=plan.tile, scene_change=False)
    a, b = _planes(planned), _planes(explicit)
    assert len(a) == 3 and all(np.array_equal(x, y) for fa, fb in zip(a, b) for x, y in zip(fa, fb))


def test_spare_memory_keeps_stage_two_offsets_with_the_same_frames(city, weights, caplog):
    """Where whole frames fit with room for PP-MSVSR's stage-2 offsets and masks, Upscale keeps
    them (stage 3 recomputes them otherwise): the plan counts and says it, the frames are the same."""
    from vsmsvsr.models import get_spec

    clip = city[:2]
    kept = msvsr.plan(clip, "PP-MSVSR", window=2, overlap=0, max_memory="64GB", tile=0)
    extra = int(get_spec("PP-MSVSR").spare.per_frame_pixel * kept.frames * clip.width * clip.height)
    assert kept.spare == extra == 864 * 2 * 256 * 144
    assert "keeps what it would recompute" in kept.describe()
    tight = msvsr.plan(clip, "PP-MSVSR", window=2, overlap=0, max_memory=kept.estimate - 1)
    assert tight.tile == 0 and tight.spare == 0 and tight.estimate == kept.estimate - extra  # whole frames
    outputs = []
    for plan in (kept, tight):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vsmsvsr"):
            outputs.append(_planes(msvsr.Upscale(clip, weights=weights, window=2, overlap=0, max_memory=plan.budget,
                                                 scene_change=False)))
        assert plan.describe().split(" (")[0] in caplog.text
    a, b = outputs
    assert len(a) == 2 and all(np.array_equal(x, y) for fa, fb in zip(a, b) for x, y in zip(fa, fb))


def _no_model(monkeypatch):
    """Fail the test if any filter loads a model."""
    import vsmsvsr.engine as engine
    import vsmsvsr.models as models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(models, "load_model", refuse)
    monkeypatch.setattr(engine, "Engine", refuse)


@pytest.mark.parametrize("call, hint", [
    (lambda c, w: msvsr.Upscale(c, weights=w, max_memory="100MB"), "shorter window/overlap (now 3/2: 3 frames"),
    (lambda c, w: msvsr.Colorize(c, max_memory="100MB"), "smaller render_factor (now 32"),
    (lambda c, w: msvsr.Remaster(c, colorize=True, max_memory="100MB"), "smaller mindim (now 360)"),
    (lambda c, w: msvsr.Interpolate(c, factor=2, max_memory="100MB"), "downscaled clip"),
])
def test_a_budget_too_small_fails_before_any_model_is_loaded(city, weights, monkeypatch, call, hint):
    _no_model(monkeypatch)
    with pytest.raises(ValueError) as info:
        call(city, weights)
    message = str(info.value)
    assert message.startswith("vsmsvsr.") and "max_memory 100 MB (max_memory) is too small" in message
    assert "256×144" in message and "an estimated" in message and hint in message


@pytest.mark.parametrize("call", [
    lambda c, w: msvsr.Upscale(c, weights=w),
    lambda c, w: msvsr.Colorize(c),
    lambda c, w: msvsr.Remaster(c, colorize=True),
    lambda c, w: msvsr.Interpolate(c, factor=2),
])
def test_the_default_budget_on_a_busy_machine_warns_and_goes_on(city, weights, monkeypatch, caplog, call):
    """No max_memory: the budget is a share of what is free now; too little of it is a warning (the
    filter goes on to load its model), never a refusal the user did not ask for."""
    import vsmsvsr.engine.memory as memory

    monkeypatch.setattr(memory, "available_cpu_memory", lambda: 100 * 10**6)
    _no_model(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="vsmsvsr"), pytest.raises(AssertionError, match="a model was loaded"):
        call(city, weights)
    assert "may be too small" in caplog.text and "set max_memory to make this an error" in caplog.text


@pytest.mark.parametrize("value, error, match", [
    ("lots", ValueError, "max_memory must be bytes, a size such as '8GB'"),
    (1.5, TypeError, "max_memory must be bytes"),
    ("0%", ValueError, "max_memory as a share must be > 0%"),
])
def test_bad_max_memory_is_refused_by_every_filter(city, value, error, match):
    for name, call in (("Upscale", lambda: msvsr.Upscale(city, max_memory=value)),
                       ("Colorize", lambda: msvsr.Colorize(city, max_memory=value)),
                       ("Remaster", lambda: msvsr.Remaster(city, max_memory=value)),
                       ("Interpolate", lambda: msvsr.Interpolate(city, factor=2, max_memory=value)),
                       ("plan", lambda: msvsr.plan(city, "DAIN", max_memory=value))):
        with pytest.raises(error, match=rf"^vsmsvsr\.{name}: {match}"):
            call()


def test_plan_describes_every_model(city):
    for model, kw in (("PP-MSVSR", {}), ("PP-MSVSR-L", {}), ("DeOldify", {"render_factor": 16}),
                      ("DeepRemaster", {"colorize": True, "mindim": 128}), ("DAIN", {})):
        plan = msvsr.plan(city, model, max_memory="64GB", **kw)
        assert plan.label == model and plan.fits and plan.estimate > 0 and plan.budget == 64 * 10**9
        assert plan.describe().startswith(f"{model} 256×144: ")
    with pytest.raises(TypeError, match="unexpected argument"):
        msvsr.plan(city, "DAIN", render_factor=16)


# ------------------------------------------------------------------ measured (subprocesses)


def _probe(*args: str) -> dict:
    return probe(*args, timeout=900)


#: (model, filter arguments) at two sizes each, none of them a calibration point. The budget is an
#: explicit 64GB, so that the plan (whole frames) does not depend on the memory free when the test runs.
MEASURED = [
    ("PP-MSVSR", ["224", "128", "--frames", "4", "--window", "2", "--overlap", "1"]),
    ("PP-MSVSR", ["288", "176", "--frames", "3", "--window", "3", "--overlap", "0"]),
    ("PP-MSVSR-L", ["160", "96", "--frames", "4", "--window", "2", "--overlap", "1"]),
    ("PP-MSVSR-L", ["256", "144", "--frames", "3", "--window", "3", "--overlap", "0"]),
    ("DeOldify", ["320", "180", "--frames", "2", "--render-factor", "16"]),
    ("DeOldify", ["320", "180", "--frames", "2", "--render-factor", "20"]),
    ("DeepRemaster", ["320", "180", "--frames", "7", "--mindim", "160"]),
    ("DeepRemaster", ["320", "180", "--frames", "7", "--mindim", "208"]),
    ("DAIN", ["240", "136", "--frames", "2"]),
    ("DAIN", ["400", "224", "--frames", "2"]),
]


@pytest.mark.parametrize("model, args", MEASURED, ids=[f"{m}-{a[0]}x{a[1]}-{a[-1]}" for m, a in MEASURED])
def test_the_estimate_is_within_20_percent_of_the_measured_peak(model, args):
    result = _probe("filter", model, "auto", *args, "--max-memory", "64GB")
    error = (result["estimate"] - result["peak"]) / result["peak"]
    assert abs(error) <= 0.20, (f"{result['plan']}: measured {format_bytes(result['peak'])}, "
                                f"estimated {format_bytes(result['estimate'])} ({error:+.0%})")


def test_an_explicit_budget_is_honoured_where_the_default_would_exceed_it():
    args = ["filter", "PP-MSVSR", "auto", "320", "192", "--frames", "4", "--window", "2", "--overlap", "1"]
    whole = _probe(*args, "--max-memory", "64GB", "--tile", "0")
    budget = int(whole["estimate"] * 0.6)
    tiled = _probe(*args, "--max-memory", str(budget))
    assert tiled["tile"] > 0, tiled["plan"]
    assert tiled["peak"] <= budget * 1.10, (f"{tiled['plan']}: peak {format_bytes(tiled['peak'])} > "
                                            f"budget {format_bytes(budget)} + 10%")
    assert whole["peak"] > budget * 1.10  # the untiled run would not have fitted


def test_a_model_without_a_memory_model_needs_an_explicit_tile(city, monkeypatch):
    from types import MappingProxyType

    import vsmsvsr.models as models

    bare = models.ModelSpec("BARE-MSVSR", "vsr", "vsmsvsr.models.msvsr:MSVSR", {}, weights="PP-MSVSR",
                            container={"generator": ""})
    monkeypatch.setattr(models, "MODEL_SPECS", MappingProxyType({**models.MODEL_SPECS, bare.name: bare}))
    _no_model(monkeypatch)
    with pytest.raises(ValueError, match=r"^vsmsvsr\.Upscale: BARE-MSVSR has no memory model .*give tile="):
        msvsr.Upscale(city, model="BARE-MSVSR")
    with pytest.raises(AssertionError, match="a model was loaded"):  # with tile=, it goes on to load
        msvsr.Upscale(city, model="BARE-MSVSR", tile=0)
