"""vsmsvsr.engine.memory: budgets, the memory model, the tile plan (pure Python, no model)."""
from __future__ import annotations

import pytest

from vsmsvsr.engine import memory
from vsmsvsr.engine.memory import MemoryModel, plan_tiles, resolve_budget, tile_candidates, tile_starts

WHO = "vsmsvsr.Upscale"


@pytest.mark.parametrize("value, expected", [
    (8_000_000_000, 8_000_000_000), ("8GB", 8 * 10**9), ("8 GB", 8 * 10**9), ("8gb", 8 * 10**9),
    ("8GiB", 8 * 2**30), ("1.5G", 1_500_000_000), ("500MB", 500 * 10**6), ("512 MiB", 512 * 2**20),
    ("123456789", 123456789), ("50%", 5_000), ("12.5 %", 1_250), ("100%", 10_000),
])
def test_budget_forms(value, expected):
    assert resolve_budget(value, WHO, lambda: 10_000)[0] == expected


def test_default_budget_is_a_share_of_what_is_available():
    budget, how = resolve_budget(None, WHO, lambda: 10_000)
    assert budget == int(10_000 * memory.DEFAULT_SHARE)
    assert "default" in how


@pytest.mark.parametrize("value, error", [
    ("lots", ValueError), ("8 parsecs", ValueError), ("0", ValueError), (0, ValueError), (-5, ValueError),
    ("0%", ValueError), ("150%", ValueError), ("-1GB", ValueError), (True, TypeError), (8.5, TypeError),
    ([8], TypeError),
])
def test_bad_budgets_name_the_filter(value, error):
    with pytest.raises(error, match=r"^vsmsvsr\.Upscale: max_memory"):
        resolve_budget(value, WHO, lambda: 10_000)


def test_available_memory_is_positive_and_bounded_by_the_machine():
    import os

    available = memory.available_cpu_memory()
    assert 0 < available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_memory_model_terms():
    model = MemoryModel(100.0, 2.0, 3.0, attention=0.5)
    assert model.estimate(4, 2, 5) == 100 + 2 * 40 + 3 * 10 + 0.5 * 40**2
    assert model.estimate(4, 2, 5, attention=False) == 100 + 2 * 40 + 3 * 10


def test_tile_candidates_split_each_side_evenly_largest_first():
    sizes = tile_candidates(720, 1280, 16, 64)
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 64 and min(sizes) >= 64
    # two tiles across 1280 with 16 pixels shared: 648; two down 720: 368
    assert 648 in sizes and 368 in sizes
    for size in sizes[:-1]:
        starts = tile_starts(1280, min(size, 1280), 16)
        assert starts[-1] + min(size, 1280) == 1280


def _cost(per_pixel: int, fixed: int = 1000):
    calls = []

    def cost(th, tw, tiled):
        calls.append((th, tw, tiled))
        return fixed + per_pixel * th * tw + (500 if tiled else 0)

    return cost, calls


def _plan(budget, **kw):
    cost, _ = _cost(10)
    return plan_tiles(cost, label="M", width=1280, height=720, frames=18, budget=budget, budget_source="test",
                      backend="openvino", tile_overlap=16, min_tile=64, min_size=64, **kw)


def test_whole_frames_when_they_fit():
    plan = _plan(10**9)
    assert (plan.tile, plan.tiles_x, plan.tiles_y, plan.fits) == (0, 1, 1, True)
    assert "whole frames" in plan.describe()


def test_the_fitting_tile_that_computes_least_is_chosen_and_deterministic():
    budget = 1000 + 10 * 400 * 400 + 500
    plan = _plan(budget)
    assert plan.fits and 0 < plan.tile <= 400

    def work(size):
        th, tw = min(size, 720), min(size, 1280)
        return len(tile_starts(720, th, 16)) * len(tile_starts(1280, tw, 16)) * th * tw

    fitting = [s for s in tile_candidates(720, 1280, 16, 64) if 1000 + 10 * min(s, 720) * min(s, 1280) + 500 <= budget]
    assert plan.tile in fitting and work(plan.tile) == min(map(work, fitting))
    assert _plan(budget) == plan
    assert plan.tiles_x == len(tile_starts(1280, plan.tile, 16)) and plan.tiles_y == len(tile_starts(720, plan.tile, 16))
    line = plan.describe()
    assert f"tiles {plan.tiles_x}×{plan.tiles_y} of {plan.tile}×{plan.tile}" in line and "1280×720" in line


def test_nothing_fits_gives_the_smallest_tile_unfit():
    plan = _plan(100)
    assert plan.tile == 64 and not plan.fits
    err = memory.too_small(plan, WHO, "Do something.")
    assert isinstance(err, ValueError)
    message = str(err)
    assert message.startswith("vsmsvsr.Upscale: max_memory 100 MB".replace("100 MB", memory.format_bytes(100)))
    assert "64×64 tiles" in message and memory.format_bytes(plan.estimate) in message and "Do something." in message


def test_an_explicit_tile_is_estimated_not_changed():
    plan = _plan(100, tile=256)
    assert plan.tile == 256 and not plan.fits
    assert _plan(10**12, tile=0).tile == 0


def test_an_uneven_large_tile_loses_to_a_cheaper_smaller_one():
    # 720x404 with 368-pixel tiles: 2x2 tiles, 404 rows computed as 736; 210-pixel tiles do less work
    cost = lambda th, tw, tiled: th * tw  # noqa: E731 - any size up to 368x368 fits
    plan = plan_tiles(cost, label="M", width=720, height=404, frames=18, budget=368 * 368, budget_source="test",
                      backend="openvino", tile_overlap=16, min_tile=64, min_size=64)
    assert plan.tile != 368 and plan.tiles_x * plan.tiles_y * plan.tile ** 2 < 4 * 368 * 368
