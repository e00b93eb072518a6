"""Agents' jobs: the services behind the agent routes and the webhook driver's callback.

The next job of many waiting targets is claimed in one transaction, many reports are stored in one transaction:
the lean ASGI routes (`environments/agent_asgi.py`) gather agents' requests into such batches, so a thousand
agents cost a handful of queries per round instead of several per agent and request.

What agents and webhook receivers report is recorded in the rollout's step rows themselves — which target, when,
status, health, output — and that is its history (the release page's rollout table); an audit event per report
would double the writes of a thousand-host wave. So claims (`do_claim_jobs`) and reports (`do_apply_reports`) are
not audited, and neither is telemetry: output chunks an agent streams while its job runs (`do_append_output`,
kept in the step's output), heartbeats (`do_record_heartbeat`) and the last-seen time (`touch`) record what a host
says, not a decision anyone made. Rarer writes are audited in their transaction: a webhook receiver's callback
(`rollout.step_reported`, from outside) and jobs put back in the queue (`do_release_jobs`, `rollout.jobs_released`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.db import DataError, connection, transaction
from django.db.models import Exists, F, Max, OuterRef
from django.utils import timezone

from config.jsonbody import error_body
from config.pgarrays import insert_rows, update_rows
from environments.models import Environment, Target
from monitoring.services import HealthCheck, record_health_checks
from releases import audit
from releases.models import ApiToken, Release, Rollout, RolloutStep
from releases.permissions import Actor
from releases.rollouts import enqueue_advance, publish_changed

OPEN = (RolloutStep.Status.PENDING, RolloutStep.Status.RUNNING)
SEEN_EVERY = timedelta(seconds=1)  # last_seen is written at most this often per agent
FEW_TARGETS = (
    50  # claims for more waiting agents than this read all pending steps instead of naming the targets
)

log = logging.getLogger("slipway.agent")
Answer = tuple[int, dict]


def refused(status: int, code: str, detail: str, **extra: str) -> Answer:
    """An error answer in the project's one shape (`config.jsonbody.error_body`, as the API answers)."""
    return status, error_body(code, detail, **extra)


UNKNOWN_AGENT = refused(401, "unknown_agent", "Unknown agent token: register again.")
MAX_KEY = 200  # agent tokens are 47 characters: a longer one is unknown without asking the database


def agent_key(authorization: str) -> str:
    """The agent's token from an `Authorization: Bearer <token>` header; "" for none or one too long to be one."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip() if scheme.lower() == "bearer" else ""
    return key if len(key) <= MAX_KEY else ""


def job_not_found(job: int | str) -> Answer:
    """404 `job_not_found`: no such job (or an id that cannot be one: `job` is then the path's text, cut short)."""
    return refused(404, "job_not_found", f"No job #{str(job)[:30]}.")


BUSY = refused(503, "busy", "Slipway could not store this now; try again.")


@dataclass(frozen=True)
class Report:
    """An agent's report of one job (`POST /api/v1/agent/jobs/<id>/result`), validated."""

    key: str
    step_id: int
    succeeded: bool
    healthy: bool
    detail: str
    version: str | None
    output_tail: str
    health_seconds: float = 0.0  # how long the health check took (it ran after the deploy, before the report)


def parse_report(key: str, step_id: int, body: dict | None) -> Report | Answer:
    """A Report, or the 400 answer naming what is wrong with the body."""
    if not isinstance(body, dict):
        return refused(400, "invalid", "The body must be a JSON object.", field="non_field_errors")
    if body.get("status") not in ("succeeded", "failed"):
        return refused(400, "invalid", "status: succeeded or failed.", field="status")
    health = body.get("health") or {}
    if not isinstance(health, dict):
        return refused(400, "invalid", "health: an object with ok and detail.", field="health")
    seconds = health.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= 86_400:
        return refused(400, "invalid", "health.seconds: a number of seconds.", field="health.seconds")
    version = body.get("version")
    if version is not None and not isinstance(version, str):
        return refused(400, "invalid", "version: a string.", field="version")
    succeeded = body["status"] == "succeeded"
    return Report(
        key=key,
        step_id=step_id,
        succeeded=succeeded,
        healthy=succeeded and bool(health.get("ok")),
        detail=str(health.get("detail", ""))[:500],
        version=version[:100] if version else None,
        output_tail=str(body.get("output_tail", "")),
        health_seconds=float(seconds),
    )


def authenticate(keys: Iterable[str]) -> dict[str, Target]:
    """Agents' tokens -> their targets, in one query; seen agents are marked online (at most once a second)."""
    by_hash = {ApiToken.hash_key(key): key for key in keys if key}
    if not by_hash:
        return {}
    # The target's row only: joining its environment (a wide row) doubled the query's time for a wave of agents;
    # the report batch reads the applications it needs in one query (`_applications`).
    found = {by_hash[t.token_hash]: t for t in Target.objects.filter(token_hash__any_of=list(by_hash))}
    touch([t for t in found.values()])
    return found


def touch(targets: list[Target], every: timedelta = SEEN_EVERY) -> None:
    """Mark these agents seen now, skipping those written less than `every` ago.

    Not a `do_*`: like a heartbeat, it only records when an agent was last heard of (no rule, no audit, no
    transaction of its own), on every authenticated round of the hot path."""
    now = timezone.now()
    stale = [
        t
        for t in targets
        if t.last_seen is None or t.status != Target.Status.ONLINE or now - t.last_seen >= every
    ]
    if stale:
        Target.objects.filter(pk__any_of=[t.pk for t in stale]).update(
            last_seen=now, status=Target.Status.ONLINE
        )
        for target in stale:
            target.last_seen, target.status = now, Target.Status.ONLINE


def do_record_heartbeat(target: Target, version: str, job: int | None) -> None:
    """The version an agent's heartbeat says it runs, after job `job` (the newest it ran; None from older agents).

    A heartbeat may have left the agent before its last job's result: its version stands only if no later job of
    this target has been handed out since (job results set the version themselves). One conditional UPDATE.
    """
    later = RolloutStep.objects.filter(target_id=OuterRef("pk"), pk__gt=job or 0).exclude(
        status__in=(RolloutStep.Status.PENDING, RolloutStep.Status.SKIPPED)
    )
    Target.objects.filter(pk=target.pk).exclude(Exists(later)).update(version=version[:100])


@dataclass(frozen=True, slots=True)
class HealthProbe:
    """One health probe an agent sent with its heartbeat (`POST /api/v1/agent/heartbeat`, `health`), validated."""

    ok: bool
    latency_ms: float
    version: str | None  # the version the agent ran when it probed; None: the target's recorded version
    age_seconds: float = 0.0  # how long before the heartbeat it was taken


def do_record_health_probes(target: Target, probes: Iterable[HealthProbe]) -> int:
    """An agent's health probes between jobs, as `health_check_latency_ms` and `health_check_ok` samples of its
    environment, target and version — what an analysis compares for canary and baseline alike. A probe without a
    version is labelled with the target's recorded version, and dropped when there is none. Returns how many
    were stored (one query for the application, one insert)."""
    probes = list(probes)
    if not probes:
        return 0
    recorded = Target.objects.filter(pk=target.pk).values_list("version", flat=True).first() or ""
    application_id = (
        Environment.objects.filter(pk=target.environment_id).values_list("application_id", flat=True).get()
    )
    now = timezone.now()
    checks = [
        HealthCheck(
            application_id,
            target.environment_id,
            target.name,
            p.version or recorded,
            p.latency_ms / 1000.0,
            p.ok,
            now - timedelta(seconds=p.age_seconds),
        )
        for p in probes
        if p.version or recorded
    ]
    record_health_checks(checks)
    return len(checks)


def do_claim_jobs(target_ids: Iterable[int]) -> dict[int, dict]:
    """The next pending job of each target (of a running or reverting rollout), marked running: target id -> job."""
    ids = list(set(target_ids))
    if not ids:
        return {}
    active = (Rollout.Status.RUNNING, Rollout.Status.REVERTING)
    with transaction.atomic():
        first: dict[int, int] = {}
        pending = RolloutStep.objects.filter(
            status=RolloutStep.Status.PENDING, runs_on_server=False, rollout__status__in=active
        )
        if len(ids) <= FEW_TARGETS:
            pending = pending.filter(target_id__in=ids)
        # else: a broker sweep of many waiting agents reads every pending agent step (the partial index
        # `step_pending` holds only those: usually none, or one wave) rather than sending a thousand ids.
        wanted = set(ids)
        for pk, target_id in pending.order_by("index").values_list("pk", "target_id"):
            if target_id in wanted:
                first.setdefault(target_id, pk)
        if not first:
            return {}
        # Only the step's own columns: joining each row to its rollout would decode the rollout's target list and
        # progress (a thousand names each) once per step — most of a big wave's claim time.
        steps = list(
            RolloutStep.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(pk__any_of=list(first.values()), status=RolloutStep.Status.PENDING)
            .only("pk", "rollout_id", "target_id", "action", "version")
        )
        now = timezone.now()
        RolloutStep.objects.filter(pk__any_of=[s.pk for s in steps]).update(
            status=RolloutStep.Status.RUNNING, started_at=now
        )
        releases = {
            release.rollout_pk: release
            for release in Release.objects.filter(rollout__in={s.rollout_id for s in steps})
            .select_related("artifact", "previous_artifact")
            .annotate(rollout_pk=F("rollout"))
        }
        for rollout_id in releases:
            publish_changed(rollout_id)
    return {
        step.target_id: job_of(step, releases[step.rollout_id])
        for step in steps
        if step.target_id is not None
    }


def job_of(step: RolloutStep, release: Release) -> dict:
    """What an agent is told: which artifact to put in place. Never a command."""
    artifact, previous = release.artifact, release.previous_artifact
    deploying = step.action == "deploy"
    return {
        "id": step.pk,
        "action": step.action,
        "version": step.version,
        "image": artifact.image if deploying else (previous.image if previous else ""),
        "commit": artifact.commit if deploying else (previous.commit if previous else ""),
        "previous_version": previous.version if previous else None,
        "artifact_url": (artifact.metadata or {}).get("tarball_url"),
        "digest": (artifact.metadata or {}).get("digest"),
    }


def do_release_jobs(step_ids: Iterable[int]) -> int:
    """Put claimed jobs whose agent went away before hearing of them back in the queue (undoes `do_claim_jobs`),
    with a `rollout.jobs_released` audit event per release; returns how many went back.

    Rare (a long-poll dropped in the instant its job was claimed), unlike claims and reports: audited."""
    with transaction.atomic():
        steps = list(
            RolloutStep.objects.select_for_update(of=("self",))
            .filter(pk__any_of=list(step_ids), status=RolloutStep.Status.RUNNING)
            .only("pk", "rollout_id", "target_name")
            .order_by("pk")
        )
        if not steps:
            return 0
        RolloutStep.objects.filter(pk__any_of=[s.pk for s in steps]).update(
            status=RolloutStep.Status.PENDING, started_at=None
        )
        by_rollout: dict[int, list[RolloutStep]] = defaultdict(list)
        for step in steps:
            by_rollout[step.rollout_id].append(step)
        for release in (
            Release.objects.filter(rollout__in=list(by_rollout))
            .select_related("application")
            .annotate(rollout_pk=F("rollout"))
        ):
            released = by_rollout[release.rollout_pk]
            audit.record(
                Actor.system(),
                "rollout.jobs_released",
                release,
                application=release.application,
                after={"jobs": [s.pk for s in released], "targets": [s.target_name for s in released]},
                note="claimed for agents that were gone before hearing of them: back in the queue",
            )
    return len(steps)


def health_steps(checked: list[tuple[RolloutStep, float]], now) -> list[RolloutStep]:
    """A `health` step after each deploy or revert whose health check ran, numbered after the rollout's last step.

    `checked` pairs a finished step (its `health` set) with how long the check took. Call with the rollouts' rows
    locked: step numbers are taken as the highest one + 1.
    """
    if not checked:
        return []
    top = dict(
        RolloutStep.objects.filter(rollout_id__in={s.rollout_id for s, _ in checked})
        .order_by()
        .values("rollout_id")
        .annotate(top=Max("index"))
        .values_list("rollout_id", "top")
    )
    rows = []
    for step, seconds in checked:
        top[step.rollout_id] = top.get(step.rollout_id, -1) + 1
        ok = bool((step.health or {}).get("ok"))
        rows.append(
            RolloutStep(
                rollout_id=step.rollout_id,
                index=top[step.rollout_id],
                wave=step.wave,
                target_id=step.target_id,
                target_name=step.target_name,
                action="health",
                version=step.version,
                health=step.health,
                status=RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED,
                output=str((step.health or {}).get("detail", "")),
                started_at=now - timedelta(seconds=seconds),
                finished_at=now,
            )
        )
        step.finished_at = now - timedelta(seconds=seconds)  # the deploy ended when its health check began
    return rows


def do_apply_reports(reports: list[Report], targets: dict[str, Target] | None = None) -> list[Answer]:
    """Store agents' reports in one transaction and answer each, in order (200, or 401/403/404/409 naming why).

    The reconciler is woken when a report is unhealthy (a revert starts at once), comes from a reverting rollout
    (the host is put back as soon as it is free) or settles the last open step of its rollout. The rollouts' rows
    are locked first, as the reconciler does, so of two reports finishing a wave at the same moment the later one
    always sees the other and wakes it.
    """
    if targets is None:
        targets = authenticate(r.key for r in reports)
    answers: list[Answer] = [(500, {})] * len(reports)
    with transaction.atomic():
        step_ids = {r.step_id for r in reports if r.key in targets}  # an unknown token's report reads nothing
        rollout_ids = sorted(
            set(RolloutStep.objects.filter(pk__any_of=step_ids).values_list("rollout_id", flat=True))
        )
        reverting = {
            pk
            for pk, status in Rollout.objects.select_for_update()
            .filter(pk__in=rollout_ids)
            .order_by("pk")
            .values_list("pk", "status")
            if status == Rollout.Status.REVERTING
        }
        steps = {
            s.pk: s for s in RolloutStep.objects.select_for_update(of=("self",)).filter(pk__any_of=step_ids)
        }
        now = timezone.now()
        changed: list[RolloutStep] = []
        checked: list[tuple[RolloutStep, float]] = []
        samples: list[tuple[int, RolloutStep, Report]] = []  # health checks: environment id, step, report
        versions: dict[str, list[int]] = defaultdict(list)
        wake: set[int] = set()
        for n, report in enumerate(reports):
            target, step = targets.get(report.key), steps.get(report.step_id)
            if target is None:
                answers[n] = UNKNOWN_AGENT
            elif step is None:
                answers[n] = job_not_found(report.step_id)
            elif step.target_id != target.pk:
                answers[n] = refused(403, "other_target", f"Job #{report.step_id} belongs to another target.")
            elif step.status not in OPEN:
                # Too late to count (the step was given up, e.g. its agent was offline), but the host did run it:
                # the record says what it runs now, so no page claims a version the host does not run.
                given_up = (
                    step.status == RolloutStep.Status.FAILED and step not in changed
                )  # not this batch's
                late = report.version if report.succeeded and given_up else None
                if late:
                    do_record_heartbeat(target, late, step.pk)
                    note = f"\n[slipway] late result after the step {step.status}: the host runs {late}"
                    RolloutStep.objects.filter(pk=step.pk).update(
                        output=(step.output + note)[-RolloutStep.OUTPUT_LIMIT :]
                    )
                    wake.add(step.rollout_id)
                answers[n] = refused(
                    409,
                    "job_finished",
                    f"Job #{report.step_id} is {step.status} already.",
                    **({"recorded_version": late} if late else {}),
                )
            else:
                step.status = RolloutStep.Status.SUCCEEDED if report.succeeded else RolloutStep.Status.FAILED
                step.finished_at = now
                step.health = {"ok": report.healthy, "detail": report.detail}
                if report.output_tail and report.output_tail not in step.output:
                    step.output = (step.output + report.output_tail)[-RolloutStep.OUTPUT_LIMIT :]
                changed.append(step)
                if report.succeeded:
                    checked.append((step, report.health_seconds))
                    samples.append((target.environment_id, step, report))
                if report.succeeded and report.version:
                    versions[report.version].append(target.pk)
                if not report.healthy or step.rollout_id in reverting:
                    wake.add(step.rollout_id)  # a revert starts (or goes on) at once
                answers[n] = (200, {"ok": True})
        checks = health_steps(checked, now)
        update_rows(changed, ("status", "finished_at", "health", "output"))
        insert_rows(checks)
        record_health_checks(
            _health_checks(samples, now)
        )  # health_check_latency_ms and _ok samples, one insert
        for version, ids in versions.items():
            Target.objects.filter(pk__any_of=ids).update(version=version)
        touched = {s.rollout_id for s in changed}
        still_open = set(
            RolloutStep.objects.filter(rollout_id__in=touched, status__in=OPEN)
            .order_by()
            .values_list("rollout_id", flat=True)
            .distinct()
        )
        for rollout_id in sorted(wake | (touched - still_open)):
            enqueue_advance(rollout_id)
        for rollout_id in touched:
            publish_changed(rollout_id)
    return answers


def _health_checks(samples: list[tuple[int, RolloutStep, Report]], now) -> list[HealthCheck]:
    """The health checks reported with these steps (environment id, step, report), with their environments'
    applications read in one query."""
    if not samples:
        return []
    application_of = dict(
        Environment.objects.filter(pk__in={environment_id for environment_id, _, _ in samples}).values_list(
            "pk", "application_id"
        )
    )
    return [
        HealthCheck(
            application_of[environment_id],
            environment_id,
            step.target_name,
            step.version,
            report.health_seconds,
            report.healthy,
            now,
        )
        for environment_id, step, report in samples
    ]


def do_store_reports(reports: list[Report], targets: dict[str, Target]) -> list[Answer]:
    """`do_apply_reports` for a batch; if the batch fails, each report on its own, so one bad report fails no other.

    A report the database refuses as data (a number out of range, a NUL) is answered 400, another failure 503
    (its agent retries); the rest are stored and answered as usual.
    """
    try:
        return do_apply_reports(reports, targets)
    except Exception as error:
        reconnect_if_broken()
        if len(reports) == 1:
            return [_failed(reports[0], error)]
        log.warning("a batch of %s reports failed; storing them one by one", len(reports), exc_info=True)
    answers = []
    for report in reports:
        try:
            answers.extend(do_apply_reports([report], targets))
        except Exception as error:
            answers.append(_failed(report, error))
            reconnect_if_broken()
    return answers


def _failed(report: Report, error: Exception) -> Answer:
    """The answer to a report whose own transaction failed."""
    if isinstance(error, DataError | UnicodeError):
        log.warning("report of job #%s refused by the database: %s", report.step_id, error)
        return refused(
            400,
            "unstorable_report",
            f"The report of job #{report.step_id} holds a value that cannot be stored.",
        )
    log.error("report of job #%s could not be stored", report.step_id, exc_info=error)
    return BUSY


def reconnect_if_broken() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()  # the next transaction opens a fresh one


def do_append_output(target: Target, step_id: int, chunk: str) -> Answer:
    """An agent streams output of its running job: appended (the newest `OUTPUT_LIMIT` characters kept).

    Telemetry, like a heartbeat: the chunk is the host's log, kept in the step's output; no audit event."""
    with transaction.atomic():
        step = RolloutStep.objects.select_for_update(of=("self",)).filter(pk=step_id).first()
        if step is None:
            return job_not_found(step_id)
        if step.target_id != target.pk:
            return refused(403, "other_target", f"Job #{step_id} belongs to another target.")
        step.output = (step.output + chunk)[-RolloutStep.OUTPUT_LIMIT :]
        step.save(update_fields=["output"])
        publish_changed(step.rollout_id)
    return 200, {"ok": True}


def do_report_webhook_step(step: RolloutStep, *, succeeded: bool, health: dict, output: str) -> Answer:
    """The webhook driver's receiver reports the job it took (its signature checked by the caller)."""
    with transaction.atomic():
        Rollout.objects.select_for_update().filter(
            pk=step.rollout_id
        ).exists()  # as the reconciler: rollout first
        step = (
            RolloutStep.objects.select_for_update(of=("self",))
            .select_related("rollout__release__application")
            .get(pk=step.pk)
        )
        if step.status != RolloutStep.Status.RUNNING:
            return refused(409, "job_finished", f"Job #{step.pk} is {step.status}.")
        now = timezone.now()
        step.status = RolloutStep.Status.SUCCEEDED if succeeded else RolloutStep.Status.FAILED
        step.finished_at = now
        step.health = {
            "ok": bool(health.get("ok")) and succeeded,
            "detail": str(health.get("detail", ""))[:500],
        }
        step.output = (step.output + output)[-RolloutStep.OUTPUT_LIMIT :]
        checks = health_steps([(step, 0.0)], now) if succeeded else []
        step.save(update_fields=["status", "finished_at", "health", "output"])
        RolloutStep.objects.bulk_create(checks)
        if succeeded and step.target_id:
            Target.objects.filter(pk=step.target_id).update(version=step.version)
        release = step.rollout.release
        audit.record(
            Actor.system(),
            "rollout.step_reported",
            release,
            application=release.application,
            after={"step": step.pk, "target": step.target_name, "status": step.status},
            note="reported by the webhook receiver",
        )
        enqueue_advance(step.rollout_id)
        publish_changed(step.rollout_id)
    return 200, {"ok": True}
