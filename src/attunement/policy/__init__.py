"""The policy side: reply prompt and parsing, memory modes, generation, SFT data.

What the policy sees has one home, :mod:`attunement.policy.context`: a
:class:`PromptContext` (memory mode, persona and situation switches) and
:func:`render_policy_prompt`, used by generation, distillation, the training
rows, the build's ``prompts.jsonl`` and the verl / OpenRLHF exports.

>>> from attunement.policy import generate_replies, parse_reply, render_reply_messages
"""

from attunement.policy.context import (
    DEFAULT_MEMORY_MODE,
    PROMPT_MANIFEST_KEY,
    SHOW_PERSONA,
    SHOW_SITUATION,
    PolicyPrompt,
    PromptContext,
    policy_prompt,
    policy_prompts,
    render_policy_prompt,
)
from attunement.policy.distill import DistillReport, distill, nothing_distilled, sft_row
from attunement.policy.generate import (
    GenerateReport,
    GenerationSettings,
    generate_replies,
    generation_settings,
    make_replies,
    reply_id,
)
from attunement.policy.memory import (
    MEMORY_MODES,
    MODEL_FREE_MEMORY_MODES,
    FullMemory,
    MemoryMode,
    MemoryStrategy,
    MemoryView,
    MismatchedMemory,
    ModelFreeMemoryMode,
    NoMemory,
    RetrievedMemory,
    SummaryMemory,
    memories_by_user,
    memory_strategy,
)
from attunement.policy.prompting import (
    ParsedReply,
    parse_reply,
    prompt_versions,
    render_reply_context,
    render_reply_messages,
    render_summary_messages,
    reply_prompt_version,
)
from attunement.policy.retrieval import (
    BM25Retriever,
    EmbeddingRetriever,
    Retriever,
    RetrieverError,
    make_retriever,
)

__all__ = [
    "DEFAULT_MEMORY_MODE",
    "MEMORY_MODES",
    "MODEL_FREE_MEMORY_MODES",
    "PROMPT_MANIFEST_KEY",
    "SHOW_PERSONA",
    "SHOW_SITUATION",
    "BM25Retriever",
    "DistillReport",
    "EmbeddingRetriever",
    "FullMemory",
    "GenerateReport",
    "GenerationSettings",
    "MemoryMode",
    "MemoryStrategy",
    "MemoryView",
    "MismatchedMemory",
    "ModelFreeMemoryMode",
    "NoMemory",
    "ParsedReply",
    "PolicyPrompt",
    "PromptContext",
    "RetrievedMemory",
    "Retriever",
    "RetrieverError",
    "SummaryMemory",
    "distill",
    "generate_replies",
    "generation_settings",
    "make_replies",
    "make_retriever",
    "memories_by_user",
    "memory_strategy",
    "nothing_distilled",
    "parse_reply",
    "policy_prompt",
    "policy_prompts",
    "prompt_versions",
    "render_policy_prompt",
    "render_reply_context",
    "render_reply_messages",
    "render_summary_messages",
    "reply_id",
    "reply_prompt_version",
    "sft_row",
]
