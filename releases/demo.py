"""Demo data for `make run`: the 'shop' application, its pipeline, builds and their authors."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from environments.models import Environment
from environments.services import do_create_environment
from releases.dispatch import release_queued
from releases.models import Application, Artifact, Release, Role
from releases.permissions import Actor
from releases.promotions import do_record_release, do_request_release
from releases.services import (
    ArtifactIn,
    ChangeIn,
    do_create_application,
    do_grant_role,
    do_link_identity,
    do_register_artifact,
)

TEAM = [("alice", "alice@example.com"), ("bob", "bob@example.com"), ("carol", "carol@example.com")]
# The product manager toggles flags on the Flags page: a flag editor, no deploys.
PRODUCT_MANAGER = ("pm", "pm@example.com")

BUILDS = [
    ("1.0.0", [("alice", "Product list with prices"), ("bob", "Basket survives a reload")]),
    ("1.1.0", [("carol", "Search by name"), ("alice", "Faster product images")]),
    ("1.2.0", [("bob", "Checkout with saved address"), ("dave@contractor.example", "Fix VAT rounding")]),
    (
        "1.3.0",
        [
            ("alice", "Faster checkout"),
            ("carol", "Order history page"),
            ("alice@users.noreply.github.com", "Typo on the basket page"),
        ],
    ),
    # Healthy by its health check, but fails six times as many checkouts: the canary's analysis reverts it.
    ("1.3.1-errors", [("carol", "Recalculate basket totals on every change (fails 6 % of checkouts)")]),
    # Its health check fails on the demo fleet: watch a rollout stop and revert by itself.
    ("1.4.0-broken", [("bob", "Cache product pages (breaks /health)")]),
]

# How production judges a canary: the error ratio the demo services push (environments/demo/service.py) every
# 5 s, the canary's hosts against the others over the same 40 s.
ANALYSIS_TEMPLATE = {
    "name": "errors",
    "description": "Checkout error ratio of the canary against the hosts still on the previous version.",
    "interval_seconds": 5,
    "count": 8,
    "metrics": [
        {
            "name": "error_rate",
            "source": "pushed",
            "query": "http_error_ratio",
            "direction": "increase",
            "critical": True,
            "unit": "%",
        }
    ],
}
PRODUCTION_STRATEGY = {
    "kind": "canary",
    "steps": [25, 100],
    "pause_seconds": 0,
    "analysis": {"template": "errors", "duration_seconds": 40},
}


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def load_demo() -> tuple[Application, dict[str, str]]:
    """Load the demo; returns the application and the team's one-time passwords (random, shown once), by username."""
    system = Actor.system()
    User = get_user_model()
    passwords = {}
    for username, email in [*TEAM, PRODUCT_MANAGER]:
        user, created = User.objects.get_or_create(username=username, defaults={"email": email})
        if created:
            passwords[username] = secrets.token_urlsafe(9)
            user.set_password(passwords[username])
            user.save()
    app = do_create_application(
        system, slug="shop", name="Shop", repository_url="https://github.com/acme/shop"
    )
    for username, _ in TEAM:
        do_grant_role(system, app, User.objects.get(username=username), Role.DEVELOPER)
    do_grant_role(system, app, User.objects.get(username=PRODUCT_MANAGER[0]), Role.FLAG_EDITOR)
    # Linked as an administrator would: confirmed at once. A person's own request would wait for confirmation.
    do_link_identity(system, User.objects.get(username="alice"), "alice@users.noreply.github.com")
    staging = do_create_environment(
        system, app, name="staging", position=1, description="Takes every build CI registers."
    )
    production = do_create_environment(
        system,
        app,
        name="production",
        position=2,
        requires_approval=True,
        description="Customers. Everyone whose change ships approves.",
    )
    start = timezone.now() - timedelta(days=len(BUILDS))
    for index, (version, changes) in enumerate(BUILDS):
        when = start + timedelta(days=index)
        data = ArtifactIn(
            version=version,
            commit=_sha(f"commit {version}"),
            image=f"registry.example.com/shop@sha256:{hashlib.sha256(version.encode()).hexdigest()}",
            build_url=f"https://ci.example.com/builds/{800 + index}",
            metadata={"branch": "main"},
            changes=tuple(
                ChangeIn(
                    sha=_sha(f"{version} {title}"),
                    author=author,
                    title=title,
                    url=f"https://github.com/acme/shop/pull/{10 + index * 3 + n}",
                    committed_at=when,
                )
                for n, (author, title) in enumerate(changes)
            ),
        )
        do_register_artifact(system, app, data)
    builds = {a.version: a for a in Artifact.objects.filter(application=app)}
    for environment, versions in ((staging, ["1.0.0", "1.1.0", "1.2.0"]), (production, ["1.0.0", "1.1.0"])):
        for version in versions:
            do_record_release(
                system,
                Environment.objects.get(pk=environment.pk),
                artifact=builds[version],
                status=Release.Status.SUCCEEDED,
            )
    # 1.3.0 waits in production for everyone whose change it carries; 1.3.1-errors and 1.4.0-broken are staged,
    # ready to be reverted (the canary's error rate) and to fail (its health check).
    for version in ("1.3.0", "1.3.1-errors", "1.4.0-broken"):
        staged = do_request_release(
            system, app, environment=Environment.objects.get(pk=staging.pk), artifact=builds[version]
        )
        release_queued(
            staged.pk
        )  # normally after commit; called here so the demo loads in one go (reruns are no-ops)
    do_request_release(
        system, app, environment=Environment.objects.get(pk=production.pk), artifact=builds["1.3.0"]
    )
    _demo_analysis(system, app, production=Environment.objects.get(pk=production.pk))
    _demo_flags(
        system,
        app,
        production=Environment.objects.get(pk=production.pk),
        staging=Environment.objects.get(pk=staging.pk),
    )
    return app, passwords


def _demo_analysis(system: Actor, app: Application, *, production: Environment) -> None:
    """Production's canary is judged by the error ratio the demo fleet pushes; a noisy build is reverted."""
    from environments.services import do_update_environment
    from monitoring.services import do_create_analysis_template, do_create_metric_source

    do_create_metric_source(
        system, app, {"name": "pushed", "kind": "pushed", "on_missing_data": "inconclusive"}
    )
    do_create_analysis_template(system, app, ANALYSIS_TEMPLATE)
    do_update_environment(system, production, strategy=PRODUCTION_STRATEGY)


def _demo_flags(system: Actor, app: Application, *, production: Environment, staging: Environment) -> None:
    from flags.services import do_create_flag, do_save_segment, do_set_flag_state

    do_save_segment(
        system,
        app,
        name="staff",
        description="Our own people",
        conditions=[{"attribute": "email", "operator": "ends_with", "values": ["@example.com"]}],
    )
    checkout = do_create_flag(
        system,
        app,
        key="new-checkout",
        name="New checkout flow",
        owner="alice",
        tags=["checkout", "experiment"],
    )
    do_set_flag_state(system, checkout, staging, enabled=True)
    do_set_flag_state(
        system,
        checkout,
        production,
        enabled=True,
        default_variant="off",
        rules=[
            {"segment": "staff", "variant": "on"},
            {
                "conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],
                "variant": "on",
            },
        ],
        rollout={"percentage": 10, "weights": {"on": 100}},
    )
    do_create_flag(system, app, key="search-v2", name="Search ranking v2", owner="carol", tags=["search"])
    banner = do_create_flag(
        system,
        app,
        key="banner-text",
        type="string",
        name="Home page banner",
        owner="bob",
        variants={"plain": "Welcome", "sale": "Winter sale: 20% off"},
    )
    do_set_flag_state(system, banner, production, enabled=True, default_variant="plain", off_variant="plain")
