"""Offline text embeddings (wordllama): the knowledge base's vectors and the similarity
the verifiers use (e.g. does a function serve a request).

wordllama's weights ship inside its wheel, so this works with no network at all. A model
loads lazily, once per process, on the first call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierflow.model_tiers.errors import TierflowError

if TYPE_CHECKING:
    from wordllama.inference import WordLlamaInference

__all__ = ["DEFAULT_CONFIG", "DEFAULT_DIM", "EmbeddingModelMissing", "load_wordllama", "embed", "similarities"]

DEFAULT_CONFIG = "l2_supercat"
DEFAULT_DIM = 256

_MODELS: dict[tuple[str, int], WordLlamaInference] = {}
_LOCK = threading.Lock()


class EmbeddingModelMissing(TierflowError):
    """The wordllama model files are not inside the installed package."""


def load_wordllama(config: str = DEFAULT_CONFIG, dim: int = DEFAULT_DIM) -> WordLlamaInference:
    """Load (once per process) the wordllama model from the files inside its wheel.

    ``cache_dir`` points at the installed package: wordllama 0.4 looks for the tokenizer of
    a *project-root* install under ``tokenizer/`` while the wheel ships it under
    ``tokenizers/`` (the cache layout), so a plain ``WordLlama.load()`` misses it and tries
    Hugging Face. ``disable_download`` turns any missing file into a clear error instead.
    """
    key = (config, dim)
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            import wordllama
            from wordllama import WordLlama

            package_dir = Path(wordllama.__file__).resolve().parent
            try:
                model = WordLlama.load(config=config, dim=dim, cache_dir=package_dir, disable_download=True)
            except FileNotFoundError as err:
                raise EmbeddingModelMissing(
                    f"the wordllama model '{config}' (dim {dim}) is not inside the installed "
                    f"package at {package_dir}: reinstall it with `pip install --force-reinstall "
                    f"wordllama` ({err})"
                ) from err
            _MODELS[key] = model
    return model


def embed(texts: Sequence[str], *, config: str = DEFAULT_CONFIG, dim: int = DEFAULT_DIM) -> Any:
    """Unit-norm vectors (a numpy array, one row per text)."""
    return load_wordllama(config, dim).embed(list(texts), norm=True)


def similarities(query: str, texts: Sequence[str]) -> list[float]:
    """Cosine similarity of `query` with each of `texts`."""
    if not texts:
        return []
    vectors = embed([query, *texts])
    return [float(vectors[0] @ row) for row in vectors[1:]]
