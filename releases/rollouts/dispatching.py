"""Recording the steps agents (or the worker) run next: a wave's deploys or reverts in one statement, a gate's step."""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from config.effects import after_commit
from environments.models import Target
from releases.models import Rollout, RolloutStep
from releases.rollouts.common import next_index, notify_agents


def on_server(rollout: Rollout) -> bool:
    """Does Slipway's worker perform this environment's deploys (the command and webhook drivers)?"""
    return rollout.release.environment.driver in ("command", "webhook")


def dispatch_steps(rollout: Rollout, kind: str, version: str, waves: dict[str, int | None]) -> None:
    """Steps for agents (or the worker) to run: target name -> its wave."""
    by_worker = on_server(rollout)
    names = sorted(waves)
    if connection.vendor == "postgresql":
        _insert_steps(rollout, kind, version, names, [waves[name] for name in names], by_worker)
    else:
        targets = dict(
            Target.objects.filter(environment=rollout.release.environment, name__in=names).values_list(
                "name", "pk"
            )
        )
        first = next_index(rollout)
        # One insert for the whole wave: a thousand-target rollout must not pay a query per step.
        RolloutStep.objects.bulk_create(
            [
                RolloutStep(
                    rollout=rollout,
                    index=first + offset,
                    wave=waves[name],
                    target_id=targets.get(name),
                    target_name=name,
                    action=kind,
                    version=version,
                    runs_on_server=by_worker,
                )
                for offset, name in enumerate(names)
            ]
        )
    if not by_worker:
        after_commit(notify_agents)


# Every column of a step, in the order `_insert_steps` writes them (a test compares this with the model's fields).
INSERTED_COLUMNS = (
    "rollout",
    "index",
    "wave",
    "target",
    "target_name",
    "action",
    "runs_on_server",
    "lease_expires_at",
    "attempts",
    "version",
    "status",
    "health",
    "output",
    "started_at",
    "finished_at",
)


def _insert_steps(
    rollout: Rollout, kind: str, version: str, names: list[str], waves: list[int | None], on_server: bool
) -> None:
    """PostgreSQL: the wave's steps in one statement that numbers them after the rollout's last step and finds each
    target's row itself (the ORM's way — read the targets, read the last number, build a model per step, insert —
    took 3 queries and, for a wave of 489, some 50 ms of Python on a busy server). The same rows as
    `bulk_create`: every column the model gives a default is written here with it."""
    step, target = RolloutStep._meta, Target._meta
    quote = connection.ops.quote_name
    column = {f.name: quote(str(f.column)) for f in step.concrete_fields}
    target_column = {f.name: quote(str(f.column)) for f in target.concrete_fields}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(step.db_table)} ("
            + ", ".join(column[name] for name in INSERTED_COLUMNS)
            + f") SELECT %s, top.n + w.ord, w.wave, t.{target_column['id']}, w.name, %s, %s, NULL, 0, %s, %s,"
            f" NULL, '', NULL, NULL"
            f" FROM unnest(%s::text[], %s::integer[]) WITH ORDINALITY AS w(name, wave, ord)"
            f" CROSS JOIN (SELECT COALESCE(MAX({column['index']}), -1) AS n FROM {quote(step.db_table)}"
            f" WHERE {column['rollout']} = %s) AS top"
            f" LEFT JOIN {quote(target.db_table)} t ON t.{target_column['environment']} = %s"
            f" AND t.{target_column['name']} = w.name"
            " ORDER BY w.ord",
            [
                rollout.pk,
                kind,
                on_server,
                version,
                RolloutStep.Status.PENDING.value,
                names,
                waves,
                rollout.pk,
                rollout.release.environment_id,
            ],
        )


def server_step(rollout: Rollout, *, action: str, wave: int | None) -> RolloutStep:
    """A gate for the worker to run (run_server_steps)."""
    return RolloutStep.objects.create(
        rollout=rollout,
        index=next_index(rollout),
        wave=wave,
        action=action,
        version=rollout.release.artifact.version,
        runs_on_server=True,
    )


def gate_step(rollout: Rollout, wave: int, action: str, *, ok: bool, output: str) -> None:
    index = next_index(rollout)
    now = timezone.now()
    RolloutStep.objects.create(
        rollout=rollout,
        index=index,
        wave=wave,
        action=action,
        started_at=now,
        finished_at=now,
        output=output[: RolloutStep.OUTPUT_LIMIT],
        status=RolloutStep.Status.SUCCEEDED if ok else RolloutStep.Status.FAILED,
    )
