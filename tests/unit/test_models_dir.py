"""Where the model repository is found, for installed and editable packages alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from relentless_fast.model_contract import MODEL_NAME, MODELS_DIR_ENV, models_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_environment_variable_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    assert models_dir() == tmp_path


def test_working_directory_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    (tmp_path / "models" / MODEL_NAME).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert models_dir() == (tmp_path / "models").resolve()


def test_repository_root_finds_the_shipped_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    monkeypatch.chdir(REPO_ROOT)
    found = models_dir()
    assert (found / "config.pbtxt").is_file()
    assert (found / MODEL_NAME / "1" / "assets.extra" / "model.tflite").is_file()
