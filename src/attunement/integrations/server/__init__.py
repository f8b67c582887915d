"""``attune serve``: attunement's rewards over HTTP (OpenRLHF's remote reward protocol,
a whole-group endpoint, health and metrics). Guide: docs/scale-out.md.

One module per responsibility: ``settings`` (the settings model), ``auth``
(bind address and bearer token), ``protocol`` (request and answer bodies, the
OpenRLHF query, errors), ``admission`` (bounded queue, Retry-After, draining),
``metrics`` (Prometheus text), ``service`` (the work of each endpoint), ``app``
(the ASGI app and its routes) and ``runner`` (serving, draining, stopping).
starlette and uvicorn are imported only when an app is built or run.
"""

from attunement.integrations.server.admission import Admission, Refused
from attunement.integrations.server.app import create_app
from attunement.integrations.server.auth import check_bind, is_loopback, load_token
from attunement.integrations.server.metrics import Metrics
from attunement.integrations.server.protocol import END_MARKERS, HTTPProblem, split_query
from attunement.integrations.server.runner import ServerThread, serve
from attunement.integrations.server.service import NOT_LOCATED, RewardService, load_examples
from attunement.integrations.server.settings import ServeSettings

__all__ = [
    "END_MARKERS",
    "NOT_LOCATED",
    "Admission",
    "HTTPProblem",
    "Metrics",
    "Refused",
    "RewardService",
    "ServeSettings",
    "ServerThread",
    "check_bind",
    "create_app",
    "is_loopback",
    "load_examples",
    "load_token",
    "serve",
    "split_query",
]
