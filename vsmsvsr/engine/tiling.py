"""Windows of any size: padding to the model's minimum and spatial tiles cross-faded at the seams."""
from __future__ import annotations

from typing import Callable

import numpy as np

from vsmsvsr.engine.memory import tile_starts as _tile_starts
from vsmsvsr.engine.runner import MIN_SIZE





def _blend_weights(starts: list[int], tile: int) -> list[np.ndarray]:
    """1-D weights per tile: linear ramps across the pixels shared with each neighbour, so that
    overlapping tiles cross-fade (the weights of two neighbours sum to 1 there)."""
    weights = []
    for i, start in enumerate(starts):
        weight = np.ones(tile, np.float32)
        if i > 0:  # shared with the previous tile: [start, previous end)
            shared = starts[i - 1] + tile - start
            weight[:shared] = np.minimum(weight[:shared], (np.arange(shared) + 0.5) / shared)
        if i < len(starts) - 1:  # shared with the next tile: [next start, end)
            shared = start + tile - starts[i + 1]
            weight[tile - shared:] = np.minimum(weight[tile - shared:], (np.arange(shared)[::-1] + 0.5) / shared)
        weights.append(weight)
    return weights


def run_window(engine: Callable[[np.ndarray], np.ndarray], frames: np.ndarray, *, scale: int = 4,
               tile: int = 0, tile_overlap: int = 16, min_size: int = MIN_SIZE,
               keep: slice | None = None) -> np.ndarray:
    """Super-resolve one window of any size: ``frames`` (t, 3, h, w) -> (t, 3, scale·h, scale·w).

    ``keep``: only these frames of the result are wanted (a window's output frames, without its
    context): the result holds just them, and tiles accumulate just them (at 4x a frame of
    1280x720 is 177 MB in float32, so context frames' outputs are worth not keeping).

    Frames smaller than ``min_size`` are reflect-padded for the network and the result is cropped
    back. With ``tile > 0`` the frame is cut into tiles of at most ``tile`` x ``tile`` input pixels
    overlapping by ``tile_overlap``; every tile runs through the whole window (the recurrence sees
    all frames) and neighbouring tiles are cross-faded linearly across their shared pixels, so no
    seam shows. Tiles bound the memory of one call to one tile's worth (chiefly for GPUs).
    """
    t, c, h, w = frames.shape
    ph, pw = max(h, min_size), max(w, min_size)
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, 0), (0, ph - h), (0, pw - w)), mode="reflect")
    keep = keep if keep is not None else slice(None)
    if tile <= 0 or (ph <= tile and pw <= tile):
        out = engine(frames)
        if (out.shape[0], out.shape[2], out.shape[3]) == (len(range(t)[keep]), h * scale, w * scale):
            return out
        return np.ascontiguousarray(out[keep, :, : h * scale, : w * scale])  # and the rest is freed
    th, tw = min(tile, ph), min(tile, pw)
    ys, xs = _tile_starts(ph, th, tile_overlap), _tile_starts(pw, tw, tile_overlap)
    wys = [np.repeat(v, scale) for v in _blend_weights(ys, th)]
    wxs = [np.repeat(v, scale) for v in _blend_weights(xs, tw)]
    acc = np.zeros((len(range(t)[keep]), c, ph * scale, pw * scale), np.float32)
    total = np.zeros((ph * scale, pw * scale), np.float32)
    for y, wy in zip(ys, wys):
        for x, wx in zip(xs, wxs):
            part = engine(np.ascontiguousarray(frames[:, :, y:y + th, x:x + tw]))[keep]
            weight = wy[:, None] * wx[None, :]
            region = (slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            acc[(slice(None), slice(None), *region)] += part * weight
            total[region] += weight
            del part
    acc /= total  # in place: a second full-size window would double the peak at large sizes
    if (ph, pw) == (h, w):
        return acc
    return np.ascontiguousarray(acc[:, :, : h * scale, : w * scale])
