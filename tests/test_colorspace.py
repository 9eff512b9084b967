"""L*a*b* conversions in DeepRemaster's units, checked against scikit-image (PaddleGAN's own)."""
from __future__ import annotations

import numpy as np
from skimage import color

from vsmsvsr.colorspace import gray_to_lightness, lab_to_rgb, lightness_to_gray, rgb_to_lab


def test_rgb_to_lab_matches_skimage():
    rgb = np.random.default_rng(0).uniform(0, 1, (3, 20, 30))
    lab = color.rgb2lab(rgb.transpose(1, 2, 0))
    lightness, ab = rgb_to_lab(rgb)
    np.testing.assert_allclose(lightness * 100, lab[..., 0], atol=1e-4)
    np.testing.assert_allclose(ab * 255 - 128, np.clip(lab[..., 1:], -128, 127).transpose(2, 0, 1), atol=2e-4)


def test_lab_to_rgb_matches_paddlegans_conversion():
    rng = np.random.default_rng(1)
    lightness, ab = rng.uniform(0, 1, (4, 20, 30)), rng.uniform(0, 1, (4, 2, 20, 30))
    for i in range(4):
        lab = np.concatenate([lightness[i][None] * 100, np.clip(ab[i] * 255 - 128, -100, 100)]).transpose(1, 2, 0)
        expected = color.lab2rgb(lab).transpose(2, 0, 1)      # PaddleGAN's convertLAB2RGB
        np.testing.assert_allclose(lab_to_rgb(lightness, ab)[i], expected, atol=1e-5)


def test_grey_lightness_round_trip():
    g = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(lightness_to_gray(gray_to_lightness(g)), g, atol=1e-6)
    expected = color.rgb2lab(np.stack([g, g, g], -1)[None])[0, :, 0] / 100
    np.testing.assert_allclose(gray_to_lightness(g), expected, atol=1e-6)
