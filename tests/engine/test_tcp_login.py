"""The engine's SoupBinTCP login comes from config plus an environment variable (never TOML)."""

from __future__ import annotations

import pytest

from relentless_fast.config import ConfigError
from relentless_fast.engine import Engine
from relentless_fast.inference.embedded import EmbeddedBackend
from tests.engine.conftest import make_config

TCP = {"outputs.tcp.enabled": "true", "outputs.tcp.port": 0}


def test_no_username_accepts_any_login() -> None:
    assert make_config(**TCP).outputs.tcp.credentials() == (None, None)


def test_username_without_password_variable_names_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RF_TEST_SOUP_PW", raising=False)
    tcp = make_config(
        **TCP, **{"outputs.tcp.username": "desk1", "outputs.tcp.password_env": "RF_TEST_SOUP_PW"}
    ).outputs.tcp
    with pytest.raises(ConfigError) as err:
        tcp.credentials()
    assert err.value.key == "outputs.tcp.password_env"


def test_overlong_username_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        make_config(**TCP, **{"outputs.tcp.username": "toolong1"})
    assert err.value.key == "outputs.tcp.username"


async def test_engine_passes_login_and_limits_to_the_publisher(
    monkeypatch: pytest.MonkeyPatch, embedded: EmbeddedBackend
) -> None:
    monkeypatch.setenv("RF_TEST_SOUP_PW", "s3cret")
    config = make_config(
        **TCP,
        **{
            "outputs.tcp.username": "desk1",
            "outputs.tcp.password_env": "RF_TEST_SOUP_PW",
            "outputs.tcp.client_timeout_s": "7.5",
            "outputs.tcp.max_client_buffer_bytes": "65536",
        },
    )
    async with Engine(config, feed=False, embedded=embedded, context_store=False) as eng:
        assert eng.tcp is not None
        got = eng.tcp.config
        assert (got.username, got.password) == ("desk1", "s3cret")
        assert (got.client_timeout_s, got.max_client_buffer_bytes) == (7.5, 65536)
