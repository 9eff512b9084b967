"""Errors raised while a filter loads its model carry the filter's name."""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

_PREFIX = re.compile(r"^vsmsvsr\.[\w.]+: ")


@contextlib.contextmanager
def named_errors(func: str) -> Iterator[None]:
    """Re-raise ``TypeError``/``ValueError`` (``WeightsError`` included) as the same class with the
    message prefixed by ``func`` instead of the inner function's name (``vsmsvsr.Engine: ...``)."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        message = str(exc)
        if not message.startswith(f"{func}: "):
            message = f"{func}: {_PREFIX.sub('', message, count=1)}"
        try:
            renamed = type(exc)(message)
        except TypeError:  # an exception class with another constructor: keep it as it is
            raise exc from None
        raise renamed from None
