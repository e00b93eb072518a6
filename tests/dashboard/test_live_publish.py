"""`dashboard.live._send`: a publication is handed to a long-lived event loop, never waited for by its caller, sent
in the order given, and a failing channel layer is logged without breaking the caller."""

import asyncio
import logging
import os
import random
import threading

import pytest

from dashboard import live


class RecordingLayer:
    """A channel layer (not the in-memory one) whose sends take a random while, so concurrent sends would overtake."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.sent: list[tuple[str, int, str]] = []
        self.fail_on = fail_on

    async def group_send(self, group: str, message: dict) -> None:
        await asyncio.sleep(random.random() / 500)
        if message.get("type") == self.fail_on:
            raise ConnectionError("the channel layer is down")
        self.sent.append((group, message["n"], threading.current_thread().name))


@pytest.fixture
def layer(monkeypatch):
    recording = RecordingLayer()
    monkeypatch.setattr(live, "get_channel_layer", lambda: recording)
    return recording


def test_publications_go_out_in_order_on_one_thread_without_the_caller_waiting(layer):
    before = {t.ident for t in threading.enumerate()}
    for n in range(200):
        live._send(f"rollout.{n % 3}", {"type": "rollout.changed", "n": n})
    assert live.flush(5)
    assert [n for _, n, _ in layer.sent] == list(range(200))  # in order, none lost
    assert {name for _, _, name in layer.sent} == {"slipway-live-publish"}
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert (
        len(started) <= 1
    )  # at most the publishing thread (if this test started it), not one per publication


def test_a_failing_channel_layer_is_logged_and_the_caller_goes_on(monkeypatch, caplog):
    failing = RecordingLayer(fail_on="release.changed")
    monkeypatch.setattr(live, "get_channel_layer", lambda: failing)
    with caplog.at_level(logging.ERROR, logger="dashboard.live"):
        live._send("release.1", {"type": "release.changed", "n": 1})  # does not raise
        live._send("release.1", {"type": "rollout.changed", "n": 2})
        assert live.flush(5)
    assert [n for _, n, _ in failing.sent] == [2]  # the next publication still goes out
    assert "could not publish release.changed to release.1" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded")
def test_a_forked_child_starts_its_own_publishing_thread(layer):
    live._send("rollout.1", {"type": "rollout.changed", "n": 1})
    assert live.flush(5)  # the parent's publishing thread runs
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not there; publishing must still work
        try:
            live._send("rollout.1", {"type": "rollout.changed", "n": 2})
            ok = live.flush(5) and [n for _, n, _ in layer.sent] == [1, 2]
            os.write(write, b"ok" if ok else repr(layer.sent).encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1000)
    os.waitpid(pid, 0)
    assert answer == b"ok"
    assert [n for _, n, _ in layer.sent] == [1]  # the child's publication is its own
