"""The on-disk cache of exported static programs: listing, a size cap, clearing (no Paddle here).

Layout: ``<cache>/static/<model>-<digest>/<part>-<shapes>-<key>/`` (a program and ``meta.json``)
and ``<cache>/static/programs/<label>-<digest>/`` (official programs run as they are). A program
is exported once per model, input shape and Paddle version, so the cache grows with every new
frame size (DeOldify: ~830 MB per size). Its size is capped: after each export the least recently
used programs are removed until the cache fits ``$VSMSVSR_STATIC_CACHE_MAX`` (default 4 GB;
``"500MB"``, ``"8GB"``, bytes; ``0`` = no cap). A program in use by this process is never removed;
one removed while another process runs it costs that process nothing (Paddle has read it), and a
later run exports it again.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

__all__ = ["LIMIT_ENV", "DEFAULT_LIMIT", "ProgramEntry", "static_dir", "parse_size", "cache_limit",
           "list_programs", "mark_used", "enforce_limit", "clear", "human_size"]

log = logging.getLogger(__name__)

LIMIT_ENV = "VSMSVSR_STATIC_CACHE_MAX"
#: Default cap of the static-program cache, in bytes.
DEFAULT_LIMIT = 4 * 1000**3
_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "M": 1000**2, "MB": 1000**2, "G": 1000**3, "GB": 1000**3,
          "T": 1000**4, "TB": 1000**4, "KIB": 1024, "MIB": 1024**2, "GIB": 1024**3, "TIB": 1024**4}


def static_dir() -> Path:
    """``<cache>/static`` (:func:`vsmsvsr.weights.cache_dir`)."""
    from vsmsvsr.weights import cache_dir

    return cache_dir() / "static"


def parse_size(text: str | int, what: str = LIMIT_ENV) -> int:
    """Bytes of ``"4GB"``, ``"500 MB"``, ``"1.5GiB"``, ``"123"`` or an int (decimal units, as disks)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).upper() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(f"vsmsvsr: {what} must be a size such as 4GB, 500MB or a number of bytes, got {text!r}")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value < 0:
        raise ValueError(f"vsmsvsr: {what} must be >= 0, got {text!r}")
    return value


def cache_limit() -> int | None:
    """The cap in bytes from ``$VSMSVSR_STATIC_CACHE_MAX`` (default 4 GB); ``None`` = no cap."""
    raw = os.environ.get(LIMIT_ENV)
    limit = DEFAULT_LIMIT if raw is None or not raw.strip() else parse_size(raw)
    return limit or None


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ProgramEntry:
    """One cached program folder."""

    path: Path
    model: str
    size: int
    last_used: float

    @property
    def name(self) -> str:
        return self.path.name


def _folder_size(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _program_folders(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir():
            continue
        if model_dir.name == "programs":  # official programs: one level deeper, same shape
            yield from (p for p in sorted(model_dir.iterdir()) if p.is_dir() and not p.name.startswith("."))
            continue
        for folder in sorted(model_dir.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):  # ".export-*": being written
                yield folder


def list_programs(root: Path | None = None) -> list[ProgramEntry]:
    """Every cached program under ``root`` (default :func:`static_dir`), least recently used first."""
    root = static_dir() if root is None else root
    entries = []
    for folder in _program_folders(root):
        try:
            used = folder.stat().st_mtime
        except OSError:
            continue
        entries.append(ProgramEntry(folder, folder.parent.name, _folder_size(folder), used))
    return sorted(entries, key=lambda e: (e.last_used, str(e.path)))


def mark_used(folder: Path) -> None:
    """Record that ``folder``'s program was used now (the folder's mtime; its files are left as they
    are), for the LRU order."""
    try:
        os.utime(folder)
    except OSError:
        pass


def enforce_limit(root: Path, limit: int | None, keep: Iterable[Path] = ()) -> list[ProgramEntry]:
    """Remove least recently used programs under ``root`` until it holds at most ``limit`` bytes;
    never those in ``keep``. Returns what was removed (logged in one line)."""
    if limit is None:
        return []
    entries = list_programs(root)
    total = sum(e.size for e in entries)
    if total <= limit:
        return []
    keep = {Path(p).resolve() for p in keep}
    removed = []
    for entry in entries:
        if total <= limit:
            break
        if entry.path.resolve() in keep:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not entry.path.exists():
            total -= entry.size
            removed.append(entry)
    for model_dir in {e.path.parent for e in removed}:
        try:
            model_dir.rmdir()  # only if empty
        except OSError:
            pass
    if removed:
        log.info("vsmsvsr: static-program cache over %s (%s): removed %d least recently used program(s), %s; "
                 "now %s", human_size(limit), LIMIT_ENV, len(removed), human_size(sum(e.size for e in removed)),
                 human_size(total))
    return removed


def clear(root: Path | None = None, older_than_days: float | None = None) -> list[ProgramEntry]:
    """Remove every cached program (or those unused for ``older_than_days``); returns them."""
    root = static_dir() if root is None else root
    cutoff = None if older_than_days is None else time.time() - older_than_days * 86400
    removed = []
    for entry in list_programs(root):
        if cutoff is not None and entry.last_used >= cutoff:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry)
    if root.is_dir():
        for model_dir in root.iterdir():
            if model_dir.is_dir():
                if cutoff is None:  # interrupted exports too
                    for leftover in model_dir.glob(".export-*"):
                        shutil.rmtree(leftover, ignore_errors=True)
                try:
                    model_dir.rmdir()
                except OSError:
                    pass
    return removed
