"""Fixtures of the engine tests: PP-MSVSR's keyed weights, a golden window and its dygraph output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.keyed import assert_close_to_golden, golden, model_weights

MODEL = "PP-MSVSR"


@pytest.fixture(scope="module")
def weights() -> dict:
    return model_weights("msvsr")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return golden("msvsr", "b", "main")[0]  # (3, 3, 64, 72)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A program cache shared by the tests of one module."""
    return tmp_path_factory.mktemp("static")


@pytest.fixture(scope="module")
def reference(weights, frames) -> np.ndarray:
    """Dygraph backend output, checked against PaddleGAN's golden output."""
    from vsmsvsr.engine import Engine

    out = Engine(MODEL, weights, backend="dygraph")(frames)
    assert out.shape == (3, 3, 256, 288) and out.dtype == np.float32
    assert_close_to_golden(out[None], golden("msvsr", "b", "out"), "Engine(dygraph)")
    return out
