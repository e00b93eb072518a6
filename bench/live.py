"""Live views under load: VIEWERS (50) browsers-worth of WebSocket clients on one release page while its rollout
commits STEPS (200) steps, one every PACE (0.1) s, on the embedded runtime (in-memory channel layer) and on the
Redis one (channels-redis).

The server (bench/_live_server.py) is uvicorn serving `config.asgi:application` with a thread that commits each step
and publishes it through the engine's hook; the viewers are this process's websockets clients on
`/ws/releases/<id>/` (the release page's socket, session cookie, as a browser). Every pushed message carries the
whole rollout section, so a viewer knows how many steps it shows as succeeded.

Figures, each `.embedded` and `.redis`:
- latency from a step's commit to the first message at a viewer showing it: p50, p95, max over viewers × steps;
- `missed`: steps some viewer never saw succeed, `reordered`: messages showing fewer steps than one before them —
  both must be 0; `coalesced`: steps a viewer saw only together with the next (the message, re-read from the
  database when it was rendered, showed the following step already committed): no step is lost, but the
  viewer did not see that one alone;
- the same with one more viewer that never reads its socket (`stalled_*`: the others' figures).
Goal: p95 < 250 ms. Each runtime's server first runs the rollout once with a few viewers (warm-up, not reported).
Both processes share the machine's cores (and with whatever else runs there).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIEWERS = int(os.environ.get("BENCH_LIVE_VIEWERS", 50))
STEPS = int(os.environ.get("BENCH_LIVE_STEPS", 200))
PACE = float(os.environ.get("BENCH_LIVE_PACE", 0.1))
PORT = int(os.environ.get("BENCH_LIVE_PORT", 18310))
# BENCH_LIVE_RUNTIMES=embedded (or redis) runs one runtime; BENCH_REDIS_URL the Redis of the second.
SUCCEEDED = 'data-action="deploy" data-status="succeeded"'


def start(runtime: str, data_dir: str) -> tuple[subprocess.Popen, dict]:
    env = {
        **os.environ,
        "SLIPWAY_DATA_DIR": data_dir,
        "DATABASE_URL": f"sqlite:///{data_dir}/bench.sqlite3",
        "BENCH_LIVE_PORT": str(PORT),
        "BENCH_LIVE_STEPS": str(STEPS),
        "SLIPWAY_DEMO_FLEET": "0",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    if runtime == "redis":
        env["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
        env["CHANNEL_PREFIX"] = f"bench-live-{os.getpid()}"
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "_live_server.py")],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    facts = json.loads(server.stdout.readline())
    return server, facts


async def viewer(url: str, session: str, ready: asyncio.Event, seen: list, done: asyncio.Event) -> None:
    import websockets

    headers = {"Cookie": f"sessionid={session}", "Origin": url.replace("ws://", "http://").split("/ws/")[0]}
    async with websockets.connect(url, additional_headers=headers, max_size=None, compression=None) as ws:
        await ws.recv()  # the catch-up
        ready.set()
        while not done.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 1)
            except TimeoutError:
                continue
            seen.append((time.time(), message.count(SUCCEEDED)))


async def stalled(url: str, session: str) -> socket.socket:
    """A browser that never reads: a tiny receive buffer, the handshake, then nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", PORT))
    path = url.split(str(PORT), 1)[1]
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{PORT}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{PORT}\r\nCookie: sessionid={session}\r\n\r\n"
        ).encode()
    )
    await asyncio.sleep(0.5)
    assert sock.recv(12) == b"HTTP/1.1 101", "the stalled viewer's handshake"
    return sock


async def run(
    server: subprocess.Popen, facts: dict, with_stalled: bool, viewers: int = VIEWERS
) -> tuple[list[float], int, int, int]:
    url = f"ws://127.0.0.1:{PORT}/ws/releases/{facts['release']}/"
    ready = [asyncio.Event() for _ in range(viewers)]
    seen: list[list] = [[] for _ in range(viewers)]
    done = asyncio.Event()
    stuck = await stalled(url, facts["session"]) if with_stalled else None
    tasks = [
        asyncio.create_task(viewer(url, facts["session"], r, s, done))
        for r, s in zip(ready, seen, strict=True)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
    await asyncio.sleep(0.5)
    server.stdin.write(f"go {PACE}\n")
    server.stdin.flush()
    commits = json.loads(await asyncio.to_thread(server.stdout.readline))["commits"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(not s or s[-1][1] < STEPS for s in seen):
        await asyncio.sleep(0.1)
    done.set()
    await asyncio.gather(*tasks)
    if stuck is not None:
        stuck.close()
    latencies, missed, coalesced, reordered = [], 0, 0, 0
    for messages in seen:
        counts = [k for _, k in messages]
        reordered += sum(1 for a, b in zip(counts, counts[1:], strict=False) if b < a)
        coalesced += len(set(range(1, STEPS + 1)) - set(counts))
        for k in range(1, STEPS + 1):
            first = next((t for t, n in messages if n >= k), None)
            if first is None:
                missed += 1
            else:
                latencies.append(first - commits[k - 1])
    return latencies, missed, coalesced, reordered


def report(
    name: str, runtime: str, latencies: list[float], missed: int, coalesced: int, reordered: int
) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[max(0, int(len(ms) * 0.95) - 1)] if ms else float("nan")
    for figure, value, unit in (
        ("p50_ms", statistics.median(ms) if ms else float("nan"), "ms"),
        ("p95_ms", p95, "ms"),
        ("max_ms", ms[-1] if ms else float("nan"), "ms"),
        ("missed", missed, "steps"),
        ("coalesced", coalesced, "steps"),
        ("reordered", reordered, "messages"),
    ):
        print(f"bench: live.{name}_{figure}.{runtime} {value:.0f} {unit}", flush=True)


def main() -> None:
    for runtime in os.environ.get("BENCH_LIVE_RUNTIMES", "embedded,redis").split(","):
        with tempfile.TemporaryDirectory(prefix="slipway-bench-live-") as data_dir:
            server, facts = start(runtime, data_dir)
            try:
                asyncio.run(run(server, facts, False, viewers=5))  # warm-up
                for with_stalled in (False, True):
                    prefix = "stalled_" if with_stalled else ""
                    result = asyncio.run(run(server, facts, with_stalled))
                    report(f"{prefix}{VIEWERS}_viewers_{STEPS}_steps", runtime, *result)
            finally:
                server.stdin.write("quit\n")
                server.stdin.flush()
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()


if __name__ == "__main__":
    main()
