"""Devices: ``"cpu"``, ``"gpu"``, ``"gpu:N"`` parsed in one place, CUDA probed once per process.

:func:`parse_device` is syntax only (no Paddle); :func:`cuda_problem` asks Paddle, once, how many
GPUs it can use, and says why GPU ``N`` cannot be used (``None`` if it can). Every part of vsmsvsr
that takes a ``device`` argument goes through these, so the wording and the probe are the same.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

__all__ = ["Device", "parse_device", "cuda_problem", "gpu_count"]

_DEVICE = re.compile(r"^(cpu|gpu)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed device: ``kind`` ``"cpu"`` or ``"gpu"``, and the GPU's ``index``."""

    kind: str
    index: int = 0

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"gpu:{self.index}"

    def __iter__(self):  # (kind, index), as older callers unpack it
        return iter((self.kind, self.index))

    def __getitem__(self, i: int):
        return (self.kind, self.index)[i]


def parse_device(device: object, who: str) -> Device | None:
    """``None``, or the :class:`Device` of ``'cpu'``, ``'gpu'`` (= ``'gpu:0'``), ``'gpu:N'``.

    Syntax only (no GPU probing); ``TypeError``/``ValueError`` naming ``who`` otherwise.
    """
    if device is None:
        return None
    if isinstance(device, Device):
        return device
    if not isinstance(device, str):
        raise TypeError(f"{who}: device must be None or a str such as 'cpu', 'gpu' or 'gpu:0', "
                        f"got {type(device).__name__}")
    m = _DEVICE.match(device.strip().lower())
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise ValueError(f"{who}: device must be 'cpu', 'gpu' or 'gpu:N', got {device!r}")
    return Device(m.group(1), int(m.group(2) or 0))


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[int, str | None]:
    """(GPUs Paddle can use, why none can be used or None). Imports Paddle; run once."""
    from vsmsvsr._paddle import load_paddle

    paddle = load_paddle()
    if not paddle.device.is_compiled_with_cuda():
        return 0, (f"this Paddle build (paddlepaddle {paddle.__version__}) has no CUDA support; "
                   "install paddlepaddle-gpu")
    try:
        count = int(paddle.device.cuda.device_count())
    except Exception as exc:  # noqa: BLE001 - a broken driver shows up here
        return 0, f"Paddle cannot query the GPUs ({exc})"
    return count, None if count else "Paddle sees no GPU"


def gpu_count() -> int:
    """GPUs Paddle can use here (0 on a CPU-only build); probed once per process."""
    return _probe()[0]


def cuda_problem(index: int = 0) -> str | None:
    """Why GPU ``index`` cannot be used here, or ``None`` if it can (probed once per process)."""
    count, problem = _probe()
    if problem is not None:
        return problem
    if index >= count:
        return f"GPU {index} requested, but Paddle sees {count} GPU(s)"
    return None
