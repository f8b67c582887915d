"""One async chat-model layer for every LLM call in attunement.

>>> from attunement.llm import load_chat_model
>>> model = load_chat_model("local")                                # doctest: +SKIP
>>> [c.text for c in await model.complete([{"role": "user", "content": "hi"}])]  # doctest: +SKIP
"""

from attunement.llm.base import (
    ChatModel,
    ChatRequest,
    Completion,
    LLMConnectionError,
    LLMError,
    LLMResponseError,
    LLMStatusError,
    LLMTimeoutError,
    Message,
    make_request,
)
from attunement.llm.cache import CachedChatModel, CacheError, CompletionCache
from attunement.llm.endpoint import redact_url
from attunement.llm.failures import (
    CallsFailedError,
    call_failed_reason,
    call_failure_in,
    calls_failed,
    failure_cause,
    preflight,
)
from attunement.llm.options import LLMOptions
from attunement.llm.scripted import ScriptedChatModel, Step
from attunement.llm.spec import (
    ModelSpec,
    load_chat_model,
    parse_spec,
    redact_spec,
    register_backend,
)
from attunement.llm.stand_in import (
    STAND_IN_KEY,
    STAND_IN_NOTE,
    STAND_IN_SPEC,
    StandInNote,
    is_stand_in,
    stand_in_fields,
    stand_in_line,
    stand_in_note,
)

__all__ = [
    "STAND_IN_KEY",
    "STAND_IN_NOTE",
    "STAND_IN_SPEC",
    "CacheError",
    "CachedChatModel",
    "CallsFailedError",
    "ChatModel",
    "ChatRequest",
    "Completion",
    "CompletionCache",
    "LLMConnectionError",
    "LLMError",
    "LLMOptions",
    "LLMResponseError",
    "LLMStatusError",
    "LLMTimeoutError",
    "Message",
    "ModelSpec",
    "ScriptedChatModel",
    "StandInNote",
    "Step",
    "call_failed_reason",
    "call_failure_in",
    "calls_failed",
    "failure_cause",
    "is_stand_in",
    "load_chat_model",
    "make_request",
    "parse_spec",
    "preflight",
    "redact_spec",
    "redact_url",
    "register_backend",
    "stand_in_fields",
    "stand_in_line",
    "stand_in_note",
]
