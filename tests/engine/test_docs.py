"""The runnable example of docs/engine.md runs and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.engine.conftest import REPO_ROOT


def test_engine_doc_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = (REPO_ROOT / "docs" / "engine.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(REPO_ROOT)  # the example uses the default model path, models/...
    for key in [k for k in __import__("os").environ if k.startswith("RELENTLESS_")]:
        monkeypatch.delenv(key)
    # the example's audit log goes to var/audit under the working directory: keep it out of
    # the repository (the overrides win over the environment, so the path is rewritten)
    example = blocks[0].replace('"var/audit"', repr(str(tmp_path / "audit")))
    assert example != blocks[0]
    code = compile(example, str(Path("docs/engine.md")), "exec")
    exec(code, {"__name__": "__doc_example__"})
    assert re.search(r"\d+ ticks -> \d+ signals", capsys.readouterr().out)
    assert list((tmp_path / "audit").glob("*.parquet"))  # the audit log was written
