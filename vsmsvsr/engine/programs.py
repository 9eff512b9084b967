"""Exported static programs on disk: the per-model store and the cache around it (size cap, LRU).

Layout: ``<cache>/static/<model>-<digest>/<part>-<shapes>-<key>/`` (a program and ``meta.json``)
and ``<cache>/static/programs/<label>-<digest>/`` (official programs run as they are). A program
is exported once per model, input shape and Paddle version, so the cache grows with every new
frame size (DeOldify: ~830 MB per size). Its size is capped: after each export the least recently
used programs are removed until the cache fits ``$VSMSVSR_STATIC_CACHE_MAX`` (default 4 GB;
``"500MB"``, ``"8GB"``, bytes; ``0`` = no cap). A program held by a live engine of this process is
never removed (one whose engine is gone may be: a long process such as a previewer or the test
suite must not pin every size it ever saw); one removed while another process runs it costs that
process nothing (Paddle has read it), and a later run exports it again. The cache functions import
no Paddle (the CLI's ``cache`` command).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from vsmsvsr._paddle import native_stderr_filtered
from vsmsvsr.weights import _write_atomic

if TYPE_CHECKING:  # pragma: no cover
    import paddle

log = logging.getLogger("vsmsvsr.engine")
_WHO = "vsmsvsr.Engine"

#: Bump when the exported programs change for the same model, shape and Paddle version.
EXPORT_FORMAT = 1

__all__ = ["LIMIT_ENV", "DEFAULT_LIMIT", "ProgramEntry", "static_dir", "parse_size", "cache_limit",
           "list_programs", "mark_used", "enforce_limit", "clear", "human_size"]

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


def human_size(size: int, *, binary: bool = False) -> str:
    """``"4.0 GB"`` (decimal units, as disks and the cap are given) or ``"3.7 GiB"`` (``binary``)."""
    step, units = (1024, ("B", "KiB", "MiB", "GiB")) if binary else (1000, ("B", "kB", "MB", "GB"))
    value = float(size)
    for unit in units[:-1]:
        if value < step:
            break
        value /= step
    else:
        unit = units[-1]
    return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"


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
                    for marker in model_dir.glob("*.refused"):  # remembered failed legacy exports
                        marker.unlink(missing_ok=True)
                try:
                    model_dir.rmdir()
                except OSError:
                    pass
    return removed

# --------------------------------------------------------------------------------------------
# static programs on disk


@contextlib.contextmanager
def _legacy_tracing():
    """While tracing a legacy program, functions written the way converters read them:

    * ``F.pixel_shuffle`` (also behind ``nn.PixelShuffle``) as reshape + transpose, the same
      permutation of the same values (exact): OpenVINO's Paddle frontend has no ``pixel_shuffle``.
    * ``grid_sample``, ``tanh``, ``sigmoid``, ``sqrt``, ``sum``, ``softmax`` and ``matmul`` as their
      legacy operators: Paddle 3.3 calls PIR-only operators for them and refuses a legacy Variable;
      the legacy operators are the same kernels, and OpenVINO reads them.
    * ``square`` as ``x * x`` (the same values; OpenVINO reads no legacy ``square``).

    Anything that is not a legacy Variable (eager tensors, PIR values) goes to Paddle's own function.
    """
    import paddle
    import paddle.nn.functional as F
    from paddle.base.framework import Variable
    from paddle.base.layer_helper import LayerHelper

    def legacy(op_type: str, inputs: dict, attrs: dict | None = None, out: str = "Out"):
        helper = LayerHelper(op_type)
        result = helper.create_variable_for_type_inference(next(iter(inputs.values())).dtype)
        helper.append_op(type=op_type, inputs=inputs, outputs={out: result}, attrs=attrs or {})
        return result

    def rewrite(module, attr: str, traced):
        """``module.attr`` calls ``traced`` on a legacy Variable (first argument), else the original."""
        original = getattr(module, attr)

        def fn(x, *args, **kwargs):
            return traced(x, *args, **kwargs) if isinstance(x, Variable) else original(x, *args, **kwargs)

        return module, attr, fn

    def pixel_shuffle(x, upscale_factor, data_format="NCHW", name=None):
        r = int(upscale_factor)
        if data_format != "NCHW":
            return legacy("pixel_shuffle", {"X": x}, {"upscale_factor": r, "data_format": data_format})
        n, c, h, w = (int(d) for d in x.shape)
        y = x.reshape([n, c // (r * r), r, r, h, w]).transpose([0, 1, 4, 2, 5, 3])
        return y.reshape([n, c // (r * r), h * r, w * r])

    def grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True, name=None):
        return legacy("grid_sampler", {"X": x, "Grid": grid}, {"mode": mode, "padding_mode": padding_mode,
                                                                "align_corners": align_corners, "use_cudnn": False},
                      out="Output")

    def matmul(x, y, transpose_x=False, transpose_y=False, name=None):
        return legacy("matmul_v2", {"X": x, "Y": y}, {"trans_x": transpose_x, "trans_y": transpose_y})

    def reduce_sum(x, axis=None, dtype=None, keepdim=False, name=None):
        if dtype is not None:
            raise TypeError("sum(dtype=...) is not written as a legacy operator")
        axes = [] if axis is None else [axis] if isinstance(axis, int) else list(axis)
        return legacy("reduce_sum", {"X": x}, {"dim": axes or [0], "keep_dim": keepdim, "reduce_all": not axes})

    def softmax(x, axis=-1, dtype=None, name=None):
        if dtype is not None:
            raise TypeError("softmax(dtype=...) is not written as a legacy operator")
        return legacy("softmax", {"X": x}, {"axis": axis})

    def unary(op_type: str):
        return lambda x, name=None: legacy(op_type, {"X": x})

    patches = [rewrite(F, "pixel_shuffle", pixel_shuffle), rewrite(F, "grid_sample", grid_sample),
               rewrite(paddle, "matmul", matmul), rewrite(paddle, "sum", reduce_sum),
               rewrite(F, "softmax", softmax), rewrite(paddle, "square", lambda x, name=None: x * x)]
    patches += [rewrite(module, op, unary(op)) for module, ops in ((paddle, ("tanh", "sqrt")), (F, ("tanh", "sigmoid")))
                for op in ops]
    saved = [(module, attr, getattr(module, attr)) for module, attr, _ in patches]
    for module, attr, fn in patches:
        setattr(module, attr, fn)
    try:
        yield
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)


_EXPORTS = threading.Lock()


@contextlib.contextmanager
def _failed_trace_forgotten():
    """Around a legacy export: what a failed trace leaves in Paddle's tracer is removed.

    Paddle's legacy tracer records the parameters a program uses in dicts keyed by ``id(program)``
    (``ProgramTranslator``'s parameter recorder and in-place map) and removes the entry only when
    the trace succeeds. After a failed trace (a layer Paddle cannot express, such as ``cos``), a
    later program allocated at the same address inherited those parameters, and its
    ``paddle.jit.save`` failed with ``KeyError: 'conv2d_464.b_0'`` (a parameter of the failed
    layer): the KeyError seen now and then in long processes, whose segment then ran on Paddle
    Inference. Exports are serialised, so the entries added during this one are its own.
    """
    try:
        from paddle.jit.dy2static.program_translator import ProgramTranslator

        translator = ProgramTranslator.get_instance()
        records = [translator._params_recorder.params_dict, translator._inplace_map.params_dict]
    except Exception:  # noqa: BLE001 - another Paddle: nothing to clean
        records = []
    with _EXPORTS:
        before = [set(r) for r in records]
        try:
            yield
        except BaseException:
            for record, keys in zip(records, before):
                for key in set(record) - keys:
                    record.pop(key, None)
            raise


def _legacy_tracing_digest() -> str:
    """A digest of :func:`_legacy_tracing`'s source: part of a legacy program's key, so that a
    program (or a remembered refusal) traced with other rewrites is never reused."""

    return hashlib.sha256(inspect.getsource(_legacy_tracing).encode()).hexdigest()[:12]


def _default_cache_root() -> Path:
    from vsmsvsr.weights import cache_dir

    return cache_dir() / "static"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _paddle_identity() -> dict[str, Any]:
    import paddle

    ident: dict[str, Any] = {"paddle": paddle.__version__,
                             "commit": getattr(getattr(paddle, "version", None), "commit", "")}
    try:
        ident["pir"] = bool(paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"])
    except Exception:  # noqa: BLE001 - the flag does not exist in every version
        ident["pir"] = None
    return ident


def _model_digest(model: "paddle.nn.Layer") -> str:
    """sha256 over the model class's source file and every state-dict entry (name, shape, bytes)."""
    h = hashlib.sha256()
    cls = type(model)
    h.update(f"{cls.__module__}.{cls.__qualname__}\n".encode())
    try:
        source = inspect.getsourcefile(cls)
        if source:
            h.update(Path(source).read_bytes())
    except (TypeError, OSError):
        pass
    for key, value in model.state_dict().items():
        arr = np.ascontiguousarray(value.numpy())
        h.update(f"{key}|{arr.dtype.str}|{arr.shape}\n".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _program_file(folder: Path) -> Path | None:
    for name in ("model.json", "model.pdmodel"):
        if (folder / name).is_file() and (folder / "model.pdiparams").is_file():
            return folder / name
    return None


#: Stores of the engines alive in this process; their programs are the ones the cap keeps.
_LIVE_STORES: "weakref.WeakSet[_ProgramStore]" = weakref.WeakSet()


def _programs_in_use() -> set[Path]:
    """Program folders loaded or exported by the engines still alive in this process."""
    return set().union(*(store.used for store in list(_LIVE_STORES)))


class _ProgramStore:
    """Exported static programs under ``root``, one folder per (model, part, input shapes)."""

    def __init__(self, root: Path, model_label: str, model_digest: str) -> None:
        self.root = root
        self.model_label = model_label
        self.model_dir = root / f"{_slug(model_label)}-{model_digest[:16]}"
        self.model_digest = model_digest
        self.exported = 0
        self.reused = 0
        self.used: set[Path] = set()  # never evicted while this store (its engine) is alive
        _LIVE_STORES.add(self)
        # exports since the last report: one line when a job starts exporting, one when it is done
        self._batch: list[str] = []
        self._batch_seconds = 0.0

    def report(self) -> None:
        """Log one line for the programs exported since the last report, if any (called by the
        runners after each call, so a window's dozen segments give one line, not a dozen)."""
        if self._batch:
            shapes = sorted(set(self._batch))
            log.info("%s: exported %d static program(s) for %s at %s in %.1f s", _WHO, len(self._batch),
                     self.model_label, ", ".join(shapes), self._batch_seconds)
            self._batch.clear()
            self._batch_seconds = 0.0

    def _folder(self, part: str, shapes: Sequence[Sequence[int]], legacy: bool) -> tuple[Path, dict]:
        """Where the program of ``part`` for ``shapes`` lives (exported or not), and its meta."""
        meta = {"format": EXPORT_FORMAT, "model_digest": self.model_digest, "part": part,
                "input_shapes": [list(s) for s in shapes], **_paddle_identity()}
        if legacy:
            meta["ir"] = "legacy"
            meta["tracing"] = _legacy_tracing_digest()
            part = f"{part}.legacy"
        key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
        shape_label = "_".join("x".join(str(d) for d in s) for s in shapes)
        if len(shape_label) > 60:
            shape_label = shape_label[:60]
        return self.model_dir / f"{_slug(part)}-{shape_label}-{key}", meta

    def folder(self, part: str, shapes: Sequence[Sequence[int]], *, legacy: bool = False) -> Path:
        """The folder :meth:`get` returns for these arguments, without exporting anything."""
        return self._folder(part, shapes, legacy)[0]

    def discard(self, folder: Path) -> None:
        """Remove one program of this store (a legacy program OpenVINO refused: nothing else reads it)."""
        self.used.discard(folder)
        shutil.rmtree(folder, ignore_errors=True)

    def get(self, part: str, layer: "paddle.nn.Layer", shapes: Sequence[Sequence[int]], *,
            legacy: bool = False) -> Path:
        """Folder holding the static program of ``layer`` for inputs of ``shapes`` (float32).

        ``legacy``: a ``model.pdmodel`` (ProgramDesc) program traced with :func:`_legacy_tracing`,
        for converters that read no PIR programs (OpenVINO's Paddle frontend); raises if Paddle
        cannot export ``layer`` that way.
        """
        import paddle

        folder, meta = self._folder(part, shapes, legacy)
        if _program_file(folder) is not None and (folder / "meta.json").is_file():
            self.reused += 1
            self.used.add(folder)
            mark_used(folder)
            log.debug("%s: reusing static program %s", _WHO, folder)
            return folder
        refused = folder.with_name(folder.name + ".refused")
        if legacy and refused.is_file():
            # Paddle could not export this layer as a legacy program before (same Paddle, same
            # layer and shapes): do not trace it again for nothing, say why again
            raise RuntimeError(refused.read_text(errors="replace").strip() or "legacy export failed before")
        size = f"{shapes[0][-1]}x{shapes[0][-2]}" if shapes and len(shapes[0]) >= 2 else "?"
        if not self._batch:
            log.info("%s: exporting static programs for %s at %s (once per model and input size; cached "
                     "in %s) ...", _WHO, self.model_label, size, self.root)
        self.model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=self.model_dir))
        try:
            start = time.perf_counter()
            specs = [paddle.static.InputSpec(list(s), "float32", f"x{i}") for i, s in enumerate(shapes)]
            with warnings.catch_warnings():
                # Paddle's own zeros_like/ones_like read Tensor.place while tracing and warn that PIR
                # tensors have none, once per call site: noise on the user's stderr, not their concern.
                warnings.filterwarnings("ignore", message="Tensor do not have 'place' interface",
                                        category=UserWarning)
                with native_stderr_filtered():  # Paddle's C++ "PIR not support input out tensor" line
                    if legacy:
                        # Paddle 2.6 writes legacy programs anyway (and has no OldIrGuard)
                        old_ir = getattr(getattr(paddle, "pir_utils", None), "OldIrGuard", contextlib.nullcontext)
                        try:
                            with old_ir(), _legacy_tracing(), _failed_trace_forgotten():
                                paddle.jit.save(layer, str(tmp / "model"), input_spec=specs)
                        except Exception as exc:
                            lines = str(exc).strip().splitlines()
                            why = f"{type(exc).__name__}: {lines[-1].strip() if lines else ''}"
                            # Remembered only when Paddle's tracer cannot express the layer (a
                            # TypeError such as grid_sample's "must be Value, but got Variable"):
                            # that is the same in every process. Anything else may depend on the
                            # process, and the next process tries again.
                            if isinstance(exc, TypeError):
                                _write_atomic(refused, why.encode())
                            raise
                    else:
                        paddle.jit.save(layer, str(tmp / "model"), input_spec=specs)
            if _program_file(tmp) is None:
                raise RuntimeError(f"paddle.jit.save wrote no program into {tmp}: {sorted(os.listdir(tmp))}")
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
            try:
                os.rename(tmp, folder)
            except OSError:
                if _program_file(folder) is None:  # not a concurrent writer: a real error
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process was faster; use its copy
            self.exported += 1
            self.used.add(folder)
            seconds = time.perf_counter() - start
            self._batch.append(size)
            self._batch_seconds += seconds
            log.debug("%s: exported static program %s (%.1f s)", _WHO, folder, seconds)
            enforce_limit(self.root, cache_limit(), keep=_programs_in_use())
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder
