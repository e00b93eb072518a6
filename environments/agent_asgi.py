"""The agents' hot routes as lean ASGI apps (dispatched in config/asgi.py ahead of Django's middleware): the
long-poll for work and the job reports.

A process has one `AgentBroker`. Waiting agents hold neither a thread nor a database connection: the broker keeps
their long-polls and, in rounds on one thread of its own, stores every report that arrived since the last round in
one transaction, authenticates every new long-poll in one query and claims the next job of every waiting agent in
one more. A round starts when a request arrives, when this process's reconciler has just dispatched steps
(`notify`), and every `TICK` while agents wait (steps dispatched by workers in other processes). A report sent
with the token that took its job from this broker needs no second look-up: the broker remembers which
authenticated agent each job it handed out went to (`_holders`) until its report arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs

from django.db import connection

from config import jsonbody
from config.lean_asgi import read_body
from environments.jobs import (
    BUSY,
    UNKNOWN_AGENT,
    Answer,
    Report,
    agent_key,
    authenticate,
    do_claim_jobs,
    do_release_jobs,
    do_store_reports,
    job_not_found,
    parse_report,
    reconnect_if_broken,
    refused,
    touch,
)
from releases.signals import agent_work_available

log = logging.getLogger("slipway.agent")
WORK_PATH = "/api/v1/agent/work"
RESULT_PATH = re.compile(r"^/api/v1/agent/jobs/([^/]*)/result$")  # any id: a bad one is answered here, 404
MAX_WAIT = 25.0
TICK = 0.1
MAX_HOLDERS = 100_000
WAITING_SEEN_EVERY = timedelta(seconds=5)  # an agent waiting on a long-poll is online


@dataclass
class _Poll:
    key: str
    deadline: float
    answer: asyncio.Future = field(repr=False)


class AgentBroker:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-broker")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._arrivals: list[_Poll] = []
        self._waiting: dict[int, list[_Poll]] = {}  # target id -> its long-polls
        self._targets: dict[int, object] = {}
        self._holders: dict[
            int, tuple[str, object]
        ] = {}  # job id -> the token and target of the agent it went to
        self._reports: list[tuple[Report, asyncio.Future]] = []
        self._lock = threading.Lock()
        self._notified = False
        self._last_sweep = 0.0
        self._soonest = math.inf  # no waiting long-poll's deadline is earlier (it may be later: see _expire)

    # --- requests ----------------------------------------------------------------------------
    async def next_job(self, key: str, wait: float) -> Answer:
        self._ensure_running()
        poll = _Poll(key, time.monotonic() + wait, asyncio.get_running_loop().create_future())
        self._arrivals.append(poll)
        self._wake.set()
        return await poll.answer

    async def report(self, report: Report) -> Answer:
        self._ensure_running()
        answer = asyncio.get_running_loop().create_future()
        self._reports.append((report, answer))
        self._wake.set()
        return await answer

    def notify(self) -> None:
        """Thread-safe: steps were dispatched; claim them for waiting agents now rather than at the next tick."""
        with self._lock:
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notified_now)

    def _notified_now(self) -> None:
        self._notified = True
        self._wake.set()

    # --- rounds ------------------------------------------------------------------------------
    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            with self._lock:
                self._loop, self._wake = loop, asyncio.Event()
            loop.create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._timeout())
            self._wake.clear()
            self._expire()
            arrivals, self._arrivals = self._arrivals, []
            reports, self._reports = self._reports, []
            # Every waiting agent's queue is looked at when steps were just dispatched here, and every TICK for
            # those dispatched elsewhere; a round for reports or new long-polls alone looks at the new ones only.
            now = time.monotonic()
            sweep = self._waiting and (self._notified or now - self._last_sweep >= TICK)
            if sweep:
                self._notified, self._last_sweep = False, now
            if not (arrivals or reports or sweep):
                continue
            holding = self._holding([r for r, _ in reports])
            try:
                answers, found, jobs = await loop.run_in_executor(
                    self._executor,
                    self._round,
                    [r for r, _ in reports],
                    holding,
                    [p.key for p in arrivals],
                    list(self._waiting) if sweep else [],
                )
            except Exception:
                log.exception("agent broker round failed")
                answers, found, jobs = [BUSY] * len(reports), None, {}
            for (_, answer), result in zip(reports, answers, strict=True):
                _settle(answer, result)
            if found is None:  # the long-polls' part of the round failed: they poll again
                for poll in arrivals:
                    _settle(poll.answer, BUSY)
                await asyncio.sleep(TICK)
                continue
            for poll in arrivals:
                target = found.get(poll.key)
                if target is None:
                    _settle(poll.answer, UNKNOWN_AGENT)
                elif target is BUSY:
                    _settle(poll.answer, BUSY)
                else:
                    self._waiting.setdefault(target.pk, []).append(poll)
                    self._targets[target.pk] = target
                    self._soonest = min(self._soonest, poll.deadline)
            self._hand_out(jobs)

    def _holding(self, reports: list[Report]) -> dict[str, object]:
        """The targets of the reports sent with the token their job was handed to (the others are looked up)."""
        holding = {}
        for report in reports:
            key, target = self._holders.pop(report.step_id, (None, None))
            if key is not None and key == report.key:
                holding[key] = target
        return holding

    def _round(
        self, reports: list[Report], holding: dict[str, object], keys: list[str], waiting: list[int]
    ) -> tuple[list[Answer], dict | None, dict]:
        """On the broker's thread: reports, then new long-polls' tokens, then jobs for every waiting agent.

        Each part fails alone: reports are answered even when the claims fail (`found` is then None), a report
        that fails its batch is answered on its own while the others are stored (`do_store_reports`), and a token
        whose look-up fails fails only its own reports and long-polls (503 each, `_lookup`).
        """
        answers = []
        if reports:
            try:
                others, unread = _lookup({r.key for r in reports} - holding.keys())
                targets = {**holding, **others}
                # A report whose token could not be looked up is answered 503 (its agent retries); the others
                # are stored as usual.
                readable = [r for r in reports if r.key not in unread]
                stored = iter(do_store_reports(readable, targets) if readable else [])
                answers = [BUSY if r.key in unread else next(stored) for r in reports]
            except Exception:
                log.exception("agent broker could not store reports")
                connection.close()  # a broken connection is replaced by the next query
                answers = [BUSY] * len(reports)
        try:
            found, unread = _lookup(keys)
            found.update(
                dict.fromkeys(unread, BUSY)
            )  # these long-polls are answered 503 alone; they poll again
            jobs = do_claim_jobs([*waiting, *(t.pk for t in found.values() if t is not BUSY)])
            touch([self._targets[pk] for pk in waiting if pk in self._targets], every=WAITING_SEEN_EVERY)
        except Exception:
            log.exception("agent broker could not hand out jobs")
            connection.close()
            return answers, None, {}
        return answers, found, jobs

    def _hand_out(self, jobs: dict[int, dict]) -> None:
        unclaimed = []
        for target_id, job in jobs.items():
            polls = self._waiting.get(target_id) or []
            delivered = False
            while (
                polls and not delivered
            ):  # the newest long-poll first: an older one may be a dead connection
                poll = polls.pop()
                delivered = _settle(poll.answer, (200, {"job": job}))
            if delivered:
                self._holders[job["id"]] = (poll.key, self._targets[target_id])
                while len(self._holders) > MAX_HOLDERS:  # jobs whose agent never reported: forget the oldest
                    del self._holders[next(iter(self._holders))]
            if not polls:
                self._waiting.pop(target_id, None)
            if not delivered:
                unclaimed.append(job["id"])
        if unclaimed:
            self._executor.submit(do_release_jobs, unclaimed)

    def _expire(self) -> None:
        """Answer the long-polls whose wait is over (204). Every round calls this: with a thousand agents waiting,
        it looks at them only once the soonest deadline has come."""
        now = time.monotonic()
        if now < self._soonest:
            return
        soonest = math.inf
        for target_id in list(self._waiting):
            polls = self._waiting[target_id]
            for poll in [p for p in polls if p.deadline <= now]:
                polls.remove(poll)
                _settle(poll.answer, (204, None))
            if not polls:
                del self._waiting[target_id]
                self._targets.pop(target_id, None)
            else:
                soonest = min(soonest, *(p.deadline for p in polls))
        self._soonest = soonest

    def _timeout(self) -> float | None:
        if not self._waiting:
            return None
        return max(0.0, min(TICK, self._soonest - time.monotonic()))


def _lookup(keys: Iterable[str]) -> tuple[dict, set[str]]:
    """Agents' tokens -> their targets (`authenticate`), and the tokens that could not be looked up.

    One query for all; if it fails, one per token, so a lookup that fails fails only its own token's requests.
    """
    keys = set(keys)
    if not keys:
        return {}, set()
    try:
        return authenticate(keys), set()
    except Exception:
        log.warning("looking up %s agent tokens failed; looking them up one by one", len(keys), exc_info=True)
        reconnect_if_broken()
    found, unread = {}, set()
    for key in keys:
        try:
            found.update(authenticate([key]))
        except Exception:
            log.exception("looking up an agent token failed")
            reconnect_if_broken()
            unread.add(key)
    return found, unread


def _settle(future: asyncio.Future, answer: Answer) -> bool:
    """Answer a request unless it is gone (its task cancelled); True when it was answered."""
    if future.done():
        return False
    future.set_result(answer)
    return True


BROKER = AgentBroker()


def _work_available(**kwargs) -> None:
    BROKER.notify()


# The rollout engine announces dispatched steps through a signal: it never imports this interface.
agent_work_available.connect(_work_available, dispatch_uid="agent_asgi.broker")


# --- the ASGI apps --------------------------------------------------------------------------------


async def agent_app(scope, receive, send) -> None:
    """`GET /api/v1/agent/work?wait=20` and `POST /api/v1/agent/jobs/<id>/result`.

    Everything a request says is checked here, before the broker (and the database) sees it: the method, the
    token's length, `wait`, the job id (positive, 64-bit) and the body (`config/jsonbody.py`: size, nesting,
    numbers, text), then the report's fields. Refusals are the API's error shape (`jobs.refused`) with a 4xx.
    """
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    key = agent_key(headers.get("authorization", ""))
    if scope["path"] == WORK_PATH:
        if scope["method"] != "GET":
            return await _respond(send, *refused(405, "method_not_allowed", "Use GET."))
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            wait = float(query.get("wait", ["20"])[0])
        except ValueError:
            wait = math.nan
        if not math.isfinite(wait):  # NaN would hold the long-poll forever
            return await _respond(
                send, *refused(400, "invalid", "wait must be a number of seconds.", field="wait")
            )
        if not key:
            return await _respond(send, *UNKNOWN_AGENT)
        try:
            answer = await BROKER.next_job(key, min(max(wait, 0.0), MAX_WAIT))
        except asyncio.CancelledError:
            return  # the server is shutting down mid-poll: the agent simply polls again (no traceback per agent)
        return await _respond(send, *answer)
    if scope["method"] != "POST":
        return await _respond(send, *refused(405, "method_not_allowed", "Use POST."))
    segment = RESULT_PATH.match(scope["path"]).group(1)
    step_id = jsonbody.id_from_path(segment)
    if step_id is None:
        return await _respond(send, *job_not_found(segment))
    raw = await read_body(receive, jsonbody.MAX_BYTES)
    if raw is None:
        error = jsonbody.too_large()
        return await _respond(send, *refused(error.status, error.code, error.detail))
    try:
        body = jsonbody.parse(raw, empty={}, replace_nul=True)  # output is free text
    except jsonbody.BodyError as error:
        return await _respond(send, *refused(error.status, error.code, error.detail, field=error.field))
    report = parse_report(key, step_id, body)
    if isinstance(report, tuple):
        return await _respond(send, *report)
    if not key:
        return await _respond(send, *UNKNOWN_AGENT)
    return await _respond(send, *await BROKER.report(report))


def handles(path: str) -> bool:
    return path == WORK_PATH or RESULT_PATH.match(path) is not None


async def _respond(send, status: int, body: dict | None = None) -> None:
    if status >= 400:
        log.warning("agent request refused (%s): %s", status, (body or {}).get("detail"))
    payload = json.dumps(body).encode() if body is not None and status != 204 else b""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
