"""The runnable example of docs/engine.md runs and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.engine.conftest import REPO_ROOT


def test_engine_doc_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (REPO_ROOT / "docs" / "engine.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(REPO_ROOT)  # the example uses the default model path, models/...
    for key in [k for k in __import__("os").environ if k.startswith("RELENTLESS_")]:
        monkeypatch.delenv(key)
    code = compile(blocks[0], str(Path("docs/engine.md")), "exec")
    exec(code, {"__name__": "__doc_example__"})
    assert re.search(r"\d+ ticks -> \d+ signals", capsys.readouterr().out)
