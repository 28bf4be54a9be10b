"""Test harness: the real operator process (`python -m vlmops operator ...`) against the emulator."""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

REPO = Path(__file__).resolve().parents[2]
TEST_UA = "vlmops-tests"
NAMESPACES = ["vlm", "fail", "bad", "smoke", "rt-pytorchjob", "rt-trainjob"]
FAULTS_NAMESPACE = "faults"  # watched by the fault tests' own operator (its log may hold injected errors)
LEADER_NAMESPACE = "leader"  # watched by the leader-election test's two replicas
IMAGE_NAMESPACE = "provenance"  # watched by the image-in-manifest test's operator (started with S3 credentials)
# Short enough for the fault tests to wait on, long enough not to load a 2-core machine.
RESYNC_SECONDS = 3.0
API_TIMEOUT_SECONDS = 3.0


def crd_docs() -> list[dict[str, Any]]:
    return [yaml.safe_load(p.read_text()) for p in sorted((REPO / "crds").glob("*.yaml"))]


def wait_for(fn: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `fn` until it returns something truthy; fail with the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OperatorProcess:
    """The real operator as a subprocess; restartable; logs kept for failure messages."""

    def __init__(self, kubeconfig_path: Path, log_dir: Path, namespaces: list[str], watch_timeout: float = 2.0,
                 extra_args: list[str] | None = None):
        self.kubeconfig_path, self.log_dir, self.namespaces = kubeconfig_path, log_dir, namespaces
        self.extra_args = list(extra_args or [])
        self.watch_timeout = watch_timeout
        self.proc: subprocess.Popen | None = None
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self, timeout: float = 40.0) -> "OperatorProcess":
        self.starts += 1
        env = dict(os.environ)
        env.update(KUBECONFIG=str(self.kubeconfig_path), PYTHONPATH=f"{REPO / 'operator'}:{REPO / 'jobs'}",
                   PYTHONUNBUFFERED="1", NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(var, None)
        cmd = [sys.executable, "-m", "vlmops", "operator", "--metrics-port", str(self.metrics_port),
               "--health-port", str(self.health_port), "--config", str(self.log_dir / "absent-config.yaml"),
               "--watch-timeout", str(self.watch_timeout), "--resync-interval", str(RESYNC_SECONDS),
               "--api-timeout", str(API_TIMEOUT_SECONDS)]
        for ns in self.namespaces:
            cmd += ["--namespace", ns]
        cmd += self.extra_args
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO))
        atexit.register(self.stop)  # even when pytest itself is interrupted
        try:
            wait_for(self.healthy, timeout=timeout, interval=0.2, what=f"operator liveness (log: {self.log_path})")
        except BaseException:
            self.stop()  # a start that fails must not leave the process behind (no fixture will stop it)
            raise
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"operator exited ({self.proc and self.proc.returncode}):\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, like a crashed or evicted pod."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log.closed:
            self._log.close()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-n:])
        except OSError:
            return "(no log)"


