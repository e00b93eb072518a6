"""Run the real server (`manage.py serve`) as a subprocess against the test database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def database_url() -> str:
    db = settings.DATABASES["default"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class LiveSlipway:
    url: str
    process: subprocess.Popen
    log_path: Path

    @classmethod
    def start(
        cls, *, extra_env: dict[str, str] | None = None, embedded: bool = False, port: int | None = None
    ) -> LiveSlipway:
        port = port or free_port()  # a given port: a process restarted where its clients expect it
        log_path = Path(settings.DATA_DIR) / f"live-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1",
            "SLIPWAY_DEMO_FLEET": "0",
            **(extra_env or {}),
        }
        args = [sys.executable, "manage.py", "serve", "--port", str(port)]
        if not embedded:
            args.append("--no-embedded")
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log_path.open("ab"), stderr=subprocess.STDOUT
        )
        server = cls(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
        server.wait_until_up()
        return server

    def wait_until_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not come up: {self.log_path.read_text()[-2000:]}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL, as a crashed host: no shutdown, open connections reset."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_agent(url: str, name: str, workdir: Path, *extra: str) -> subprocess.Popen:
    """A real deploy agent process registered with the tests' token, heartbeating every second, its log beside its
    work directory; `extra` adds agent flags (`--deploy-command …`)."""
    args = [
        sys.executable,
        "-m",
        "environments.agent",
        "--url",
        url,
        "--registration-token",
        "slr_test_token",
    ]
    args += [
        "--name",
        name,
        "--workdir",
        str(workdir / name),
        *extra,
        "--heartbeat-seconds",
        "1",
        "--poll-wait",
        "2",
    ]
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
