"""Memory planning: what a model's call costs, the budget a filter may use, and the spatial tiling
that fits it.

A model's cost is a :class:`MemoryModel` (declared in its :class:`vsmsvsr.models.ModelSpec` per
backend family, calibrated by ``bench/calibrate_memory.py``): peak resident bytes of the process
while it runs one call on ``frames`` frames of ``height`` x ``width`` network pixels. A filter
adds its own buffers (window cache, tile accumulators) and :func:`plan_tiles` picks the spatial
tiling that fits the budget with the least work. The choice depends only on its arguments (clip
size, model, backend family, budget...), never on the machine it runs on, so two machines given
the same explicit budget cut the same tiles and compute the same frames.

Nothing here imports Paddle or knows a model by name.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

#: Share of the memory available when a graph is built that a filter may plan for by default; the
#: rest is for VapourSynth's frame cache, the encoder and the other processes of the machine.
DEFAULT_SHARE = 0.6

#: Peak RSS of a process that has imported VapourSynth, Paddle and OpenVINO and run nothing (bytes;
#: 445 MB measured with ``python -m tests.memory_probe empty``): part of every model's ``base``, counted once when
#: several models share a process (:func:`vsmsvsr.pipeline.step_budgets`).
PROCESS_BASE = 450_000_000

#: Backend name -> the family whose calibration applies (same runtime, same buffers).
_FAMILY = {"openvino": "openvino", "cpu": "cpu", "cpu-plain": "cpu", "dygraph": "dygraph",
           "gpu": "gpu", "trt": "gpu"}

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*$")
_SHARE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*$")


@dataclass(frozen=True)
class MemoryModel:
    """Peak resident bytes of a process running one call of a model (calibrated, see module doc):

        peak = base + per_frame_pixel * frames * h * w + per_pixel * h * w
               + attention * (frames * h * w) ** 2

    ``base``: Python, VapourSynth, Paddle, the backend's runtime and the model's weights and
    programs (bytes). ``per_frame_pixel``: what each frame of a call keeps per network pixel
    (features kept for the whole window). ``per_pixel``: per-call buffers that do not grow with
    the frame count (programs of the per-frame stages at the frame's size hold their work space).
    ``per_strip_pixel``: the same for the stages the segmented CPU backends run on row strips
    (:func:`strip_shape_pixels`: each distinct strip shape is a program with its own buffers).
    ``attention``: bytes per squared window pixel, for self-attention over a whole window
    (DeepRemaster's colorization: two float32 matrices of ``(frames * h * w / 64)^2``, i.e.
    2 * 4 / 64^2). Sizes are the network's input (after any padding), in pixels.
    """

    base: float
    per_frame_pixel: float
    per_pixel: float = 0.0
    attention: float = 0.0

    def estimate(self, frames: int, height: int, width: int, attention: bool = True) -> int:
        """Peak bytes of one call on ``frames`` frames of ``height`` x ``width`` pixels
        (``attention=False``: without the self-attention term, for a call that has none)."""
        pixels = height * width
        total = self.base + self.per_frame_pixel * frames * pixels + self.per_pixel * pixels
        if attention:
            total += self.attention * float(frames * pixels) ** 2
        return int(math.ceil(total))


def family(backend_name: str) -> str:
    """The calibration family of a backend name (``"openvino"``, ``"cpu"``, ``"dygraph"``, ``"gpu"``)."""
    return _FAMILY.get(backend_name, "dygraph")


def memory_model(table: Any, backend_name: str, label: str = "this model") -> MemoryModel:
    """The :class:`MemoryModel` of ``table`` (``{family: MemoryModel}``) for ``backend_name``.

    GPU backends have no calibration of their own yet (no GPU was at hand to measure): they use
    the dygraph figures, which keep the most of the CPU families. ``ValueError`` for a model with
    no table (a ``ModelSpec`` without ``memory=``): nothing can be planned for it.
    """
    if not table:
        raise ValueError(f"{label} has no memory model (ModelSpec.memory, measured by bench/calibrate_memory.py): "
                         "no memory plan can be made (Upscale: give tile= explicitly, 0 = whole frames)")
    fam = family(backend_name)
    if fam in table:
        return table[fam]
    return table["dygraph"] if "dygraph" in table else max(table.values(), key=lambda m: m.per_frame_pixel)


# --------------------------------------------------------------------------------------------
# budgets


def format_bytes(n: float) -> str:
    """``7.1 GB``, ``512 MB`` (decimal units, like the budgets users write)."""
    if n >= 10**9:
        return f"{n / 10**9:.1f} GB"
    return f"{n / 10**6:.0f} MB"


def _cgroup_room() -> int | None:
    """Bytes this process's cgroup (v2) may still use, if it has a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_cpu_memory() -> int:
    """Bytes the machine can give now: ``MemAvailable`` (and the cgroup's room, if smaller)."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    room = _cgroup_room()
    return min(available, room) if room is not None else available


def available_gpu_memory(device_id: int) -> int:
    """Free bytes on CUDA GPU ``device_id`` (imports Paddle)."""
    import paddle

    cuda = paddle.device.cuda
    if hasattr(cuda, "mem_get_info"):
        free, _total = cuda.mem_get_info(device_id)
        return int(free)
    return int(cuda.get_device_properties(device_id).total_memory * 0.9)


class Budget(int):
    """Bytes, with where they came from (``source``) and whether a user set them (``explicit``):
    what a caller that shares out a budget (the enhance job) hands each filter as ``max_memory``.
    A filter refuses to start over an explicit budget and only warns over a default one."""

    source: str
    explicit: bool

    def __new__(cls, value: int, source: str, explicit: bool) -> "Budget":
        budget = super().__new__(cls, value)
        budget.source, budget.explicit = source, explicit
        return budget


def is_explicit(max_memory: Any) -> bool:
    """Whether a ``max_memory`` argument is a limit the user set (not ``None``, not a default share)."""
    return max_memory is not None and getattr(max_memory, "explicit", True)


def resolve_budget(max_memory: Any, who: str, available: Callable[[], int]) -> tuple[int, str]:
    """``(bytes, how)`` from a ``max_memory`` argument.

    ``None``: :data:`DEFAULT_SHARE` of ``available()`` (the memory free when the graph is built);
    an int: bytes; a string: ``"8GB"``, ``"500 MB"``, ``"8GiB"`` (K/M/G/T and KB/MB/GB/TB are
    decimal, KiB/MiB/GiB/TiB binary, like disk sizes) or ``"50%"`` (of ``available()``).
    ``how`` says where the figure came from, for the log line. ``TypeError``/``ValueError`` naming
    ``who`` for anything else.
    """
    what = f"{who}: max_memory must be bytes, a size such as '8GB' or a share such as '50%'"
    if max_memory is None:
        return int(available() * DEFAULT_SHARE), f"default: {DEFAULT_SHARE:.0%} of available memory"
    if isinstance(max_memory, bool) or not isinstance(max_memory, (int, str)):
        raise TypeError(f"{what}, got {type(max_memory).__name__}")
    if isinstance(max_memory, Budget) and max_memory > 0:
        return int(max_memory), max_memory.source
    if isinstance(max_memory, int):
        if max_memory <= 0:
            raise ValueError(f"{what}, got {max_memory}")
        return max_memory, "max_memory"
    share = _SHARE.match(max_memory)
    if share:
        percent = float(share.group(1))
        if not 0 < percent <= 100:
            raise ValueError(f"{who}: max_memory as a share must be > 0% and <= 100%, got {max_memory!r}")
        return int(available() * percent / 100), f"{max_memory.strip()} of available memory"
    size = _SIZE.match(max_memory)
    unit = size.group(2).lower() if size else None
    if not size or unit not in _UNITS:
        raise ValueError(f"{what}, got {max_memory!r}")
    value = int(float(size.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ValueError(f"{what}, got {max_memory!r}")
    return value, "max_memory"


# --------------------------------------------------------------------------------------------
# plans


@dataclass(frozen=True)
class MemoryPlan:
    """What a filter will do within its budget (see :func:`plan_tiles`).

    Attributes:
        label: the model (``"PP-MSVSR"``).
        width, height: the clip's frame size (input pixels).
        frames: frames per call (a window with its context frames, or a model's batch).
        tile: ``0`` for whole frames, else the square tile size in input pixels (what ``tile=``
            of :func:`vsmsvsr.Upscale` takes); ``tile_width``/``tile_height`` are its size on
            this clip and ``tiles_x``/``tiles_y`` how many there are across and down.
        estimate: estimated peak bytes of the process while the filter runs one call.
        budget: the bytes it was planned for; ``budget_source`` says where they came from.
        backend: the backend name the estimate was made for.
        spare: bytes of ``estimate`` the model spends keeping results it would otherwise
            recompute (a ``ModelSpec.spare``, taken only where the budget has room for it); 0: none.
    """

    label: str
    width: int
    height: int
    frames: int
    tile: int
    tile_width: int
    tile_height: int
    tiles_x: int
    tiles_y: int
    estimate: int
    budget: int
    budget_source: str
    backend: str
    spare: int = 0

    @property
    def fits(self) -> bool:
        return self.estimate <= self.budget

    def describe(self) -> str:
        """One line: ``PP-MSVSR 1280×720: tiles 2×2 of 656×376, est. 7.1 GB of 8.0 GB``."""
        if self.tile:
            how = f"tiles {self.tiles_x}×{self.tiles_y} of {self.tile_width}×{self.tile_height}"
        else:
            how = "whole frames"
        kept = f", keeps what it would recompute ({format_bytes(self.spare)})" if self.spare else ""
        return (f"{self.label} {self.width}×{self.height}: {how}, {self.frames} frames per call{kept}, "
                f"est. {format_bytes(self.estimate)} of {format_bytes(self.budget)} "
                f"({self.backend}; {self.budget_source})")


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of ``tile``-pixel tiles covering ``size``, ``tile - overlap`` apart; the last tile
    ends flush with ``size`` (it may overlap its neighbour more)."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def tile_candidates(height: int, width: int, overlap: int, min_tile: int) -> list[int]:
    """Square tile sizes worth trying, largest first: for n = 1, 2, ... tiles across either side,
    the smallest tile that covers it in n tiles overlapping by ``overlap`` (no other size cuts
    fewer tiles for more memory), down to ``min_tile``."""
    sizes = set()
    for side in (height, width):
        for n in range(2, side // max(min_tile - overlap, 1) + 2):
            size = -(-(side + (n - 1) * overlap) // n)
            if size >= min_tile and size > 2 * overlap:
                sizes.add(size)
    return sorted(sizes, reverse=True) + ([min_tile] if min_tile not in sizes else [])


def plan_tiles(cost: Callable[[int, int, bool], int], *, label: str, width: int, height: int, frames: int,
               budget: int, budget_source: str, backend: str, tile_overlap: int, min_tile: int,
               min_size: int, tile: int | None = None) -> MemoryPlan:
    """The cheapest spatial tiling of a ``width`` x ``height`` clip whose estimate fits ``budget``.

    ``cost(tile_height, tile_width, tiled)`` is the estimated peak bytes with tiles of that network
    size (``tiled=False``: whole frames). Frames smaller than ``min_size`` are padded to it (as
    :func:`vsmsvsr.engine.run_window` does). ``tile``: an explicit choice (``0`` = whole frames) that
    is only estimated, not changed. Without one, whole frames are chosen if they fit, else among
    the candidate tiles (:func:`tile_candidates`) that fit, the one that computes the fewest pixels
    (tiles x tile area; ties: the larger tile); if none fits, the plan holds the smallest tile and
    ``fits`` is False (the caller raises).
    """
    ph, pw = max(height, min_size), max(width, min_size)

    def plan(size: int) -> MemoryPlan:
        if size <= 0 or (ph <= size and pw <= size):
            return MemoryPlan(label, width, height, frames, 0, width, height, 1, 1, cost(ph, pw, False),
                              budget, budget_source, backend)
        th, tw = min(size, ph), min(size, pw)
        return MemoryPlan(label, width, height, frames, size, tw, th,
                          len(tile_starts(pw, tw, tile_overlap)), len(tile_starts(ph, th, tile_overlap)),
                          cost(th, tw, True), budget, budget_source, backend)

    if tile is not None:
        return plan(tile)
    whole = plan(0)
    if whole.fits:
        return whole
    fitting = [p for p in map(plan, tile_candidates(ph, pw, tile_overlap, min_tile)) if p.fits]
    if not fitting:
        return plan(min_tile)
    # The least work: square tiles cut a frame's sides unevenly (368-pixel tiles of a 404-pixel side
    # overlap by 332), so the largest tile that fits is not always the cheapest.
    return min(fitting, key=lambda p: (p.tiles_x * p.tiles_y * p.tile_width * p.tile_height, -p.tile))


def budget_for(max_memory: Any, who: str, runs_on: str | None, device_id: int = 0) -> tuple[int, str]:
    """:func:`resolve_budget` against the memory of where a backend runs: free GPU memory for a
    GPU backend (``runs_on == "gpu"``), available RAM otherwise."""
    if runs_on == "gpu":
        return resolve_budget(max_memory, who, lambda: available_gpu_memory(device_id))
    return resolve_budget(max_memory, who, available_cpu_memory)


def too_small(plan: MemoryPlan, who: str, hint: str) -> ValueError:
    """The error of a plan that does not fit: names the budget, the estimate and what to change."""
    smallest = f"even {plan.tile_width}×{plan.tile_height} tiles need" if plan.tile else "it needs"
    return ValueError(
        f"{who}: max_memory {format_bytes(plan.budget)} ({plan.budget_source}) is too small for {plan.label} on "
        f"{plan.width}×{plan.height} with backend {plan.backend!r}: {smallest} an estimated "
        f"{format_bytes(plan.estimate)} ({plan.frames} frames per call). {hint}")
