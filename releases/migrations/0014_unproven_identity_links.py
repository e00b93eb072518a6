"""Identity links made under the old rules become requests unless they are proven or an administrator made them.

Before 0010 anyone could link any unlinked identity to themselves, and 0010 kept every such link confirmed
(`db_default='confirmed'`): a developer who had claimed a contractor's identity still approved the contractor's
changes. This migration applies today's rule to the links made before the upgrade (confirmed, never decided:
`decided_at` is empty). A link stays confirmed when

* it is proven: the identity is the user's email (`email_proves`, the service's rule), or
* the audit trail shows an administrator made it for someone else (its `identity.linked` event's actor is another
  user — before the upgrade only administrators could link for others — or the system).

Every other link, and every identity the validator now refuses whoever linked it, becomes a pending request that
an administrator or a release manager confirms, with an `identity.unconfirmed` audit event by "Slipway upgrade".
A link the trail cannot account for (no event, or its actor deleted) is treated as unproven. See "Upgrading" in
docs/releases.md.
"""

from django.core.exceptions import ValidationError
from django.db import migrations

from releases.models import email_proves, identity_validator

KIND = "identity.unconfirmed"
ACTOR = "Slipway upgrade"
SYSTEM = "system"  # Actor.system().label


def valid(identity: str) -> bool:
    try:
        identity_validator(identity)
    except ValidationError:
        return False
    return True


def made_by_admin(event, link) -> bool:
    if event is None:
        return False
    if event.actor_id is None:
        return event.actor_label == SYSTEM  # else the actor was deleted since: nobody can tell
    return event.actor_id != link.user_id


def forwards(apps, schema_editor):
    AuthorIdentity = apps.get_model("releases", "AuthorIdentity")
    AuditEvent = apps.get_model("releases", "AuditEvent")
    linked = {}  # link id -> the event that linked it, the first one
    for event in AuditEvent.objects.filter(
        kind="identity.linked", object_type="releases.authoridentity"
    ).order_by("created_at", "id"):
        linked.setdefault(event.object_id, event)
    for link in AuthorIdentity.objects.filter(status="confirmed", decided_at__isnull=True).select_related("user"):
        ok = valid(link.identity)
        if ok and (email_proves(link.user.email, link.identity) or made_by_admin(linked.get(str(link.pk)), link)):
            continue
        link.status = "pending"
        link.save(update_fields=["status"])
        why = (
            "it is not a login or an email address"
            if not ok
            else "it is not the user's email and no administrator linked it for them"
        )
        AuditEvent.objects.create(
            actor=None,
            actor_label=ACTOR,
            kind=KIND,
            object_type="releases.authoridentity",
            object_id=str(link.pk),
            object_repr=link.identity[:200],
            before={"status": "confirmed"},
            after={"user": link.user.username, "identity": link.identity, "status": "pending"},
            note=f"Upgrade: a link made under the old rules is now a request to confirm: {why}.",
        )


class Migration(migrations.Migration):
    dependencies = [
        ("releases", "0013_audit_environment"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
