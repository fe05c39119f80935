"""Camera URLs without their secrets, for names, logs, the status API and the no-signal card.

A password may hold ``/``, ``@``, ``:`` or ``?`` unescaped (``rtsp://admin:se/cret@cam/stream``), so the
user information is taken to run from ``://`` to the *last* ``@`` in the URL: that hides a little too much
from the rare URL with ``@`` in its path, and never shows any part of a password.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL with any ``user:password@`` replaced by ``***@``."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    at = url.rfind("@")
    if at < scheme.end():
        return url
    return f"{url[: scheme.end()]}{HIDDEN}@{url[at + 1 :]}"


def secrets_of(url: str) -> list[str]:
    """The user information of a URL, whole and in parts (longest first), to scrub from other text."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return []
    at = url.rfind("@")
    if at < scheme.end():
        return []
    userinfo = url[scheme.end() : at]
    user, _, password = userinfo.partition(":")
    parts = {userinfo, password} | ({user} if password else set())
    return sorted((p for p in parts if len(p) >= 3), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message from OpenCV/FFmpeg, say) without the URL's credentials in any form."""
    text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, HIDDEN)
    return text
