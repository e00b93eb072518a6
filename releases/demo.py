"""Demo data for `make run`: the 'shop' application, its pipeline, builds and their authors."""

from __future__ import annotations

import hashlib
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from environments.models import Environment
from environments.services import do_create_environment, do_record_deployment
from releases.models import Application, Artifact, Role
from releases.permissions import Actor
from releases.services import ArtifactIn, ChangeIn, do_create_application, do_grant_role, do_register_artifact

TEAM = [("alice", "alice@example.com"), ("bob", "bob@example.com"), ("carol", "carol@example.com")]

BUILDS = [
    ("1.0.0", [("alice", "Product list with prices"), ("bob", "Basket survives a reload")]),
    ("1.1.0", [("carol", "Search by name"), ("alice", "Faster product images")]),
    ("1.2.0", [("bob", "Checkout with saved address"), ("dave@contractor.example", "Fix VAT rounding")]),
    ("1.3.0", [("alice", "Faster checkout"), ("carol", "Order history page"),
               ("alice@users.noreply.github.com", "Typo on the basket page")]),
]


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def load_demo() -> Application:
    system = Actor.system()
    User = get_user_model()
    for username, email in TEAM:
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if created:
            user.set_unusable_password()
            user.save()
    app = do_create_application(system, slug="shop", name="Shop", repository_url="https://github.com/acme/shop")
    for username, _ in TEAM:
        do_grant_role(system, app, User.objects.get(username=username), Role.DEVELOPER)
    staging = do_create_environment(system, app, name="staging", position=1,
                                    description="Takes every build CI registers.")
    production = do_create_environment(system, app, name="production", position=2, requires_approval=True,
                                       description="Customers. Everyone whose change ships approves.")
    start = timezone.now() - timedelta(days=len(BUILDS))
    for index, (version, changes) in enumerate(BUILDS):
        when = start + timedelta(days=index)
        data = ArtifactIn(
            version=version, commit=_sha(f"commit {version}"),
            image=f"registry.example.com/shop@sha256:{hashlib.sha256(version.encode()).hexdigest()}",
            build_url=f"https://ci.example.com/builds/{800 + index}", metadata={"branch": "main"},
            changes=tuple(
                ChangeIn(sha=_sha(f"{version} {title}"), author=author, title=title,
                         url=f"https://github.com/acme/shop/pull/{10 + index * 3 + n}", committed_at=when)
                for n, (author, title) in enumerate(changes)
            ),
        )
        do_register_artifact(system, app, data)
    do_record_deployment(system, Environment.objects.get(pk=staging.pk), Artifact.objects.get(application=app, version="1.2.0"))
    do_record_deployment(system, Environment.objects.get(pk=production.pk), Artifact.objects.get(application=app, version="1.1.0"))
    return app
