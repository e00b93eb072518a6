"""Reads for the flag panel, in a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from flags.models import EvaluationCount, Flag, FlagEvent, FlagState

STALE_DAYS = 14

# The history kinds that change a flag's state in an environment: "who and when" beside a switch.
STATE_KINDS = ("state_changed", "killed", "reverted", "change_applied", "schedule_applied")


def states_with_author(states: QuerySet[FlagState]) -> QuerySet[FlagState]:
    """Each state with who changed it last and when (`changed_by`, `changed_at`), in the same query."""
    last = FlagEvent.objects.filter(
        flag=OuterRef("flag_id"), environment=OuterRef("environment_id"), kind__in=STATE_KINDS
    ).order_by("-created_at", "-id")
    return states.annotate(
        changed_by=Subquery(last.values("actor_label")[:1]),
        changed_at=Subquery(last.values("created_at")[:1]),
    )


def flag_list(
    application, *, search: str = "", tag: str = "", stale: bool = False, flag_ids=None
) -> list[Flag]:
    flags: QuerySet[Flag] = Flag.objects.filter(application=application, archived_at__isnull=True)
    if flag_ids is not None:
        flags = flags.filter(pk__in=flag_ids)
    if search:
        flags = flags.filter(
            Q(key__icontains=search) | Q(name__icontains=search) | Q(owner__icontains=search)
        )
    flags = list(flags.order_by("key"))
    if tag:
        flags = [f for f in flags if tag in f.tags]
    states = {}
    for state in states_with_author(FlagState.objects.filter(flag__in=flags)):
        states[(state.flag_id, state.environment_id)] = state
    cutoff = timezone.now() - timedelta(days=STALE_DAYS)
    counts = EvaluationCount.objects.filter(environment__application=application)
    last_seen = dict(counts.values_list("flag_key").annotate(last=Max("hour")))
    recent_variants = dict(
        counts.filter(hour__gte=cutoff).values_list("flag_key").annotate(n=Count("variant", distinct=True))
    )
    for flag in flags:
        flag.state_by_env = {
            env_id: state for (flag_id, env_id), state in states.items() if flag_id == flag.pk
        }
        flag.last_evaluated = last_seen.get(flag.key)
        flag.stale_reason = None
        if flag.created_at < cutoff:
            if flag.last_evaluated is None or flag.last_evaluated < cutoff:
                flag.stale_reason = f"not evaluated for {STALE_DAYS} days"
            elif recent_variants.get(flag.key) == 1:
                flag.stale_reason = f"served one variant to everyone for {STALE_DAYS} days"
        flag.is_stale = flag.stale_reason is not None
    if stale:
        flags = [f for f in flags if f.is_stale]
    return flags


def evaluation_series(flag: Flag, environment, hours: int = 24) -> dict:
    """Counts per variant per hour over the last `hours`, for the panel's small chart; `peak` is the busiest hour's
    total (the chart stacks the variants)."""
    since = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = EvaluationCount.objects.filter(environment=environment, flag_key=flag.key, hour__gte=since)
    counted: dict[str, list[int]] = {}
    for row in rows:
        index = int((row.hour - since).total_seconds() // 3600)
        counted.setdefault(row.variant, [0] * hours)[index] += row.count
    # The flag's variants in their own order, so a variant has the same colour in every environment's chart.
    order = {name: position for position, name in enumerate(flag.variants)}
    series = dict(sorted(counted.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    peak = max((sum(hour) for hour in zip(*series.values(), strict=True)), default=0)
    return {"series": series, "peak": peak, "hours": hours}
