"""The policy knowledge base on a real chromadb store on disk with real wordllama embeddings,
under the network kill switch."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from langchain_core.messages import ToolMessage
from pydantic import ValidationError

from tierflow.model_tiers.errors import TierflowError
from tierflow.tools.datasets import dataset_file
from tierflow.tools.knowledge_base import (
    DEFAULT_POLICIES_DIR,
    MAX_K,
    MAX_QUERY_CHARS,
    EmptyKnowledgeBase,
    InvalidQuery,
    KnowledgeBase,
    KnowledgeBaseError,
    PolicyCorpusError,
    Snippet,
    WordLlamaEmbeddingFunction,
    default_kb_path,
    ingest_command,
    knowledge_base_tool,
    load_policy_docs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def kb(tmp_path: Path) -> KnowledgeBase:
    knowledge_base = KnowledgeBase(tmp_path / "kb")
    knowledge_base.ingest()
    return knowledge_base


def _run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (its own chromadb client, nothing cached)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True, text=True, timeout=300,
    )


# ----------------------------------------------------------------------------- corpus


def test_bundled_corpus_has_unique_ids_and_covers_every_banking77_intent() -> None:
    docs = load_policy_docs()
    assert 20 <= len(docs) <= 30
    assert len({doc.doc_id for doc in docs}) == len(docs)
    assert all(doc.title and len(doc.paragraphs) >= 3 for doc in docs)
    categories = json.loads(dataset_file("banking77", "categories.json").read_text(encoding="utf-8"))
    covered = {intent for doc in docs for intent in doc.intents}
    assert set(categories) - covered == set()
    assert covered - set(categories) == set()


def test_ingest_counts_every_paragraph_and_reingest_is_idempotent(kb: KnowledgeBase) -> None:
    expected = sum(len(doc.paragraphs) for doc in load_policy_docs())
    assert kb.count() == expected
    assert kb.ingest() == expected
    assert kb.ingest(DEFAULT_POLICIES_DIR) == expected
    assert kb.count() == expected


def test_construction_touches_nothing_on_disk(tmp_path: Path) -> None:
    knowledge_base = KnowledgeBase(tmp_path / "kb")
    assert knowledge_base.path == tmp_path / "kb"
    assert not (tmp_path / "kb").exists()


def test_default_location_follows_tierflow_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    assert default_kb_path() == tmp_path / "home" / "kb"
    assert KnowledgeBase().path == tmp_path / "home" / "kb"
    monkeypatch.delenv("TIERFLOW_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_kb_path() == tmp_path / ".tierflow" / "kb"


def test_ingest_command_fills_the_default_location(tmp_path: Path) -> None:
    # conftest points TIERFLOW_HOME at tmp_path / "tierflow-home"
    count = ingest_command()
    assert count == sum(len(doc.paragraphs) for doc in load_policy_docs())
    assert (tmp_path / "tierflow-home" / "kb").is_dir()
    assert KnowledgeBase().count() == count


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    ("query", "doc_id"),
    [
        ("I lost my card", "card-lost-stolen"),
        ("exchange rate fee", "fees-schedule"),
        ("My card still hasn't arrived", "card-delivery"),
        ("How do I change my PIN?", "card-pin"),
        ("I want a refund", "refunds"),
        ("How do I close my account?", "account-closure"),
        ("Why do I need to verify my identity?", "identity-verification"),
        ("The ATM swallowed my card", "cash-withdrawals"),
        ("contactless is not working", "contactless-and-wallets"),
        ("How do I get a virtual card?", "virtual-cards"),
        ("I was charged twice for the same purchase", "disputes-chargebacks"),
    ],
)
def test_search_finds_the_matching_policy_in_the_top_three(kb: KnowledgeBase, query: str, doc_id: str) -> None:
    snippets = kb.search(query, k=3)
    assert len(snippets) == 3
    assert doc_id in [s.doc_id for s in snippets]


def test_snippets_carry_the_stored_paragraph_best_first(kb: KnowledgeBase) -> None:
    docs = {doc.doc_id: doc for doc in load_policy_docs()}
    snippets = kb.search("I lost my card", k=5)
    assert len(snippets) == 5
    scores = [s.score for s in snippets]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= score <= 1.0 for score in scores)
    for snippet in snippets:
        doc = docs[snippet.doc_id]
        number = int(snippet.id.split("#")[1])
        assert snippet.id == f"{doc.doc_id}#{number}"
        assert snippet.title == doc.title
        assert snippet.text == dict(doc.paragraphs)[number]
    assert snippets[0].doc_id == "card-lost-stolen"


def test_k_larger_than_the_store_returns_everything(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "tiny.md").write_text("---\nid: tiny\ntitle: Tiny\n---\n\n1. One.\n\n2. Two.\n", encoding="utf-8")
    knowledge_base = KnowledgeBase(tmp_path / "kb")
    assert knowledge_base.ingest(docs) == 2
    assert {s.id for s in knowledge_base.search("one", k=MAX_K)} == {"tiny#1", "tiny#2"}


def test_store_persists_for_a_new_client_in_another_process(kb: KnowledgeBase) -> None:
    result = _run_python(
        f"""
        import json
        from tierflow.model_tiers.testing import block_network
        with block_network():
            from tierflow.tools.knowledge_base import KnowledgeBase
            kb = KnowledgeBase({str(kb.path)!r})
            print(json.dumps({{"count": kb.count(), "top": kb.search("I lost my card", k=1)[0].doc_id}}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"count": kb.count(), "top": "card-lost-stolen"}


def test_importing_and_constructing_loads_no_model_and_opens_no_store(tmp_path: Path) -> None:
    result = _run_python(
        f"""
        import sys
        from tierflow.tools.knowledge_base import KnowledgeBase, WordLlamaEmbeddingFunction
        KnowledgeBase({str(tmp_path / "kb")!r})
        WordLlamaEmbeddingFunction()
        print("wordllama" in sys.modules)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert not (tmp_path / "kb").exists()


def test_concurrent_first_searches_share_one_store(tmp_path: Path) -> None:
    KnowledgeBase(tmp_path / "kb").ingest()
    fresh = KnowledgeBase(tmp_path / "kb")
    queries = ["I lost my card", "How do I change my PIN?"] * 4
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda q: fresh.search(q, k=1)[0].doc_id, queries))
    assert results == ["card-lost-stolen", "card-pin"] * 4


def test_embedding_function_returns_unit_vectors_and_round_trips_its_config() -> None:
    embed = WordLlamaEmbeddingFunction()
    vectors = embed(["I lost my card", "exchange rate fee"])
    assert len(vectors) == 2
    assert all(len(v) == 256 for v in vectors)
    assert all(math.isclose(float(sum(x * x for x in v)), 1.0, rel_tol=1e-3) for v in vectors)
    rebuilt = WordLlamaEmbeddingFunction.build_from_config(embed.get_config())
    assert rebuilt.get_config() == {"config": "l2_supercat", "dim": 256}
    assert WordLlamaEmbeddingFunction.name() == "tierflow-wordllama"


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("query", ["", "   \n\t"])
def test_empty_query_is_a_typed_error(kb: KnowledgeBase, query: str) -> None:
    with pytest.raises(InvalidQuery, match="empty") as caught:
        kb.search(query)
    assert isinstance(caught.value, TierflowError)


def test_huge_query_is_a_typed_error(kb: KnowledgeBase) -> None:
    with pytest.raises(InvalidQuery, match=str(MAX_QUERY_CHARS)):
        kb.search("card " * MAX_QUERY_CHARS)


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, True])
def test_out_of_range_k_is_a_typed_error(kb: KnowledgeBase, k: int) -> None:
    with pytest.raises(InvalidQuery, match="k must be"):
        kb.search("lost card", k=k)


def test_searching_an_empty_store_says_to_ingest(tmp_path: Path) -> None:
    with pytest.raises(EmptyKnowledgeBase, match="ingest"):
        KnowledgeBase(tmp_path / "kb").search("lost card")


def test_collection_name_shorter_than_three_characters_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="at least 3"):
        KnowledgeBase(tmp_path / "kb", collection_name="ab")


def test_missing_or_empty_policy_folder_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyCorpusError, match="does not exist"):
        KnowledgeBase(tmp_path / "kb").ingest(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PolicyCorpusError, match=r"no '\*\.md'"):
        KnowledgeBase(tmp_path / "kb").ingest(tmp_path / "empty")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.md": "---\nid: same\n---\n1. A.\n", "b.md": "---\nid: same\n---\n1. B.\n"}, "used by both"),
        ({"a.md": "---\nid: bad#id\n---\n1. A.\n"}, "no '#'"),
        ({"a.md": "1. Numbered.\n\nNot numbered.\n"}, "a.md:3"),
        ({"a.md": "1. One.\n\n1. One again.\n"}, "repeat"),
        ({"a.md": "---\nid: a\n"}, "never closed"),
        ({"a.md": "---\nid: a\n---\n# Only a heading\n"}, "no paragraphs"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in files.items():
        (docs / name).write_text(text, encoding="utf-8")
    with pytest.raises(PolicyCorpusError, match=message):
        load_policy_docs(docs)


# ----------------------------------------------------------------------------- own corpora


def test_reingest_drops_paragraphs_removed_from_a_document(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    doc = docs / "returns.md"
    doc.write_text(
        "---\nid: returns\ntitle: Returns\n---\n\n1. Return within 30 days.\n\n2. Keep the receipt.\n\n"
        "3. Refunds take 5 days.\n",
        encoding="utf-8",
    )
    knowledge_base = KnowledgeBase(tmp_path / "kb")
    assert knowledge_base.ingest(docs) == 3
    doc.write_text("---\nid: returns\ntitle: Returns\n---\n\n1. Return within 14 days.\n", encoding="utf-8")
    assert knowledge_base.ingest(docs) == 1
    assert knowledge_base.count() == 1
    [snippet] = knowledge_base.search("how long to return", k=5)
    assert (snippet.id, snippet.text) == ("returns#1", "Return within 14 days.")


def test_document_without_front_matter_uses_stem_heading_and_blocks(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "opening-hours.md").write_text(
        "# Opening hours\n\nThe branch opens at nine\non weekdays.\n\nIt is closed on Sundays.\n",
        encoding="utf-8",
    )
    [doc] = load_policy_docs(docs)
    assert (doc.doc_id, doc.title) == ("opening-hours", "Opening hours")
    assert doc.paragraphs == ((1, "The branch opens at nine on weekdays."), (2, "It is closed on Sundays."))


# ----------------------------------------------------------------------------- LangChain tool


def test_search_policies_tool_returns_citable_text_and_snippets(kb: KnowledgeBase) -> None:
    tool = knowledge_base_tool(kb)
    assert tool.name == "search_policies"
    assert set(tool.tool_call_schema.model_json_schema()["properties"]) == {"query", "k"}
    message = tool.invoke(
        {"type": "tool_call", "id": "call-1", "name": "search_policies",
         "args": {"query": "I lost my card", "k": 2}}
    )
    assert isinstance(message, ToolMessage)
    assert len(message.artifact) == 2
    assert all(isinstance(s, Snippet) for s in message.artifact)
    for snippet in message.artifact:
        assert f"[{snippet.id}] {snippet.title}: {snippet.text}" in message.content
    assert tool.invoke({"query": "How do I change my PIN?", "k": 1}).startswith("[card-pin#")


def test_search_policies_tool_validates_its_arguments(kb: KnowledgeBase) -> None:
    tool = knowledge_base_tool(kb)
    with pytest.raises(ValidationError):
        tool.invoke({"query": ""})
    with pytest.raises(ValidationError):
        tool.invoke({"query": "lost card", "k": 11})
