"""Shared fixtures. Every test runs under the network kill switch: unit tests may not open
any connection (not even to a model on localhost); integration tests may reach loopback only,
where the servers they start themselves listen."""

from __future__ import annotations

from pathlib import Path

import pytest

from tierflow.model_tiers.testing import block_network

REPO_ROOT = Path(__file__).resolve().parent.parent

# The retail database fixtures (source, built_db, db, conn...), for every test that names one.
pytest_plugins = ("tests.unit.retail_fixtures",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _network_kill_switch(request: pytest.FixtureRequest):
    allow_loopback = request.node.get_closest_marker("integration") is not None
    with block_network(allow_loopback=allow_loopback):
        yield


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No test reads the developer's keys, hosts or tiers file by accident."""
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "TIERFLOW_TIERS", "TIERFLOW_POLICY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "tierflow-home"))
