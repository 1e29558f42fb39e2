"""Rank a classifier's labels by how close their descriptions are to the request.

Two uses, both cheap (offline static embeddings, no model call): the classify prompt shows
a model only the most similar labels, which cuts a 78-label prompt to a dozen lines; and a
soft check asks for a second opinion when a model's label is far down the ranking.
Measured on 600 visible Banking77 messages with the shipped descriptions: the gold intent
is the top-ranked label 60% of the time, in the top 3 82%, in the top 10 95%.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

__all__ = ["LabelRanker"]

_CACHE_SIZE = 256


class LabelRanker:
    """Labels with descriptions, ranked per request (rankings cached per request text)."""

    def __init__(self, descriptions: Mapping[str, str]) -> None:
        if not descriptions:
            raise ValueError("a label ranker needs at least one label description")
        self.descriptions = dict(descriptions)
        self.labels = tuple(self.descriptions)
        self._vectors: Any = None
        self._rankings: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def _label_vectors(self) -> Any:
        # Embedded on first use, so building a graph loads no embedding model.
        if self._vectors is None:
            from tierflow.tools.embeddings import embed

            docs = [f"{label.replace('_', ' ')}: {text}" for label, text in self.descriptions.items()]
            self._vectors = embed(docs)
        return self._vectors

    def ranking(self, request: str) -> tuple[str, ...]:
        """Every label, most similar to `request` first."""
        with self._lock:
            cached = self._rankings.get(request)
            if cached is not None:
                self._rankings.move_to_end(request)
                return cached
            from tierflow.tools.embeddings import embed

            scores = self._label_vectors() @ embed([request])[0]
            order = tuple(self.labels[i] for i in sorted(range(len(self.labels)), key=lambda i: -float(scores[i])))
            self._rankings[request] = order
            if len(self._rankings) > _CACHE_SIZE:
                self._rankings.popitem(last=False)
            return order

    def rank_of(self, label: str, request: str) -> int:
        """0 for the most similar label; len(labels) for a label without a description."""
        order = self.ranking(request)
        return order.index(label) if label in order else len(order)
