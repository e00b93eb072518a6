"""Writers for applications, artifacts, changes, identities, roles and API tokens.

Every `do_*` runs in one durable transaction with its audit event.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import Conflict, Forbidden, Invalid, NotFound
from releases import audit
from releases.exceptions import ArtifactConflict
from releases.models import ApiToken, Application, Artifact, AuthorIdentity, Change, Membership, Role, Scope
from releases.permissions import Actor, Permission, require

User = get_user_model()


def _require_global(actor: Actor, scope: str, django_perm: str, what: str) -> None:
    if actor.is_system:
        return
    if not actor.has_scope(scope):
        raise Forbidden(f"This token lacks the '{scope}' scope.")
    if actor.token is not None and actor.token.environment_id is not None:
        raise Forbidden(f"This token acts on {actor.token.environment.label} only.")
    if not actor.user.has_perm(django_perm):
        raise Forbidden(f"You may not {what}: ask a Slipway administrator.")


@transaction.atomic(durable=True)
def do_create_application(actor: Actor, *, slug: str, name: str, repository_url: str = "") -> Application:
    """Create an application and make its creator its admin."""
    _require_global(actor, Scope.RELEASES_WRITE, "releases.add_application", "create applications")
    if Application.objects.filter(slug=slug).exists():
        raise Conflict(f"An application '{slug}' exists already.", field="slug")
    application = Application.objects.create(slug=slug, name=name, repository_url=repository_url)
    if actor.user is not None:
        Membership.objects.create(user=actor.user, application=application, role=Role.ADMIN)
    audit.record(actor, "application.created", application,
                 after={"slug": slug, "name": name, "repository_url": repository_url})
    from monitoring.services import create_ingest_key  # here: monitoring imports releases

    create_ingest_key(actor, application)
    return application


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeIn:
    sha: str
    author: str
    title: str
    url: str = ""
    committed_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ArtifactIn:
    version: str
    commit: str
    image: str
    build_url: str = ""
    metadata: dict[str, Any]
    changes: Sequence[ChangeIn] = ()


def do_register_artifact(actor: Actor, application: Application, data: ArtifactIn) -> tuple[Artifact, bool]:
    """Register a build once: the identical build again is a no-op, a different one under its version a conflict."""
    try:
        return _register_artifact(actor, application, data)
    except IntegrityError:
        # A twin request committed the same version or change first; now we find and compare it.
        return _register_artifact(actor, application, data)


@transaction.atomic(durable=True)
def _register_artifact(actor: Actor, application: Application, data: ArtifactIn) -> tuple[Artifact, bool]:
    require(actor, Permission.REGISTER_ARTIFACT, application)
    existing = Artifact.objects.filter(application=application, version=data.version).first()
    if existing is not None:
        differences = _differences(existing, data)
        if differences:
            raise ArtifactConflict(
                f"Version {data.version} is registered already with a different {', '.join(differences)}; "
                "artifacts are immutable: register a new version.",
                extra={"fields": differences},
            )
        return existing, False
    artifact = Artifact.objects.create(
        application=application, version=data.version, commit=data.commit, image=data.image,
        build_url=data.build_url, metadata=data.metadata, created_by=actor.user,
    )
    changes = _store_changes(application, data.changes)
    artifact.changes.set(changes)
    audit.record(actor, "artifact.registered", artifact, application=application, after=_artifact_summary(data))
    transaction.on_commit(partial(_auto_promote, artifact.pk))
    return artifact, True


def _auto_promote(artifact_id: int) -> None:
    from releases.dispatch import auto_promote

    auto_promote(artifact_id)


def _store_changes(application: Application, incoming: Iterable[ChangeIn]) -> list[Change]:
    incoming = list(incoming)
    known = {c.sha: c for c in Change.objects.filter(application=application, sha__in=[c.sha for c in incoming])}
    new = [
        Change(application=application, sha=c.sha, author=c.author, title=c.title, url=c.url,
               committed_at=c.committed_at)
        for c in incoming if c.sha not in known
    ]
    Change.objects.bulk_create(new)
    created = {c.sha: c for c in Change.objects.filter(application=application, sha__in=[c.sha for c in new])}
    return [known.get(c.sha) or created[c.sha] for c in incoming]


def _artifact_summary(data: ArtifactIn) -> dict[str, Any]:
    return {
        "version": data.version, "commit": data.commit, "image": data.image, "build_url": data.build_url,
        "metadata": data.metadata, "changes": [c.sha for c in data.changes],
    }


def _differences(artifact: Artifact, data: ArtifactIn) -> list[str]:
    fields = [name for name in ("commit", "image", "build_url", "metadata")
              if getattr(artifact, name) != getattr(data, name)]
    if sorted(artifact.changes.values_list("sha", flat=True)) != sorted(c.sha for c in data.changes):
        fields.append("changes")
    return fields


@transaction.atomic(durable=True)
def do_grant_role(actor: Actor, application: Application, user, role: str, environment=None) -> Membership:
    """Give a user a role on an application (a flag editor's may be limited to one environment)."""
    require(actor, Permission.ADMIN, application)
    membership, created = Membership.objects.get_or_create(
        user=user, application=application, role=role, environment=environment
    )
    if created:
        audit.record(actor, "role.granted", membership, application=application,
                     after={"user": user.get_username(), "role": role,
                            "environment": environment.name if environment else None})
    return membership


@transaction.atomic(durable=True)
def do_link_identity(actor: Actor, user, identity: str) -> AuthorIdentity:
    """Link an author identity (login or email a person commits under) to a user."""
    if not actor.is_system and actor.user != user:
        _require_global(actor, Scope.ADMIN, "releases.add_authoridentity", "link identities to other people")
    elif actor.token is not None and not actor.token.has_scope(Scope.ADMIN):
        raise Forbidden(f"This token lacks the '{Scope.ADMIN}' scope.")
    if AuthorIdentity.objects.filter(identity__iexact=identity).exists():
        raise Conflict(f"The identity '{identity}' is linked already.", field="identity")
    link = AuthorIdentity.objects.create(user=user, identity=identity)
    audit.record(actor, "identity.linked", link, after={"user": user.get_username(), "identity": identity})
    return link


@transaction.atomic(durable=True)
def do_create_api_token(actor: Actor, user, *, name: str, scopes: Sequence[str],
                        environment=None) -> tuple[ApiToken, str]:
    """Create a token for a user; the key is returned once and only its hash is stored."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise Invalid(f"Unknown scope: {', '.join(unknown)}. Known: {', '.join(Scope.values)}.", field="scopes")
    if not actor.is_system and actor.user != user and not actor.user.is_superuser:
        raise Forbidden("You may create tokens for yourself only.")
    if not actor.is_system and actor.token is not None:
        raise Forbidden("Tokens are created in the browser or with manage.py, not with another token.")
    key = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, key_hash=ApiToken.hash_key(key), hint=key[:10],
        scopes=sorted(set(scopes)), environment=environment,
    )
    audit.record(actor, "token.created", token,
                 application=environment.application if environment else None,
                 after={"user": user.get_username(), "name": name, "scopes": token.scopes,
                        "environment": environment.label if environment else None})
    return token, key


@transaction.atomic(durable=True)
def do_revoke_api_token(actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token; it stops working at once."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if not actor.is_system and actor.user != token.user and not actor.user.is_superuser:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "token.revoked", token, after={"name": token.name})
    return token
