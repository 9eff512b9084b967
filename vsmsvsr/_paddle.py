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
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
                import paddle
        finally:
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
            root.setLevel(level)
    return paddle


#: glog lines of Paddle's C++ side that say nothing a user can act on (exporting a program).
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
