"""``attune serve``: attunement's rewards over HTTP (OpenRLHF's remote reward protocol,
a whole-group endpoint, health and metrics). Guide: docs/scale-out.md."""

from attunement.integrations.server.app import (
    END_MARKERS,
    ServerThread,
    ServeSettings,
    check_bind,
    load_examples,
    load_token,
    serve,
)

__all__ = [
    "END_MARKERS",
    "ServeSettings",
    "ServerThread",
    "check_bind",
    "load_examples",
    "load_token",
    "serve",
]
