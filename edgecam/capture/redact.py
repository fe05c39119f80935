"""Camera URLs without their secrets, for names, logs, the status API and the no-signal card.

A password may hold ``/``, ``@``, ``:`` or ``?`` unescaped (``rtsp://admin:se/cret@cam/stream``), so the
user information is taken to run from ``://`` to the *last* ``@`` in the URL: that hides a little too much
from the rare URL with ``@`` in its path, and never shows any part of a password.

Many cheap cameras take their credentials in the query string instead (``/videostream.cgi?user=admin&
pwd=secret``): the values of parameters named like credentials are hidden as well.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# key=value in a query string whose key names a credential: the value runs to the next & ; or #.
_QUERY_SECRET = re.compile(
    r"(?<=[?&;])((?:user(?:name)?|usr|login|pass(?:word|wd)?|pwd|pw|token|access_token|auth|key|api_?key|"
    r"secret|sig(?:nature)?)=)([^&;#]*)",
    re.IGNORECASE,
)
HIDDEN = "***"


def redact_url(url: str) -> str:
    """The URL with any ``user:password@`` replaced by ``***@``, and credentials in its query by ``***``."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    at = url.rfind("@")
    if at >= scheme.end():
        url = f"{url[: scheme.end()]}{HIDDEN}@{url[at + 1 :]}"
    return _QUERY_SECRET.sub(lambda m: m.group(1) + HIDDEN, url)


def secrets_of(url: str) -> list[str]:
    """The user information of a URL, whole and in parts (longest first), to scrub from other text."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return []
    parts: set[str] = set()
    at = url.rfind("@")
    if at >= scheme.end():
        userinfo = url[scheme.end() : at]
        user, _, password = userinfo.partition(":")
        parts |= {userinfo, password} | ({user} if password else set())
    for match in _QUERY_SECRET.finditer(url):  # as written, and as a library may print it decoded
        parts |= {match.group(2), unquote_plus(match.group(2))}
    return sorted((p for p in parts if len(p) >= 3), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message from OpenCV/FFmpeg, say) without the URL's credentials in any form."""
    text = text.replace(url, redact_url(url))
    for secret in secrets_of(url):
        text = text.replace(secret, HIDDEN)
    return text
