"""Importing Paddle without its side effects on the caller's process.

``import paddle`` (3.x) configures the *root* logger (level INFO and a stderr handler with its own
format), so every library's INFO messages, ours included, start appearing in a user's script with
Paddle's timestamps; and it warns that ``ccache`` (for compiling C++ extensions, which vsmsvsr never
does) is missing. :func:`load_paddle` imports it once, with that warning filtered and the root
logger restored to what it was. Every vsmsvsr entry point that may import Paddle first calls it;
``import vsmsvsr`` itself never does.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from types import ModuleType
from typing import Iterator

__all__ = ["load_paddle", "native_stderr_filtered"]

_lock = threading.Lock()


def load_paddle() -> ModuleType:
    """The ``paddle`` module, imported now if it was not (see the module docstring)."""
    module = sys.modules.get("paddle")
    if module is not None and getattr(module, "__version__", None) is not None:
        return module
    with _lock:
        root = logging.getLogger()
        level, handlers = root.level, list(root.handlers)
        try:
            _preload_pip_cuda()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
                import paddle
        finally:
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)
    return paddle


#: The CUDA 11.8 libraries of the ``vsmsvsr[gpu]`` extra (``nvidia-*-cu11`` wheels), in load order:
#: ``site-packages/nvidia/<dir>/lib/<file>``.
_PIP_CUDA = (("cuda_runtime", "libcudart.so.11.0"), ("cuda_nvrtc", "libnvrtc.so.11.2"),
             ("cublas", "libcublasLt.so.11"), ("cublas", "libcublas.so.11"), ("cudnn", "libcudnn.so.8"),
             ("cufft", "libcufft.so.10"), ("curand", "libcurand.so.10"), ("cusparse", "libcusparse.so.11"),
             ("cusolver", "libcusolver.so.11"))


def _preload_pip_cuda() -> list[str]:
    """Load the pip CUDA libraries, where the ``gpu`` extra installed them, before Paddle looks for
    them: paddlepaddle-gpu 2.6.2 (CUDA 11.8) declares no ``nvidia-*`` dependencies and searches
    the system library path, which a pip-only install does not touch. Loaded globally by soname,
    they are the ones Paddle's ``dlopen`` finds; each library's folder also goes into Paddle's
    ``FLAGS_*_dir`` search variables unless the user set them. Nothing happens without those
    wheels or without a GPU build of Paddle. Returns the files loaded."""
    import ctypes
    import importlib.metadata
    import importlib.util

    nvidia_spec = importlib.util.find_spec("nvidia")
    if nvidia_spec is None or not nvidia_spec.submodule_search_locations:
        return []
    try:
        importlib.metadata.distribution("paddlepaddle-gpu")
    except importlib.metadata.PackageNotFoundError:
        return []  # a CPU build of Paddle: nothing to load
    loaded = []
    flags = {"cudnn": "FLAGS_cudnn_dir", "cublas": "FLAGS_cublas_dir", "cufft": "FLAGS_cufft_dir",
             "curand": "FLAGS_curand_dir", "cusolver": "FLAGS_cusolver_dir", "cusparse": "FLAGS_cusparse_dir",
             "cuda_runtime": "FLAGS_cuda_dir"}
    for base in nvidia_spec.submodule_search_locations:
        for folder, name in _PIP_CUDA:
            path = os.path.join(base, folder, "lib", name)
            if os.path.isfile(path):
                try:
                    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                    loaded.append(path)
                except OSError:
                    continue
                if folder in flags:
                    os.environ.setdefault(flags[folder], os.path.dirname(path))
    return loaded


# Paddle's glog lines while exporting: PIR's "not support input out tensor" warning, and the legacy
# executor's "New Executor is Running" (legacy programs, for OpenVINO).
_NOISE = re.compile(rb"^[WI]\d{4} [\d:.]+\s+\d+ \S+\] (Paddle static graph\(PIR\) not support input out tensor"
                    rb"|New Executor is Running)")


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """Inside: what the process writes to file descriptor 2 is held back, and written out at the
    end without Paddle's known noise lines (:data:`_NOISE`). Paddle's glog has no switch that can be
    set after it started, other than this. Other threads' stderr output is delayed, not lost."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = b"".join(line for line in held.read().splitlines(keepends=True) if not _NOISE.match(line))
            if kept:
                os.write(2, kept)
