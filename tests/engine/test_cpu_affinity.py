"""``engine.cpu_affinity``: the engine process is pinned where it runs (``run_engine``).

Each check runs the engine in a subprocess, so pinning never leaks into the test process:
``relentless-fast run`` itself (the affinity is read from outside while it runs), and a tiny
script whose feed reads the affinity from inside the engine's event loop.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.engine.conftest import REPO_ROOT

MODEL = str(REPO_ROOT / "models" / "relentless_financial")
COMMON = ["--outputs.udp.enabled", "false", "--outputs.grpc.enabled", "false",
          "--context.snapshot_path", "", "--inference.model_base_path", MODEL,
          "--engine.kill_signal", "", "--monitor.audit_enabled", "false",
          "--monitor.metrics_enabled", "false"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity"), reason="os.sched_getaffinity: Linux only"
)


def allowed_cpus() -> set[int]:
    return set(os.sched_getaffinity(0))


def target_cpu() -> int:
    """CPU 0 when this process may use it (the usual case), else its lowest allowed CPU."""
    cpus = allowed_cpus()
    return 0 if 0 in cpus else min(cpus)


def needs_two_cpus() -> None:
    if len(allowed_cpus()) < 2:
        pytest.skip("one CPU allowed here: pinned and unpinned cannot be told apart")


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RELENTLESS_")}


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` (``SigCgt`` in its status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the process is gone
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "relentless_fast.cli", "run", *COMMON, *args]


def test_run_pins_the_engine_process(tmp_path: Path) -> None:
    needs_two_cpus()
    cpu = target_cpu()
    pid_file = tmp_path / "engine.pid"
    proc = subprocess.Popen(
        cli("--engine.cpu_affinity", str(cpu), "--engine.pid_file", str(pid_file),
            "--seconds", "30", "--feed.synthetic_frames", "3000",
            "--feed.synthetic_max_messages", "4", "--feed.synthetic_rate_fps", "200"),
        cwd=REPO_ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        seen: set[int] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if pid_file.exists():  # written just before run_engine pins the process
                seen = set(os.sched_getaffinity(proc.pid))
                if seen == {cpu}:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the engine ended before its affinity could be read"
        assert seen == {cpu}
        while proc.poll() is None and not catches(proc.pid, signal.SIGTERM):
            assert time.monotonic() < deadline, "the engine never installed its SIGTERM handler"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)  # clean shutdown; counters on stdout
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")
    snapshot = json.loads(out)
    assert snapshot["serving"] is False and snapshot["frames"] > 0


PROBE = textwrap.dedent(
    """
    import json, os, sys, threading
    from pathlib import Path
    from relentless_fast.config import load_config
    from relentless_fast.engine.core import run_engine
    from relentless_fast.feeds.base import Feed, FeedState, FrameEncoding

    def thread_affinities():
        out = {}
        for task in Path("/proc/self/task").iterdir():
            out[task.name] = sorted(os.sched_getaffinity(int(task.name)))
        return out

    # A thread that exists before the engine starts, as a library's worker pool would
    # (numpy's OpenBLAS starts one at import on a machine with several CPUs).
    early = threading.Thread(target=threading.Event().wait, daemon=True, name="early")
    early.start()
    seen = {}

    class Probe(Feed):
        async def run(self):
            seen["loop_thread"] = sorted(os.sched_getaffinity(0))
            seen["threads"] = thread_affinities()
            seen["early"] = sorted(os.sched_getaffinity(early.native_id))
            self._set_state(FeedState.STOPPED, "probe done")

        def stop(self):
            pass

    config = load_config(env={}, overrides=json.loads(sys.argv[1]))
    snapshot = run_engine(
        config, seconds=20, feed=lambda sink: Probe(sink, FrameEncoding.JSON)
    )
    seen["serving"] = snapshot["serving"]
    print(json.dumps(seen))
    """
)


@pytest.fixture(scope="module")
def probed() -> dict[str, Any]:
    """Affinities read inside an engine run with ``engine.cpu_affinity = [target]``."""
    needs_two_cpus()
    overrides = {
        "engine.cpu_affinity": str(target_cpu()),
        "outputs.udp.enabled": "false",
        "outputs.grpc.enabled": "false",
        "context.snapshot_path": "",
        "inference.model_base_path": MODEL,
        "engine.kill_signal": "",
        "monitor.audit_enabled": "false",
        "monitor.metrics_enabled": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(overrides)],
        cwd=REPO_ROOT, env=clean_env(), capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


def test_the_event_loop_thread_runs_on_the_configured_cpu(probed: dict[str, Any]) -> None:
    assert probed["loop_thread"] == [target_cpu()]
    assert probed["serving"] is False  # the probe feed ended, the engine stopped cleanly


def test_every_thread_of_the_engine_process_is_pinned(probed: dict[str, Any]) -> None:
    assert probed["early"] == [target_cpu()]
    assert all(cpus == [target_cpu()] for cpus in probed["threads"].values()), probed


def test_a_cpu_that_does_not_exist_is_a_clear_error() -> None:
    bad = str(max(max(allowed_cpus()) + 1, 4095))
    done = subprocess.run(
        cli("--engine.cpu_affinity", bad, "--seconds", "5", "--feed.synthetic_frames", "10"),
        cwd=REPO_ROOT, env=clean_env(), capture_output=True, timeout=60,
    )  # fmt: skip
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2 and "Traceback" not in err
    assert "engine.cpu_affinity" in err and bad in err


def test_a_negative_cpu_is_refused_by_the_configuration() -> None:
    env = {**clean_env(), "RELENTLESS_ENGINE_CPU_AFFINITY": "-1"}
    done = subprocess.run(
        cli("--seconds", "5"), cwd=REPO_ROOT, env=env, capture_output=True, timeout=60
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2 and "Traceback" not in err
    assert "engine.cpu_affinity" in err
