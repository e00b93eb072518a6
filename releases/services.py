"""Writers for applications, artifacts, changes, identities, roles and API tokens.

Every `do_*` runs in one durable transaction with its audit event.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from config.effects import after_commit
from config.errors import Invalid
from monitoring.services import create_ingest_key
from releases import access, audit, selectors
from releases.exceptions import (
    ApplicationExists,
    ArtifactConflict,
    IdentityNotFound,
    IdentityRequestDecided,
    IdentityTaken,
    LastAdmin,
    MayNotDecide,
    MembershipNotFound,
    NotPermitted,
    OwnIdentityRequest,
    TokenNeedsRole,
    TokenNotAllowed,
    TokenNotFound,
)
from releases.models import (
    ApiToken,
    Application,
    Artifact,
    AuthorIdentity,
    Change,
    Membership,
    Role,
    Scope,
    email_proves,
    identity_validator,
)
from releases.permissions import Actor, Permission, can, has_role, require
from releases.promotions import auto_promote

User = get_user_model()


def _require_global(actor: Actor, scope: str, django_perm: str, what: str) -> None:
    if actor.user is None:  # the system
        return
    if not actor.has_scope(scope):
        raise NotPermitted(f"This token lacks the '{scope}' scope.")
    if actor.token is not None and actor.token.environment is not None:
        raise NotPermitted(f"This token acts on {actor.token.environment.label} only.")
    if not actor.user.has_perm(django_perm):
        raise NotPermitted(f"You may not {what}: ask a Slipway administrator.")


@transaction.atomic(durable=True)
def do_create_application(actor: Actor, *, slug: str, name: str, repository_url: str = "") -> Application:
    """Create an application and make its creator its admin."""
    _require_global(actor, Scope.RELEASES_WRITE, "releases.add_application", "create applications")
    if Application.objects.filter(slug=slug).exists():
        raise ApplicationExists(f"An application '{slug}' exists already.", field="slug")
    application = Application.objects.create(slug=slug, name=name, repository_url=repository_url)
    if actor.user is not None:
        Membership.objects.create(user=actor.user, application=application, role=Role.ADMIN)
    audit.record(
        actor,
        "application.created",
        application,
        after={"slug": slug, "name": name, "repository_url": repository_url},
    )
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
        application=application,
        version=data.version,
        commit=data.commit,
        image=data.image,
        build_url=data.build_url,
        metadata=data.metadata,
        created_by=actor.user,
    )
    changes = _store_changes(application, data.changes)
    artifact.changes.set(changes)
    audit.record(
        actor, "artifact.registered", artifact, application=application, after=_artifact_summary(data)
    )
    after_commit(auto_promote, artifact.pk, robust=False)
    return artifact, True


def _store_changes(application: Application, incoming: Iterable[ChangeIn]) -> list[Change]:
    incoming = list(incoming)
    known = {
        c.sha: c for c in Change.objects.filter(application=application, sha__in=[c.sha for c in incoming])
    }
    new = [
        Change(
            application=application,
            sha=c.sha,
            author=c.author,
            title=c.title,
            url=c.url,
            committed_at=c.committed_at,
        )
        for c in incoming
        if c.sha not in known
    ]
    Change.objects.bulk_create(new)
    created = {c.sha: c for c in Change.objects.filter(application=application, sha__in=[c.sha for c in new])}
    return [known.get(c.sha) or created[c.sha] for c in incoming]


def _artifact_summary(data: ArtifactIn) -> dict[str, Any]:
    return {
        "version": data.version,
        "commit": data.commit,
        "image": data.image,
        "build_url": data.build_url,
        "metadata": data.metadata,
        "changes": [c.sha for c in data.changes],
    }


def _differences(artifact: Artifact, data: ArtifactIn) -> list[str]:
    fields = [
        name
        for name in ("commit", "image", "build_url", "metadata")
        if getattr(artifact, name) != getattr(data, name)
    ]
    if sorted(artifact.changes.values_list("sha", flat=True)) != sorted(c.sha for c in data.changes):
        fields.append("changes")
    return fields


def _lock_access(application: Application) -> Application:
    """Lock the application's row and move its access version: membership changes on it run one at a time, and
    caches of token checks (releases/access.py) re-check after commit, in this process at once."""
    application = Application.objects.select_for_update().get(pk=application.pk)
    application.access_version += 1
    application.save(update_fields=["access_version"])
    after_commit(access.saw, application.pk, application.access_version, robust=False)
    return application


def _member_label(user, role: str, environment) -> dict[str, Any]:
    return {
        "user": user.get_username(),
        "role": role,
        "environment": environment.name if environment else None,
    }


@transaction.atomic(durable=True)
def do_grant_role(
    actor: Actor, application: Application, user, role: str, environment=None
) -> tuple[Membership, bool]:
    """Give a user a role on an application (a flag editor's may be limited to one environment); (membership, created).

    Admins and release managers grant roles; only an admin grants the admin role.
    """
    require(actor, Permission.MANAGE_MEMBERS, application)
    if role == Role.ADMIN and not can(actor, Permission.ADMIN, application):
        raise NotPermitted(f"Only an admin of {application.slug} grants the admin role.", field="role")
    if role not in Role.values:
        raise Invalid(f"Unknown role '{role}'. Known: {', '.join(Role.values)}.", field="role")
    if environment is not None:
        if environment.application_id != application.pk:
            raise Invalid(
                f"{environment.label} is not an environment of {application.slug}.", field="environment"
            )
        if role != Role.FLAG_EDITOR:
            raise Invalid("Only a flag editor's role can be limited to one environment.", field="environment")
    application = _lock_access(application)
    membership, created = Membership.objects.get_or_create(
        user=user, application=application, role=role, environment=environment
    )
    if created:
        audit.record(
            actor,
            "role.granted",
            membership,
            application=application,
            after=_member_label(user, role, environment),
        )
    return membership, created


@transaction.atomic(durable=True)
def do_revoke_role(actor: Actor, membership: Membership) -> None:
    """Take a role away; the user's tokens lose it at once (see releases/access.py). The last admin stays."""
    application = membership.application
    require(
        actor, Permission.ADMIN if membership.role == Role.ADMIN else Permission.MANAGE_MEMBERS, application
    )
    application = _lock_access(application)
    current = Membership.objects.select_related("user", "environment").filter(pk=membership.pk).first()
    if current is None:
        raise MembershipNotFound("No such membership: it was revoked already.")
    membership = current
    # Counted under the application's lock: two admins revoking each other at once cannot both succeed.
    if (
        membership.role == Role.ADMIN
        and not Membership.objects.filter(application=application, role=Role.ADMIN)
        .exclude(pk=membership.pk)
        .exists()
    ):
        raise LastAdmin(
            f"{membership.user.get_username()} is the last admin of {application.slug}: "
            "grant the admin role to someone else first."
        )
    audit.record(
        actor,
        "role.revoked",
        membership,
        application=application,
        before=_member_label(membership.user, membership.role, membership.environment),
    )
    membership.delete()


def _clean_identity(identity: str) -> str:
    identity = identity.strip()
    try:
        identity_validator(identity)
    except ValidationError as error:
        raise Invalid(error.messages[0], field="identity") from None
    return identity


def _identity_admin(actor: Actor) -> bool:
    """The actor may link identities for anyone and decide any request (a token needs the admin scope)."""
    if actor.is_system:
        return True
    if actor.token is not None and (
        not actor.token.has_scope(Scope.ADMIN) or actor.token.environment_id is not None
    ):
        return False
    return selectors.is_identity_admin(actor.user)


def _require_self_service(actor: Actor) -> None:
    if actor.token is not None and not actor.token.has_scope(Scope.ADMIN):
        raise NotPermitted(f"This token lacks the '{Scope.ADMIN}' scope.")


@transaction.atomic(durable=True)
def do_link_identity(actor: Actor, user, identity: str) -> AuthorIdentity:
    """Link an author identity (a login or email someone commits under) to a user: confirmed at once when an
    administrator links it or it is the user's own (verified) email, else a pending request someone else confirms."""
    identity = _clean_identity(identity)
    if not actor.is_system and actor.user != user:
        _require_global(actor, Scope.ADMIN, "releases.add_authoridentity", "link identities to other people")
    else:
        _require_self_service(actor)
    if identity.lower() == user.get_username().lower():
        raise IdentityTaken(
            f"'{identity}' is {user.get_username()}'s username: it counts already.", field="identity"
        )
    # Username and email map already, before any link: another person's would never map to this user.
    owner = (
        User.objects.filter(Q(username__iexact=identity) | Q(email__iexact=identity))
        .exclude(pk=user.pk)
        .first()
    )
    if owner is not None:
        raise IdentityTaken(
            f"'{identity}' is {owner.get_username()}'s username or email: it maps to them.", field="identity"
        )
    links = (
        AuthorIdentity.objects.select_for_update()
        .annotate(lidentity=Lower("identity"))
        .filter(lidentity=identity.lower())
    )
    if any(link.status == AuthorIdentity.Status.CONFIRMED for link in links):
        raise IdentityTaken(f"The identity '{identity}' is linked already.", field="identity")
    if any(link.user_id == user.pk and link.status == AuthorIdentity.Status.PENDING for link in links):
        raise IdentityTaken(
            f"You asked to link '{identity}' already; the request waits for confirmation.", field="identity"
        )
    # The user's email is set by an administrator (Slipway lets nobody change their own): it is proven theirs.
    proven = email_proves(user.email, identity)
    summary = {"user": user.get_username(), "identity": identity}
    if proven or _identity_admin(actor):
        link = _create_link(
            user=user,
            identity=identity,
            status=AuthorIdentity.Status.CONFIRMED,
            decided_by=None if proven else actor.user,
            decided_at=timezone.now(),
        )
        audit.record(
            actor, "identity.linked", link, after={**summary, "proof": "email" if proven else "admin"}
        )
        _decline_competing(actor, link)
    else:
        link = _create_link(user=user, identity=identity, status=AuthorIdentity.Status.PENDING)
        audit.record(actor, "identity.requested", link, after={**summary, "status": link.status})
    return link


def _create_link(**fields) -> AuthorIdentity:
    try:
        with transaction.atomic():
            return AuthorIdentity.objects.create(**fields)
    except IntegrityError:
        # A twin request linked the same identity between our check and our insert.
        raise IdentityTaken(
            f"The identity '{fields['identity']}' is linked already.", field="identity"
        ) from None


def _decline_competing(actor: Actor, link: AuthorIdentity) -> None:
    """Once an identity is someone's, other people's requests for it are answered."""
    competing = (
        AuthorIdentity.objects.select_for_update()
        .annotate(lidentity=Lower("identity"))
        .filter(lidentity=link.identity.lower(), status=AuthorIdentity.Status.PENDING)
        .exclude(pk=link.pk)
    )
    for other in competing:
        _decide_request(
            actor,
            other,
            AuthorIdentity.Status.DECLINED,
            note=f"'{link.identity}' was linked to {link.user.get_username()}.",
        )


def _decide_request(actor: Actor, link: AuthorIdentity, status: str, note: str = "") -> AuthorIdentity:
    link.status, link.decided_by, link.decided_at = status, actor.user, timezone.now()
    link.save(update_fields=["status", "decided_by", "decided_at"])
    audit.record(
        actor,
        f"identity.{status}",
        link,
        before={"status": AuthorIdentity.Status.PENDING},
        after={"user": link.user.get_username(), "identity": link.identity, "status": status},
        note=note,
    )
    return link


def _locked_request(actor: Actor, link_id: int) -> AuthorIdentity:
    """The request, once the actor may decide it: an administrator, or a release manager (or admin) of an
    application where the identity authored changes; never its requester."""
    link = (
        AuthorIdentity.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=link_id)
        .first()
    )
    if link is None:
        raise IdentityNotFound(f"No identity request #{link_id}.")
    if actor.is_system:
        return link
    if actor.token is not None and (
        not actor.token.has_scope(Scope.APPROVALS_WRITE) or actor.token.environment_id is not None
    ):
        raise NotPermitted(
            f"Deciding identity requests needs a token with the '{Scope.APPROVALS_WRITE}' scope "
            "and no environment."
        )
    assert actor.user is not None  # the system passed above
    if link.user_id == actor.user.pk:
        raise OwnIdentityRequest(
            "Someone else confirms your own request: an administrator, or a release manager of an "
            "application where this identity authored changes."
        )
    if not selectors.identity_requests_for(actor.user).filter(pk=link.pk).exists():
        raise MayNotDecide(
            f"Only an administrator, or a release manager of an application where '{link.identity}' "
            "authored changes, decides this request."
        )
    return link


@transaction.atomic(durable=True)
def do_confirm_identity(actor: Actor, link_id: int) -> AuthorIdentity:
    """Confirm a pending identity request: from now on the identity's changes are its requester's."""
    link = _locked_request(actor, link_id)
    if link.status != AuthorIdentity.Status.PENDING:
        raise IdentityRequestDecided(f"This request is {link.status} already.")
    # Lock every row of this identity: two confirmations of rival requests must not both pass this check.
    same = (
        AuthorIdentity.objects.select_for_update()
        .annotate(lidentity=Lower("identity"))
        .filter(lidentity=link.identity.lower())
    )
    if any(other.status == AuthorIdentity.Status.CONFIRMED for other in same):
        raise IdentityTaken(f"The identity '{link.identity}' is linked already.", field="identity")
    _decide_request(actor, link, AuthorIdentity.Status.CONFIRMED)
    _decline_competing(actor, link)
    return link


@transaction.atomic(durable=True)
def do_decline_identity(actor: Actor, link_id: int, *, reason: str = "") -> AuthorIdentity:
    """Decline a pending identity request: it never maps changes."""
    link = _locked_request(actor, link_id)
    if link.status != AuthorIdentity.Status.PENDING:
        raise IdentityRequestDecided(f"This request is {link.status} already.")
    return _decide_request(actor, link, AuthorIdentity.Status.DECLINED, note=reason)


@transaction.atomic(durable=True)
def do_unlink_identity(actor: Actor, link: AuthorIdentity) -> None:
    """Remove an identity link or withdraw a request: one's own, or anyone's for an administrator."""
    current = (
        AuthorIdentity.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(pk=link.pk)
        .first()
    )
    if current is None:
        raise IdentityNotFound("No such identity.")
    link = current
    if actor.user is None or actor.user.pk == link.user_id:
        _require_self_service(actor)
    elif not _identity_admin(actor):
        raise IdentityNotFound("No such identity of yours.")
    audit.record(
        actor,
        "identity.unlinked",
        link,
        before={"user": link.user.get_username(), "identity": link.identity, "status": link.status},
    )
    link.delete()


@transaction.atomic(durable=True)
def do_create_api_token(
    actor: Actor, user, *, name: str, scopes: Sequence[str], environment=None
) -> tuple[ApiToken, str]:
    """Create a token for a user; the key is returned once and only its hash is stored."""
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown:
        raise Invalid(
            f"Unknown scope: {', '.join(unknown)}. Known: {', '.join(Scope.values)}.", field="scopes"
        )
    if actor.user is not None and actor.user != user and not actor.user.is_superuser:
        raise TokenNotAllowed("You may create tokens for yourself only.")
    if not actor.is_system and actor.token is not None:
        raise TokenNotAllowed("Tokens are created in the browser or with manage.py, not with another token.")
    # A token never adds roles: one pinned to an application with no role there could only leak its flags.
    if environment is not None and not has_role(user, environment.application_id):
        raise TokenNeedsRole(
            f"{user.get_username()} has no role on {environment.application.slug}: "
            "a token pinned there needs one (ask an admin or release manager).",
            field="environment",
        )
    key = ApiToken.PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        key_hash=ApiToken.hash_key(key),
        hint=key[:10],
        scopes=sorted(set(scopes)),
        environment=environment,
    )
    audit.record(
        actor,
        "token.created",
        token,
        application=environment.application if environment else None,
        after={
            "user": user.get_username(),
            "name": name,
            "scopes": token.scopes,
            "environment": environment.label if environment else None,
        },
    )
    return token, key


@transaction.atomic(durable=True)
def do_revoke_api_token(actor: Actor, token: ApiToken) -> ApiToken:
    """Revoke a token; it stops working at once."""
    token = ApiToken.objects.select_for_update().get(pk=token.pk)
    if actor.user is not None and actor.user != token.user and not actor.user.is_superuser:
        raise TokenNotFound("No such token.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record(actor, "token.revoked", token, after={"name": token.name})
        if token.environment is not None:
            _lock_access(token.environment.application)  # the OFREP route's cached check goes too
    return token
