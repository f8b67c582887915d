"""Against the real llama-cpp-python server (``python -m llama_cpp.server``), slow.

That server (the ``server`` extra of llama-cpp-python) serving the embedded
SmolLM2 GGUF is what a user gets from ``pip install 'llama-cpp-python[server]'``.
It accepts ``response_format`` types ``text`` and ``json_object`` only and
answers ``json_schema`` with HTTP 500 and a validation message; it ignores
``n``. Before the fallbacks every schema-constrained judge call was retried
five times and came back unscorable. The server runs on 127.0.0.1 on a free
port, for this module only, and is stopped at the end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from attunement.llm import LLMOptions, load_chat_model
from attunement.llm.endpoint import forget_endpoints

pytestmark = pytest.mark.slow

START_SECONDS = 180  # loading on a busy 2-core machine
MSG = [
    {"role": "system", "content": "You rate how a person feels."},
    {"role": "user", "content": "My cat is sick and I cannot sleep. How do I feel?"},
]
SCHEMA = {
    "type": "object",
    "properties": {
        "mood": {"type": "string", "maxLength": 12},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["mood", "score"],
    "additionalProperties": False,
}


def _missing() -> str | None:
    for module in (
        "llama_cpp",
        "uvicorn",
        "fastapi",
        "sse_starlette",
        "starlette_context",
        "pydantic_settings",
    ):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'llama-cpp-python[server]')"
    from attunement.llm.local import ModelNotFoundError, find_default_gguf

    try:
        find_default_gguf()
    except ModelNotFoundError as exc:
        return str(exc)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    problem = _missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the llama-cpp-python server tests: {problem}")
        pytest.skip(problem)
    from attunement.llm.local import find_default_gguf

    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(find_default_gguf()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--verbose",
                "False",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"the server exited with {proc.returncode}:\n"
                    + log.read_text(errors="replace")[-2000:]
                )
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"the server did not start in {START_SECONDS} s:\n"
                        + log.read_text(errors="replace")[-2000:]
                    )
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(autouse=True)
def fresh_endpoints():
    forget_endpoints()
    yield
    forget_endpoints()


async def test_json_schema_falls_back_to_json_object_without_retrying(llama_server):
    options = LLMOptions(timeout=120, max_retries=4, concurrency=1)
    async with load_chat_model(f"openai:{llama_server}", options) as model:
        t0 = time.monotonic()
        [answer] = await model.complete(MSG, json_schema=SCHEMA, max_tokens=48)
        first_seconds = time.monotonic() - t0
        doc = json.loads(answer.text)  # the server's grammar enforced the schema
        assert set(doc) == {"mood", "score"} and 1 <= doc["score"] <= 5
        assert model.retries == 0  # the 500 was read as a refusal, not a server fault
        assert model.json_mode == "json_object"
        assert first_seconds < 90

        # remembered: a second model on the same endpoint asks for json_object at once
    async with load_chat_model(f"openai:{llama_server}", options) as again:
        [answer] = await again.complete(MSG, json_schema=SCHEMA, max_tokens=48, seed=3)
        json.loads(answer.text)
        assert again.json_mode == "json_object" and again.retries == 0


async def test_n_samples_from_a_server_that_ignores_n(llama_server):
    options = LLMOptions(timeout=120, max_retries=2, concurrency=2)
    async with load_chat_model(f"openai:{llama_server}", options) as model:
        out = await model.complete(MSG, n=2, temperature=1.0, max_tokens=8, seed=5)
        assert [c.sample_index for c in out] == [0, 1] and all(c.text for c in out)
        assert model.n_supported is False
        assert model.usage.snapshot().calls == 2  # one request with n=2, then one more
