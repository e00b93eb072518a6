"""Writers for monitoring: ingest keys, error events, metric samples, metric sources, analysis templates and runs.

Ingestion is a system write at a high rate: errors (from the envelope route's batches, or the JSON endpoint),
pushed samples and agents' health checks are each stored by one `do_*` in one transaction per batch, all of a
batch or none of it, and record NO audit event (one per ingested error or sample would flood the audit trail).
Who may send is checked at the door (the DSN's ingest key, or an API token with `metrics:write` checked here).
Creating and rotating an ingest key are audited like any other write.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from django.db import connection, transaction
from django.utils import timezone

from config.errors import Invalid
from environments.models import Environment
from monitoring import analysis
from monitoring.exceptions import AnalysisTemplateExists, MetricSourceExists, MetricSourceInUse
from monitoring.models import (
    AnalysisMeasurement,
    AnalysisRun,
    AnalysisTemplate,
    ErrorCount,
    ErrorEvent,
    ErrorGroup,
    IngestKey,
    MetricSource,
    Sample,
)
from monitoring.parsing import ErrorIn, SampleIn
from releases import audit
from releases.models import Application, Release, Rollout
from releases.permissions import Actor, Permission, require

FUTURE_SKEW = timedelta(minutes=1)  # a client clock further ahead than this is not believed
CHUNK = 500


# --- ingest keys ------------------------------------------------------------------------------------------------


def create_ingest_key(actor: Actor, application: Application) -> IngestKey:
    """A first ingest key for a new application, in the caller's transaction (`do_create_application`'s)."""
    key = IngestKey.objects.create(application=application, public_key=IngestKey.new_public_key())
    audit.record(
        actor, "ingest_key.created", key, application=application, after={"public_key": key.public_key}
    )
    return key


@transaction.atomic(durable=True)
def do_rotate_ingest_key(actor: Actor, application: Application) -> IngestKey:
    """A new DSN key for the application; the old one is revoked at once (SDKs still using it get 401)."""
    require(actor, Permission.ADMIN, application)
    Application.objects.select_for_update().get(
        pk=application.pk
    )  # two rotations at once: one after the other
    old = IngestKey.objects.filter(application=application, revoked_at__isnull=True).first()
    if old is not None:
        old.revoked_at = timezone.now()
        old.save(update_fields=["revoked_at"])
    key = IngestKey.objects.create(application=application, public_key=IngestKey.new_public_key())
    audit.record(
        actor,
        "ingest_key.rotated",
        key,
        application=application,
        before={"public_key": old.public_key} if old else None,
        after={"public_key": key.public_key},
    )
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
        raise Invalid(
            f"'{error.environment}' is not an environment of {application.slug}.", field="environment"
        )
    require(actor, Permission.WRITE_METRICS, application, environment)
    [group_id] = _store_errors([Located(application.pk, environment.pk, error)])
    return ErrorGroup.objects.get(pk=group_id)


@transaction.atomic(durable=True)
def do_resolve_error_group(actor: Actor, group: ErrorGroup) -> ErrorGroup:
    """Mark the group resolved (audited); its next event makes it `regressed`. Resolving it again changes nothing."""
    group = (
        ErrorGroup.objects.select_for_update().select_related("application", "environment").get(pk=group.pk)
    )
    require(actor, Permission.RESOLVE_ERRORS, group.application, group.environment)
    if group.status != ErrorGroup.Status.RESOLVED:
        before = group.status
        group.status = ErrorGroup.Status.RESOLVED
        group.save(update_fields=["status"])
        audit.record(
            actor,
            "error_group.resolved",
            group,
            application=group.application,
            before={"status": before},
            after={"status": group.status},
        )
    return group


def _store_errors(batch: Sequence[Located]) -> list[int]:
    if not batch:
        return []
    now = timezone.now()
    groups: dict[tuple[int, int, str], dict] = {}
    whens = []
    for item in batch:
        error = item.error
        when = (
            error.timestamp if error.timestamp is not None and error.timestamp <= now + FUTURE_SKEW else now
        )
        whens.append(when)
        key = (item.application_id, item.environment_id, error.fingerprint)
        group = groups.get(key)
        if group is None:
            groups[key] = group = {
                "type": error.type,
                "title": error.title,
                "culprit": error.culprit,
                "first": when,
                "last": when,
                "count": 0,
                "first_version": error.version,
                "last_version": error.version,
            }
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
    counts: dict[tuple[int, str, datetime], list] = {}  # (group, version, hour) -> [count, first, last]
    for item, group_id, when in zip(batch, group_ids, whens, strict=True):
        error = item.error
        per_group[group_id].append(
            (
                group_id,
                error.event_id,
                error.version,
                error.target,
                error.message,
                error.stacktrace,
                when,
                now,
            )
        )
        bucket = (group_id, error.version, when.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
        if (seen := counts.get(bucket)) is None:
            counts[bucket] = [1, when, when]
        else:
            seen[0] += 1
            seen[1], seen[2] = min(seen[1], when), max(seen[2], when)
    _insert_events([e for events in per_group.values() for e in events[-keep:]])
    _add_counts(counts)
    # A group is pruned each time its count passes a multiple of `keep`: between two prunes it holds up to twice
    # `keep` events, and a busy group costs one DELETE per `keep` events rather than one per batch.
    full = sorted(
        {
            group_id
            for key, (group_id, count) in ids.items()
            if count > keep and count // keep != (count - groups[key]["count"]) // keep
        }
    )
    if full:
        _prune_events(full, keep)
    return group_ids


def _insert_events(rows: list[tuple]) -> None:
    """Rows of (group id, event id, version, target, message, stack trace, timestamp, received at)."""
    columns = (
        "group_id",
        "event_id",
        "version",
        "target",
        "message",
        "stacktrace",
        "timestamp",
        "received_at",
    )
    if connection.vendor == "postgresql":
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {ErrorEvent._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    ErrorEvent.objects.bulk_create(
        [ErrorEvent(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=CHUNK
    )


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
        chunk = keys[start : start + CHUNK]
        params = []
        for app_id, env_id, fingerprint in chunk:
            g = groups[(app_id, env_id, fingerprint)]
            params += [
                app_id,
                env_id,
                fingerprint,
                g["type"],
                g["title"],
                g["culprit"],
                adapt(g["first"]),
                adapt(g["last"]),
                g["count"],
                g["first_version"],
                g["last_version"],
                ErrorGroup.Status.NEW,
            ]
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


def _add_counts(counts: dict[tuple[int, str, datetime], list]) -> None:
    """Add to each (group, version, hour)'s count and widen its first/last event times."""
    table = ErrorCount._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    least, greatest = ("LEAST", "GREATEST") if connection.vendor == "postgresql" else ("MIN", "MAX")
    rows = sorted(counts.items(), key=lambda item: item[0])
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        params = [
            v
            for (group_id, version, hour), (n, first, last) in chunk
            for v in (group_id, version, adapt(hour), n, adapt(first), adapt(last))
        ]
        values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (group_id, version, hour, count, first_at, last_at) VALUES {values} "
                f"ON CONFLICT (group_id, version, hour) DO UPDATE SET count = {table}.count + EXCLUDED.count, "
                # A row counted before first/last were kept stays without them: its events span the whole hour.
                f"first_at = CASE WHEN {table}.first_at IS NULL THEN NULL "
                f"ELSE {least}({table}.first_at, EXCLUDED.first_at) END, "
                f"last_at = CASE WHEN {table}.last_at IS NULL THEN NULL "
                f"ELSE {greatest}({table}.last_at, EXCLUDED.last_at) END",
                params,
            )


def _prune_events(group_ids: list[int], keep: int) -> None:
    """Delete all but the newest `keep` events of these groups."""
    table = ErrorEvent._meta.db_table
    marks = ", ".join(["%s"] * len(group_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {table} WHERE id IN (SELECT id FROM (SELECT id, ROW_NUMBER() OVER "
            f"(PARTITION BY group_id ORDER BY id DESC) AS n FROM {table} WHERE group_id IN ({marks})) ranked "
            f"WHERE n > %s)",
            [*group_ids, keep],
        )


# --- samples -----------------------------------------------------------------------------------------------------


@transaction.atomic(durable=True)
def do_push_samples(actor: Actor, application: Application, samples: Sequence[SampleIn]) -> int:
    """Store pushed samples, all or none; a sample naming an unknown environment is refused by its index."""
    names = {s.environment for s in samples}
    environments = {e.name: e for e in Environment.objects.filter(application=application, name__in=names)}
    for index, sample in enumerate(samples):
        if sample.environment not in environments:
            raise Invalid(
                f"'{sample.environment}' is not an environment of {application.slug}.",
                field=f"samples[{index}].labels.environment",
                extra={"index": index},
            )
    for environment in environments.values() or [_pinned(actor, application)]:
        require(actor, Permission.WRITE_METRICS, application, environment)
    now = timezone.now()
    _insert_samples(
        [
            (
                application.pk,
                environments[s.environment].pk,
                s.name,
                s.value,
                s.timestamp or now,
                s.version,
                s.target,
                dict(s.labels),
            )
            for s in samples
        ]
    )
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
    rows: list[tuple] = []
    for c in checks:
        rows.append(
            (
                c.application_id,
                c.environment_id,
                "health_check_latency_ms",
                c.seconds * 1000.0,
                c.at,
                c.version,
                c.target,
                {},
            )
        )
        rows.append(
            (
                c.application_id,
                c.environment_id,
                "health_check_ok",
                1.0 if c.ok else 0.0,
                c.at,
                c.version,
                c.target,
                {},
            )
        )
    _insert_samples(rows)


def _insert_samples(rows: list[tuple]) -> None:
    """Rows of (application id, environment id, name, value, timestamp, version, target, labels)."""
    if connection.vendor == "postgresql":
        # COPY is several times faster than a multi-row INSERT for thousands of rows.
        columns = "application_id, environment_id, name, value, timestamp, version, target, labels"
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {Sample._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            for *head, labels in rows:
                copy.write_row((*head, orjson.dumps(labels).decode()))
        return
    Sample.objects.bulk_create(
        [
            Sample(
                application_id=a,
                environment_id=e,
                name=n,
                value=v,
                timestamp=t,
                version=ver,
                target=tg,
                labels=lb,
            )
            for a, e, n, v, t, ver, tg, lb in rows
        ],
        batch_size=CHUNK,
    )


# --- metric sources ----------------------------------------------------------------------------------------------


def _source_fields(source: MetricSource) -> dict:
    return {f: getattr(source, f) for f in analysis.SOURCE_FIELDS}


@transaction.atomic(durable=True)
def do_create_metric_source(actor: Actor, application: Application, data: dict) -> MetricSource:
    """A new metric source (admins and release managers); audited without its secret."""
    require(actor, Permission.MANAGE_ANALYSIS, application)
    fields = analysis.parse_source(data)
    Application.objects.select_for_update().get(
        pk=application.pk
    )  # two creations of one name: one after the other
    if MetricSource.objects.filter(application=application, name=fields["name"]).exists():
        raise MetricSourceExists(
            f"{application.slug} already has a metric source '{fields['name']}'.", field="name"
        )
    source = MetricSource.objects.create(application=application, **fields)
    audit.record(
        actor, "metric_source.created", source, application=application, after=analysis.source_audit(fields)
    )
    return source


@transaction.atomic(durable=True)
def do_update_metric_source(actor: Actor, source: MetricSource, data: dict) -> MetricSource:
    """Change a source; the secret stays unless a new one is given; a rename must keep templates' references."""
    require(actor, Permission.MANAGE_ANALYSIS, source.application)
    source = MetricSource.objects.select_for_update().select_related("application").get(pk=source.pk)
    before = _source_fields(source)
    fields = analysis.parse_source(data, current=before)
    if fields["name"] != source.name:
        if MetricSource.objects.filter(application=source.application_id, name=fields["name"]).exists():
            raise MetricSourceExists(
                f"{source.application.slug} already has a metric source '{fields['name']}'.", field="name"
            )
        _refuse_if_used(source, "renamed")
    if fields["kind"] != source.kind:
        _refuse_if_used(source, "given another kind (its queries would not fit)")
    for name, value in fields.items():
        setattr(source, name, value)
    source.save()
    after = analysis.source_audit(fields)
    if fields["secret"] != before["secret"]:
        after["secret_changed"] = True
    audit.record(
        actor,
        "metric_source.updated",
        source,
        application=source.application,
        before=analysis.source_audit(before),
        after=after,
    )
    return source


@transaction.atomic(durable=True)
def do_delete_metric_source(actor: Actor, source: MetricSource) -> None:
    """Delete a source no template uses."""
    require(actor, Permission.MANAGE_ANALYSIS, source.application)
    source = MetricSource.objects.select_for_update().select_related("application").get(pk=source.pk)
    _refuse_if_used(source, "deleted")
    audit.record(
        actor,
        "metric_source.deleted",
        source,
        application=source.application,
        before=analysis.source_audit(_source_fields(source)),
    )
    source.delete()


def _refuse_if_used(source: MetricSource, what: str) -> None:
    users = [
        t.name
        for t in AnalysisTemplate.objects.filter(application=source.application_id).order_by("name")
        if any(m["source"] == source.name for m in t.metrics)
    ]
    if users:
        raise MetricSourceInUse(
            f"Metric source '{source.name}' is used by template{'s' if len(users) > 1 else ''} "
            f"{', '.join(users)}: it cannot be {what}.",
            extra={"templates": users},
        )


# --- analysis templates ------------------------------------------------------------------------------------------


def _sources(application_id: int) -> dict[str, MetricSource]:
    return {s.name: s for s in MetricSource.objects.filter(application_id=application_id)}


def _template_fields(template: AnalysisTemplate) -> dict:
    return {f: getattr(template, f) for f in analysis.TEMPLATE_FIELDS}


@transaction.atomic(durable=True)
def do_create_analysis_template(actor: Actor, application: Application, data: dict) -> AnalysisTemplate:
    """A new analysis template, checked whole (400 naming the field, e.g. `metrics[2].success_condition`)."""
    require(actor, Permission.MANAGE_ANALYSIS, application)
    Application.objects.select_for_update().get(pk=application.pk)
    fields = analysis.parse_template(data, sources=_sources(application.pk))
    if AnalysisTemplate.objects.filter(application=application, name=fields["name"]).exists():
        raise AnalysisTemplateExists(
            f"{application.slug} already has an analysis template '{fields['name']}'.", field="name"
        )
    template = AnalysisTemplate.objects.create(application=application, **fields)
    audit.record(actor, "analysis_template.created", template, application=application, after=fields)
    return template


@transaction.atomic(durable=True)
def do_update_analysis_template(actor: Actor, template: AnalysisTemplate, data: dict) -> AnalysisTemplate:
    """Change a template (fields given replace the saved ones; `metrics` is replaced whole), checked whole."""
    require(actor, Permission.MANAGE_ANALYSIS, template.application)
    template = AnalysisTemplate.objects.select_for_update().select_related("application").get(pk=template.pk)
    before = _template_fields(template)
    fields = analysis.parse_template(data, sources=_sources(template.application_id), current=before)
    if (
        fields["name"] != template.name
        and AnalysisTemplate.objects.filter(application=template.application_id, name=fields["name"]).exists()
    ):
        raise AnalysisTemplateExists(
            f"{template.application.slug} already has an analysis template '{fields['name']}'.", field="name"
        )
    for name, value in fields.items():
        setattr(template, name, value)
    template.save()
    audit.record(
        actor,
        "analysis_template.updated",
        template,
        application=template.application,
        before=before,
        after=fields,
    )
    return template


@transaction.atomic(durable=True)
def do_delete_analysis_template(actor: Actor, template: AnalysisTemplate) -> None:
    """Delete a template; its past runs stay, with its name and the configuration they were judged with."""
    require(actor, Permission.MANAGE_ANALYSIS, template.application)
    template = AnalysisTemplate.objects.select_for_update().select_related("application").get(pk=template.pk)
    audit.record(
        actor,
        "analysis_template.deleted",
        template,
        application=template.application,
        before=_template_fields(template),
    )
    template.delete()


# --- analysis runs -----------------------------------------------------------------------------------------------


def do_run_analysis(
    template: AnalysisTemplate,
    *,
    environment: Environment,
    canary_version: str,
    baseline_version: str | None,
    started_at: datetime,
    ended_at: datetime,
    canary_targets: Sequence[str] = (),
    baseline_targets: Sequence[str] = (),
    release: Release | None = None,
    rollout_id: int | None = None,
    actor: Actor | None = None,
    baseline_started_at: datetime | None = None,
    baseline_ended_at: datetime | None = None,
    interval_seconds: int | None = None,
    count: int | None = None,
) -> AnalysisRun:
    """Measure every metric of the template for canary and baseline, judge them and store the run with its
    measurements and an audit event, in one transaction after all fetching (no network call holds it open).

    Never hangs on a source: each Prometheus query is bounded by its source's timeout, and a source without
    data decides by its `on_missing_data`. Without `baseline_version`, only threshold checks judge. The
    baseline is measured over the canary's window unless given one of its own (`baseline_started_at` and
    `baseline_ended_at`: the previous version before the rollout, when no target runs it any more).
    `interval_seconds` and `count` replace the template's (a rollout strategy's `analysis` may set them).
    """
    actor = actor or Actor.system()
    clock = time.monotonic()
    if environment.application_id != template.application_id:
        raise Invalid(
            f"{environment.name} is not an environment of this template's application.", field="environment"
        )
    if ended_at <= started_at:
        raise Invalid("The window ends after it starts.", field="ended_at")
    if (baseline_started_at is None) != (baseline_ended_at is None):
        raise Invalid("Give both ends of the baseline's window, or neither.", field="baseline_ended_at")
    if baseline_started_at is not None and baseline_ended_at <= baseline_started_at:  # type: ignore[operator]
        raise Invalid("The baseline's window ends after it starts.", field="baseline_ended_at")
    if rollout_id is not None and release is None:
        release = Release.objects.filter(
            pk=Rollout.objects.filter(pk=rollout_id).values("release_id")[:1]
        ).first()
    config = _template_fields(template)
    if interval_seconds is not None:
        config["interval_seconds"] = interval_seconds
    if count is not None:
        config["count"] = count
    sources = _sources(template.application_id)
    lost = [m["source"] for m in config["metrics"] if m["source"] not in sources]
    if lost:
        raise Invalid(
            f"Template {template.name} names metric sources that no longer exist: {', '.join(lost)}.",
            field="template",
        )
    sides = {"canary": analysis.Side(version=canary_version, targets=tuple(canary_targets))}
    if baseline_version:
        sides["baseline"] = analysis.Side(
            version=baseline_version,
            targets=tuple(baseline_targets),
            start=baseline_started_at,
            end=baseline_ended_at,
        )
    window = analysis.Window(
        application_id=template.application_id,
        environment_id=environment.pk,
        environment=environment.name,
        start=started_at,
        end=ended_at,
        step=float(config["interval_seconds"]),
    )
    fetched = analysis.fetch_all(config["metrics"], sources, sides, window)
    outcome = analysis.judge(config, sources, fetched, compare=bool(baseline_version))
    return _store_run(
        actor,
        template,
        config,
        outcome,
        environment=environment,
        release=release,
        rollout_id=rollout_id,
        canary_version=canary_version,
        baseline_version=baseline_version or "",
        canary_targets=list(canary_targets),
        baseline_targets=list(baseline_targets),
        started_at=started_at,
        ended_at=ended_at,
        baseline_started_at=baseline_started_at,
        baseline_ended_at=baseline_ended_at,
        duration_ms=int((time.monotonic() - clock) * 1000),
    )


@transaction.atomic(durable=True)
def _store_run(
    actor: Actor,
    template: AnalysisTemplate,
    config: dict,
    outcome: analysis.Outcome,
    *,
    duration_ms: int,
    **fields,
) -> AnalysisRun:
    run = AnalysisRun.objects.create(
        application_id=template.application_id,
        template=template,
        template_name=template.name,
        config=config,
        status=outcome.status,
        verdict=outcome.verdict,
        score=outcome.score,
        reasons=list(outcome.reasons),
        duration_ms=min(duration_ms, 2**31 - 1),
        **fields,
    )
    limit = AnalysisMeasurement.MAX_VALUES
    AnalysisMeasurement.objects.bulk_create(
        [
            AnalysisMeasurement(
                run=run,
                position=i,
                metric=m.name,
                source=m.source,
                source_kind=m.source_kind,
                canary_query=m.canary.query,
                baseline_query=m.baseline.query if m.baseline else "",
                outcome=m.outcome,
                check_phase=m.check_phase,
                reason=m.reason,
                canary=analysis.summary(m.canary),
                baseline=analysis.summary(m.baseline),
                canary_values=analysis.capped(m.canary, limit),
                baseline_values=analysis.capped(m.baseline, limit),
            )
            for i, m in enumerate(outcome.metrics)
        ]
    )
    audit.record(
        actor,
        "analysis_run.completed",
        run,
        application=run.application,
        after={
            "template": template.name,
            "verdict": run.verdict,
            "score": run.score,
            "canary_version": run.canary_version,
            "baseline_version": run.baseline_version,
        },
        note=outcome.reasons[0][:500],
    )
    return run
