"""Provider kinds: the built-in ones and a user's, registered one way (model_tiers/providers/catalog.py).

A user's provider comes in by `register_provider` or by an installed distribution's entry
point in the group ``tierflow.providers``; the latter is a real ``.dist-info`` folder put on
``sys.path``, found by importlib.metadata as any installed package is.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from tierflow.model_tiers import (
    ROLES,
    ConfigError,
    FunctionProvider,
    MissingDependency,
    ProviderCapabilities,
    TierRegistry,
    TierSpec,
    build_chat_model,
    config_from_mapping,
    get_provider,
    provider_names,
    register_provider,
)
from tierflow.model_tiers.providers import unregister_provider
from tierflow.model_tiers.testing import ScriptedChatModel

BUILTINS = {"scripted", "embedded", "openai", "ollama", "replay"}
PROVIDERS_DIR = Path(__file__).resolve().parents[2] / "model_tiers" / "providers"


def _echo_model(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    """A user's own provider: it answers every prompt with the tier's configured greeting."""
    return ScriptedChatModel(replies={"*": str(spec.options.get("greeting", "hello"))}, model=spec.model)


def config_with(provider: str, **tier: object) -> dict[str, object]:
    table = {"name": "mine", "provider": provider, "model": "echo-1", **tier}
    return {"tiers": [table], "roles": {role: "mine" for role in ROLES}}


@pytest.fixture
def echo_provider() -> Iterator[str]:
    register_provider("echo", FunctionProvider(_echo_model, ProviderCapabilities(tools=False, local=True, served=False)))
    yield "echo"
    unregister_provider("echo")


def test_the_built_in_kinds_are_registered_and_declare_what_they_can() -> None:
    assert set(provider_names()) >= BUILTINS
    assert get_provider("embedded").capabilities.logprobs and get_provider("embedded").capabilities.local
    assert get_provider("openai").capabilities.served and not get_provider("openai").capabilities.local
    assert not get_provider("replay").capabilities.tools


def test_an_unknown_provider_fails_at_load_naming_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(config_with("antropic"), source="tiers.toml")
    message = str(caught.value)
    assert message.startswith("tiers.toml: field 'tiers.0.provider'")
    assert "unknown provider 'antropic'" in message
    for name in BUILTINS:
        assert repr(name) in message
    assert "register_provider" in message and "tierflow.providers" in message


def test_a_registered_provider_builds_answers_and_is_accounted(echo_provider: str) -> None:
    config = config_from_mapping(config_with(echo_provider, options={"greeting": "hi there"}))
    spec = config.tier("mine")
    assert spec.local is True  # from the kind's declared capabilities
    assert isinstance(build_chat_model(spec, env={}), ScriptedChatModel)
    reply = TierRegistry(config, env={}).call("mine", [HumanMessage("hello?")])
    assert reply.value == "hi there"
    assert reply.usage.provider == echo_provider and reply.usage.model == "echo-1"


def test_registering_a_taken_name_needs_replace(echo_provider: str) -> None:
    other = FunctionProvider(_echo_model)
    with pytest.raises(ConfigError, match="already registered; pass replace=True"):
        register_provider(echo_provider, other)
    register_provider(echo_provider, other, replace=True)
    assert get_provider(echo_provider) is other


def test_a_factory_that_is_not_one_is_refused_with_what_it_must_be() -> None:
    with pytest.raises(ConfigError, match="not a ProviderFactory"):
        register_provider("broken", _echo_model)  # type: ignore[arg-type]  # a bare function: no capabilities
    with pytest.raises(ConfigError, match="lowercase word"):
        register_provider("My LLM", FunctionProvider(_echo_model))
    assert "broken" not in provider_names()


def _install_plugin(site: Path, provider: str, target: str, module_source: str) -> None:
    """An installed distribution (as pip leaves it) declaring one provider entry point."""
    (site / "tierflow_echo_plugin.py").write_text(module_source, encoding="utf-8")
    dist = site / "tierflow_echo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tierflow-echo-plugin\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text(f"[tierflow.providers]\n{provider} = {target}\n", encoding="utf-8")


PLUGIN = '''
from tierflow.model_tiers import FunctionProvider, ProviderCapabilities
from tierflow.model_tiers.testing import ScriptedChatModel

def build(spec, env):
    return ScriptedChatModel(replies={"*": "from the plugin"}, model=spec.model)

factory = FunctionProvider(build, ProviderCapabilities(local=False))
'''


def test_an_entry_point_provider_loads_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, "echo-plugin", "tierflow_echo_plugin:factory", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tierflow_echo_plugin", raising=False)
    try:
        assert "echo-plugin" in provider_names()
        assert "tierflow_echo_plugin" not in sys.modules  # listed, not imported
        config = config_from_mapping(config_with("echo-plugin"))
        assert "tierflow_echo_plugin" in sys.modules
        assert config.tier("mine").local is False
        assert TierRegistry(config, env={}).call("mine", [HumanMessage("hi")]).value == "from the plugin"
    finally:
        unregister_provider("echo-plugin")


def test_an_entry_point_that_does_not_load_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, "echo-plugin", "tierflow_echo_plugin:no_such_factory", PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(config_with("echo-plugin"))
    message = str(caught.value)
    assert "tierflow_echo_plugin:no_such_factory" in message and "tierflow-echo-plugin" in message
    assert "does not load" in message


def test_a_built_in_kind_whose_package_is_missing_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = config_from_mapping(config_with("openai", base_url="http://127.0.0.1:9/v1", api_key_env="")).tier("mine")
    monkeypatch.setitem(sys.modules, "langchain_openai", None)  # as if not installed: importing it fails
    with pytest.raises(MissingDependency, match="pip install langchain-openai"):
        build_chat_model(spec, env={})


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_replay_and_recorded_do_not_import_each_other() -> None:
    replay = _imported_modules(PROVIDERS_DIR / "replay.py")
    recorded = _imported_modules(PROVIDERS_DIR / "recorded.py")
    assert "tierflow.model_tiers.providers.recorded" in replay
    assert "tierflow.model_tiers.providers.replay" not in recorded
    assert "tierflow.model_tiers.providers.matching" in recorded
