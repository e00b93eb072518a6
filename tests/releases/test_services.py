import subprocess
import sys

import pytest
from django.core.management import call_command
from django.db import transaction

from releases import audit
from releases.models import ApiToken, Application, AuditEvent
from releases.permissions import Actor
from releases.services import ArtifactIn, do_create_application, do_register_artifact
from tests import factories
from tests.factories import sha


def _is_write(sql: str) -> bool:
    return sql.lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE")


def test_a_failure_at_the_last_write_leaves_nothing_half_written(app):
    """Whatever order the service writes in, failing its very last statement must undo every earlier one."""
    from django.db import DatabaseError, connection

    from releases.models import Artifact, Change
    from releases.services import ChangeIn

    def artifact(version, first_sha):
        return ArtifactIn(
            version=version,
            commit=sha(first_sha),
            image="img",
            metadata={},
            changes=[
                ChangeIn(sha=sha(first_sha + n), author=f"dev{n}", title=f"change {n}") for n in range(3)
            ],
        )

    writes = []

    def count(execute, sql, params, many, context):
        if _is_write(sql):
            writes.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        do_register_artifact(Actor.system(), app, artifact("1.0.0", 10))
    assert len(writes) >= 3  # the artifact, its changes, its audit event
    seen = []

    def fail_last(execute, sql, params, many, context):
        if _is_write(sql):
            seen.append(sql)
            if len(seen) == len(writes):
                raise DatabaseError("disk on fire")
        return execute(sql, params, many, context)

    rows = (Artifact.objects.count(), Change.objects.count(), AuditEvent.objects.count())
    with connection.execute_wrapper(fail_last), pytest.raises(DatabaseError):
        do_register_artifact(Actor.system(), app, artifact("1.0.1", 20))
    assert len(seen) == len(writes)
    assert (Artifact.objects.count(), Change.objects.count(), AuditEvent.objects.count()) == rows


def test_failing_audit_rolls_back_the_write(db, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(audit.AuditEvent.objects, "create", explode)
    with pytest.raises(RuntimeError):
        do_create_application(Actor.system(), slug="shop", name="Shop")
    assert not Application.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_audit_refuses_to_write_outside_a_transaction(app):
    with pytest.raises(AssertionError):
        audit.record(Actor.system(), "x", app)
    with transaction.atomic():
        assert audit.record(Actor.system(), "x", app).actor_label == "system"


def test_audit_names_the_token(app, user):
    token = ApiToken(user=user, name="ci", scopes=["releases:write"])
    with transaction.atomic():
        event = audit.record(Actor(user, token), "x", app)
    assert event.actor == user and event.actor_label == f"{user.username} (token ci)"


def test_create_api_token_command_prints_token_last(app, user, capsys):
    env = factories.EnvironmentFactory(application=app, name="production", position=2)
    call_command(
        "create_api_token",
        "--user",
        user.username,
        "--scope",
        "flags:read",
        "--environment",
        "shop/production",
        "--name",
        "sdk",
    )
    key = capsys.readouterr().out.strip().splitlines()[-1]
    token = ApiToken.objects.get()
    assert key.startswith("slw_") and len(key) > 40
    assert token.key_hash == ApiToken.hash_key(key) and key not in str(token.__dict__.values())
    assert token.environment == env and token.scopes == ["flags:read"]


def test_create_api_token_rejects_unknown_environment(app, user):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No environment"):
        call_command(
            "create_api_token", "--user", user.username, "--scope", "flags:read", "--environment", "shop/x"
        )


def test_demo_loads_once(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")
        call_command("load_demo")
    shop = Application.objects.get()
    assert [e.name for e in shop.environments.order_by("position")] == ["staging", "production"]
    assert shop.artifacts.count() >= 3
    assert len({c.author for c in shop.changes.all()}) >= 3


def test_ensure_admin_prints_password_once(db, capsys):
    call_command("ensure_admin")
    first = capsys.readouterr().out
    call_command("ensure_admin")
    assert "password:" in first and "password:" not in capsys.readouterr().out


def _settings_in_subprocess(env: dict[str, str], expr: str) -> subprocess.CompletedProcess:
    code = f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; django.setup(); from django.conf import settings; print({expr})"
    base = {"PATH": "/usr/bin:/bin", "SLIPWAY_DATA_DIR": "/tmp/slipway-settings-test"}
    return subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=60
    )


def test_embedded_default_is_sqlite_wal_immediate():
    result = _settings_in_subprocess(
        {},
        "settings.DATABASES['default'], settings.CHANNEL_LAYERS['default']['BACKEND'], settings.CELERY_IN_PROCESS",
    )
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout and "'transaction_mode': 'IMMEDIATE'" in result.stdout
    assert "journal_mode=WAL" in result.stdout and "'timeout': 20" in result.stdout
    assert "InMemoryChannelLayer" in result.stdout and "True" in result.stdout


def test_production_refuses_to_start_without_secret_key_and_hosts():
    # Settings load (so `check --deploy` can report slipway.E001); every process refuses to start on it.
    result = _settings_in_subprocess(
        {"SLIPWAY_ENV": "production"}, "__import__('config.checks').checks.refuse_to_start()"
    )
    assert result.returncode != 0
    assert "SECRET_KEY and ALLOWED_HOSTS" in result.stderr and "slipway.E001" in result.stderr
    ok = _settings_in_subprocess(
        {
            "SLIPWAY_ENV": "production",
            "SECRET_KEY": "s" * 50,
            "ALLOWED_HOSTS": "slipway.example.com",
            "DEBUG": "1",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x",
        },
        "settings.DEBUG",
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "False"


def test_production_urls_switch_runtime():
    result = _settings_in_subprocess(
        {
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/x",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
        },
        "settings.DATABASES['default']['ENGINE'], settings.CHANNEL_LAYERS['default']['BACKEND'], settings.CELERY_IN_PROCESS",
    )
    assert result.returncode == 0, result.stderr
    assert "postgresql" in result.stdout and "RedisChannelLayer" in result.stdout and "False" in result.stdout
