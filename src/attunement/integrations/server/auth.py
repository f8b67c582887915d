"""Who may reach ``attune serve``: loopback by default, a bearer token otherwise.

Anyone who can reach a reward server can read the prompts it is sent and steer
training with the rewards it returns, so the server binds 127.0.0.1 unless
told otherwise, and refuses any other address without a token
(:func:`check_bind`). The token comes from an environment variable or a file,
never from the command line (where ``ps`` would show it), and is compared in
constant time (:func:`bearer_matches`).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost")
    (True, True, True)
    >>> is_loopback("0.0.0.0"), is_loopback("10.0.0.5"), is_loopback("judge.internal")
    (False, False, False)
    """
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(token_env: str | None = None, token_file: str | Path | None = None) -> str | None:
    """The bearer token from an environment variable or a file (one of them, or none)."""
    if token_env and token_file:
        raise ValueError("give --token-env or --token-file, not both")
    if token_env:
        token = os.environ.get(token_env)
        if token is None:
            raise ValueError(f"--token-env {token_env}: the environment variable is not set")
        where = f"environment variable {token_env}"
    elif token_file:
        path = Path(token_file)
        if not path.is_file():
            raise ValueError(f"--token-file {path}: no such file")
        token = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        return None
    token = token.strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ValueError(
            f"the token in {where} must be at least {MIN_TOKEN_CHARS} characters "
            "without spaces (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if token is None and not is_loopback(host):
        raise ValueError(
            f"refusing to bind {host} without a token: anyone who can reach it "
            "could read prompts and steer training. Give --token-env NAME or "
            "--token-file PATH, or bind 127.0.0.1"
        )


def bearer_matches(header: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``.

    >>> bearer_matches("Bearer s3cret-s3cret", "s3cret-s3cret"), bearer_matches("", "x")
    (True, False)
    """
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )
