"""Reference images for DeepRemaster: finding, reading, PaddleGAN's letterboxing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vsmsvsr.references import ReferenceError, fit_references, read_images, reference_files


def test_folder_lists_images_sorted_and_skips_other_files(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in reference_files(tmp_path, "f")] == ["a.JPG", "b.png"]


def test_read_images_gives_rgb_in_unit_range(tmp_path):
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    cv2.imwrite(str(tmp_path / "grey16.png"), np.full((4, 6), 65535, np.uint16))
    red, grey = read_images([tmp_path / "red.png", tmp_path / "grey16.png"], "f")
    np.testing.assert_array_equal(red[0, 0], [1.0, 0.0, 0.0])
    assert grey.shape == (4, 6, 3) and grey.max() == 1.0


def test_letterboxing_follows_the_mean_aspect():
    wide = np.ones((100, 200, 3), np.float32)
    square = np.ones((50, 50, 3), np.float32)
    out = fit_references([wide, square])
    assert out.shape == (2, 3, 256, 384)  # mean aspect 1.5: 384x256
    rows = np.flatnonzero(out[0, 0].max(axis=1) > 0)   # 200x100 becomes 384x192, black bars above and below
    assert (rows[0], rows[-1] + 1) == ((256 - 192) // 2, (256 + 192) // 2)
    # the square image is scaled to 384x384 (longer side of the target) and centred: its top and
    # bottom overhang and are cut off, as PaddleGAN's paste does; no distortion, no side bars
    assert out[1].min() > 0.999


def test_errors_name_the_caller(tmp_path):
    with pytest.raises(ReferenceError, match=r"^who: references folder or file .* does not exist"):
        reference_files(tmp_path / "nope", "who")
    bad = tmp_path / "bad.png"
    bad.write_text("text")
    with pytest.raises(ReferenceError, match=r"^who: reference image .*bad\.png.* cannot be read"):
        read_images([bad], "who")
    with pytest.raises(TypeError, match=r"^who: references must be a folder"):
        reference_files(42, "who")
