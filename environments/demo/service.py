"""A tiny demo web service: serves the version in its state file; `/health` fails for a `broken` version.

`python -m environments.demo.service --port 9101 --state-file DIR/state.json --name web-1`

It is watched the way a real service would be. It serves itself a steady stream of checkouts (`--rps` a second; a
version named `…-errors` fails six times as many of them as any other, while its `/health` stays green), counts
them for Prometheus at `/metrics` (`shop_requests_total{version, status}`, with `prometheus_client`), reports each
failure with `sentry-sdk` to `--dsn` (Slipway's envelope endpoint), and, with `--push-url` and a token,
pushes its error ratio every `--push-seconds` to Slipway as `http_error_ratio{version, target}` — what the demo's
analysis template judges a canary by. Without those options it only serves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import threading
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BASE_ERROR_RATE = 0.01
NOISY_ERROR_RATE = 0.06  # a version named `…-errors`: six times the errors, health check still passing


def current_version(state_file: Path) -> str | None:
    try:
        return json.loads(state_file.read_text()).get("version")
    except (OSError, ValueError):
        return None


def error_rate(version: str | None) -> float:
    return NOISY_ERROR_RATE if version and "errors" in version else BASE_ERROR_RATE


class CouponLookupError(KeyError):
    """Every version fails this now and then: the baseline's errors."""


class BasketTotalError(ArithmeticError):
    """Only the `…-errors` build: a new error group in its release."""


def checkout(version: str | None, rng: random.Random) -> None:
    """One simulated checkout; raises as the version's error rate says."""
    if rng.random() >= error_rate(version):
        return
    order = rng.randrange(10_000, 99_999)
    if version and "errors" in version and rng.random() < 0.8:
        raise BasketTotalError(f"basket total {order / 100:.2f} does not match its lines for order {order}")
    raise CouponLookupError(f"coupon for order {order} not found")


class Traffic:
    """The service's own load: `rps` checkouts a second, counted per version and status."""

    def __init__(
        self, state_file: Path, name: str, rps: float, *, report=None, seed: int | None = None
    ) -> None:
        self.state_file, self.name, self.rps = state_file, name, rps
        self.report = report  # called with each exception (sentry_sdk.capture_exception)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.window: dict[str, list[int]] = {}  # version -> [requests, errors] since the last push
        self.counter = None
        try:
            from prometheus_client import CollectorRegistry, Counter

            self.registry = CollectorRegistry()
            self.counter = Counter(
                "shop_requests", "Checkouts served.", ["version", "status"], registry=self.registry
            )
        except ImportError:  # pragma: no cover - prometheus_client is in Slipway's requirements
            self.registry = None

    def one(self) -> None:
        version = current_version(self.state_file)
        status = "200"
        try:
            checkout(version, self.rng)
        except Exception as error:
            status = "500"
            if self.report is not None:
                self.report(error)
        with self.lock:
            seen = self.window.setdefault(version or "", [0, 0])
            seen[0] += 1
            seen[1] += status == "500"
        if self.counter is not None:
            self.counter.labels(version=version or "", status=status).inc()

    def take(self) -> dict[str, tuple[int, int]]:
        with self.lock:
            window, self.window = self.window, {}
        return {v: (n, e) for v, (n, e) in window.items()}

    def run(self, stop: threading.Event) -> None:
        every = 1 / self.rps
        while not stop.wait(every):
            self.one()


def push_ratios(
    traffic: Traffic, url: str, token: str, environment: str, seconds: float, stop: threading.Event
):
    """Every `seconds`: the error ratio of each version served since the last push, as one sample each."""
    while not stop.wait(seconds):
        now = datetime.now(UTC).isoformat()
        samples = [
            {
                "name": "http_error_ratio",
                "value": errors / requests,
                "timestamp": now,
                "labels": {"environment": environment, "version": version, "target": traffic.name},
            }
            for version, (requests, errors) in traffic.take().items()
            if version and requests
        ]
        if not samples:
            continue
        request = urllib.request.Request(
            url,
            data=json.dumps(samples).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with contextlib.suppress(OSError):  # Slipway restarting: these samples are lost, the next ones go
            urllib.request.urlopen(request, timeout=5).close()


def start_sentry(dsn: str, state_file: Path, name: str, environment: str):
    """sentry-sdk pointed at Slipway; each event carries the version served when it happened. None without it."""
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover
        return None

    def before_send(event, hint):
        event["release"] = current_version(state_file) or ""
        return event

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        server_name=name,
        before_send=before_send,
        default_integrations=False,
        traces_sample_rate=0,
    )
    return sentry_sdk.capture_exception


def make_handler(state_file: Path, name: str, traffic: Traffic | None = None):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            version = current_version(state_file)
            if self.path == "/health":
                healthy = version is not None and "broken" not in version
                self.reply(
                    200 if healthy else 500,
                    "application/json",
                    json.dumps({"version": version, "healthy": healthy}),
                )
            elif self.path == "/metrics" and traffic is not None and traffic.registry is not None:
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                self.reply(200, CONTENT_TYPE_LATEST, generate_latest(traffic.registry).decode())
            else:
                self.reply(200, "text/html", f"<h1>shop {version or '(nothing deployed)'} on {name}</h1>")

        def reply(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--name", default="web")
    parser.add_argument("--environment", default="production")
    parser.add_argument("--rps", type=float, default=20.0, help="Simulated checkouts a second (0: none).")
    parser.add_argument("--dsn", default="", help="Report errors with sentry-sdk to this DSN.")
    parser.add_argument("--push-url", default="", help="Slipway's …/applications/<app>/metrics/.")
    parser.add_argument(
        "--push-token",
        default=os.environ.get("SLIPWAY_PUSH_TOKEN", ""),
        help="An API token with metrics:write (default: $SLIPWAY_PUSH_TOKEN).",
    )
    parser.add_argument("--push-seconds", type=float, default=5.0)
    args = parser.parse_args()
    stop = threading.Event()
    report = start_sentry(args.dsn, args.state_file, args.name, args.environment) if args.dsn else None
    traffic = Traffic(args.state_file, args.name, args.rps, report=report) if args.rps > 0 else None
    if traffic is not None:
        threading.Thread(target=traffic.run, args=(stop,), daemon=True).start()
        if args.push_url and args.push_token:
            threading.Thread(
                target=push_ratios,
                args=(traffic, args.push_url, args.push_token, args.environment, args.push_seconds, stop),
                daemon=True,
            ).start()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.state_file, args.name, traffic))
    try:
        server.serve_forever()
    finally:
        stop.set()


if __name__ == "__main__":
    main()
