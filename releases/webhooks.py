"""Inbound GitHub webhooks and the hooks' configuration. GitHub only triggers: nothing waits on it.

`push` registers the pushed commits as changes; `issues` with the configured label opens a deploy blocker
on the configured environments, and closing or unlabelling the issue resolves it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.db import transaction
from django.utils.dateparse import parse_datetime

from config.errors import Invalid, SlipwayError
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
    expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    if not header or not hmac.compare_digest(expected, header):
        raise BadSignature("The X-Hub-Signature-256 header does not match the payload.")


@transaction.atomic(durable=True)
def do_configure_github(actor: Actor, application: Application, *, secret: str, blocker_label: str,
                        blocker_environments: list[str]) -> GitHubHook:
    """Set the shared secret, the blocking label and the environments labelled issues block."""
    require(actor, Permission.ADMIN, application)
    known = set(Environment.objects.filter(application=application).values_list("name", flat=True))
    if unknown := sorted(set(blocker_environments) - known):
        raise Invalid(f"No environment {', '.join(unknown)} in {application.slug}.", field="blocker_environments")
    hook, _ = GitHubHook.objects.update_or_create(application=application, defaults={
        "secret": secret, "blocker_label": blocker_label, "blocker_environments": sorted(set(blocker_environments))})
    audit.record(actor, "github.configured", hook, application=application,
                 after={"blocker_label": blocker_label, "blocker_environments": hook.blocker_environments})
    return hook


@transaction.atomic(durable=True)
def do_add_notification_hook(actor: Actor, application: Application, *, url: str, events: list[str]) -> NotificationHook:
    """Tell a Slack-compatible URL about this application's releases."""
    require(actor, Permission.ADMIN, application)
    if unknown := sorted(set(events) - set(NotificationHook.EVENTS)):
        raise Invalid(f"Unknown event {', '.join(unknown)}; known: {', '.join(NotificationHook.EVENTS)}.", field="events")
    hook = NotificationHook.objects.create(application=application, url=url, events=sorted(set(events)))
    audit.record(actor, "notification_hook.added", hook, application=application, after={"url": url, "events": hook.events})
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
    rows = []
    for index, commit in enumerate(commits):
        sha = commit.get("id") if isinstance(commit, dict) else None
        if not isinstance(sha, str) or len(sha) != 40:
            raise Invalid(f"commits[{index}].id must be a 40-character sha.", field="commits")
        author = commit.get("author") or {}
        rows.append(Change(
            application=application, sha=sha.lower(),
            author=str(author.get("username") or author.get("email") or author.get("name") or "unknown")[:254],
            title=str(commit.get("message") or "").splitlines()[0][:500] if commit.get("message") else sha[:8],
            url=str(commit.get("url") or "")[:500], committed_at=parse_datetime(str(commit.get("timestamp") or "")),
        ))
    known = set(Change.objects.filter(application=application, sha__in=[r.sha for r in rows]).values_list("sha", flat=True))
    new = [r for r in rows if r.sha not in known]
    Change.objects.bulk_create(new, ignore_conflicts=True)
    if new:
        audit.record(actor, "changes.pushed", application, after={"shas": [r.sha for r in new]})
    return len(new)


def _issue_event(actor: Actor, application: Application, payload: dict) -> dict:
    hook = application.github_hook
    issue = payload.get("issue") or {}
    if not isinstance(issue, dict) or "number" not in issue:
        raise Invalid("An issues event carries an issue with a number.", field="issue")
    labels = {label.get("name") for label in issue.get("labels") or [] if isinstance(label, dict)}
    blocking = hook.blocker_label in labels and issue.get("state", "open") == "open"
    external_id = str(issue["number"])
    existing = Blocker.objects.filter(application=application, source="github", external_id=external_id,
                                      resolved_at__isnull=True).first()
    if blocking and existing is None:
        environments = Environment.objects.filter(application=application)
        if hook.blocker_environments:
            environments = environments.filter(name__in=hook.blocker_environments)
        blocker = do_open_blocker(actor, application, title=str(issue.get("title") or external_id)[:300],
                                  url=str(issue.get("html_url") or "")[:500], environments=list(environments),
                                  source="github", external_id=external_id)
        return {"blocker": blocker.pk, "state": "open"}
    if not blocking and existing is not None:
        do_resolve_blocker(actor, existing)
        return {"blocker": existing.pk, "state": "resolved"}
    return {"blocker": existing.pk if existing else None, "state": "unchanged"}
