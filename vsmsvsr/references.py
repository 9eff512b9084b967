"""Reference colour images for DeepRemaster's colorization network (no VapourSynth here).

PaddleGAN's predictor takes every ``png``/``jpg``/``bmp`` of ``reference_dir``, letterboxes them
all to one size derived from their mean aspect ratio (short side 256, sides multiples of 16,
black margins) and feeds them as ``(1, Nref, 3, Hr, Wr)`` RGB in [0, 1]. :func:`fit_references`
does the same; :func:`reference_files` and :func:`read_images` find and read the files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ReferenceError", "fit_references", "read_images", "reference_files"]

#: File suffixes taken from a reference folder (case-insensitive).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Short side of the letterboxed references (PaddleGAN's ``minedge_dim``).
REFERENCE_SIDE = 256

PathLike = Union[str, os.PathLike]


class ReferenceError(ValueError):
    """Reference images missing or unreadable."""


def reference_files(references: PathLike | Sequence[PathLike], who: str) -> list[Path]:
    """The image files named by ``references``: a folder (its images, sorted by name) or a list
    of image paths. ``ReferenceError`` naming ``who`` for missing paths or an empty folder."""
    if isinstance(references, (str, os.PathLike)):
        folder = Path(references)
        if not folder.exists():
            raise ReferenceError(f"{who}: references folder or file {str(folder)!r} does not exist")
        if folder.is_file():
            return [folder]
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ReferenceError(f"{who}: no reference images ({', '.join(IMAGE_SUFFIXES)}) in {str(folder)!r}")
        return files
    if not isinstance(references, (list, tuple)) or not references:
        raise TypeError(f"{who}: references must be a folder, a non-empty list of image paths or a clip, "
                        f"got {type(references).__name__}")
    files = []
    for item in references:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"{who}: references must hold image paths, got {type(item).__name__}")
        path = Path(item)
        if not path.is_file():
            raise ReferenceError(f"{who}: reference image {str(path)!r} does not exist")
        files.append(path)
    return files


def read_images(files: Sequence[Path], who: str) -> list[np.ndarray]:
    """Each file as ``(h, w, 3)`` float32 RGB in [0, 1] (8- or 16-bit, grey or with alpha).
    ``ReferenceError`` naming the file if it cannot be decoded."""
    import cv2

    images = []
    for path in files:
        data = np.fromfile(str(path), dtype=np.uint8)  # cv2.imread cannot read every path encoding
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if image is None:
            raise ReferenceError(f"{who}: reference image {str(path)!r} cannot be read as an image")
        scale = 65535.0 if image.dtype == np.uint16 else 255.0
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
        else:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        images.append((image.astype(np.float32) / scale).clip(0.0, 1.0))
    return images


def fit_references(images: Sequence[np.ndarray], side: int = REFERENCE_SIDE) -> np.ndarray:
    """Letterbox ``images`` (``(h, w, 3)`` RGB in [0, 1]) to one size, PaddleGAN's way.

    The target is ``side`` on the short side of the mean aspect ratio; each image is resized
    (bicubic, aspect kept) so that its longer side matches the target's longer side, its sides
    rounded down to multiples of 16, and centred on black; what overhangs is cut off (PaddleGAN's
    ``addMergin`` pastes it the same way). Returns ``(n, 3, H, W)`` float32.
    """
    import cv2

    aspect = float(np.mean([im.shape[1] / im.shape[0] for im in images]))
    target_w = int(side * aspect) if aspect > 1 else side
    target_h = side if aspect >= 1 else int(side / aspect)
    out = np.zeros((len(images), 3, target_h, target_w), np.float32)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        if (w, h) != (target_w, target_h):
            scale = max(target_w, target_h) / max(w, h)
            w, h = max(16, int(w * scale / 16.0) * 16), max(16, int(h * scale / 16.0) * 16)
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)
        y, x = (target_h - h) // 2, (target_w - w) // 2
        # paste at (x, y), cropping whatever lies outside the canvas
        sy, sx = max(0, -y), max(0, -x)
        dy, dx = max(0, y), max(0, x)
        ch, cw = min(h - sy, target_h - dy), min(w - sx, target_w - dx)
        out[i, :, dy:dy + ch, dx:dx + cw] = image[sy:sy + ch, sx:sx + cw].transpose(2, 0, 1)
    return out
