"""Start ``serve-model`` as a subprocess on free loopback ports (tests, benches, local runs).

No TensorFlow import here: the child process imports it. ``ServerProcess`` picks free ports,
waits until the server prints its listening lines (it does so only after every version loaded and
warmed up), and can be killed and restarted on the same ports (fault-injection tests)::

    with ServerProcess(config="models/config.all_versions.pbtxt", batching=True) as srv:
        channel = grpc.insecure_channel(srv.grpc_target)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from relentless_fast.model_contract import models_dir

MODELS_DIR = models_dir()
READY_MARKERS = ("Running gRPC ModelServer at", "Exporting HTTP/REST API at")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``serve-model`` child process bound to 127.0.0.1."""

    def __init__(
        self,
        *,
        config: str | Path = MODELS_DIR / "config.pbtxt",
        batching: bool = False,
        batching_file: str | Path = MODELS_DIR / "batching.config",
        extra_args: Sequence[str] = (),
        rest: bool = True,
        start_timeout_s: float = 120.0,
    ) -> None:
        self.config = Path(config)
        self.batching = batching
        self.batching_file = Path(batching_file)
        self.extra_args = list(extra_args)
        self.grpc_port = free_port()
        self.rest_port = free_port() if rest else 0
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = self._new_log()

    @staticmethod
    def _new_log() -> tempfile._TemporaryFileWrapper[bytes]:
        return tempfile.NamedTemporaryFile(prefix="serve-model-", suffix=".log", delete=False)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def log_path(self) -> Path:
        return Path(self._log.name)

    def args(self) -> list[str]:
        a = [
            sys.executable,
            "-m",
            "relentless_fast.serving.cli",
            f"--port={self.grpc_port}",
            f"--rest_api_port={self.rest_port}",
            "--bind_address=127.0.0.1",
            f"--model_config_file={self.config}",
        ]
        if self.batching:
            a += ["--enable_batching=true", f"--batching_parameters_file={self.batching_file}"]
        return a + self.extra_args

    def start(self) -> ServerProcess:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            self.args(), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=MODELS_DIR.parent
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        need = [READY_MARKERS[0]] + ([READY_MARKERS[1]] if self.rest_port else [])
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if all(m in text for m in need):
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"serve-model exited with {self.proc.returncode}:\n{text[-3000:]}"
                )
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"serve-model not ready after {self.start_timeout_s} s: {self.log_path}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, no cleanup (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Stop (if running) and start again on the same ports."""
        self.stop()
        self._log.close()
        self.log_path.unlink(missing_ok=True)
        self._log = self._new_log()
        self.start()

    def restart_in_background(self) -> threading.Thread:
        t = threading.Thread(target=self.restart, daemon=True)
        t.start()
        return t

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
        if exc is None:
            self.log_path.unlink(missing_ok=True)
