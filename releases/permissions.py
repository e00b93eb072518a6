"""Who may do what, checked in services so the browser and the API cannot disagree.

An `Actor` is a user, possibly narrowed by the API token they act through:
a token adds scopes and may pin one environment; it never adds roles.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from releases.exceptions import NotPermitted
from releases.models import ApiToken, Application, Membership, Role, Scope

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from environments.models import Environment


class Permission(enum.StrEnum):
    VIEW = "view"
    REGISTER_ARTIFACT = "register_artifact"
    MANAGE_ENVIRONMENTS = "manage_environments"
    APPROVE_OWN = "approve_own"
    APPROVE_FOR_OTHERS = "approve_for_others"
    LOCK = "lock"
    ROLLBACK = "rollback"
    FORCE = "force"
    READ_FLAGS = "read_flags"
    EDIT_FLAGS = "edit_flags"
    WRITE_METRICS = "write_metrics"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_ANALYSIS = "manage_analysis"  # metric sources and analysis templates
    RESOLVE_ERRORS = "resolve_errors"  # mark error groups resolved
    ADMIN = "admin"


_DEVELOPER = {
    Permission.VIEW,
    Permission.READ_FLAGS,
    Permission.REGISTER_ARTIFACT,
    Permission.APPROVE_OWN,
    Permission.WRITE_METRICS,
    Permission.RESOLVE_ERRORS,
}
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW, Permission.READ_FLAGS}),
    Role.DEVELOPER: frozenset(_DEVELOPER),
    Role.RELEASE_MANAGER: frozenset(
        _DEVELOPER
        | {
            Permission.APPROVE_FOR_OTHERS,
            Permission.LOCK,
            Permission.ROLLBACK,
            Permission.MANAGE_MEMBERS,
            Permission.MANAGE_ANALYSIS,
        }
    ),
    Role.FLAG_EDITOR: frozenset({Permission.VIEW, Permission.READ_FLAGS, Permission.EDIT_FLAGS}),
    Role.ADMIN: frozenset(Permission),
}

# The token scope each permission needs when the actor comes through a token.
PERMISSION_SCOPE: dict[Permission, str] = {
    Permission.VIEW: Scope.RELEASES_READ,
    Permission.REGISTER_ARTIFACT: Scope.RELEASES_WRITE,
    Permission.MANAGE_ENVIRONMENTS: Scope.RELEASES_WRITE,
    Permission.APPROVE_OWN: Scope.APPROVALS_WRITE,
    Permission.APPROVE_FOR_OTHERS: Scope.APPROVALS_WRITE,
    Permission.LOCK: Scope.RELEASES_WRITE,
    Permission.ROLLBACK: Scope.RELEASES_WRITE,
    Permission.FORCE: Scope.RELEASES_WRITE,
    Permission.READ_FLAGS: Scope.FLAGS_READ,
    Permission.EDIT_FLAGS: Scope.FLAGS_WRITE,
    Permission.WRITE_METRICS: Scope.METRICS_WRITE,
    Permission.MANAGE_MEMBERS: Scope.ADMIN,
    Permission.MANAGE_ANALYSIS: Scope.RELEASES_WRITE,
    Permission.RESOLVE_ERRORS: Scope.RELEASES_WRITE,
    Permission.ADMIN: Scope.ADMIN,
}
READ_PERMISSIONS = frozenset({Permission.VIEW, Permission.READ_FLAGS})

ROLE_LABELS = {
    Permission.APPROVE_FOR_OTHERS: "release manager",
    Permission.LOCK: "release manager",
    Permission.ROLLBACK: "release manager",
    Permission.FORCE: "admin",
    Permission.MANAGE_ENVIRONMENTS: "admin",
    Permission.ADMIN: "admin",
    Permission.EDIT_FLAGS: "flag editor",
    Permission.MANAGE_MEMBERS: "admin or release manager",
    Permission.MANAGE_ANALYSIS: "admin or release manager",
    Permission.RESOLVE_ERRORS: "developer or release manager",
}


@dataclass(frozen=True, slots=True)
class Actor:
    user: User | None
    token: ApiToken | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(user=None)

    @classmethod
    def from_request(cls, request) -> Actor:
        token = request.auth if isinstance(getattr(request, "auth", None), ApiToken) else None
        return cls(user=request.user, token=token)

    @property
    def is_system(self) -> bool:
        return self.user is None

    @property
    def label(self) -> str:
        if self.user is None:
            return "system"
        if self.token is not None:
            return f"{self.user.get_username()} (token {self.token.name})"
        return self.user.get_username()

    def has_scope(self, scope: str) -> bool:
        return self.token is None or self.token.has_scope(scope)


def roles_of(user, application: Application) -> list[Membership]:
    """A user's roles on an application, read once per user object (a request's user, a token's user): a page
    that checks many releases of one application asks once. Services that change roles call `forget_roles`."""
    cache = user.__dict__.setdefault("_slipway_roles", {})
    if application.pk not in cache:
        cache[application.pk] = list(Membership.objects.filter(user=user, application=application))
    return cache[application.pk]


def forget_roles(user) -> None:
    user.__dict__.pop("_slipway_roles", None)


def can(
    actor: Actor, permission: Permission, application: Application, environment: Environment | None = None
) -> bool:
    return _refusal(actor, permission, application, environment) is None


def refusal(
    actor: Actor, permission: Permission, application: Application, environment: Environment | None = None
) -> str | None:
    """Why `actor` may not do it (a missing scope, the token's environment, a role), or None."""
    return _refusal(actor, permission, application, environment)


def require(
    actor: Actor, permission: Permission, application: Application, environment: Environment | None = None
) -> None:
    """Raise Forbidden naming what is missing: a scope, the token's environment, or a role."""
    reason = _refusal(actor, permission, application, environment)
    if reason is not None:
        raise NotPermitted(reason, extra={"permission": str(permission)})


def _refusal(
    actor: Actor, permission: Permission, application: Application, environment: Environment | None
) -> str | None:
    if actor.is_system:
        return None
    scope = PERMISSION_SCOPE[permission]
    if not actor.has_scope(scope):
        return f"This token lacks the '{scope}' scope."
    if actor.token is not None and actor.token.environment_id is not None:
        pinned = actor.token.environment
        assert pinned is not None
        if pinned.application_id != application.pk:
            return f"This token acts on {pinned.label} only."
        if permission not in READ_PERMISSIONS and (environment is None or environment.pk != pinned.pk):
            return f"This token acts on {pinned.label} only."
    user = actor.user
    if user is None or not user.is_authenticated or not user.is_active:
        return "Log in first."
    if user.is_superuser:
        return None
    for membership in roles_of(user, application):
        if permission not in ROLE_PERMISSIONS[membership.role]:
            continue
        if (
            membership.environment_id is None
            or permission in READ_PERMISSIONS
            or (environment is not None and membership.environment_id == environment.pk)
        ):
            return None
    needed = ROLE_LABELS.get(permission, "developer" if permission not in READ_PERMISSIONS else "viewer")
    where = f"{application.slug}/{environment.name}" if environment is not None else application.slug
    return f"You need the {needed} role on {where}."


def may_see(actor: Actor, application: Application) -> bool:
    """Whether the actor may learn that the application exists: any role there, a superuser, or the system.

    Interfaces answer 404 otherwise, exactly as for an unknown application, so nothing about it (a release's
    status, a flag's name) leaks; a role without the permission needed still gets 403 naming the role.
    """
    user = actor.user
    if user is None:  # the system
        return True
    if not user.is_authenticated or not user.is_active:
        return False
    return user.is_superuser or bool(roles_of(user, application))


def roles_with(permission: Permission) -> list[str]:
    return [role for role, permissions in ROLE_PERMISSIONS.items() if permission in permissions]


def users_with(
    permission: Permission, application_id: int, environment_id: int | None, user_ids: Iterable[int]
) -> set[int]:
    """Of `user_ids`, those whose own roles give `permission` there (as `can` decides, tokens aside): one query."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    user_ids = set(user_ids)
    if not user_ids:
        return set()
    # A role limited to one environment counts there only (and everywhere for reading), as in `_refusal`.
    here = Q(memberships__environment=None)
    if permission in READ_PERMISSIONS:
        here = Q()
    elif environment_id is not None:
        here |= Q(memberships__environment_id=environment_id)
    role = Q(memberships__application_id=application_id, memberships__role__in=roles_with(permission)) & here
    return set(
        get_user_model()
        .objects.filter(Q(is_superuser=True) | role, pk__in=user_ids, is_active=True)
        .values_list("pk", flat=True)
        .distinct()
    )


def viewers_of(application_id: int) -> set[int]:
    """Active users who see an application: its members and the superusers (one query)."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    return set(
        get_user_model()
        .objects.filter(Q(is_superuser=True) | Q(memberships__application_id=application_id), is_active=True)
        .values_list("pk", flat=True)
        .distinct()
    )


def visible_applications(user, token: ApiToken | None = None):
    """Applications a user may see: all for superusers, those with a membership otherwise; a pinned token's one."""
    qs = Application.objects.all()
    if token is not None and token.environment is not None:
        qs = qs.filter(pk=token.environment.application_id)
    if user.is_superuser:
        return qs
    return qs.filter(memberships__user=user).distinct()


def has_role(user, application_id: int) -> bool:
    """Any role on the application (or a superuser): what a token pinned there needs to act at all."""
    if not user.is_active:
        return False
    return user.is_superuser or Membership.objects.filter(user=user, application_id=application_id).exists()


def pinned_token_refusal(token: ApiToken) -> str | None:
    """Why a pinned token may not act any more: its user holds no role on the token's application now.

    `config.api.authenticate_token` annotates `user_has_role` in its one query; otherwise this asks the database.
    """
    if token.environment is None:
        return None
    allowed = getattr(token, "user_has_role", None)
    if allowed is None:
        allowed = has_role(token.user, token.environment.application_id)
    if allowed or token.user.is_superuser:
        return None
    return (
        f"{token.user.get_username()} has no role on {token.environment.application.slug} any more, "
        "so this token may not act there."
    )
