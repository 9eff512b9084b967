"""CIE L*a*b* conversions in the units DeepRemaster works in (pure numpy, no VapourSynth).

DeepRemaster (and PaddleGAN's predictor, via ``skimage.color``) works in CIE L*a*b* with the
sRGB transfer curve, D65 white and these network units:

* lightness ``l = L* / 100`` in [0, 1];
* chroma ``a = (a* + 128) / 255``, ``b = (b* + 128) / 255`` in [0, 1]; on the way back a*, b* are
  clipped to [-100, 100] as PaddleGAN's ``convertLAB2RGB`` does.

Grey values ``g`` (R = G = B = g, sRGB-encoded in [0, 1]) have a* = b* = 0 and
``L* = 116 f(lin(g)) - 16``, so :func:`gray_to_lightness` / :func:`lightness_to_gray` are exact
inverses on [0, 1]. The formulas and constants are skimage's (``rgb2lab``/``lab2rgb``), which the
tests check against.
"""
from __future__ import annotations

import numpy as np

__all__ = ["gray_to_lightness", "lightness_to_gray", "lab_to_rgb", "rgb_to_lab"]

_D65 = np.array([0.95047, 1.0, 1.08883])
# linear sRGB -> XYZ (skimage's xyz_from_rgb)
_XYZ_FROM_RGB = np.array([[0.412453, 0.357580, 0.180423],
                          [0.212671, 0.715160, 0.072169],
                          [0.019334, 0.119193, 0.950227]])
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_EPS = (6.0 / 29.0) ** 3          # f's linear segment below this
_SLOPE = 1.0 / (3.0 * (6.0 / 29.0) ** 2)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


def _linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.0031308, 1.055 * np.power(np.maximum(c, 0.0031308), 1.0 / 2.4) - 0.055, 12.92 * c)


def _f(t: np.ndarray) -> np.ndarray:
    return np.where(t > _EPS, np.cbrt(t), _SLOPE * t + 4.0 / 29.0)


def _f_inv(t: np.ndarray) -> np.ndarray:
    return np.where(t > 6.0 / 29.0, t ** 3, (t - 4.0 / 29.0) / _SLOPE)


def gray_to_lightness(gray: np.ndarray) -> np.ndarray:
    """sRGB grey in [0, 1] (clipped to it) -> ``L* / 100``, float32, same shape."""
    lin = _srgb_to_linear(np.clip(np.asarray(gray, np.float64), 0.0, 1.0))
    return ((116.0 * _f(lin) - 16.0) / 100.0).astype(np.float32)


def lightness_to_gray(lightness: np.ndarray) -> np.ndarray:
    """``L* / 100`` (clipped to [0, 1]) -> the sRGB grey of that lightness, float32 in [0, 1]."""
    fy = (np.clip(np.asarray(lightness, np.float64), 0.0, 1.0) * 100.0 + 16.0) / 116.0
    return np.clip(_linear_to_srgb(_f_inv(fy)), 0.0, 1.0).astype(np.float32)


def lab_to_rgb(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Network L*a*b* -> sRGB in [0, 1].

    Args:
        lightness: ``(..., h, w)`` ``L* / 100``.
        ab: ``(..., 2, h, w)`` chroma in network units ``(x * 255 - 128`` gives a*/b*, clipped to
            [-100, 100]).

    Returns ``(..., 3, h, w)`` float32 RGB, clipped to [0, 1] like skimage's ``lab2rgb``.
    """
    L = np.asarray(lightness, np.float64) * 100.0
    ab = np.clip(np.asarray(ab, np.float64) * 255.0 - 128.0, -100.0, 100.0)
    fy = (L + 16.0) / 116.0
    fx = fy + ab[..., 0, :, :] / 500.0
    fz = np.maximum(fy - ab[..., 1, :, :] / 200.0, 0.0)  # skimage clips negative z
    xyz = np.stack([_f_inv(fx), _f_inv(fy), _f_inv(fz)], axis=-3) * _D65[:, None, None]
    lin = np.einsum("ij,...jhw->...ihw", _RGB_FROM_XYZ, xyz)
    return np.clip(_linear_to_srgb(lin), 0.0, 1.0).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sRGB ``(..., 3, h, w)`` in [0, 1] -> (``L*/100`` ``(..., h, w)``, ab ``(..., 2, h, w)`` in
    network units, a*/b* clipped to [-128, 127] as PaddleGAN's ``convertRGB2LABTensor``)."""
    lin = _srgb_to_linear(np.clip(np.asarray(rgb, np.float64), 0.0, 1.0))
    xyz = np.einsum("ij,...jhw->...ihw", _XYZ_FROM_RGB, lin) / _D65[:, None, None]
    fx, fy, fz = (_f(xyz[..., i, :, :]) for i in range(3))
    L = 116.0 * fy - 16.0
    ab = np.stack([500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-3)
    return (L / 100.0).astype(np.float32), (np.clip(ab + 128.0, 0.0, 255.0) / 255.0).astype(np.float32)
