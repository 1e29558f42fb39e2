"""The embedded models' files: assembled from parts, checked against their SHA-256 before
llama.cpp may load them, and a clear error (no load) for a damaged or substituted file."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tierflow.model_tiers.providers import embedded
from tierflow.model_tiers.providers.model_files import (
    MODEL_FILES,
    ModelFile,
    ModelFileCorrupt,
    model_cache_dir,
    verified_model_path,
    verify,
)

QWEN = "qwen2.5-coder-1.5b-instruct"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("model_id", sorted(MODEL_FILES))
def test_every_shipped_model_file_has_its_published_hash(model_id: str) -> None:
    path = verified_model_path(model_id)
    known = MODEL_FILES[model_id]
    assert path.stat().st_size == known.size
    if known.assembled:
        assert path.parent == model_cache_dir()


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "models"
    monkeypatch.setenv("TIERFLOW_MODEL_CACHE", str(cache))
    return cache


def test_a_truncated_assembled_file_is_refused_before_loading(empty_cache: Path) -> None:
    empty_cache.mkdir()
    (empty_cache / MODEL_FILES[QWEN].filename).write_bytes(b"GGUF" + b"\0" * 1000)
    with pytest.raises(ModelFileCorrupt, match=r"1,004 bytes, expected 1,117,320,768 \(truncated or replaced\); delete "):
        verified_model_path(QWEN)
    with pytest.raises(ModelFileCorrupt):
        embedded.EmbeddedEngine(QWEN, n_ctx=256)


def test_a_same_size_corrupted_file_fails_the_hash(empty_cache: Path) -> None:
    empty_cache.mkdir()
    fake = empty_cache / MODEL_FILES[QWEN].filename
    with fake.open("wb") as f:
        f.truncate(MODEL_FILES[QWEN].size)  # right size, wrong bytes (sparse zeros)
    with pytest.raises(ModelFileCorrupt, match=r"has SHA-256 .* expected cc324af0.*refusing to load it"):
        verified_model_path(QWEN)


def test_a_flipped_byte_in_a_packaged_file_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERFLOW_MODEL_CACHE", str(tmp_path / "cache"))
    smol = MODEL_FILES["smollm2-135m-instruct"]
    copy = tmp_path / smol.filename
    copy.write_bytes(verified_model_path(smol.id).read_bytes())
    verify(smol, copy)  # the intact copy passes (and is stamped)
    with copy.open("r+b") as f:
        f.seek(smol.size // 2)
        byte = f.read(1)
        f.seek(smol.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(copy, ns=(copy.stat().st_atime_ns, copy.stat().st_mtime_ns + 1_000_000))
    with pytest.raises(ModelFileCorrupt, match="corrupted or replaced"):
        verify(smol, copy)


def _part_packages(root: Path, chunks: list[bytes]) -> tuple[tuple[str, str], ...]:
    parts = []
    for i, data in enumerate(chunks):
        pkg = root / f"tierflow_test_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / "blob.bin").write_bytes(data)
        parts.append((pkg.name, "data/blob.bin"))
    return tuple(parts)


def test_parts_are_assembled_once_into_the_cache(tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [os.urandom(300_000), os.urandom(200_000), os.urandom(1234)]
    monkeypatch.syspath_prepend(str(tmp_path))
    whole = b"".join(chunks)
    model = ModelFile(
        id="test-model", filename="test.gguf", size=len(whole), sha256=hashlib.sha256(whole).hexdigest(),
        source="test", params="0", licence="test", chat_format=None, fold_system=False,
        pip_packages=("tierflow-test-part{0..2}",), parts=_part_packages(tmp_path, chunks),
    )
    path = model.locate()
    assert path == empty_cache / "test.gguf" and path.read_bytes() == whole
    assert not list(empty_cache.glob("*.partial"))
    verify(model, path)
    mtime = path.stat().st_mtime_ns
    assert model.locate().stat().st_mtime_ns == mtime  # not assembled again

    bad = ModelFile(**{**model.__dict__, "id": "bad-model", "filename": "bad.gguf", "sha256": "0" * 64})
    with pytest.raises(ModelFileCorrupt, match="the assembled parts are 501,234 bytes"):
        bad.locate()
    assert not (empty_cache / "bad.gguf").exists() and not list(empty_cache.glob("*.partial"))


def test_doctor_names_the_corrupt_file_and_exits_non_zero(empty_cache: Path) -> None:
    empty_cache.mkdir()
    (empty_cache / MODEL_FILES[QWEN].filename).write_bytes(b"not a model")
    out = subprocess.run(
        [sys.executable, "-m", "tierflow.cli", "doctor", "--no-probe"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"},
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "truncated or replaced" in out.stdout and "UNUSABLE" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
