"""Inbound GitHub webhooks and the hooks' configuration. GitHub only triggers: nothing waits on it.

`push` registers the pushed commits as changes; `issues` with the configured label opens a deploy blocker
on the configured environments, and closing or unlabelling the issue resolves it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from config.errors import Invalid, SlipwayError
from config.validators import http_url_or_blank
from environments.models import Environment
from releases import audit
from releases.models import Application, Blocker, Change, GitHubHook, NotificationHook
from releases.permissions import Actor, Permission, require
from releases.promotions import do_open_blocker, do_resolve_blocker


class BadSignature(SlipwayError):
    status, code = 401, "bad_signature"


def verify_signature(hook: GitHubHook | None, body: bytes, header: str) -> None:
    if hook is None:
        raise BadSignature("No GitHub webhook is configured for this application.")
    expected = b"sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest().encode()
    # As bytes: compare_digest refuses non-ASCII str, and a header is whatever a client sends.
    if not header or not hmac.compare_digest(expected, header.encode("utf-8", "surrogateescape")):
        raise BadSignature("The X-Hub-Signature-256 header does not match the payload.")


@transaction.atomic(durable=True)
def do_configure_github(
    actor: Actor,
    application: Application,
    *,
    secret: str,
    blocker_label: str,
    blocker_environments: list[str],
) -> GitHubHook:
    """Set the shared secret, the blocking label and the environments labelled issues block."""
    require(actor, Permission.ADMIN, application)
    known = set(Environment.objects.filter(application=application).values_list("name", flat=True))
    if unknown := sorted(set(blocker_environments) - known):
        raise Invalid(
            f"No environment {', '.join(unknown)} in {application.slug}.", field="blocker_environments"
        )
    hook, _ = GitHubHook.objects.update_or_create(
        application=application,
        defaults={
            "secret": secret,
            "blocker_label": blocker_label,
            "blocker_environments": sorted(set(blocker_environments)),
        },
    )
    audit.record(
        actor,
        "github.configured",
        hook,
        application=application,
        after={"blocker_label": blocker_label, "blocker_environments": hook.blocker_environments},
    )
    return hook


@transaction.atomic(durable=True)
def do_add_notification_hook(
    actor: Actor, application: Application, *, url: str, events: list[str]
) -> NotificationHook:
    """Tell a Slack-compatible URL about this application's releases."""
    require(actor, Permission.ADMIN, application)
    if unknown := sorted(set(events) - set(NotificationHook.EVENTS)):
        raise Invalid(
            f"Unknown event {', '.join(unknown)}; known: {', '.join(NotificationHook.EVENTS)}.",
            field="events",
        )
    hook = NotificationHook.objects.create(application=application, url=url, events=sorted(set(events)))
    audit.record(
        actor,
        "notification_hook.added",
        hook,
        application=application,
        after={"url": url, "events": hook.events},
    )
    return hook


def handle_github_event(application: Application, event: str, payload: Any) -> dict:
    """Act on a verified GitHub event; returns a short summary for the response."""
    if not isinstance(payload, dict):
        raise Invalid("The payload must be a JSON object.", field="payload")
    actor = Actor.system()
    if event == "ping":
        return {"ok": True}
    if event == "push":
        return {"changes": do_register_pushed_changes(actor, application, payload.get("commits") or [])}
    if event == "issues":
        return _issue_event(actor, application, payload)
    return {"ignored": event}


@transaction.atomic(durable=True)
def do_register_pushed_changes(actor: Actor, application: Application, commits: list) -> int:
    """Store a push's commits as changes (once each); CI's artifacts link them later."""
    if not isinstance(commits, list):
        raise Invalid("commits must be a list.", field="commits")
    rows = [_change(application, commit, index) for index, commit in enumerate(commits)]
    known = set(
        Change.objects.filter(application=application, sha__in=[r.sha for r in rows]).values_list(
            "sha", flat=True
        )
    )
    new = [r for r in rows if r.sha not in known]
    Change.objects.bulk_create(new, ignore_conflicts=True)
    if new:
        audit.record(actor, "changes.pushed", application, after={"shas": [r.sha for r in new]})
    return len(new)


_SHA = re.compile(r"[0-9a-fA-F]{40}")


def _change(application: Application, commit: Any, index: int) -> Change:
    """One pushed commit as a Change, its shape checked field by field (400 naming the field, never a 500)."""
    where = f"commits[{index}]"
    if not isinstance(commit, dict):
        raise Invalid(f"{where} must be an object.", field=where)
    sha = commit.get("id")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise Invalid(f"{where}.id must be a 40-character hex sha.", field=f"{where}.id")
    author = commit.get("author") or {}
    if not isinstance(author, dict):
        raise Invalid(f"{where}.author must be an object (name, email, username).", field=f"{where}.author")
    names = [author.get(key) for key in ("username", "email", "name")]
    if any(name is not None and not isinstance(name, str) for name in names):
        raise Invalid(f"{where}.author's name, email and username are strings.", field=f"{where}.author")
    message = commit.get("message") or ""
    if not isinstance(message, str):
        raise Invalid(f"{where}.message must be a string.", field=f"{where}.message")
    url = commit.get("url") or ""
    if not isinstance(url, str):
        raise Invalid(f"{where}.url must be a string.", field=f"{where}.url")
    return Change(
        application=application,
        sha=sha.lower(),
        author=(next(filter(None, names), None) or "unknown")[:254],
        title=(message.strip().splitlines() or [sha[:8]])[0][:500],
        # Only http(s) becomes a link on the pages: anything else is dropped, whoever sent it.
        url=http_url_or_blank(url),
        committed_at=_timestamp(commit.get("timestamp"), f"{where}.timestamp"),
    )


def _timestamp(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
        if parsed is not None:
            # Naive means UTC; an offset that leaves the calendar's range (0001-01-01T00:00+05:00) is refused.
            parsed = parsed.replace(tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
    except (ValueError, OverflowError):  # well-formed but impossible: 2024-13-45
        parsed = None
    if parsed is None:
        raise Invalid(f"{field} is not an ISO 8601 date and time.", field=field)
    return parsed


def _issue_event(actor: Actor, application: Application, payload: dict) -> dict:
    hook = application.github_hook
    issue = payload.get("issue") or {}
    if not isinstance(issue, dict) or "number" not in issue:
        raise Invalid("An issues event carries an issue with a number.", field="issue")
    number, labels = issue["number"], issue.get("labels") or []
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise Invalid("issue.number must be a positive integer.", field="issue.number")
    if not isinstance(labels, list):
        raise Invalid("issue.labels must be a list.", field="issue.labels")
    labels = {
        label.get("name")
        for label in labels
        if isinstance(label, dict) and isinstance(label.get("name"), str)
    }
    blocking = hook.blocker_label in labels and issue.get("state", "open") == "open"
    external_id = str(number)
    existing = Blocker.objects.filter(
        application=application, source="github", external_id=external_id, resolved_at__isnull=True
    ).first()
    if blocking and existing is None:
        environments = Environment.objects.filter(application=application)
        if hook.blocker_environments:
            environments = environments.filter(name__in=hook.blocker_environments)
        blocker = do_open_blocker(
            actor,
            application,
            title=str(issue.get("title") or external_id)[:300],
            url=http_url_or_blank(issue.get("html_url")),
            environments=list(environments),
            source="github",
            external_id=external_id,
        )
        return {"blocker": blocker.pk, "state": "open"}
    if not blocking and existing is not None:
        do_resolve_blocker(actor, existing)
        return {"blocker": existing.pk, "state": "resolved"}
    return {"blocker": existing.pk if existing else None, "state": "unchanged"}
