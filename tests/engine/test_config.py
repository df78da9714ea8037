"""Engine configuration: TOML, environment and flags; every error names the dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from relentless_fast.config import (
    Config,
    ConfigError,
    env_name,
    example_toml,
    iter_keys,
    load_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relentless.toml"
    path.write_text(text)
    return path


def test_example_file_holds_every_key_with_its_default() -> None:
    example = REPO_ROOT / "relentless.example.toml"
    assert example.read_text() == example_toml(), "regenerate: python -m relentless_fast.config"
    assert load_config(example, env={}) == Config()
    text = example.read_text()
    for key, _, _ in iter_keys():
        assert f"\n{key.rsplit('.', 1)[-1]} = " in text, key


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[inference]\nwindow_us = 200.0\nmax_batch = 64\n[outputs.udp]\nport = 9100\n"
    )
    env = {"RELENTLESS_INFERENCE_WINDOW_US": "300", "RELENTLESS_CONSUME_PASSWORD": "not ours"}
    c = load_config(path, env=env, overrides={"outputs.udp.port": "9200"})
    assert c.inference.window_us == 300.0  # env over file
    assert c.inference.max_batch == 64  # file over default
    assert c.outputs.udp.port == 9200  # flag over file
    assert c.inference.queue_rows == Config().inference.queue_rows


def test_text_values_are_typed() -> None:
    c = load_config(
        env={
            "RELENTLESS_ENGINE_SYMBOLS": "SPY, QQQ",
            "RELENTLESS_ENGINE_GC_FREEZE": "no",
            "RELENTLESS_ENGINE_CPU_AFFINITY": "",
            "RELENTLESS_INFERENCE_BATCH_SIZES": "1,16",
            "RELENTLESS_CONTEXT_FRED_SERIES": "DFF,DGS10",
        }
    )
    assert c.engine.symbols == ("SPY", "QQQ") and c.engine.gc_freeze is False
    assert c.engine.cpu_affinity == () and c.inference.batch_sizes == (1, 16)
    assert c.context.fred_series == ("DFF", "DGS10")
    assert env_name("outputs.udp.max_datagram_bytes") == "RELENTLESS_OUTPUTS_UDP_MAX_DATAGRAM_BYTES"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[inference]\nwindow_uss = 5\n", "inference.window_uss"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[outputs.udp]\nprot = 1\n", "outputs.udp.prot"),
        ('[inference]\nwindow_us = "fast"\n', "inference.window_us"),
        ("[inference]\nmax_batch = 1.5\n", "inference.max_batch"),
        ("[engine]\ngc_freeze = 1\n", "engine.gc_freeze"),
        ('[engine]\nsymbols = "AAPL"\n', "engine.symbols"),
        ("[inference]\nwindow_us = 0.5\n", "inference.window_us"),
        ("[outputs.udp]\nport = 70000\n", "outputs.udp.port"),
        ('[outputs.tcp]\nemission = "some"\n', "outputs.tcp.emission"),
        ('[engine]\nkill_signal = "SIGNOPE"\n', "engine.kill_signal"),
        ("[context]\nsec_max_rps = 50.0\n", "context.sec_max_rps"),
        ("[context]\nbogus = 1\n", "context.bogus"),
        ("inference = 3\n", "inference"),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, toml), env={})
    assert err.value.key == key and key in str(err.value)


def test_env_and_flag_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(env={"RELENTLESS_INFERENCE_WINDOWUS": "1"})
    assert err.value.key == "RELENTLESS_INFERENCE_WINDOWUS"
    with pytest.raises(ConfigError) as err:
        load_config(env={"RELENTLESS_ENGINE_GC_FREEZE": "maybe"})
    assert err.value.key == "engine.gc_freeze"
    with pytest.raises(ConfigError) as err:
        load_config(env={}, overrides={"outputs.udp.port": "eighty"})
    assert err.value.key == "outputs.udp.port"
    with pytest.raises(ConfigError) as err:
        load_config(env={}, overrides={"outputs.udp.nope": "1"})
    assert err.value.key == "outputs.udp.nope"


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[engine\n"), env={})
