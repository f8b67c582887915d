"""Endpoints: what of a server URL may be shown, which key it is sent, and what
it has shown about itself.

A URL can carry credentials (``user:password@``, an ``api-key`` query); every
name, manifest, log line and cache key goes through :func:`redact_url` first.
:func:`api_key_for` decides which key, if any, an endpoint is sent.

What a server has shown about itself is remembered per endpoint (base URL and
model id), for every model instance of the process (:class:`Endpoint`):

- ``n``: asked for in one request. A server that ignores it (fewer choices)
  or rejects it (:func:`rejects_n`; llama.cpp server: "Only one completion
  choice is allowed") gets ``n`` single requests instead, now and from then on.
- JSON output: ``response_format: json_schema`` first; a server that rejects
  it (:func:`rejects_json_format`) gets ``json_object``, and one that rejects
  that too gets plain text with the shape in the prompt
  (:meth:`Endpoint.step_down_json`).
- 429: the wait the server asked for becomes a cool-down that every request
  to the endpoint observes before it is sent, not only the one that was told.
"""

from __future__ import annotations

import re
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from attunement.llm.base import LLMError, LLMStatusError
from attunement.llm.options import DEFAULT_API_KEY_ENV
from attunement.llm.retry import is_request_error

#: how JSON output is asked for, from the most to the least constrained
JsonMode = Literal["json_schema", "json_object", "text"]
JSON_MODES: tuple[JsonMode, ...] = get_args(JsonMode)

#: a body refusing n > 1
_N_REJECTED = re.compile(
    r"only one completion choice|\bn\b\W{0,3}(must|should) be 1\b"
    r"|\bn\b\W{0,3}(> ?1|greater than 1)\W{0,3}(is )?not supported"
    r"|multiple (choices|completions) (is|are) not supported",
    re.IGNORECASE,
)
#: a body that is about the requested output format
_FORMAT_WORDS = re.compile(r"response_format|json_schema|json_object", re.IGNORECASE)


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


# --------------------------------------------------------------------------- keys


def api_key_for(base_url: str, key_env: str | None, environ: Mapping[str, str]) -> str | None:
    """The API key an endpoint is sent, or None to send none.

    A key named by the spec (``,key=NAME``) or by ``LLMOptions.api_key_env`` is
    read from that variable and sent whatever the URL (it must be set). Without
    a name, ``OPENAI_API_KEY`` is sent to https URLs only: a plain-http URL is
    a local server or a mistake, and a key sent there can be read on the way.

    >>> api_key_for("http://localhost:8000/v1", None, {"OPENAI_API_KEY": "sk-1"}) is None
    True
    >>> api_key_for("https://api.example.com/v1", None, {"OPENAI_API_KEY": "sk-1"})
    'sk-1'
    >>> api_key_for("http://gpu:8000/v1", "VLLM_KEY", {"VLLM_KEY": "k2"})
    'k2'
    """
    if key_env is not None:
        value = environ.get(key_env)
        if not value:
            raise LLMError(
                f"the API key of {redact_url(base_url)} is to come from the "
                f"environment variable {key_env}, which is not set"
            )
        return value
    if urllib.parse.urlsplit(base_url).scheme == "https":
        return environ.get(DEFAULT_API_KEY_ENV) or None
    return None


# --------------------------------------------------------------------------- refusals


def rejects_n(error: LLMError) -> bool:
    """Did the server refuse a request for several choices?

    >>> rejects_n(LLMStatusError("HTTP 400", 400, body="Only one completion choice is allowed"))
    True
    """
    return isinstance(error, LLMStatusError) and bool(_N_REJECTED.search(error.body))


def rejects_json_format(error: LLMError) -> bool:
    """Did the server refuse the requested ``response_format``?

    >>> rejects_json_format(LLMStatusError("HTTP 400", 400, body="json_schema is not supported"))
    True
    """
    if not isinstance(error, LLMStatusError) or error.status is None:
        return False
    about_format = bool(_FORMAT_WORDS.search(error.body)) or "'json_object'" in error.body
    return about_format and (400 <= error.status < 500 or is_request_error(error))


# --------------------------------------------------------------------------- memory


@dataclass
class Endpoint:
    """What one endpoint (base URL and model id) has shown about itself.

    Shared by every OpenAI-compatible model of the process that talks to it,
    so a capability is found out once and a cool-down applies to all.
    """

    n_supported: bool | None = None
    json_mode: JsonMode = "json_schema"
    #: no request is sent before this ``time.monotonic()`` value (after a 429)
    cooldown_until: float = 0.0

    def learn_n(self, supported: bool) -> bool:
        """Record what a request for several samples showed; True when this is
        the first sign that the endpoint does not honour ``n`` (worth a warning).
        Once refused, ``n`` stays refused.

        >>> e = Endpoint()
        >>> e.learn_n(True), e.learn_n(False), e.learn_n(True), e.n_supported
        (False, True, False, False)
        """
        news = self.n_supported is not False and not supported
        self.n_supported = self.n_supported is not False and supported
        return news

    def step_down_json(self, refused: JsonMode) -> JsonMode | None:
        """The JSON mode to try after ``refused`` was refused (remembered, so
        later requests start there), or None when no mode is left.

        >>> e = Endpoint()
        >>> e.step_down_json("json_schema"), e.json_mode, e.step_down_json("text")
        ('json_object', 'json_object', None)
        """
        position = JSON_MODES.index(refused)
        if position + 1 >= len(JSON_MODES):
            return None
        lower = JSON_MODES[position + 1]
        self.json_mode = max(self.json_mode, lower, key=JSON_MODES.index)
        return lower

    def cool_down(self, until: float) -> None:
        """Hold every request back until the clock reads ``until`` (after a 429)."""
        self.cooldown_until = max(self.cooldown_until, until)


_ENDPOINTS: dict[str, Endpoint] = {}
_ENDPOINTS_LOCK = threading.Lock()


def endpoint_for(base_url: str, model: str | None) -> Endpoint:
    """The shared record of an endpoint (created on first use)."""
    key = f"{redact_url(base_url).rstrip('/')}#{model or ''}"
    with _ENDPOINTS_LOCK:
        return _ENDPOINTS.setdefault(key, Endpoint())


def forget_endpoints() -> None:
    """Drop everything learnt about endpoints (tests, or a server that was upgraded)."""
    with _ENDPOINTS_LOCK:
        _ENDPOINTS.clear()
