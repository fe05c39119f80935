"""The event timeline over HTTP: ``GET /api/events`` (filters, paging), ``DELETE /api/events/<id>``, and the
media of an event: ``/clips/<id>.mp4`` (with range requests, so a browser can seek) and
``/snapshots/<id>.jpg``. Every route sits behind the server's auth gate like the rest of the page.

SQLite reads run in the server's worker pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import Executor
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from edgecam.events.store import EventStore

MAX_LIMIT = 1000
MAX_OFFSET = 10**12  # past every event a box will hold; SQLite's integers end at 2**63 (larger ones raised)
PREFIXES = ("/api/events", "/clips/", "/snapshots/")
_EVENT = re.compile(r"/api/events/([0-9]{1,12})")  # fullmatch: ASCII digits, no trailing newline
_MEDIA = re.compile(r"/(clips|snapshots)/([0-9]{1,12})\.(mp4|jpg)")
_TYPES = {"clips": ("clip", "mp4", "video/mp4"), "snapshots": ("snapshot", "jpg", "image/jpeg")}


class BadQuery(ValueError):
    pass


def handles(path: str) -> bool:
    return path.startswith(PREFIXES)


def methods(path: str) -> tuple[str, ...]:
    """The methods a path answers (for 405's ``Allow``)."""
    return ("GET", "HEAD", "DELETE") if _EVENT.fullmatch(path) else ("GET", "HEAD")


def _time(value: str, name: str) -> float:
    """``since``/``until``: ISO 8601 (a date, or a time; UTC unless it says) or epoch seconds."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(
            f"{name}: not a time (use ISO 8601 like 2026-12-01T08:00:00Z, or epoch seconds)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _int(value: str, name: str, lo: int, hi: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(f"{name}: must be a whole number (got {value[:40]!r})") from None
    if number < lo:
        raise BadQuery(f"{name}: must be at least {lo} (got {number})")
    if hi is not None and number > hi:
        raise BadQuery(f"{name}: must be at most {hi}")
    return number


def parse_query(query: Any) -> dict[str, Any]:
    """The filters of ``GET /api/events`` from the query string; ``limit`` is clamped to 1000."""
    known = {"label", "zone", "since", "until", "limit", "offset"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r} (known: {', '.join(sorted(known))})")
    args: dict[str, Any] = {
        "label": query.get("label") or None,
        "zone": query.get("zone") or None,
        "since": _time(query["since"], "since") if query.get("since") else None,
        "until": _time(query["until"], "until") if query.get("until") else None,
        "limit": min(MAX_LIMIT, _int(query["limit"], "limit", 0)) if query.get("limit") else 100,
        "offset": _int(query["offset"], "offset", 0, MAX_OFFSET) if query.get("offset") else 0,
    }
    return args


class EventsApi:
    def __init__(self, store: EventStore | None, workers: Executor) -> None:
        self.store = store
        self._workers = workers

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if self.store is None:
            return _json(503, {"error": "the event store is not available (see the log: recording.dir)"})
        loop = asyncio.get_running_loop()
        if path == "/api/events":
            if request.method not in ("GET", "HEAD"):
                return _json(405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"})
            try:
                args = parse_query(request.query)
            except BadQuery as exc:
                return _json(400, {"error": str(exc)})
            records, total = await loop.run_in_executor(self._workers, lambda: self.store.query(**args))
            return _json(200, {"events": [r.to_dict() for r in records], "total": total})
        match = _EVENT.fullmatch(path)
        if match:
            event_id = int(match.group(1))
            if request.method == "DELETE":
                deleted = await loop.run_in_executor(self._workers, self.store.delete, event_id)
                return (
                    _json(200, {"deleted": event_id}) if deleted else _json(404, {"error": "no such event"})
                )
            if request.method not in ("GET", "HEAD"):
                return _json(405, {"error": "method not allowed"}, {"Allow": "GET, HEAD, DELETE"})
            record = await loop.run_in_executor(self._workers, self.store.get, event_id)
            return _json(200, record.to_dict()) if record else _json(404, {"error": "no such event"})
        match = _MEDIA.fullmatch(path)
        if match and _TYPES[match.group(1)][1] == match.group(3):
            if request.method not in ("GET", "HEAD"):
                return _json(405, {"error": "method not allowed"}, {"Allow": "GET, HEAD"})
            kind, _, content_type = _TYPES[match.group(1)]
            file = await loop.run_in_executor(self._workers, self.store.media_path, int(match.group(2)), kind)
            if file is None:
                return _json(
                    404, {"error": f"no {kind} for this event (not recorded, not complete yet, or deleted)"}
                )
            # FileResponse answers Range (206), If-Range, If-None-Match (304) and HEAD itself, and sends with
            # sendfile. no-cache: a browser asks again each time (a 304 while the file stands), so a deleted
            # event's media is gone from it too, not kept for an hour.
            return web.FileResponse(
                file, headers={"Content-Type": content_type, "Cache-Control": "private, no-cache"}
            )
        return _json(404, {"error": "not found"})


def _json(status: int, data: Any, extra: dict[str, str] | None = None) -> web.Response:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store", **(extra or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=headers)
