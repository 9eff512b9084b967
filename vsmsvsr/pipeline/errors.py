"""Errors of the enhance job, and the name its messages start with."""
from __future__ import annotations

FUNC = "vsmsvsr.enhance"


class EnhanceError(ValueError):
    """An argument of the enhance pipeline is invalid (raised before anything is loaded)."""


class EncodeError(RuntimeError):
    """The encoder or the muxer failed; the message ends with the tool's own last error line."""
