"""`python -m environments.agent` / `slipway-agent`: the deploy agent.

It registers with an environment's registration token, keeps its own token in `<workdir>/agent.json`, long-polls
Slipway for jobs, runs ITS OWN deploy command (configured here, never sent by the server) with SLIPWAY_VERSION,
SLIPWAY_IMAGE, SLIPWAY_COMMIT, SLIPWAY_PREVIOUS_VERSION, SLIPWAY_TARGET and SLIPWAY_ACTION in its environment,
streams the output back, runs the health check (an HTTP URL that must answer 2xx, or a command), reports, and
heartbeats meanwhile. Between jobs it probes the health check again every `health_probe_seconds` and sends the
results (latency, pass or fail, the version it runs) with its heartbeats: the `health_check_latency_ms` and
`health_check_ok` samples an analysis judges. Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

from environments.agent import VERSION

log = logging.getLogger("slipway-agent")
REPORT_RETRY_SECONDS = 120
MAX_PROBES = 100  # health probes kept for the next heartbeat (the server takes at most this many at once)
KEYS = (
    "url",
    "registration_token",
    "name",
    "workdir",
    "deploy_command",
    "health_url",
    "health_command",
    "health_timeout",
    "heartbeat_seconds",
    "deploy_timeout",
    "poll_wait",
    "health_probe_seconds",
)


class Unauthorized(Exception):
    pass


def parse_args(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="slipway-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML file with the same keys (snake_case); flags override it")
    parser.add_argument(
        "--url",
        help="Slipway's URL; several, comma-separated, to move to the next when one fails "
        "(or one load balancer's URL in front of every web process)",
    )
    parser.add_argument("--registration-token")
    parser.add_argument("--name", default=None)
    parser.add_argument("--workdir")
    parser.add_argument("--deploy-command")
    parser.add_argument("--health-url")
    parser.add_argument("--health-command")
    parser.add_argument("--health-timeout", type=float)
    parser.add_argument("--heartbeat-seconds", type=float)
    parser.add_argument("--deploy-timeout", type=float)
    parser.add_argument("--poll-wait", type=float)
    parser.add_argument(
        "--health-probe-seconds",
        type=float,
        help="probe the health check this often between jobs and report it with the heartbeats (0: never)",
    )
    args = vars(parser.parse_args(argv))
    config: dict = {
        "name": socket.gethostname(),
        "health_timeout": 10.0,
        "heartbeat_seconds": 5.0,
        "deploy_timeout": 600.0,
        "poll_wait": 20.0,
        "health_probe_seconds": 5.0,
    }
    if config_file := args.pop("config"):
        with open(config_file, "rb") as handle:
            config.update({k: v for k, v in tomllib.load(handle).items() if k in KEYS})
    config.update({k: v for k, v in args.items() if v is not None})
    # No deploy command: the built-in tarball format (versions/<version>/ + an atomic `current` symlink).
    missing = [k for k in ("url", "workdir") if not config.get(k)]
    if missing:
        parser.error("missing " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return config


class Agent:
    def __init__(self, config: dict) -> None:
        self.config = config
        urls = config["url"] if isinstance(config["url"], list) else str(config["url"]).split(",")
        self.urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        self.current = 0  # the URL in use; the next one is tried when it fails
        self.workdir = Path(config["workdir"])
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_file = self.workdir / "agent.json"
        self.stopping = threading.Event()
        self.busy = False  # a job is under way: a stop request lets it finish and report first
        self.probes: list[dict] = []  # health probes not sent yet, oldest first (at most MAX_PROBES)
        self.probes_lock = threading.Lock()
        self.token: str | None = None
        self.version: str | None = None
        self.last_job: int | None = (
            None  # the newest job run: heartbeats say which one `version` is the result of
        )
        if self.state_file.exists():
            state = json.loads(self.state_file.read_text())
            self.token, self.version, self.last_job = (
                state.get("agent_token"),
                state.get("version"),
                state.get("job"),
            )

    # --- HTTP -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.urls[self.current]

    def call(
        self, method: str, path: str, body: dict | None = None, timeout: float = 15
    ) -> tuple[int, dict | None]:
        """One request to Slipway. When the URL in use cannot be reached (or its gateway answers 502/503/504), the
        next configured URL is tried at once, each at most once per call; the one that answered stays in use."""
        problem: Exception | None = None
        answer: tuple[int, dict | None] | None = None
        for _ in range(len(self.urls)):
            try:
                answer = self._call_once(self.url, method, path, body, timeout)
            except (urllib.error.URLError, OSError) as error:  # refused, reset, timed out, unknown host
                problem, answer = error, None
            if answer is not None and answer[0] not in (502, 503, 504):
                return answer
            if len(self.urls) > 1:
                failed = self.url
                self.current = (self.current + 1) % len(self.urls)
                log.warning(
                    "%s failed (%s): moving to %s", failed, problem or f"answered {answer[0]}", self.url
                )
        if answer is not None:
            return answer
        raise problem or ConnectionError("no Slipway URL answered")

    def _call_once(
        self, base: str, method: str, path: str, body: dict | None, timeout: float
    ) -> tuple[int, dict | None]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "User-Agent": f"slipway-agent/{VERSION}"}
        if self.token and not path.endswith("/register"):
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            if error.code == 401:
                raise Unauthorized() from error
            if error.code >= 500:
                log.warning("%s %s answered %s", method, path.partition("?")[0], error.code)
            raw = error.read()
            try:
                return error.code, json.loads(raw) if raw else None
            except ValueError:
                return error.code, None

    def save_state(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"agent_token": self.token, "version": self.version, "job": self.last_job}))
        tmp.chmod(0o600)
        os.replace(tmp, self.state_file)

    def register(self) -> None:
        token = self.config.get("registration_token")
        if not token:
            raise SystemExit("the agent token was refused and no --registration-token is configured")
        status, body = self.call(
            "POST",
            "/api/v1/agent/register",
            {
                "registration_token": token,
                "name": self.config["name"],
                "hostname": socket.gethostname(),
                "agent_version": VERSION,
            },
        )
        if status != 201 or not body:
            raise ConnectionError(f"registration answered {status}: {body}")
        self.token = body["agent_token"]
        self.config["heartbeat_seconds"] = min(
            self.config["heartbeat_seconds"], body.get("heartbeat_seconds", 5)
        )
        self.save_state()
        log.info("registered as %s", body["target"])

    # --- loop -----------------------------------------------------------------------------
    def run(self) -> None:
        backoff = 0.5
        threading.Thread(target=self.heartbeats, daemon=True).start()
        if float(self.config.get("health_probe_seconds") or 0) > 0:
            threading.Thread(target=self.health_probes, daemon=True).start()
        while not self.stopping.is_set():
            try:
                if not self.token:
                    self.register()
                wait = self.config["poll_wait"]
                status, body = self.call("GET", f"/api/v1/agent/work?wait={wait}", timeout=wait + 10)
                backoff = 0.5
                if status == 200 and body and body.get("job"):
                    self.busy = True
                    try:
                        self.run_job(body["job"])
                    finally:
                        self.busy = False
            except Unauthorized:
                log.warning("agent token refused: registering again")
                self.token = None
            except (OSError, ConnectionError, ValueError) as error:
                log.warning("Slipway unreachable (%s); retrying in %.1f s", error, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10)

    def heartbeats(self) -> None:
        while not self.stopping.wait(self.config["heartbeat_seconds"]):
            if not self.token:
                continue
            with self.probes_lock:
                probes, self.probes = self.probes, []
            now = time.monotonic()
            health = [
                {
                    "ok": p["ok"],
                    "latency_ms": p["latency_ms"],
                    "version": p["version"],
                    "age_seconds": round(max(0.0, now - p["at"]), 3),
                }
                for p in probes
            ]
            sent = False
            with contextlib.suppress(Unauthorized, OSError, ValueError):
                status, _ = self.call(
                    "POST",
                    "/api/v1/agent/heartbeat",
                    {"version": self.version, "job": self.last_job, **({"health": health} if health else {})},
                    timeout=5,
                )
                sent = status < 500
            if probes and not sent:  # kept for the next heartbeat (the newest MAX_PROBES)
                with self.probes_lock:
                    self.probes = (probes + self.probes)[-MAX_PROBES:]

    def health_probes(self) -> None:
        """Between jobs, the health check once every `health_probe_seconds`: latency and result, with the version
        this host runs, for the next heartbeat. A host that has no version yet (never deployed) is not probed."""
        while not self.stopping.wait(float(self.config["health_probe_seconds"])):
            if self.busy or not self.token or not self.version:
                continue
            version = self.version
            env = {**os.environ, "SLIPWAY_VERSION": version, "SLIPWAY_TARGET": self.config["name"]}
            started = time.monotonic()
            result = self.check_health(env, once=True)
            if self.busy or self.version != version:  # a job began meanwhile: this probe says nothing certain
                continue
            probe = {
                "ok": bool(result["ok"]),
                "latency_ms": round((time.monotonic() - started) * 1000, 3),
                "version": version,
                "at": started,
            }
            with self.probes_lock:
                self.probes = [*self.probes, probe][-MAX_PROBES:]

    # --- a job ----------------------------------------------------------------------------
    def run_job(self, job: dict) -> None:
        log.info("job %s: %s %s", job["id"], job["action"], job["version"])
        env = {
            **os.environ,
            "SLIPWAY_VERSION": job.get("version") or "",
            "SLIPWAY_IMAGE": job.get("image") or "",
            "SLIPWAY_COMMIT": job.get("commit") or "",
            "SLIPWAY_PREVIOUS_VERSION": job.get("previous_version") or "",
            "SLIPWAY_TARGET": self.config["name"],
            "SLIPWAY_ACTION": job["action"],
        }
        if self.config.get("deploy_command"):
            ok, exit_code, tail = self.run_command(
                job["id"], self.config["deploy_command"], env, self.config["deploy_timeout"]
            )
        else:
            ok, exit_code, tail = self.install_tarball(job)
        health = {"ok": False, "detail": f"deploy command failed (exit {exit_code})"}
        self.last_job, self.version = job["id"], job.get("version") if ok else self.version
        self.save_state()
        if ok:
            started = time.monotonic()
            health = {**self.check_health(env), "seconds": round(time.monotonic() - started, 3)}
        self.report(
            job["id"],
            {
                "status": "succeeded" if ok else "failed",
                "exit_code": exit_code,
                "health": health,
                "output_tail": tail[-4000:],
                "version": self.version,
            },
        )

    def report(self, job_id: int, result: dict) -> bool:
        """A job's result must arrive: retried while Slipway is busy (5xx) or unreachable, for REPORT_RETRY_SECONDS."""
        delay, deadline = 0.5, time.monotonic() + REPORT_RETRY_SECONDS
        while True:
            try:
                status, body = self.call("POST", f"/api/v1/agent/jobs/{job_id}/result", result)
                if status < 500:
                    if status != 200:
                        log.warning("job %s: report refused (%s): %s", job_id, status, body)
                    return status == 200
                problem = f"answered {status}"
            except (OSError, ValueError) as error:
                problem = str(error)
            if time.monotonic() + delay > deadline or self.stopping.is_set():
                log.error("job %s: giving up reporting the result (%s)", job_id, problem)
                return False
            log.warning(
                "job %s: reporting the result failed (%s); retrying in %.1f s", job_id, problem, delay
            )
            self.stopping.wait(delay)
            delay = min(delay * 2, 10)

    def install_tarball(self, job: dict) -> tuple[bool, int | None, str]:
        """Download the artifact into versions/<version>/, check its digest, switch `current` atomically, keep five."""
        version = job.get("version") or ""
        if not version or "/" in version or version.startswith("."):
            return False, None, f"refusing version {version!r}"
        versions = self.workdir / "versions"
        target = versions / version
        try:
            if not target.exists():
                url, digest = job.get("artifact_url"), job.get("digest") or ""
                if not url or not digest.startswith("sha256:"):
                    return False, None, "the artifact has no tarball_url and sha256 digest in its metadata"
                download = self.workdir / f".download-{version}.tar.gz"
                with urllib.request.urlopen(url, timeout=60) as response, download.open("wb") as handle:
                    hasher = hashlib.sha256()
                    while chunk := response.read(1 << 16):
                        hasher.update(chunk)
                        handle.write(chunk)
                if hasher.hexdigest() != digest.removeprefix("sha256:"):
                    download.unlink()
                    return False, None, f"digest mismatch: expected {digest}, got sha256:{hasher.hexdigest()}"
                staging = versions / f".{version}.partial"
                shutil.rmtree(staging, ignore_errors=True)
                staging.mkdir(parents=True)
                with tarfile.open(download) as archive:
                    archive.extractall(staging, filter="data")  # refuses absolute paths, .. and links outside
                download.unlink()
                os.replace(staging, target)
            link = self.workdir / ".current.tmp"
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target.relative_to(self.workdir))
            os.replace(link, self.workdir / "current")
            self.prune(versions, keep={version, job.get("previous_version") or ""})
        except (OSError, tarfile.TarError, ValueError) as error:
            return False, None, f"tarball install failed: {error}"
        return True, 0, f"current -> versions/{version}\n"

    def prune(self, versions: Path, keep: set[str]) -> None:
        """Keep the five newest versions (never the current or previous one): a revert is a symlink switch."""
        entries = sorted(
            (p for p in versions.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for old in entries[5:]:
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def run_command(
        self, job_id: int, command: str, env: dict, timeout: float
    ) -> tuple[bool, int | None, str]:
        process = subprocess.Popen(
            command,
            shell=True,
            env=env,
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        buffer: list[str] = []
        everything: list[str] = []
        lock = threading.Lock()

        def reader() -> None:
            for line in process.stdout:
                with lock:
                    buffer.append(line)
                    everything.append(line)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        timed_out = False
        while process.poll() is None:
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                timed_out = True
                break
            time.sleep(0.2)
            self.flush_output(job_id, buffer, lock)
        process.wait()
        thread.join(timeout=2)
        if timed_out:
            with lock:
                buffer.append(f"[slipway-agent] deploy command killed after {timeout:.0f} s\n")
                everything.append(buffer[-1])
        self.flush_output(job_id, buffer, lock)
        return (
            (not timed_out and process.returncode == 0),
            (None if timed_out else process.returncode),
            "".join(everything),
        )

    def flush_output(self, job_id: int, buffer: list[str], lock: threading.Lock) -> None:
        with lock:
            chunk = "".join(buffer)
            buffer.clear()
        if chunk:
            with contextlib.suppress(OSError, ValueError, Unauthorized):
                self.call("POST", f"/api/v1/agent/jobs/{job_id}/output", {"chunk": chunk}, timeout=5)

    def check_health(self, env: dict, *, once: bool = False) -> dict:
        """The health check: after a deploy, retried until it passes or `health_timeout` is over; a probe between
        jobs (`once`) asks once."""
        timeout = float(self.config["health_timeout"])
        deadline = time.monotonic() + timeout
        if self.config.get("health_command"):
            try:
                done = subprocess.run(
                    self.config["health_command"],
                    shell=True,
                    env=env,
                    timeout=timeout,
                    capture_output=True,
                    text=True,
                    cwd=self.workdir,
                )
            except subprocess.TimeoutExpired:
                return {"ok": False, "detail": f"health command timed out after {timeout:.0f} s"}
            return {
                "ok": done.returncode == 0,
                "detail": f"health command exit {done.returncode} "
                f"{(done.stdout + done.stderr).strip()[-200:]}",
            }
        url = self.config.get("health_url")
        if not url:
            return {"ok": True, "detail": "no health check configured"}
        last = "no answer"
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(url, timeout=max(0.5, deadline - time.monotonic())) as response:
                    if 200 <= response.status < 300:
                        return {
                            "ok": True,
                            "detail": f"HTTP {response.status} in {(time.monotonic() - started) * 1000:.0f} ms",
                        }
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}"
            except OSError as error:
                last = str(error)
            if once:
                break
            time.sleep(0.3)
        return {"ok": False, "detail": f"{url}: {last}"}


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    agent = Agent(parse_args(argv))

    def stop(signum, frame) -> None:
        agent.stopping.set()
        if not agent.busy:  # waiting for work: leave now, not when the long-poll ends
            raise SystemExit(0)
        log.info("stopping after the job under way")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    with contextlib.suppress(SystemExit):
        agent.run()


if __name__ == "__main__":
    main()
