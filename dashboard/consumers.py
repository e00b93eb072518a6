"""Live views: each page that shows state keeps it true over htmx's WebSocket extension.

A consumer checks the session's user at connect, joins the groups of what its page shows (names built from ids
it has looked up, never from text the browser sent), sends the page's partials at once (so a page opened or
reconnected at any moment catches up), and again each time a service publishes a change. Every message is a run
of top-level elements whose `id` tells htmx what to replace: the same partials the page renders.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from asgiref.sync import async_to_sync
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import WebsocketConsumer
from django.conf import settings
from django.http import QueryDict
from django.middleware.csrf import CSRF_SECRET_LENGTH, _mask_cipher_secret
from django.template.loader import render_to_string

from config.forms import query_text
from dashboard.live import serving_on
from dashboard.pages import active_rollout_of, application_page, environment_page, inbox_page, release_page
from dashboard.progress import rollout_progress
from environments.models import Environment
from flags.models import Flag
from flags.pages import flag_charts, flag_list_page, flag_page
from releases import selectors
from releases.models import Application, Release, Rollout
from releases.permissions import Actor, Permission, can, may_see

log = logging.getLogger(__name__)
RESYNC_MESSAGE = '{"resync":true}'
RESYNCS, RESYNC_WINDOW = 10, 10.0


def can_view_rollout(user, rollout_id: int) -> bool:
    rollout = Rollout.objects.select_related("release__application").filter(pk=rollout_id).first()
    return bool(
        rollout and user.is_authenticated and can(Actor(user), Permission.VIEW, rollout.release.application)
    )


def can_view_release(user, release_id: int) -> bool:
    release = Release.objects.select_related("application").filter(pk=release_id).first()
    return bool(release and user.is_authenticated and can(Actor(user), Permission.VIEW, release.application))


# A socket whose browser stops reading holds at most this many frames; past it they are dropped and the browser
# gets the current state once it reads again (every frame carries whole partials, so nothing else is lost).
OUTBOX_FRAMES = 8


class Outbox:
    """What one socket sends, written by a task of its own: a browser that stops reading blocks that task only.

    Uvicorn's `send` waits while the client's TCP window is full; the sync consumers of a process share one
    thread, so a consumer waiting there would stall every live page of the process. `put` never waits on the
    socket: frames queue here (at most OUTBOX_FRAMES), the backlog is dropped when full, and `resync` asks the
    consumer for the current state when the browser has read everything it was sent.
    """

    def __init__(self, send, resync: Callable[[], Awaitable[None]], limit: int = OUTBOX_FRAMES) -> None:
        self._send, self._resync, self._limit = send, resync, limit
        self._frames: deque[dict] = deque()
        self._ready = asyncio.Event()
        self._writer: asyncio.Task | None = None
        self.behind = False  # frames were dropped: events are skipped until the browser catches up
        self.dropped = 0

    async def put(self, message: dict) -> None:
        if message["type"] != "websocket.send":  # accept, close: in order, after what is queued
            if self._writer is not None and message["type"] == "websocket.close":
                self._writer.cancel()
            await self._send(message)
            if message["type"] == "websocket.accept":
                self._writer = asyncio.create_task(self._write())
            return
        if self.behind:
            self.dropped += 1
            return
        if len(self._frames) >= self._limit:
            self.dropped += len(self._frames) + 1
            self._frames.clear()
            self.behind = True
            log.info("live view: a browser fell behind; its backlog is dropped until it reads again")
            return
        self._frames.append(message)
        self._ready.set()

    async def _write(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._frames:
                await self._send(self._frames.popleft())
            if self.behind:
                self.behind = False
                await self._resync()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()


_shared: OrderedDict[tuple, object] = OrderedDict()
_shared_lock = threading.Lock()


def shared(key: tuple, build: Callable[[], object]) -> object:
    """What one publication renders the same for every viewer, built once per process (keyed by its `event`)."""
    if key[-1] is None:  # no publication to name it (a catch-up): the state now
        return build()
    with _shared_lock:
        if key in _shared:
            return _shared[key]
    value = build()
    with _shared_lock:
        _shared[key] = value
        while len(_shared) > 256:
            _shared.popitem(last=False)
    return value


class LiveConsumer(WebsocketConsumer):
    """Joins groups, renders partials for the connected user; the browser may only ask for the state again."""

    async def __call__(self, scope, receive, send):
        serving_on(asyncio.get_running_loop())
        self.outbox = Outbox(send, self._resync)
        try:
            await super().__call__(scope, receive, self.outbox.put)
        finally:
            self.outbox.close()

    async def _resync(self) -> None:
        await self.channel_layer.send(self.channel_name, {"type": "live.resync"})

    @database_sync_to_async
    def dispatch(self, message):
        # Behind: events are skipped (nothing is rendered for a browser that is not reading); it gets the whole
        # state at `live.resync`.
        if self.outbox.behind and message["type"].endswith((".changed", ".evaluated")):
            return
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        handler(message)

    def live_resync(self, event):
        self.send_state()

    def connect(self):
        self.joined: set[str] = set()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not self.authorize(user):
            return self.close()
        self.accept()
        self.send_state()

    def authorize(self, user) -> bool:
        raise NotImplementedError

    def send_state(self) -> None:
        """Join what the page shows, then send it all: what changes after the join arrives as an event."""
        raise NotImplementedError

    def join(self, group: str) -> None:
        if group not in self.joined:
            async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
            self.joined.add(group)

    def disconnect(self, code):
        for group in getattr(self, "joined", ()):
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)

    def receive(self, text_data=None, bytes_data=None):
        # One message is documented: `{"resync": true}`, the page asking for its state again (slipway.js sends it
        # when it held a push back while one of its forms was being sent). At most RESYNCS per RESYNC_WINDOW
        # seconds are honoured. Whatever else arrives is dropped, with a trace.
        if text_data == RESYNC_MESSAGE:
            now = time.monotonic()
            recent = self.__dict__.setdefault("resyncs", deque(maxlen=RESYNCS))
            if len(recent) < RESYNCS or now - recent[0] >= RESYNC_WINDOW:
                recent.append(now)
                self.send_state()
                return
        data = text_data if text_data is not None else bytes_data or b""
        log.warning(
            "live view %s: ignored a %d-byte message from user %s",
            self.scope.get("path"),
            len(data),
            getattr(self.scope.get("user"), "pk", None),
        )

    def render(self, template: str, context: dict, *partials: str) -> str:
        context = {**context, "user": self.scope["user"], "csrf_token": self.csrf_token()}
        return "".join(render_to_string(f"{template}#{name}", context) for name in partials)

    def csrf_token(self) -> str:
        """Forms in pushed partials post like the page's own: the CSRF token from the session's cookie, masked."""
        secret = (self.scope.get("cookies") or {}).get(settings.CSRF_COOKIE_NAME, "")
        if len(secret) == CSRF_SECRET_LENGTH and secret.isalnum():
            return _mask_cipher_secret(secret)
        return ""


class ReleaseConsumer(LiveConsumer):
    """The release page: header and controls, approvals, blocked-by, rollout (waves, every target), timeline."""

    PARTIALS = ("release-head", "analysis-summary", "approvals", "rollout", "analysis", "timeline")

    def authorize(self, user) -> bool:
        self.release_id = int(self.scope["url_route"]["kwargs"]["pk"])
        return can_view_release(user, self.release_id)

    def send_state(self, partials: tuple[str, ...] = PARTIALS) -> None:
        self.join(f"release.{self.release_id}")
        rollout_id = Rollout.objects.filter(release_id=self.release_id).values_list("pk", flat=True).first()
        if rollout_id is not None:
            self.join(f"rollout.{rollout_id}")
        context = release_page(self.release_id, self.scope["user"])
        if context is None:  # deleted meanwhile
            return self.close()
        rollout = context["rollout"]
        self.head_shows = (context["card"].release.status, rollout.status if rollout else None)
        self.send(text_data=self.render("dashboard/release.html", context, *partials))

    def release_changed(self, event):
        self.send_state()

    def rollout_changed(self, event):
        # A step: the rollout section is the same for every viewer, rendered once per publication in this
        # process; the header (with this viewer's controls) only when the release's or rollout's status moved.
        built = shared(("release-rollout", self.release_id, event.get("event")), self._rollout_section)
        html, statuses = built if isinstance(built, tuple) else ("", None)
        if statuses is None or statuses[1] is None or getattr(self, "head_shows", None) != statuses:
            return self.send_state(("release-head", "rollout"))
        self.send(text_data=html)

    def _rollout_section(self) -> tuple[str, tuple[str, str | None] | None]:
        rollout_id = Rollout.objects.filter(release_id=self.release_id).values_list("pk", flat=True).first()
        rollout = selectors.rollout_page(rollout_id) if rollout_id else None
        if rollout is None:
            return "", None
        context = {"rollout": rollout, "progress": rollout_progress(rollout)}
        html = render_to_string("dashboard/release.html#rollout", context)
        return html, (rollout.release.status, rollout.status)


class RolloutConsumer(LiveConsumer):
    """The rollout's progress partial alone (`/ws/rollouts/<id>/`, named by the release API)."""

    def authorize(self, user) -> bool:
        self.rollout_id = int(self.scope["url_route"]["kwargs"]["pk"])
        return can_view_rollout(user, self.rollout_id)

    def send_state(self) -> None:
        self.join(f"rollout.{self.rollout_id}")  # events only: the API's clients read the state over REST

    def rollout_changed(self, event):
        html = shared(("rollout-progress", self.rollout_id, event.get("event")), self._progress)
        if html:
            self.send(text_data=html)

    def _progress(self) -> str:
        rollout = selectors.rollout_page(self.rollout_id)
        if rollout is None:  # deleted meanwhile
            return ""
        context = {"rollout": rollout, "progress": rollout_progress(rollout)}
        return render_to_string("dashboard/release.html#progress", context)

    def live_resync(self, event):
        self.rollout_changed({})


class NotFoundConsumer(WebsocketConsumer):
    """Any other /ws/ path: refused at the handshake (a 403 to the browser), not a server error."""

    def connect(self):
        self.close()


class EnvironmentConsumer(LiveConsumer):
    """The environment page: what it runs and what is in flight, its hosts, locks and freezes, history, rollback."""

    PARTIALS = ("env-head", "targets", "locks", "history", "rollback")

    def authorize(self, user) -> bool:
        self.environment_id = int(self.scope["url_route"]["kwargs"]["pk"])
        environment = Environment.objects.select_related("application").filter(pk=self.environment_id).first()
        return bool(environment and can(Actor(user), Permission.VIEW, environment.application))

    def send_state(self, partials: tuple[str, ...] = PARTIALS) -> None:
        self.join(f"environment.{self.environment_id}")
        # Hosts change version with each step of the rollout running here: follow it too.
        if (rollout_id := active_rollout_of(self.environment_id)) is not None:
            self.join(f"rollout.{rollout_id}")
        context = environment_page(self.environment_id, self.scope["user"])
        if context is None:
            return self.close()
        self.send(text_data=self.render("dashboard/environment.html", context, *partials))

    def environment_changed(self, event):
        self.send_state()

    def rollout_changed(self, event):
        self.send_state(("targets",))


class ApplicationConsumer(LiveConsumer):
    """The application page's pipeline: the version in each environment and what waits between them."""

    def authorize(self, user) -> bool:
        self.application_id = int(self.scope["url_route"]["kwargs"]["pk"])
        application = Application.objects.filter(pk=self.application_id).first()
        return bool(application and can(Actor(user), Permission.VIEW, application))

    def send_state(self) -> None:
        self.join(f"application.{self.application_id}")
        application = Application.objects.filter(pk=self.application_id).first()
        if application is None:
            return self.close()
        self.send(
            text_data=self.render(
                "dashboard/application.html", application_page(application, self.scope["user"]), "pipeline"
            )
        )

    def application_changed(self, event):
        self.send_state()


class OverviewConsumer(LiveConsumer):
    """The overview: each visible application's pipeline."""

    def authorize(self, user) -> bool:
        return True  # it shows only the applications the user may see

    def send_state(self) -> None:
        applications = selectors.overview(self.scope["user"])
        for application in applications:
            self.join(f"application.{application.pk}")
        self.send(
            text_data=self.render("dashboard/overview.html", {"applications": applications}, "applications")
        )

    def application_changed(self, event):
        self.send_state()


def can_read_flags(user, application: Application) -> bool:
    """As the flag pages decide: an application the user sees, and the right to read its flags."""
    actor = Actor(user)
    return may_see(actor, application) and can(actor, Permission.READ_FLAGS, application)


class FlagsConsumer(LiveConsumer):
    """The flags panel: each flag's row (switches, `On · 30 %`, who changed it and when), for this user."""

    def authorize(self, user) -> bool:
        self.application = Application.objects.filter(pk=self.scope["url_route"]["kwargs"]["pk"]).first()
        return self.application is not None and can_read_flags(user, self.application)

    def send_state(self, flag_ids: list[int] | None = None) -> None:
        """Rows only, each by its id, and only those the page shows: the socket's query string carries the page's
        filters (`?q=&tag=&stale=`), read as the view reads them."""
        self.join(f"flags.{self.application.pk}")
        params = QueryDict(self.scope.get("query_string", b"").decode("latin-1"))
        context = flag_list_page(
            self.application,
            self.scope["user"],
            search=query_text(params, "q").strip(),
            tag=query_text(params, "tag"),
            stale=bool(params.get("stale")),
            flag_ids=flag_ids,
        )
        rows = [self.render("flags/list.html", {**context, "flag": flag}, "row") for flag in context["flags"]]
        if rows:
            self.send(text_data="".join(rows))

    def flags_changed(self, event):
        self.send_state(flag_ids=[int(event["flag_id"])])

    def flags_evaluated(self, event):
        pass  # the panel shows no counts


class FlagConsumer(LiveConsumer):
    """The flag page: each environment's state with who and when, change requests, history, the charts."""

    def authorize(self, user) -> bool:
        self.flag_id = int(self.scope["url_route"]["kwargs"]["pk"])
        flag = Flag.objects.select_related("application").filter(pk=self.flag_id).first()
        return flag is not None and can_read_flags(user, flag.application)

    def _flag(self) -> Flag | None:
        return Flag.objects.select_related("application").filter(pk=self.flag_id).first()

    def send_state(self) -> None:
        flag = self._flag()
        if flag is None:  # deleted meanwhile
            return self.close()
        self.join(f"flags.{flag.application_id}")
        context = flag_page(flag.application, flag, self.scope["user"])
        parts = [self.render("flags/detail.html", context, "about", "changes")]
        for card in context["cards"]:
            parts.append(self.render("flags/detail.html", {**context, "card": card}, "card", "chart"))
        parts.append(self.render("flags/detail.html", context, "history"))
        self.send(text_data="".join(parts))

    def flags_changed(self, event):
        if int(event["flag_id"]) == self.flag_id:
            self.send_state()

    def flags_evaluated(self, event):
        flag = self._flag()
        if flag is None:
            return
        context = flag_charts(flag.application, flag)
        self.send(
            text_data="".join(
                self.render("flags/detail.html", {"card": card}, "chart") for card in context["cards"]
            )
        )


class InboxCountConsumer(LiveConsumer):
    """Every page's nav: how many batches wait for this user's approval (the inbox's own rule)."""

    PARTIALS: tuple[tuple[str, str], ...] = (("base.html", "approvals-count"),)

    def authorize(self, user) -> bool:
        return True  # the user's own inbox

    def send_state(self) -> None:
        self.join(f"user.{self.scope['user'].pk}")
        context = inbox_page(self.scope["user"])
        self.send(text_data="".join(self.render(t, context, name) for t, name in self.PARTIALS))

    def inbox_changed(self, event):
        self.send_state()


class InboxConsumer(InboxCountConsumer):
    """The approvals inbox: its cards as batches arrive, get decided or superseded, and the nav's count."""

    PARTIALS = (("base.html", "approvals-count"), ("dashboard/inbox.html", "inbox-cards"))
