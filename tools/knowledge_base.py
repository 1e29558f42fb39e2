"""The policy knowledge base: markdown policy documents chunked by paragraph, embedded
offline with wordllama and stored in a chromadb collection persisted on disk.

Why wordllama and not chromadb's default embedding function: the default downloads an
ONNX model on first use and fails offline. wordllama's weights ship inside its wheel, so
the knowledge base works with no network at all (tests run with sockets blocked). The
model is loaded lazily, once per process, on the first embedding call.

Document format (see ``tools/policies/``)::

    ---
    id: card-lost-stolen
    title: Lost or stolen card
    intents: lost_or_stolen_card
    ---

    1. First paragraph ...

    2. Second paragraph ...

Each numbered paragraph becomes one chunk with the id ``<doc_id>#<n>``. A document
without front matter takes its file stem as id and its first ``#`` heading as title; a
document without numbered paragraphs is chunked by blank-line-separated blocks.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb
from chromadb import Documents, EmbeddingFunction, Embeddings
from chromadb.api.types import Space
from chromadb.base_types import InclusionExclusionOperator, LiteralValue
from chromadb.config import Settings
from langchain_core.tools import StructuredTool
from pydantic import BaseModel, ConfigDict, Field

from tierflow.model_tiers.errors import TierflowError
from tierflow.model_tiers.home import home_path
from tierflow.tools.embeddings import DEFAULT_CONFIG as _WORDLLAMA_CONFIG
from tierflow.tools.embeddings import DEFAULT_DIM as _WORDLLAMA_DIM
from tierflow.tools.embeddings import embed

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

__all__ = [
    "COLLECTION_NAME",
    "DEFAULT_POLICIES_DIR",
    "MAX_QUERY_CHARS",
    "MAX_K",
    "KnowledgeBase",
    "KnowledgeBaseError",
    "InvalidQuery",
    "PolicyCorpusError",
    "EmptyKnowledgeBase",
    "PolicyDoc",
    "PolicyChunk",
    "Snippet",
    "SearchPoliciesInput",
    "WordLlamaEmbeddingFunction",
    "default_kb_path",
    "load_policy_docs",
    "ingest_command",
    "knowledge_base_tool",
]

COLLECTION_NAME = "tierflow_policies"
DEFAULT_POLICIES_DIR = Path(__file__).resolve().parent / "policies"
# A ticket pasted whole is a few hundred characters; anything far larger is a bug upstream
# (a whole thread or document passed as the query), not a search.
MAX_QUERY_CHARS = 4000
MAX_K = 20

_DOC_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_NUMBERED_RE = re.compile(r"^(\d{1,4})\.\s+(.*)$")


class KnowledgeBaseError(TierflowError):
    """Base class of the knowledge base's errors."""


class InvalidQuery(KnowledgeBaseError, ValueError):
    """A search query or k is unusable (empty, too long, k out of range)."""


class PolicyCorpusError(KnowledgeBaseError, ValueError):
    """A policy folder or document cannot be ingested as it is."""


class EmptyKnowledgeBase(KnowledgeBaseError):
    """A search ran against a knowledge base that holds no chunks yet."""


class PolicyChunk(BaseModel):
    """One paragraph of a policy document, the unit that is embedded and retrieved."""

    model_config = ConfigDict(frozen=True)

    id: str
    doc_id: str
    title: str
    paragraph: int
    text: str


class PolicyDoc(BaseModel):
    """A parsed policy document."""

    model_config = ConfigDict(frozen=True)

    doc_id: str
    title: str
    intents: tuple[str, ...] = ()
    source: str
    paragraphs: tuple[tuple[int, str], ...]

    def chunks(self) -> list[PolicyChunk]:
        return [
            PolicyChunk(id=f"{self.doc_id}#{number}", doc_id=self.doc_id, title=self.title,
                        paragraph=number, text=text)
            for number, text in self.paragraphs
        ]


class Snippet(BaseModel):
    """A retrieved paragraph; ``id`` (``<doc_id>#<n>``) is what a reply cites.

    ``score`` is the cosine similarity between query and chunk (higher is closer).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    doc_id: str
    title: str
    text: str
    score: float


# --------------------------------------------------------------------------- embeddings

class WordLlamaEmbeddingFunction(EmbeddingFunction[Documents]):
    """chromadb embedding function over wordllama: unit-norm vectors for cosine space.

    The model loads on the first call (once per process), never at construction.
    """

    def __init__(self, config: str = _WORDLLAMA_CONFIG, dim: int = _WORDLLAMA_DIM) -> None:
        self.config = config
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:
        texts = list(input)
        if not texts:
            return []
        return list(embed(texts, config=self.config, dim=self.dim))

    @staticmethod
    def name() -> str:
        return "tierflow-wordllama"

    def get_config(self) -> dict[str, Any]:
        return {"config": self.config, "dim": self.dim}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> WordLlamaEmbeddingFunction:
        return WordLlamaEmbeddingFunction(
            config=str(config.get("config", _WORDLLAMA_CONFIG)),
            dim=int(config.get("dim", _WORDLLAMA_DIM)),
        )

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]


# --------------------------------------------------------------------------- the corpus


def default_kb_path() -> Path:
    """``$TIERFLOW_HOME/kb``, else ``./.tierflow/kb`` (resolved when called)."""
    return home_path() / "kb"


def _split_front_matter(text: str, source: Path) -> tuple[dict[str, str], list[str], int]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, lines, 0
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            break
    else:
        raise PolicyCorpusError(f"{source}: front matter opened with '---' on line 1 is never closed")
    fields: dict[str, str] = {}
    for number, line in enumerate(lines[1:end], start=2):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise PolicyCorpusError(f"{source}:{number}: front matter lines must be 'key: value', got {line!r}")
        fields[key.strip().lower()] = value.strip()
    return fields, lines[end + 1:], end + 1


def _parse_doc(source: Path) -> PolicyDoc:
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PolicyCorpusError(f"{source}: cannot read the policy document as UTF-8 text: {err}") from err
    fields, body, offset = _split_front_matter(text, source)

    # Blocks are runs of non-blank lines; '#' headings are titles, not content.
    blocks: list[tuple[int, list[str]]] = []
    heading: str | None = None
    current: list[str] = []
    start = 0
    for index, line in enumerate([*body, ""]):
        stripped = line.strip()
        if stripped.startswith("#"):
            heading = heading or stripped.lstrip("#").strip()
            continue
        if stripped:
            if not current:
                start = offset + index + 1
            current.append(stripped)
        elif current:
            blocks.append((start, current))
            current = []

    numbered = [_NUMBERED_RE.match(lines[0]) for _, lines in blocks]
    paragraphs: list[tuple[int, str]] = []
    if any(numbered):
        for (line_no, lines), match in zip(blocks, numbered, strict=True):
            if match is None:
                raise PolicyCorpusError(
                    f"{source}:{line_no}: paragraphs are numbered ('1. ...') in this document but "
                    f"this one is not; number it or merge it into the paragraph above"
                )
            paragraphs.append((int(match.group(1)), " ".join([match.group(2), *lines[1:]]).strip()))
    else:
        paragraphs = [(n, " ".join(lines)) for n, (_, lines) in enumerate(blocks, start=1)]

    numbers = [n for n, _ in paragraphs]
    if len(set(numbers)) != len(numbers):
        raise PolicyCorpusError(f"{source}: paragraph numbers repeat ({numbers}); each must be unique")
    if not paragraphs:
        raise PolicyCorpusError(f"{source}: the document has no paragraphs to index")

    doc_id = fields.get("id") or source.stem
    if not _DOC_ID_RE.match(doc_id):
        raise PolicyCorpusError(
            f"{source}: document id {doc_id!r} must be 1-128 letters, digits, '.', '_' or '-' "
            f"(no '#', which separates the paragraph number in chunk ids)"
        )
    title = fields.get("title") or heading or doc_id
    intents = tuple(i.strip() for i in fields.get("intents", "").split(",") if i.strip())
    return PolicyDoc(doc_id=doc_id, title=title, intents=intents, source=source.name,
                     paragraphs=tuple(paragraphs))


def load_policy_docs(docs_dir: str | Path | None = None) -> list[PolicyDoc]:
    """Parse every ``*.md`` file in ``docs_dir`` (default: the bundled ``tools/policies``)."""
    folder = Path(docs_dir) if docs_dir is not None else DEFAULT_POLICIES_DIR
    if not folder.is_dir():
        raise PolicyCorpusError(f"policy folder {folder} does not exist or is not a folder")
    sources = sorted(folder.glob("*.md"))
    if not sources:
        raise PolicyCorpusError(f"policy folder {folder} holds no '*.md' documents")
    docs = [_parse_doc(source) for source in sources]
    seen: dict[str, str] = {}
    for doc in docs:
        if doc.doc_id in seen:
            raise PolicyCorpusError(
                f"document id {doc.doc_id!r} is used by both {seen[doc.doc_id]} and {doc.source} in {folder}"
            )
        seen[doc.doc_id] = doc.source
    return docs


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class _Store:
    client: ClientAPI
    collection: Collection
    embed: WordLlamaEmbeddingFunction


class KnowledgeBase:
    """A persistent chromadb collection of policy paragraphs.

    Opening the store is deferred to the first call that needs it, so constructing a
    ``KnowledgeBase`` (e.g. while a graph is built) touches neither disk nor model.
    Instances are safe to share between threads.
    """

    def __init__(self, path: str | Path | None = None, *, collection_name: str = COLLECTION_NAME) -> None:
        if len(collection_name) < 3:
            raise KnowledgeBaseError(
                f"collection name {collection_name!r} is too short: chromadb needs at least 3 characters"
            )
        self._path = Path(path) if path is not None else default_kb_path()
        self._collection_name = collection_name
        self._store: _Store | None = None
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"KnowledgeBase(path={str(self._path)!r}, collection={self._collection_name!r})"

    def _open(self) -> _Store:
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._store is None:
                self._path.mkdir(parents=True, exist_ok=True)
                client = chromadb.PersistentClient(
                    path=str(self._path), settings=Settings(anonymized_telemetry=False)
                )
                embed = WordLlamaEmbeddingFunction()
                # Always pass our function: without one chromadb falls back to its default,
                # which downloads an ONNX model.
                collection = client.get_or_create_collection(
                    name=self._collection_name,
                    # chromadb wants EmbeddingFunction[Documents | Images] (invariant); a text collection takes a text-only one.
                    embedding_function=embed,  # type: ignore[arg-type]
                    configuration={"hnsw": {"space": "cosine"}},
                )
                self._store = _Store(client=client, collection=collection, embed=embed)
            return self._store

    def count(self) -> int:
        """Number of chunks stored."""
        return int(self._open().collection.count())

    def ingest(self, docs_dir: str | Path | None = None) -> int:
        """Upsert every paragraph of the documents in ``docs_dir`` (default: the bundled
        policies) and return how many chunks the corpus has. Re-ingesting is idempotent;
        paragraphs that disappeared from a re-ingested document are deleted."""
        docs = load_policy_docs(docs_dir)
        chunks = [chunk for doc in docs for chunk in doc.chunks()]
        intents_by_doc = {doc.doc_id: ",".join(doc.intents) for doc in docs}
        source_by_doc = {doc.doc_id: doc.source for doc in docs}
        store = self._open()
        collection = store.collection
        batch_size = store.client.get_max_batch_size()
        for first in range(0, len(chunks), batch_size):
            batch = chunks[first:first + batch_size]
            collection.upsert(
                ids=[chunk.id for chunk in batch],
                documents=[chunk.text for chunk in batch],
                # The title is embedded with the paragraph: paragraphs often say "it" where
                # the title names the topic ("card", "transfer").
                embeddings=store.embed([f"{chunk.title}. {chunk.text}" for chunk in batch]),
                metadatas=[
                    {
                        "doc_id": chunk.doc_id,
                        "title": chunk.title,
                        "paragraph": chunk.paragraph,
                        "intents": intents_by_doc[chunk.doc_id],
                        "source": source_by_doc[chunk.doc_id],
                    }
                    for chunk in batch
                ],
            )
        current_ids = {chunk.id for chunk in chunks}
        # Typed as chromadb's filter operands (a list of any metadata value) so the filter checks.
        doc_ids: list[LiteralValue] = list(sorted(intents_by_doc))
        in_docs: dict[InclusionExclusionOperator, list[LiteralValue]] = {"$in": doc_ids}
        stored = collection.get(where={"doc_id": in_docs}, include=[])
        stale = [chunk_id for chunk_id in stored["ids"] if chunk_id not in current_ids]
        if stale:
            collection.delete(ids=stale)
        return len(chunks)

    def search(self, query: str, k: int = 4) -> list[Snippet]:
        """The ``k`` paragraphs closest to ``query``, best first."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidQuery("the search query is empty: pass the customer's message or a question")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidQuery(
                f"the search query has {len(query)} characters, more than the {MAX_QUERY_CHARS} "
                f"allowed: search with the customer's message or a short summary of it"
            )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidQuery(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
        collection = self._open().collection
        total = collection.count()
        if total == 0:
            raise EmptyKnowledgeBase(
                f"the knowledge base at {self._path} is empty: ingest the policies first "
                f"(KnowledgeBase.ingest() or tools.knowledge_base.ingest_command)"
            )
        result = collection.query(
            query_texts=[query.strip()],
            n_results=min(k, total),
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        documents = (result["documents"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        return [
            Snippet(
                id=chunk_id,
                doc_id=str(meta["doc_id"]),
                title=str(meta["title"]),
                text=str(text),
                score=round(1.0 - float(distance), 6),
            )
            for chunk_id, text, meta, distance in zip(ids, documents, metadatas, distances, strict=True)
        ]


def ingest_command(path: str | Path | None = None, docs_dir: str | Path | None = None) -> int:
    """Ingest ``docs_dir`` (default: bundled policies) into the knowledge base at ``path``
    (default: ``default_kb_path()``); returns the number of chunks. For the CLI."""
    return KnowledgeBase(path).ingest(docs_dir)


# --------------------------------------------------------------------------- LangChain tool


class SearchPoliciesInput(BaseModel):
    """Arguments of the ``search_policies`` tool."""

    query: str = Field(
        min_length=1, max_length=MAX_QUERY_CHARS,
        description="What to look up, e.g. the customer's message or a short question.",
    )
    k: int = Field(default=4, ge=1, le=10, description="How many policy paragraphs to return.")


def _format_snippets(snippets: Sequence[Snippet]) -> str:
    if not snippets:
        return "No policy paragraph matched."
    return "\n\n".join(f"[{s.id}] {s.title}: {s.text}" for s in snippets)


def knowledge_base_tool(kb: KnowledgeBase) -> StructuredTool:
    """The ``search_policies`` tool bound to ``kb``.

    Its content (what a model reads) lists the paragraphs as ``[<id>] <title>: <text>`` so a
    reply can cite ids; its artifact (``ToolMessage.artifact`` when invoked with a tool
    call) is the ``list[Snippet]``.
    """

    def search_policies(query: str, k: int = 4) -> tuple[str, list[Snippet]]:
        snippets = kb.search(query, k=k)
        return _format_snippets(snippets), snippets

    return StructuredTool.from_function(
        func=search_policies,
        name="search_policies",
        description=(
            "Search the bank's customer-support policies. Returns the most relevant policy "
            "paragraphs, each with an id in square brackets to cite in the reply."
        ),
        args_schema=SearchPoliciesInput,
        response_format="content_and_artifact",
    )
