"""The one helper that publishes to the channel layer. Messages carry ids only; consumers re-read."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable

from asgiref.sync import SyncToAsync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from config.effects import after_commit

log = logging.getLogger(__name__)


def publish_on_commit(group: str, type: str, **ids: int | str) -> None:
    # `event` names this one publication: the consumers of one process that receive it render it once.
    message = {"type": type, **ids, "event": uuid.uuid4().hex}
    json.dumps(message)  # fail in the caller, not later inside a callback
    after_commit(_send, group, message)


def publish_to_users_on_commit(users: Callable[[], Iterable[int]], type: str, **ids: int | str) -> None:
    """To each `user.<id>` group of the ids `users()` gives after commit (who sees what, as it is then)."""
    message = {"type": type, **ids, "event": uuid.uuid4().hex}
    json.dumps(message)
    after_commit(_send_to_users, users, message)


def _send_to_users(users: Callable[[], Iterable[int]], message: dict) -> None:
    for user_id in sorted(users()):
        _send(f"user.{int(user_id)}", message)


# The ASGI server's event loop, where the in-memory layer's consumers wait (set by the first live consumer).
_serving_loop: asyncio.AbstractEventLoop | None = None


def serving_on(loop: asyncio.AbstractEventLoop) -> None:
    global _serving_loop
    _serving_loop = loop


def _send(group: str, message: dict) -> None:
    """Hand one publication to the channel layer; the caller (a commit hook) does not wait for it.

    Each publication goes to an event loop's `_Lane`, which sends what it is given one after the other, in order. The
    in-memory layer's queues belong to the loop its consumers wait on: the server's (`serving_on`), or the loop of
    the async code this thread runs for (`sync_to_async`); a put from another loop would not wake them until
    something else did — up to a second. Everything else goes to this process's publishing thread.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    lane = None
    if isinstance(layer, InMemoryChannelLayer):
        for loop in (_serving_loop, _outer_loop()):
            if loop is not None and loop.is_running():
                lane = _lane(loop)
                break
    if lane is None or not lane.post(layer, group, message):
        _lane(_publishing_loop()).post(layer, group, message)


def flush(timeout: float = 5.0) -> bool:
    """Wait until the publishing thread has sent what was handed to it so far; False if it has not in time."""
    with _lock:
        loop = _publisher[1] if _publisher is not None and _publisher[0] == os.getpid() else None
    if loop is None:
        return True
    done = threading.Event()
    return _lane(loop).post_marker(done) and done.wait(timeout)


class _Lane:
    """Publications handed to one event loop (from any thread), sent there one at a time in the order given: two
    events for one group never overtake each other, and a slow send (Redis) delays no caller."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queue: deque[tuple | threading.Event] = deque()  # touched on the loop only
        self._draining = False

    def post(self, layer, group: str, message: dict) -> bool:
        return self._call(self._add, (layer, group, message))

    def post_marker(self, marker: threading.Event) -> bool:
        return self._call(self._add, marker)

    def _call(self, callback, item) -> bool:
        try:
            self.loop.call_soon_threadsafe(callback, item)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def _add(self, item) -> None:
        self._queue.append(item)
        if not self._draining:
            self._draining = True
            self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                item = self._queue.popleft()
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                layer, group, message = item
                try:
                    await layer.group_send(group, message)
                except (
                    Exception
                ):  # a live view misses one event (the next re-reads everything); the caller goes on
                    log.exception("could not publish %s to %s", message.get("type"), group)
        finally:
            self._draining = False


_lock = threading.Lock()
_lanes: dict[int, _Lane] = {}
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = (
    None  # (pid, loop) of this process's publishing thread
)


def _lane(loop: asyncio.AbstractEventLoop) -> _Lane:
    with _lock:
        lane = _lanes.get(id(loop))
        if lane is None or lane.loop is not loop:
            for key in [k for k, other in _lanes.items() if other.loop.is_closed()]:
                del _lanes[key]
            lane = _lanes[id(loop)] = _Lane(loop)
        return lane


def _publishing_loop() -> asyncio.AbstractEventLoop:
    """This process's publishing thread's loop, started on first use (and again in a forked child)."""
    global _publisher
    with _lock:
        if _publisher is None or _publisher[0] != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="slipway-live-publish", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


def _outer_loop() -> asyncio.AbstractEventLoop | None:
    """The loop whose async code this thread runs sync code for (`sync_to_async`), as `async_to_sync` finds it."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    return getattr(SyncToAsync.threadlocal, "main_event_loop", None)


def _forked() -> None:
    # The parent's lock may have been held by one of its threads, which the child does not have.
    global _lock, _publisher
    _lock, _publisher = threading.Lock(), None
    _lanes.clear()


os.register_at_fork(after_in_child=_forked)
atexit.register(flush, 2.0)  # what a command or a worker published just before exiting still goes out
