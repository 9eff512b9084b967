"""Official PaddleGAN weight files: registry, user cache, download, verification and safe loading.

Nothing here imports Paddle: a ``.pdparams`` file is a pickle of numpy arrays, which
:func:`load_state_dict` reads with a restricted unpickler that never executes code from the file.

Cache layout (``cache_dir()``)::

    <cache>/weights/<file name>            the official file, byte for byte
    <cache>/weights/<file name>.sha256     its sha256, recorded at the first successful download
"""
from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import http.client
import io
import logging
import os
import pickle
import re
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np

__all__ = [
    "OFFICIAL",
    "WeightFile",
    "WeightsError",
    "UnsafePickleError",
    "cache_dir",
    "weights_dir",
    "cached_path",
    "fetch",
    "download",
    "remove",
    "verify",
    "status",
    "load_state_dict",
    "check_state_dict",
]

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^vsmsvsr\.[\w.]+: ")

_BASE = "https://paddlegan.bj.bcebos.com"
#: Environment variable naming a mirror that replaces :data:`_BASE` in every official URL.
MIRROR_ENV = "VSMSVSR_WEIGHTS_MIRROR"


class WeightsError(ValueError):
    """A weight file is missing, cannot be downloaded, is corrupt or does not fit the model."""


class UnsafePickleError(WeightsError):
    """A ``.pdparams`` file references something other than what ``paddle.save`` writes."""


@dataclass(frozen=True)
class WeightFile:
    """One official PaddleGAN file.

    ``sha256`` is the published checksum when one is known; PaddleGAN publishes none, so it is
    ``None`` and the checksum is recorded at the first successful download instead.
    """

    model: str
    url: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def source_url(self) -> str:
        """Where the file is downloaded from: ``url``, or with ``$VSMSVSR_WEIGHTS_MIRROR`` set, the
        same path under the mirror (``https://paddlegan.bj.bcebos.com/models/X`` -> ``<mirror>/models/X``)."""
        mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
        if mirror and self.url.startswith(_BASE + "/"):
            return mirror + self.url[len(_BASE):]
        return self.url


#: Every official file the project uses, by model name.
OFFICIAL: dict[str, WeightFile] = {
    f.model: f
    for f in (
        WeightFile("PP-MSVSR", f"{_BASE}/models/PP-MSVSR_reds_x4.pdparams"),
        WeightFile("PP-MSVSR-BD", f"{_BASE}/models/PP-MSVSR_vimeo90k_x4.pdparams"),
        WeightFile("PP-MSVSR-L", f"{_BASE}/models/PP-MSVSR-L_reds_x4.pdparams"),
        WeightFile("DeOldify", f"{_BASE}/applications/DeOldify_stable.pdparams"),
        WeightFile("DeOldify-artistic", f"{_BASE}/applications/DeOldify_art.pdparams"),
        WeightFile("DeepRemaster", f"{_BASE}/applications/deep_remaster.pdparams"),
        WeightFile("DAIN", f"{_BASE}/applications/DAIN_weight.tar"),
    )
}

#: Seconds allowed to reach the server (DNS lookup included) and for each read of the body.
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 30.0
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# cache


def cache_dir() -> Path:
    """Root of the user cache: ``$VSMSVSR_HOME`` if set, else the platform's user cache dir.

    Linux: ``$XDG_CACHE_HOME/vsmsvsr`` (``~/.cache/vsmsvsr``); macOS: ``~/Library/Caches/vsmsvsr``;
    Windows: ``%LOCALAPPDATA%\\vsmsvsr\\Cache``. Not created until something is written.
    """
    home = os.environ.get("VSMSVSR_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vsmsvsr", appauthor=False))


def weights_dir() -> Path:
    """Folder of the cached official weight files (``cache_dir() / "weights"``)."""
    return cache_dir() / "weights"


def _entry(name: str, who: str) -> WeightFile:
    try:
        return OFFICIAL[name]
    except KeyError:
        raise WeightsError(
            f"{who}: no official weights named {name!r}; valid: {', '.join(OFFICIAL)}"
        ) from None


def cached_path(name: str) -> Path:
    """Where the official file of model ``name`` lives in the cache (whether or not it is there)."""
    return weights_dir() / _entry(name, "vsmsvsr.weights.cached_path").filename


def _sha_record(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _place_by_hand(entry: WeightFile, path: Path) -> str:
    return (
        f"Download {entry.source_url} by other means and place it at {path} "
        f"(or pass the file's path explicitly as weights=...)."
    )


# --------------------------------------------------------------------------------------------
# download


def _open(url: str, connect_timeout: float, read_timeout: float):
    """urlopen with a hard deadline on connecting: the socket timeout does not cover DNS."""
    request = urllib.request.Request(url, headers={"User-Agent": "vsmsvsr"})
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vsmsvsr-connect")
    future = pool.submit(urllib.request.urlopen, request, timeout=read_timeout)
    pool.shutdown(wait=False)
    try:
        return future.result(timeout=connect_timeout)
    except concurrent.futures.TimeoutError:
        future.add_done_callback(lambda f: f.exception() is None and f.result().close())
        raise urllib.error.URLError(f"no connection within {connect_timeout:g} s") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"network error: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def download(
    entry: WeightFile,
    dest: Path,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    progress: bool = True,
    check: Callable[[Path], None] | None = None,
) -> str:
    """Download ``entry.source_url`` to ``dest`` atomically and return its sha256 (hex).

    The body goes to a temporary file beside ``dest`` and is renamed over it only when complete
    and, with ``check``, accepted by ``check(temporary path)`` (which raises :class:`WeightsError`
    otherwise): after any failure (HTTP error, timeout, body shorter or longer than
    Content-Length, checksum mismatch, a file that is not the expected weights, Ctrl-C) nothing
    exists at ``dest``. A progress bar goes to stderr.
    Raises :class:`WeightsError` naming the URL and the path to place the file by hand.
    """
    from tqdm import tqdm

    url = entry.source_url
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    received, expected, truncated = 0, None, False
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = _open(url, connect_timeout, read_timeout)
                with response:
                    length = response.headers.get("Content-Length")
                    expected = int(length) if length is not None else None
                    with tqdm(
                        total=expected, unit="B", unit_scale=True, unit_divisor=1024,
                        desc=entry.filename, file=sys.stderr, disable=not progress, leave=False,
                    ) as bar:
                        while True:
                            block = response.read(_CHUNK)
                            if not block:
                                break
                            out.write(block)
                            digest.update(block)
                            received += len(block)
                            bar.update(len(block))
            except http.client.IncompleteRead:
                truncated = True  # the server closed the connection before the announced end
            except TimeoutError:
                raise WeightsError(
                    f"vsmsvsr.weights: download of {entry.filename} from {url} stalled: no data for "
                    f"{read_timeout:g} s after {received} bytes. {_place_by_hand(entry, dest)}"
                ) from None
            except Exception as exc:  # noqa: BLE001 - every failure becomes one clear message
                raise WeightsError(
                    f"vsmsvsr.weights: could not download {entry.model} weights ({entry.filename}) "
                    f"from {url}: {_describe(exc)}. {_place_by_hand(entry, dest)}"
                ) from None
            if truncated or (expected is not None and received != expected):
                raise WeightsError(
                    f"vsmsvsr.weights: truncated download of {entry.filename} from {url}: "
                    f"got {received} of {expected if expected is not None else '?'} bytes. "
                    f"{_place_by_hand(entry, dest)}"
                )
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if entry.sha256 is not None and sha != entry.sha256:
            raise WeightsError(
                f"vsmsvsr.weights: {entry.filename} from {url} has sha256 {sha}, "
                f"expected {entry.sha256}; the download is corrupt or the file was replaced upstream."
            )
        if check is not None:
            try:
                check(tmp)
            except WeightsError as exc:
                raise WeightsError(
                    f"vsmsvsr.weights: {url} did not give {entry.model}'s weights, so nothing was cached: "
                    f"{_PREFIX.sub('', str(exc), count=1)} (a proxy's or mirror's error page, or a cut-short "
                    f"download?). {_place_by_hand(entry, dest)}"
                ) from None
        os.replace(tmp, dest)
        return sha
    finally:
        tmp.unlink(missing_ok=True)


def fetch(
    name: str,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    progress: bool = True,
) -> Path:
    """Return the path of model ``name``'s official file, downloading it into the cache if needed.

    A cached file is checked against its recorded sha256 before it is returned; a file placed in
    the cache by hand gets its checksum recorded on first use. Raises :class:`WeightsError` when
    the file cannot be downloaded (naming the URL and where to put the file by hand) or when a
    cached file no longer matches its checksum.
    """
    entry = _entry(name, "vsmsvsr.weights.fetch")
    path = weights_dir() / entry.filename
    if path.is_file():
        verify(name)
        return path
    log.info("downloading %s weights from %s to %s", name, entry.source_url, path)
    sha = download(entry, path, connect_timeout=connect_timeout,
                   read_timeout=read_timeout, progress=progress, check=functools.partial(check_file, name))
    _write_atomic(_sha_record(path), f"{sha}  {entry.filename}\n".encode())
    log.info("saved %s (sha256 %s)", path, sha)
    return path


def check_file(name: str, path: Path) -> None:
    """Raise :class:`WeightsError` unless ``path`` holds weights of model ``name``: for a model of
    :data:`vsmsvsr.models.MODEL_SPECS`, readable by its reader with exactly its architecture's
    keys and shapes; for any other registered name, a readable ``.pdparams`` file."""
    from vsmsvsr import models

    if name in models.MODEL_SPECS:
        models.check_weights_file(name, path, what="the file")
    else:
        load_state_dict(path)


def remove(name: str) -> list[Path]:
    """Delete model ``name``'s cached file and its checksum record; returns what was deleted."""
    path = cached_path(name)
    removed = []
    for p in (path, _sha_record(path)):
        if p.is_file():
            p.unlink()
            removed.append(p)
    return removed


def bad_cache_hint(name: str, path: Path) -> str:
    """What to tell a user whose cached official file of ``name`` does not load."""
    return (f"{path} is in the cache as {name}'s official file but is not a file of that model (an "
            f"error page or a cut-short download?); remove it with `python -m vsmsvsr weights remove {name}` "
            f"and download it again (`python -m vsmsvsr weights download {name}`)")


def verify(name: str) -> str:
    """Check the cached file of model ``name`` against its recorded (or published) sha256.

    Returns ``"ok"`` when it matches and ``"recorded"`` when no checksum existed yet (a file placed by
    hand): its sha256 is recorded now. Raises :class:`WeightsError` when the file is missing or does
    not match.
    """
    entry = _entry(name, "vsmsvsr.weights.verify")
    path = weights_dir() / entry.filename
    if not path.is_file():
        raise WeightsError(
            f"vsmsvsr.weights: {name} weights are not in the cache ({path}). "
            f"Run `python -m vsmsvsr weights download {name}`, or: {_place_by_hand(entry, path)}"
        )
    actual = _sha256_file(path)
    record = _sha_record(path)
    expected = entry.sha256
    if expected is None and record.is_file():
        expected = record.read_text().split()[0]
    if expected is None:
        _write_atomic(record, f"{actual}  {entry.filename}\n".encode())
        log.info("recorded sha256 %s for %s (placed by hand)", actual, path)
        return "recorded"
    if actual != expected:
        raise WeightsError(
            f"vsmsvsr.weights: {path} is corrupt: sha256 {actual}, recorded {expected}. "
            f"Delete it and run `python -m vsmsvsr weights download {name}`."
        )
    return "ok"


def status(name: str) -> str:
    """One word for ``weights list``: ``missing``, ``unverified`` (no checksum yet) or ``cached``.

    Cheap: it does not hash the file (``verify`` does).
    """
    path = cached_path(name)
    if not path.is_file():
        return "missing"
    return "cached" if _sha_record(path).is_file() or OFFICIAL[name].sha256 else "unverified"


# --------------------------------------------------------------------------------------------
# safe loading

# Exactly what paddle.save (protocols 2-4, numpy 1.x and 2.x) references in a .pdparams pickle.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("__builtin__", "tuple"): tuple,  # protocol 2 spells builtins the Python 2 way
    ("__builtin__", "list"): list,
    ("__builtin__", "dict"): dict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}
try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x (e.g. beside paddlepaddle-gpu 2.6)
    from numpy.core import multiarray as _multiarray
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED_GLOBALS[(_mod, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED_GLOBALS[(_mod, "scalar")] = _multiarray.scalar


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, 'latin1').
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r} is not admitted")
    return text.encode("latin1")


_ALLOWED_GLOBALS[("_codecs", "encode")] = _latin1_encode
_STRUCTURE_KEY = "StructuredToParameterName@@"


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load {module}.{name}: a .pdparams file written by paddle.save holds "
                "only numpy arrays, dicts, lists, tuples, numbers and strings"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a persistent reference: not written by paddle.save")


def _restore_tensors(obj: Any) -> Any:
    # paddle.save stores a tensor nested below the top level as a (name, ndarray) tuple.
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    if isinstance(obj, dict):
        items = ((k, _restore_tensors(v)) for k, v in obj.items())
        return type(obj)(items) if isinstance(obj, collections.OrderedDict) else dict(items)
    if isinstance(obj, list):
        return [_restore_tensors(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_restore_tensors(v) for v in obj)
    return obj


def load_state_dict(path: str | os.PathLike[str] | BinaryIO) -> dict[str, Any]:
    """Read a ``.pdparams`` file without executing anything in it.

    Returns the saved object as ``paddle.load`` would, with ``numpy.ndarray`` in place of tensors:
    a plain state dict ``{key: ndarray}`` (the ``StructuredToParameterName@@`` bookkeeping entry
    dropped) or a container such as ``{'generator': {key: ndarray}}`` /
    ``{'modelR': {...}, 'modelC': {...}}``. Raises :class:`UnsafePickleError` (a ``WeightsError``)
    if the pickle references any callable other than numpy's array reconstruction helpers and
    the basic containers, and :class:`WeightsError` if the file is not a pickle at all.
    """
    label = getattr(path, "name", "<stream>") if hasattr(path, "read") else os.fspath(path)
    try:
        if hasattr(path, "read"):
            obj = _RestrictedUnpickler(path).load()  # type: ignore[arg-type]
        else:
            with open(path, "rb") as f:
                obj = _RestrictedUnpickler(io.BufferedReader(f, _CHUNK)).load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"vsmsvsr.weights.load_state_dict: {label}: {exc}") from None
    except FileNotFoundError:
        raise WeightsError(f"vsmsvsr.weights.load_state_dict: no such file: {label}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise WeightsError(
            f"vsmsvsr.weights.load_state_dict: {label} is not a .pdparams file written by paddle.save "
            f"({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsError(
            f"vsmsvsr.weights.load_state_dict: {label} holds a {type(obj).__name__}, not a state dict"
        )
    obj = dict(obj) if type(obj) is dict else obj
    obj.pop(_STRUCTURE_KEY, None)
    return _restore_tensors(obj)


def check_state_dict(
    expected: Mapping[str, tuple[int, ...]],
    got: Mapping[str, Any],
    *,
    what: str,
    limit: int = 5,
) -> None:
    """Refuse ``got`` unless it has exactly the keys of ``expected`` with the same shapes.

    ``expected`` maps key → shape; ``got`` maps key → array (anything with ``.shape``).
    ``what`` names the model and the file in the message, which lists up to ``limit`` missing,
    unexpected and wrongly shaped keys each.
    """
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [
        f"{k}: file {tuple(np.shape(got[k]))}, model {tuple(expected[k])}"
        for k in expected
        if k in got and tuple(np.shape(got[k])) != tuple(expected[k])
    ]
    if not (missing or unexpected or wrong):
        return

    def first(items: list[str]) -> str:
        more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys: {first(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys: {first(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} wrong shapes: {first(wrong)}")
    raise WeightsError(f"{what}: the weights do not fit this model: " + "; ".join(parts))
