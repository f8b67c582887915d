"""Endpoint addresses: what of a server URL may be shown, logged or cached.

A URL can carry credentials (``user:password@``, an ``api-key`` query); every
name, manifest, log line and cache key goes through :func:`redact_url` first.
"""

from __future__ import annotations

import urllib.parse


def redact_url(url: str) -> str:
    """A URL without the credentials it may carry (user:password@, query string),
    fit for names, manifests, logs and cache keys.

    >>> redact_url("https://user:secret@host:8443/v1?api-key=abc")
    'https://host:8443/v1'
    """
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port is not None else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
