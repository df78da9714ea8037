"""The bundled sample recording is what the generator builds (and says it is synthetic)."""

from __future__ import annotations

from pathlib import Path

from relentless_fast.engine.sources import build_sample_recording, sample_recording_path
from relentless_fast.feeds.recording import open_recording


def test_bundled_sample_equals_a_fresh_build(tmp_path: Path) -> None:
    fresh = tmp_path / "sample.rfframes"
    n = build_sample_recording(fresh)
    bundled = sample_recording_path()
    assert bundled.read_bytes() == fresh.read_bytes()
    with open_recording(bundled) as rec:
        assert rec.frames == n
    assert "SYNTHETIC" in (bundled.parent / "README.md").read_text()
