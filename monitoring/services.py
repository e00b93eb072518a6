"""Writers for monitoring: ingest keys, error events, metric samples.

Ingestion is a system write at a high rate: errors (from the envelope route's batches, or the JSON endpoint),
pushed samples and agents' health checks are each stored by one `do_*` in one transaction per batch, all of a
batch or none of it, and record NO audit event (one per ingested error or sample would flood the audit trail).
Who may send is checked at the door (the DSN's ingest key, or an API token with `metrics:write` checked here).
Creating and rotating an ingest key are audited like any other write.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from django.db import connection, transaction
from django.utils import timezone

from config.errors import Invalid
from environments.models import Environment
from monitoring.models import ErrorCount, ErrorEvent, ErrorGroup, IngestKey, Sample
from monitoring.parsing import ErrorIn, SampleIn
from releases import audit
from releases.models import Application
from releases.permissions import Actor, Permission, require

FUTURE_SKEW = timedelta(minutes=1)  # a client clock further ahead than this is not believed
CHUNK = 500


# --- ingest keys ------------------------------------------------------------------------------------------------

def create_ingest_key(actor: Actor, application: Application) -> IngestKey:
    """A first ingest key for a new application, in the caller's transaction (`do_create_application`'s)."""
    key = IngestKey.objects.create(application=application, public_key=IngestKey.new_public_key())
    audit.record(actor, "ingest_key.created", key, application=application, after={"public_key": key.public_key})
    return key


@transaction.atomic(durable=True)
def do_rotate_ingest_key(actor: Actor, application: Application) -> IngestKey:
    """A new DSN key for the application; the old one is revoked at once (SDKs still using it get 401)."""
    require(actor, Permission.ADMIN, application)
    Application.objects.select_for_update().get(pk=application.pk)  # two rotations at once: one after the other
    old = IngestKey.objects.filter(application=application, revoked_at__isnull=True).first()
    if old is not None:
        old.revoked_at = timezone.now()
        old.save(update_fields=["revoked_at"])
    key = IngestKey.objects.create(application=application, public_key=IngestKey.new_public_key())
    audit.record(actor, "ingest_key.rotated", key, application=application,
                 before={"public_key": old.public_key} if old else None, after={"public_key": key.public_key})
    return key


# --- errors ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Located:
    """An error with its application and environment resolved (by the ingest key's cache or a lookup)."""

    application_id: int
    environment_id: int
    error: ErrorIn


@transaction.atomic(durable=True)
def do_ingest_errors(batch: Sequence[Located]) -> list[int]:
    """Store a batch of errors, all or none: groups upserted, newest events kept, counts per version and hour.
    Returns the group id of each error, in order."""
    return _store_errors(batch)


@transaction.atomic(durable=True)
def do_record_error(actor: Actor, application: Application, error: ErrorIn) -> ErrorGroup:
    """Store one error sent to the JSON endpoint (an API token with `metrics:write`)."""
    environment = Environment.objects.filter(application=application, name=error.environment).first()
    if environment is None:
        raise Invalid(f"'{error.environment}' is not an environment of {application.slug}.", field="environment")
    require(actor, Permission.WRITE_METRICS, application, environment)
    [group_id] = _store_errors([Located(application.pk, environment.pk, error)])
    return ErrorGroup.objects.get(pk=group_id)


def _store_errors(batch: Sequence[Located]) -> list[int]:
    if not batch:
        return []
    now = timezone.now()
    groups: dict[tuple[int, int, str], dict] = {}
    whens = []
    for item in batch:
        error = item.error
        when = error.timestamp if error.timestamp is not None and error.timestamp <= now + FUTURE_SKEW else now
        whens.append(when)
        key = (item.application_id, item.environment_id, error.fingerprint)
        group = groups.get(key)
        if group is None:
            groups[key] = group = {"type": error.type, "title": error.title, "culprit": error.culprit, "first": when,
                                   "last": when, "count": 0, "first_version": error.version,
                                   "last_version": error.version}
        group["count"] += 1
        group["first"] = min(group["first"], when)
        if when >= group["last"]:
            group["last"], group["last_version"] = when, error.version
        if not group["first_version"]:
            group["first_version"] = error.version
    ids = _upsert_groups(groups)  # key -> (id, count after)
    group_ids = [ids[(i.application_id, i.environment_id, i.error.fingerprint)][0] for i in batch]

    # Events: only each group's newest KEEP_PER_GROUP of this batch are worth writing.
    keep = ErrorEvent.KEEP_PER_GROUP
    per_group: dict[int, list[tuple]] = defaultdict(list)
    counts: dict[tuple[int, str, datetime], int] = defaultdict(int)
    for item, group_id, when in zip(batch, group_ids, whens, strict=True):
        error = item.error
        per_group[group_id].append((group_id, error.event_id, error.version, error.target, error.message,
                                    error.stacktrace, when, now))
        counts[(group_id, error.version, when.astimezone(UTC).replace(minute=0, second=0, microsecond=0))] += 1
    _insert_events([e for events in per_group.values() for e in events[-keep:]])
    _add_counts(counts)
    # A group is pruned each time its count passes a multiple of `keep`: between two prunes it holds up to twice
    # `keep` events, and a busy group costs one DELETE per `keep` events rather than one per batch.
    full = sorted({group_id for key, (group_id, count) in ids.items()
                   if count > keep and count // keep != (count - groups[key]["count"]) // keep})
    if full:
        _prune_events(full, keep)
    return group_ids


def _insert_events(rows: list[tuple]) -> None:
    """Rows of (group id, event id, version, target, message, stack trace, timestamp, received at)."""
    columns = ("group_id", "event_id", "version", "target", "message", "stacktrace", "timestamp", "received_at")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor, cursor.cursor.copy(
                f"COPY {ErrorEvent._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    ErrorEvent.objects.bulk_create([ErrorEvent(**dict(zip(columns, row, strict=True))) for row in rows],
                                   batch_size=CHUNK)


def _vendor_sql() -> tuple[str, str]:
    return ("GREATEST", "LEAST") if connection.vendor == "postgresql" else ("MAX", "MIN")


def _upsert_groups(groups: dict[tuple[int, int, str], dict]) -> dict[tuple[int, int, str], tuple[int, int]]:
    """Insert new groups and add to existing ones in one statement per chunk, rows in a fixed order (two writers
    upserting the same groups lock them in the same order: no deadlock)."""
    table = ErrorGroup._meta.db_table
    greatest, least = _vendor_sql()
    adapt = connection.ops.adapt_datetimefield_value
    found = {}
    keys = sorted(groups)
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        params = []
        for app_id, env_id, fingerprint in chunk:
            g = groups[(app_id, env_id, fingerprint)]
            params += [app_id, env_id, fingerprint, g["type"], g["title"], g["culprit"], adapt(g["first"]),
                       adapt(g["last"]), g["count"], g["first_version"], g["last_version"], ErrorGroup.Status.NEW]
        values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
        sql = (
            f"INSERT INTO {table} (application_id, environment_id, fingerprint, type, title, culprit, first_seen, "
            f"last_seen, count, first_seen_version, last_seen_version, status) VALUES {values} "
            f"ON CONFLICT (application_id, environment_id, fingerprint) DO UPDATE SET "
            f"count = {table}.count + EXCLUDED.count, "
            f"last_seen_version = CASE WHEN EXCLUDED.last_seen >= {table}.last_seen "
            f"THEN EXCLUDED.last_seen_version ELSE {table}.last_seen_version END, "
            f"last_seen = {greatest}({table}.last_seen, EXCLUDED.last_seen), "
            f"first_seen = {least}({table}.first_seen, EXCLUDED.first_seen), "
            # A group first seen without a version becomes new in the first version it is seen in.
            f"first_seen_version = CASE WHEN {table}.first_seen_version = '' "
            f"THEN EXCLUDED.first_seen_version ELSE {table}.first_seen_version END, "
            f"status = CASE WHEN {table}.status = 'resolved' THEN 'regressed' ELSE {table}.status END "
            f"RETURNING id, application_id, environment_id, fingerprint, count"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for pk, app_id, env_id, fingerprint, count in cursor.fetchall():
                found[(app_id, env_id, fingerprint)] = (pk, count)
    return found


def _add_counts(counts: dict[tuple[int, str, datetime], int]) -> None:
    table = ErrorCount._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    rows = sorted(counts.items())
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start:start + CHUNK]
        params = [v for (group_id, version, hour), n in chunk for v in (group_id, version, adapt(hour), n)]
        values = ", ".join(["(%s, %s, %s, %s)"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (group_id, version, hour, count) VALUES {values} "
                f"ON CONFLICT (group_id, version, hour) DO UPDATE SET count = {table}.count + EXCLUDED.count", params)


def _prune_events(group_ids: list[int], keep: int) -> None:
    """Delete all but the newest `keep` events of these groups."""
    table = ErrorEvent._meta.db_table
    marks = ", ".join(["%s"] * len(group_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
            f"(PARTITION BY group_id ORDER BY id DESC) AS n FROM {table} WHERE group_id IN ({marks})) ranked "
            f"WHERE n > %s)", [*group_ids, keep])


# --- samples -----------------------------------------------------------------------------------------------------

@transaction.atomic(durable=True)
def do_push_samples(actor: Actor, application: Application, samples: Sequence[SampleIn]) -> int:
    """Store pushed samples, all or none; a sample naming an unknown environment is refused by its index."""
    names = {s.environment for s in samples}
    environments = {e.name: e for e in Environment.objects.filter(application=application, name__in=names)}
    for index, sample in enumerate(samples):
        if sample.environment not in environments:
            raise Invalid(f"'{sample.environment}' is not an environment of {application.slug}.",
                          field=f"samples[{index}].labels.environment",
                          extra={"index": index, "field": "labels.environment"})
    for environment in environments.values() or [_pinned(actor, application)]:
        require(actor, Permission.WRITE_METRICS, application, environment)
    now = timezone.now()
    _insert_samples([(application.pk, environments[s.environment].pk, s.name, s.value, s.timestamp or now,
                      s.version, s.target, dict(s.labels)) for s in samples])
    return len(samples)


def _pinned(actor: Actor, application: Application) -> Environment | None:
    """The environment a token is pinned to, to check an empty push against."""
    token = actor.token
    return token.environment if token is not None and token.environment_id is not None else None


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """An agent's health check after a deploy: where, which version, how long it took, whether it passed."""

    application_id: int
    environment_id: int
    target: str
    version: str
    seconds: float
    ok: bool
    at: datetime


def record_health_checks(checks: Sequence[HealthCheck]) -> None:
    """`health_check_latency_ms` and `health_check_ok` samples, in the caller's transaction (the agents' report
    batch in `environments/jobs.py`), in one insert."""
    if not checks:
        return
    rows = []
    for c in checks:
        rows.append((c.application_id, c.environment_id, "health_check_latency_ms", c.seconds * 1000.0, c.at,
                     c.version, c.target, {}))
        rows.append((c.application_id, c.environment_id, "health_check_ok", 1.0 if c.ok else 0.0, c.at,
                     c.version, c.target, {}))
    _insert_samples(rows)


def _insert_samples(rows: list[tuple]) -> None:
    """Rows of (application id, environment id, name, value, timestamp, version, target, labels)."""
    if connection.vendor == "postgresql":
        # COPY is several times faster than a multi-row INSERT for thousands of rows.
        columns = "application_id, environment_id, name, value, timestamp, version, target, labels"
        with connection.cursor() as cursor, cursor.cursor.copy(
                f"COPY {Sample._meta.db_table} ({columns}) FROM STDIN") as copy:
            for *head, labels in rows:
                copy.write_row((*head, orjson.dumps(labels).decode()))
        return
    Sample.objects.bulk_create([
        Sample(application_id=a, environment_id=e, name=n, value=v, timestamp=t, version=ver, target=tg, labels=lb)
        for a, e, n, v, t, ver, tg, lb in rows], batch_size=CHUNK)
