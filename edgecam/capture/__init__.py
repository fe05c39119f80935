"""Capture: one module per source kind, one thread that runs any of them into the latest-frame slot."""

from .base import CaptureSource, SourceError, SourceState
from .sources import open_source, resolve_auto
from .thread import CaptureThread

__all__ = ["CaptureSource", "CaptureThread", "SourceError", "SourceState", "open_source", "resolve_auto"]
