"""Keyed test weights (rule ``keyed-v1``, see ``tests/data/weights_rule.md``) and golden data access.

Weights are regenerated from the key lists in ``tests/data/<model>.keys.json``; the golden outputs
in ``tests/data/golden/`` were produced by PaddleGAN itself with these weights.
"""
from __future__ import annotations

import hashlib
import json
import math
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden"


def keyed_weights(rows: Iterable, gain: float = 1.0, gain_overrides: Iterable = (),
                  constants: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """rows: ``[[key, shape, dtype, role], ...]`` -> ``{key: float32 ndarray}`` (weights_rule.md §3)."""
    gain_overrides = list(gain_overrides)

    def rng(key: str) -> np.random.Generator:
        return np.random.default_rng(zlib.crc32(key.encode("utf-8")))

    def unit(key: str, n: int) -> np.ndarray:  # unit vector; math.fsum makes the norm BLAS-independent
        z = rng(key).standard_normal([n])
        return z / math.sqrt(math.fsum(z * z))

    affine = {"bias": (0.0, 0.02), "bn_mean": (0.0, 0.1), "bn_weight": (1.0, 0.1),
              "wn_g": (1.0, 0.1), "attn_gamma": (0.5, 0.1)}  # role: (offset, scale)
    out = {}
    for key, shape, _dtype, role in rows:
        shape = tuple(int(s) for s in shape)
        fan_in = math.prod(shape[1:])
        g = next((float(v) for p, v in gain_overrides if key.startswith(p)), float(gain))
        if role == "constant":
            a = np.array(constants[key], dtype=np.float64).reshape(shape)
        elif role == "bn_var":
            a = 0.5 + rng(key).uniform(0.0, 1.0, shape)
        elif role in ("sn_u", "sn_v"):
            a = unit(key, shape[0])
        elif role in ("conv_weight", "wn_v"):
            a = (g / math.sqrt(fan_in)) * rng(key).standard_normal(shape)
        elif role == "sn_weight":
            stem = key[: -len("weight_orig")] + "spectral_norm.weight_"
            a = ((1.0 / math.sqrt(fan_in)) * rng(key).standard_normal(shape)
                 + np.outer(unit(stem + "u", shape[0]), unit(stem + "v", fan_in)).reshape(shape))
        else:
            offset, scale = affine[role]
            a = offset + scale * rng(key).standard_normal(shape)
        out[key] = a.astype(np.float32)
    return out


@lru_cache(maxsize=None)
def load_spec(model: str) -> dict:
    """The parsed ``tests/data/<model>.keys.json`` (e.g. ``msvsr``, ``msvsr_large``)."""
    return json.loads((DATA / f"{model}.keys.json").read_text())


def key_rows(model: str, tag: str = "generator") -> list[list]:
    """Ordered state-dict rows ``[key, shape, dtype, role]`` of one submodel."""
    return load_spec(model)["submodels"][tag]["keys"]


def expected_shapes(model: str, tag: str = "generator") -> dict[str, tuple[int, ...]]:
    """Ordered ``{key: shape}`` of one submodel."""
    return {k: tuple(s) for k, s, _, _ in key_rows(model, tag)}


def model_weights(model: str, tag: str = "generator") -> dict[str, np.ndarray]:
    """Keyed float32 weights of one submodel, built with the model's gains and constants."""
    rule = load_spec(model)["weight_rule"]
    return keyed_weights(key_rows(model, tag), rule["gain"]["default"], rule["gain"]["overrides"],
                         rule["constants"])


def sha256_16(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype="<f4").tobytes()).hexdigest()[:16]


def sha256_all(weights: Mapping[str, np.ndarray], keys: Iterable[str]) -> str:
    h = hashlib.sha256()
    for k in keys:
        h.update(np.ascontiguousarray(weights[k], dtype="<f4").tobytes())
    return h.hexdigest()


@lru_cache(maxsize=None)
def golden_index() -> tuple[dict, ...]:
    return tuple(json.loads((GOLDEN / "index.json").read_text())["files"])


def golden(model: str, case: str, part: str) -> np.ndarray:
    """Golden array for ``model`` / ``case`` / ``part`` (``main`` = the input, ``aux``, ``out``, ``flow``)."""
    for entry in golden_index():
        if entry["model"] == model and entry["case"] == case and entry["part"] == part:
            return np.load(DATA / entry["file"])
    raise KeyError(f"no golden file for {model}/{case}/{part}")


def golden_cases(model: str) -> list[str]:
    return sorted({e["case"] for e in golden_index() if e["model"] == model})


def compare(y: np.ndarray, g: np.ndarray) -> tuple[float, float, float]:
    """(rel_l2, max_abs, max_abs limit) in float64 with the README criterion."""
    y64 = np.asarray(y, dtype=np.float64)
    g64 = np.asarray(g, dtype=np.float64)
    diff = y64 - g64
    rel = float(np.linalg.norm(diff.ravel()) / np.linalg.norm(g64.ravel()))
    return rel, float(np.abs(diff).max()), 1e-4 * max(1.0, float(np.abs(g64).max()))


def assert_close_to_golden(y: np.ndarray, g: np.ndarray, what: str) -> None:
    """rel_l2 <= 1e-5 and max_abs <= 1e-4 * max(1, max|g|) (weights_rule.md §5)."""
    assert y.shape == g.shape, f"{what}: shape {y.shape} != golden {g.shape}"
    rel, mx, lim = compare(y, g)
    assert rel <= 1e-5 and mx <= lim, f"{what}: rel_l2 {rel:.3e} (<= 1e-5), max_abs {mx:.3e} (<= {lim:.3e})"


#: How each model's official file holds its keyed state dicts: {file key: spec tag}, None = flat.
_OFFICIAL_LAYOUT = {"msvsr": {"generator": "generator"}, "msvsr_large": {"generator": "generator"},
                    "deoldify_stable": None, "deoldify_artistic": None,
                    "deepremaster": {"modelR": "modelR", "modelC": "modelC"}}


def save_keyed_weights(model: str, path) -> str:
    """The spec's keyed weights of ``model`` saved with ``paddle.save`` in the official file's
    layout (``msvsr``: under ``'generator'``; ``deepremaster``: ``modelR``/``modelC``); returns the path."""
    import paddle

    layout = _OFFICIAL_LAYOUT[model]
    if layout is None:
        obj = {k: paddle.to_tensor(v) for k, v in model_weights(model).items()}
    else:
        obj = {key: {k: paddle.to_tensor(v) for k, v in model_weights(model, tag).items()} for key, tag in layout.items()}
    paddle.save(obj, str(path))
    return str(path)
