"""Analysis templates and runs, short of writing: checking a template, fetching its metrics, judging them.

`parse_template` checks a template when it is saved and answers with the field (`metrics[2].success_condition`)
and the parser's position. `fetch_all` reads every metric for canary and baseline through its source (Prometheus
queries in parallel threads, each bounded by the source's timeout; pushed samples from the database) and never
raises. `judge` is pure: it turns what was fetched into a verdict with reasons, calling `monitoring.judge`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from django.db.models.fields.json import KeyTransform

from config.errors import Invalid
from monitoring import prometheus
from monitoring.expressions import ExpressionInvalid
from monitoring.judge import (
    CheckPhase,
    Direction,
    JudgeConfig,
    Measurement,
    MetricData,
    MetricSpec,
    ThresholdCheck,
    assess_checks,
    judge_canary,
    validate_check,
    validate_spec,
)
from monitoring.models import AnalysisRun, MetricSource, Sample
from monitoring.prometheus import Fetched, PrometheusConfig, QueryInvalid

MAX_METRICS = 50
MAX_QUERY = 4000
MAX_CONDITION = 1000
MAX_WINDOW_SECONDS = 24 * 3600
MAX_PUSHED_ROWS = 100_000
METRIC_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
RESERVED_NAMES = {"result", "and", "or", "not", "true", "false"}

METRIC_DEFAULTS: dict[str, Any] = {
    "direction": "either",
    "critical": False,
    "weight": 1.0,
    "unit": "",
    "allowed_increase": 1.0,
    "allowed_decrease": 1.0,
    "success_condition": "",
    "failure_condition": "",
    "failure_limit": 0,
    "inconclusive_limit": 0,
    "consecutive_error_limit": 4,
}
METRIC_FIELDS = ("name", "source", "query", *METRIC_DEFAULTS)
TEMPLATE_DEFAULTS: dict[str, Any] = {
    "description": "",
    "interval_seconds": 60,
    "count": 10,
    "pass_threshold": 95.0,
    "marginal_threshold": 75.0,
}
TEMPLATE_FIELDS = ("name", *TEMPLATE_DEFAULTS, "metrics")


# =========================================================================== checking a template


def _number(value: Any, field: str, *, low: float, high: float, integer: bool = False) -> float | int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and not float(value).is_integer())
    ):
        raise Invalid(f"{'A whole number' if integer else 'A number'} from {low:g} to {high:g}.", field=field)
    if not (math.isfinite(value) and low <= value <= high):
        raise Invalid(f"From {low:g} to {high:g}, not {value!r}.", field=field)
    return int(value) if integer else float(value)


def _text(value: Any, field: str, *, limit: int, blank: bool = True) -> str:
    if not isinstance(value, str):
        raise Invalid("A string.", field=field)
    if "\x00" in value:
        raise Invalid("No NUL characters.", field=field)
    if len(value) > limit:
        raise Invalid(f"At most {limit:,} characters ({len(value):,} given).", field=field)
    if not blank and not value.strip():
        raise Invalid("Required.", field=field)
    return value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid("true or false.", field=field)
    return value


def parse_slug(value: Any, field: str = "name") -> str:
    text = _text(value, field, limit=63, blank=False)
    if not SLUG.fullmatch(text):
        raise Invalid(
            "1–63 lowercase letters, digits, dashes and underscores, starting with a letter or digit.",
            field=field,
        )
    return text


def parse_template(
    data: Any, *, sources: Mapping[str, MetricSource], current: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A template's fields, complete and checked; `current` holds the saved ones a PATCH leaves alone.

    Raises Invalid naming the field (`interval_seconds`, `metrics[2].success_condition`); a condition's error
    carries the parser's position (1-based, as in the message).
    """
    if not isinstance(data, dict):
        raise Invalid("A JSON object.", field="non_field_errors")
    unknown = sorted(set(data) - set(TEMPLATE_FIELDS))
    if unknown:
        raise Invalid(f"Unknown field; the fields are {', '.join(TEMPLATE_FIELDS)}.", field=unknown[0])
    merged = {**TEMPLATE_DEFAULTS, **(current or {}), **data}
    if "name" not in merged:
        raise Invalid("Required.", field="name")
    if "metrics" not in merged:
        raise Invalid("Required: at least one metric.", field="metrics")
    out: dict[str, Any] = {
        "name": parse_slug(merged["name"]),
        "description": _text(merged["description"], "description", limit=2000),
        "interval_seconds": _number(
            merged["interval_seconds"], "interval_seconds", low=1, high=3600, integer=True
        ),
        "count": _number(merged["count"], "count", low=1, high=1000, integer=True),
        "pass_threshold": _number(merged["pass_threshold"], "pass_threshold", low=0, high=100),
        "marginal_threshold": _number(merged["marginal_threshold"], "marginal_threshold", low=0, high=100),
    }
    if out["marginal_threshold"] > out["pass_threshold"]:
        raise Invalid(f"At most pass_threshold ({out['pass_threshold']:g}).", field="marginal_threshold")
    if out["interval_seconds"] * out["count"] > MAX_WINDOW_SECONDS:
        raise Invalid("count × interval_seconds is at most 24 hours.", field="count")
    metrics = merged["metrics"]
    if not isinstance(metrics, list) or not metrics:
        raise Invalid("A list of at least one metric.", field="metrics")
    if len(metrics) > MAX_METRICS:
        raise Invalid(f"At most {MAX_METRICS} metrics ({len(metrics)} given).", field="metrics")
    seen: set[str] = set()
    out["metrics"] = []
    for index, metric in enumerate(metrics):
        parsed = parse_metric(metric, f"metrics[{index}]", sources=sources)
        if parsed["name"] in seen:
            raise Invalid(f"Another metric is named {parsed['name']!r}.", field=f"metrics[{index}].name")
        seen.add(parsed["name"])
        out["metrics"].append(parsed)
    return out


def parse_metric(data: Any, at: str, *, sources: Mapping[str, MetricSource]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise Invalid("A JSON object.", field=at)
    unknown = sorted(set(data) - set(METRIC_FIELDS))
    if unknown:
        raise Invalid(f"Unknown field; a metric has {', '.join(METRIC_FIELDS)}.", field=f"{at}.{unknown[0]}")
    for required in ("name", "source", "query"):
        if required not in data:
            raise Invalid("Required.", field=f"{at}.{required}")
    m = {**METRIC_DEFAULTS, **data}
    name = _text(m["name"], f"{at}.name", limit=63, blank=False)
    if not METRIC_NAME.fullmatch(name) or name in RESERVED_NAMES:
        raise Invalid(
            "1–63 letters, digits and underscores, not starting with a digit (conditions use it as a "
            f"name; not one of {', '.join(sorted(RESERVED_NAMES))}).",
            field=f"{at}.name",
        )
    source_name = _text(m["source"], f"{at}.source", limit=63, blank=False)
    source = sources.get(source_name)
    if source is None:
        known = ", ".join(sorted(sources)) or "none yet: create one under metric-sources/"
        raise Invalid(
            f"No metric source {source_name!r}; this application has: {known}.", field=f"{at}.source"
        )
    query = _text(m["query"], f"{at}.query", limit=MAX_QUERY, blank=False)
    try:
        if source.kind == MetricSource.Kind.PROMETHEUS:
            prometheus.check_query_template(query)
        else:
            parse_selector(query)
    except QueryInvalid as error:
        raise Invalid(str(error), field=f"{at}.query", extra={"position": error.position + 1}) from None
    direction = m["direction"]
    if direction not in set(Direction):
        raise Invalid(f"One of {', '.join(Direction)}.", field=f"{at}.direction")
    out = {
        "name": name,
        "source": source_name,
        "query": query,
        "direction": direction,
        "critical": _bool(m["critical"], f"{at}.critical"),
        "weight": _number(m["weight"], f"{at}.weight", low=0, high=1000),
        "unit": _text(m["unit"], f"{at}.unit", limit=20),
        "allowed_increase": _number(m["allowed_increase"], f"{at}.allowed_increase", low=0, high=1000),
        "allowed_decrease": _number(m["allowed_decrease"], f"{at}.allowed_decrease", low=0, high=1000),
        "success_condition": _text(m["success_condition"], f"{at}.success_condition", limit=MAX_CONDITION),
        "failure_condition": _text(m["failure_condition"], f"{at}.failure_condition", limit=MAX_CONDITION),
        "failure_limit": _number(m["failure_limit"], f"{at}.failure_limit", low=-1, high=1000, integer=True),
        "inconclusive_limit": _number(
            m["inconclusive_limit"], f"{at}.inconclusive_limit", low=0, high=1000, integer=True
        ),
        "consecutive_error_limit": _number(
            m["consecutive_error_limit"], f"{at}.consecutive_error_limit", low=0, high=1000, integer=True
        ),
    }
    validate_spec(metric_spec(out))  # the checks above cover it; a mismatch is a bug, not a 400
    if has_check(out):
        try:
            names = validate_check(threshold_check(out, count=1, interval_seconds=60))
        except ExpressionInvalid as error:
            field = f"{at}.{error.field}" if error.field else f"{at}.success_condition"
            raise Invalid(
                str(error).removeprefix(f"{error.field}: "),
                field=field,
                extra={"position": error.position + 1},
            ) from None
        unknown_names = sorted(names - {name, "result"})
        if unknown_names:
            condition = (
                "failure_condition"
                if any(n in out["failure_condition"] for n in unknown_names)
                else "success_condition"
            )
            raise Invalid(
                f"Reads {', '.join(map(repr, unknown_names))}, which this metric does not measure: "
                f"a condition reads {name!r} (the value) or result[i] (each series' value).",
                field=f"{at}.{condition}",
            )
    return out


def has_check(metric: Mapping[str, Any]) -> bool:
    return bool(metric["success_condition"] or metric["failure_condition"])


def metric_spec(metric: Mapping[str, Any]) -> MetricSpec:
    return MetricSpec(
        name=metric["name"],
        direction=Direction(metric["direction"]),
        critical=metric["critical"],
        weight=metric["weight"],
        unit=metric["unit"],
        allowed_increase=metric["allowed_increase"],
        allowed_decrease=metric["allowed_decrease"],
    )


def threshold_check(metric: Mapping[str, Any], *, count: int, interval_seconds: float) -> ThresholdCheck:
    return ThresholdCheck(
        name=metric["name"],
        success_condition=metric["success_condition"],
        failure_condition=metric["failure_condition"],
        count=count,
        interval_seconds=interval_seconds,
        failure_limit=metric["failure_limit"],
        inconclusive_limit=metric["inconclusive_limit"],
        consecutive_error_limit=metric["consecutive_error_limit"],
    )


# =========================================================================== pushed samples

_SELECTOR = re.compile(r"\s*(?P<name>[A-Za-z_][A-Za-z0-9_:.-]{0,99})\s*(?:\{(?P<labels>.*)\})?\s*", re.DOTALL)
_MATCHER = re.compile(
    r'\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*(?:,|$)', re.DOTALL
)
_RESERVED_LABELS = {"version", "environment", "target"}


@dataclass(frozen=True, slots=True)
class Selector:
    """A pushed-samples query: a sample name and label values to match (`http_errors{route="/cart"}`)."""

    name: str
    labels: tuple[tuple[str, str], ...] = ()


def parse_selector(text: str) -> Selector:
    """`name` or `name{label="value", …}`; version, environment and target come from the run, not the query."""
    if "{{" in text:
        raise QueryInvalid(
            "pushed samples are matched on the run's version, environment and targets by "
            "themselves: no placeholders",
            position=text.index("{{"),
        )
    match = _SELECTOR.fullmatch(text)
    if match is None:
        raise QueryInvalid('a sample name, optionally with labels: http_errors{route="/cart"}', position=0)
    labels = []
    body = match.group("labels")
    if body is not None and body.strip():
        offset = match.start("labels")
        position = 0
        while position < len(body):
            matcher = _MATCHER.match(body, position)
            if matcher is None:
                raise QueryInvalid(
                    'labels are written label="value", separated by commas', position=offset + position
                )
            key = matcher.group("key")
            if key in _RESERVED_LABELS:
                raise QueryInvalid(
                    f"{key!r} is set by the run, not the query", position=offset + matcher.start("key")
                )
            value = re.sub(r"\\(.)", r"\1", matcher.group("value"), flags=re.DOTALL)
            labels.append((key, value))
            position = matcher.end()
    return Selector(match.group("name"), tuple(labels))


def read_pushed(
    selector: Selector,
    *,
    application_id: int,
    environment_id: int,
    version: str,
    targets: Sequence[str],
    start: datetime,
    end: datetime,
) -> Fetched:
    """Pushed samples of one version in the window (and targets, when named), oldest first."""
    shown = selector.name + (
        "{" + ", ".join(f'{k}="{v}"' for k, v in selector.labels) + "}" if selector.labels else ""
    )
    where = f" for version {version!r}" + (f" on {', '.join(targets)}" if targets else "")
    samples = Sample.objects.filter(
        application_id=application_id,
        environment_id=environment_id,
        name=selector.name,
        version=version,
        timestamp__gte=start,
        timestamp__lte=end,
    )
    if targets:
        samples = samples.filter(target__in=list(targets))
    for i, (key, value) in enumerate(selector.labels):
        # A key transform, not labels__contains: SQLite (the embedded default) has no JSON containment.
        samples = samples.alias(**{f"label_{i}": KeyTransform(key, "labels")}).filter(**{f"label_{i}": value})
    rows = list(samples.order_by("timestamp", "id").values_list("timestamp", "value")[: MAX_PUSHED_ROWS + 1])
    query = f"{shown}{where}"
    if not rows:
        return Fetched(query=query, missing=f"pushed samples: none named {shown}{where} in the window")
    if len(rows) > MAX_PUSHED_ROWS:
        return Fetched(query=query, missing=f"pushed samples: more than {MAX_PUSHED_ROWS:,} in the window")
    points = tuple((t.timestamp(), v) for t, v in rows if math.isfinite(v))
    return Fetched(query=query, points=points, series=1, dropped=len(rows) - len(points))


# =========================================================================== fetching


@dataclass(frozen=True, slots=True, kw_only=True)
class Side:
    version: str
    targets: tuple[str, ...] = ()
    # A window of its own (the previous version before the rollout); None: the run's window.
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    application_id: int
    environment_id: int
    environment: str
    start: datetime
    end: datetime
    step: float


def source_config(source: MetricSource) -> PrometheusConfig:
    return PrometheusConfig(
        url=source.url,
        timeout=source.timeout_seconds,
        bearer_token=source.secret if source.auth == MetricSource.Auth.BEARER else "",
        username=source.username if source.auth == MetricSource.Auth.BASIC else "",
        password=source.secret if source.auth == MetricSource.Auth.BASIC else "",
    )


def fetch(source: MetricSource, metric: Mapping[str, Any], side: Side, window: Window) -> Fetched:
    """One metric for one side, through its source; never raises."""
    start, end = side.start or window.start, side.end or window.end
    try:
        if source.kind == MetricSource.Kind.PUSHED:
            return read_pushed(
                parse_selector(metric["query"]),
                application_id=window.application_id,
                environment_id=window.environment_id,
                version=side.version,
                targets=side.targets,
                start=start,
                end=end,
            )
        promql = prometheus.render_query(
            metric["query"], version=side.version, environment=window.environment, targets=side.targets
        )
    except QueryInvalid as error:  # a template saved before a rule existed
        return Fetched(query=metric["query"], missing=f"the query cannot be used: {error}")
    return prometheus.query_range(source_config(source), promql, start=start, end=end, step=window.step)


def fetch_all(
    metrics: Sequence[Mapping[str, Any]],
    sources: Mapping[str, MetricSource],
    sides: Mapping[str, Side],
    window: Window,
    *,
    workers: int = 8,
) -> list[dict[str, Fetched]]:
    """Each metric for each side: Prometheus in parallel threads (each bounded by its source's timeout), pushed
    samples here (the database connection is this thread's)."""
    jobs = [(i, name, side) for i in range(len(metrics)) for name, side in sides.items()]
    out: list[dict[str, Fetched]] = [{} for _ in metrics]
    remote = [
        (i, n, s) for i, n, s in jobs if sources[metrics[i]["source"]].kind == MetricSource.Kind.PROMETHEUS
    ]
    if remote:
        with ThreadPoolExecutor(max_workers=min(workers, len(remote)), thread_name_prefix="analysis") as pool:
            futures = {
                (i, n): pool.submit(fetch, sources[metrics[i]["source"]], metrics[i], s, window)
                for i, n, s in remote
            }
            for (i, n), future in futures.items():
                out[i][n] = future.result()
    for i, name, side in jobs:
        if name not in out[i]:
            out[i][name] = fetch(sources[metrics[i]["source"]], metrics[i], side, window)
    return out


# =========================================================================== judging

_RANK = {
    AnalysisRun.Verdict.PASS: 0,
    AnalysisRun.Verdict.MARGINAL: 1,
    AnalysisRun.Verdict.INCONCLUSIVE: 2,
    AnalysisRun.Verdict.FAIL: 3,
}
_CHECK_VERDICT = {
    CheckPhase.SUCCESSFUL: AnalysisRun.Verdict.PASS,
    CheckPhase.INCONCLUSIVE: AnalysisRun.Verdict.INCONCLUSIVE,
    CheckPhase.ERROR: AnalysisRun.Verdict.FAIL,
    CheckPhase.FAILED: AnalysisRun.Verdict.FAIL,
    CheckPhase.RUNNING: AnalysisRun.Verdict.INCONCLUSIVE,
    CheckPhase.PENDING: AnalysisRun.Verdict.INCONCLUSIVE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricOutcome:
    name: str
    source: str
    source_kind: str
    outcome: str  # pass, high, low, nodata, nodata_fail (the judge's), missing (the source's), ignored
    check_phase: str
    reason: str
    canary: Fetched
    baseline: Fetched | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    verdict: str
    score: float | None
    status: str
    reasons: tuple[str, ...]
    metrics: tuple[MetricOutcome, ...]


def _measurements(fetched: Fetched, name: str, count: int) -> list[Measurement]:
    """One measurement per timestamp (the last `count`): the metric's value and `result`, each series' value."""
    by_time: dict[float, list[float]] = {}
    for at, value in fetched.points:
        by_time.setdefault(at, []).append(value)
    times = sorted(by_time)[-count:]
    return [Measurement(values={name: by_time[t][0], "result": by_time[t]}) for t in times]


def judge(
    template: Mapping[str, Any],
    sources: Mapping[str, MetricSource],
    fetched: Sequence[Mapping[str, Fetched]],
    *,
    compare: bool,
) -> Outcome:
    """The run's verdict: the worst of the canary judge's grade, the threshold checks' phase and each source's
    rule for missing data. Pure apart from reading the sources' fields."""
    metrics = template["metrics"]
    contributions: list[tuple[str, str]] = []  # (verdict, why) for the summary
    judged: list[MetricData] = []
    checks: list[ThresholdCheck] = []
    measurements: dict[str, list[Measurement]] = {}
    missing_reasons: dict[str, tuple[str, str]] = {}
    for metric, got in zip(metrics, fetched, strict=True):
        source = sources[metric["source"]]
        needed = [got["canary"]] + ([got["baseline"]] if compare else [])
        gaps = [f.missing for f in needed if f.missing]
        if gaps:
            rule = source.on_missing_data
            sides = ["canary"] + (["baseline"] if compare else [])
            said = "; ".join(
                f"{side}: {f.missing}" for side, f in zip(sides, needed, strict=True) if f.missing
            )
            verdict = {"fail": "fail", "inconclusive": "inconclusive", "pass": "ignored"}[rule]
            reason = (
                f"{metric['name']}: no data ({said}) → {verdict} (the source's on_missing_data is {rule})"
            )
            missing_reasons[metric["name"]] = ("ignored" if rule == "pass" else "missing", reason)
            if rule != "pass":
                contributions.append((rule, f"{metric['name']} has no data"))
            continue
        if compare:
            judged.append(
                MetricData(
                    spec=metric_spec(metric), canary=got["canary"].values, baseline=got["baseline"].values
                )
            )
        if has_check(metric):
            checks.append(
                threshold_check(
                    metric, count=template["count"], interval_seconds=template["interval_seconds"]
                )
            )
            measurements[metric["name"]] = _measurements(got["canary"], metric["name"], template["count"])

    reasons: list[str] = []
    score = None
    by_metric: dict[str, list[str]] = {}
    grades: dict[str, str] = {}
    if judged:
        judgement = judge_canary(
            judged,
            JudgeConfig(
                pass_threshold=template["pass_threshold"], marginal_threshold=template["marginal_threshold"]
            ),
        )
        score = judgement.score
        contributions.append((judgement.grade.value, f"canary judge: {judgement.reason.partition(': ')[2]}"))
        reasons.append(judgement.reason)
        for result in judgement.metrics:
            by_metric.setdefault(result.name, []).append(result.reason)
            grades[result.name] = result.classification.value
    phases: dict[str, str] = {}
    if checks:
        checked = assess_checks(checks, measurements, terminating=True)
        contributions.append((_CHECK_VERDICT[checked.phase].value, f"threshold checks: {checked.reason}"))
        reasons.append(f"threshold checks: {checked.reason}")
        for check in checked.checks:
            by_metric.setdefault(check.name, []).append(check.reason)
            phases[check.name] = check.phase.value

    rows = []
    for metric, got in zip(metrics, fetched, strict=True):
        name = metric["name"]
        if name in missing_reasons:
            outcome, reason = missing_reasons[name]
        else:
            outcome = grades.get(name) or (
                "pass"
                if phases.get(name) == "successful"
                else "fail"
                if phases.get(name) in ("failed", "error")
                else phases.get(name, "pass")
            )
            reason = "; ".join(by_metric.get(name, [])) or f"{name}: measured"
        rows.append(
            MetricOutcome(
                name=name,
                source=metric["source"],
                source_kind=sources[metric["source"]].kind,
                outcome=outcome,
                check_phase=phases.get(name, ""),
                reason=reason,
                canary=got["canary"],
                baseline=got.get("baseline"),
            )
        )
    reasons.extend(r for _, r in missing_reasons.values())

    missing = len(missing_reasons)
    status = (
        AnalysisRun.Status.COMPLETE
        if not missing
        else AnalysisRun.Status.NO_DATA
        if missing == len(metrics)
        else AnalysisRun.Status.PARTIAL
    )
    if contributions:
        worst = max(_RANK[AnalysisRun.Verdict(v)] for v, _ in contributions)
        final = next(v for v, rank in _RANK.items() if rank == worst)
        why = [w for v, w in contributions if _RANK[AnalysisRun.Verdict(v)] == worst]
        summary = f"{final.value}: {'; '.join(why)}"
    elif missing:
        final = AnalysisRun.Verdict.PASS
        summary = "pass: no metric had data, and their sources count missing data as a pass"
    else:
        final = AnalysisRun.Verdict.INCONCLUSIVE
        summary = (
            "inconclusive: no metric could be judged (no baseline to compare with, and no threshold check)"
        )
    return Outcome(
        verdict=final.value,
        score=score,
        status=status.value,
        reasons=(summary, *reasons),
        metrics=tuple(rows),
    )


# =========================================================================== storing


def summary(fetched: Fetched | None) -> dict[str, Any]:
    """count, mean, min, max and quantiles of the values (null where there are none), and why there are none."""
    if fetched is None:
        return {}
    values = np.asarray(fetched.values, dtype=np.float64)
    out: dict[str, Any] = {
        "count": int(values.size),
        "series": fetched.series,
        "dropped": fetched.dropped,
        "missing": fetched.missing,
    }
    if values.size:
        q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
        out.update(
            mean=float(values.mean()),
            min=float(values.min()),
            max=float(values.max()),
            p05=float(q[0]),
            p25=float(q[1]),
            median=float(q[2]),
            p75=float(q[3]),
            p95=float(q[4]),
        )
    else:
        out.update(mean=None, min=None, max=None, p05=None, p25=None, median=None, p75=None, p95=None)
    return out


def capped(fetched: Fetched | None, limit: int) -> list[list[float]]:
    """[epoch seconds, value] pairs for a chart: all of them, or `limit` spread evenly over the window."""
    if fetched is None or not fetched.points:
        return []
    points = fetched.points
    if len(points) > limit:
        picks = np.linspace(0, len(points) - 1, limit).round().astype(int)
        points = tuple(points[i] for i in picks)
    return [[round(t, 3), v] for t, v in points]


# =========================================================================== sources

SOURCE_DEFAULTS: dict[str, Any] = {
    "url": "",
    "auth": "none",
    "username": "",
    "timeout_seconds": 5.0,
    "on_missing_data": "inconclusive",
}
SOURCE_FIELDS = ("name", "kind", *SOURCE_DEFAULTS, "secret")


def parse_source(data: Any, *, current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A metric source's fields, complete and checked (`current`: the saved ones a PATCH leaves alone; the secret
    is kept unless a new one is given)."""
    if not isinstance(data, dict):
        raise Invalid("A JSON object.", field="non_field_errors")
    unknown = sorted(set(data) - set(SOURCE_FIELDS))
    if unknown:
        raise Invalid(f"Unknown field; the fields are {', '.join(SOURCE_FIELDS)}.", field=unknown[0])
    merged = {**SOURCE_DEFAULTS, "secret": "", **(current or {}), **data}
    for required in ("name", "kind"):
        if required not in merged:
            raise Invalid("Required.", field=required)
    kind = merged["kind"]
    if kind not in MetricSource.Kind.values:
        raise Invalid(f"One of {', '.join(MetricSource.Kind.values)}.", field="kind")
    out: dict[str, Any] = {"name": parse_slug(merged["name"]), "kind": kind}
    url = _text(merged["url"], "url", limit=500).strip()
    auth = merged["auth"]
    if auth not in MetricSource.Auth.values:
        raise Invalid(f"One of {', '.join(MetricSource.Auth.values)}.", field="auth")
    if kind == MetricSource.Kind.PROMETHEUS:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(
                "Prometheus' base URL, http:// or https:// (e.g. http://prometheus:9090/).", field="url"
            )
        if "@" in parts.netloc:
            raise Invalid(
                "No credentials in the URL: use auth, username and secret (never shown again).", field="url"
            )
        if parts.query or parts.fragment:
            raise Invalid("A base URL, without ?query or #fragment.", field="url")
    elif url or auth != MetricSource.Auth.NONE:
        raise Invalid(
            "Pushed samples are read from Slipway itself: no URL or auth.", field="url" if url else "auth"
        )
    out["url"] = url
    out["auth"] = auth
    out["username"] = _text(merged["username"], "username", limit=200)
    out["secret"] = _text(merged["secret"], "secret", limit=2000)
    if auth == MetricSource.Auth.BEARER and not out["secret"]:
        raise Invalid("A bearer token is required with auth 'bearer'.", field="secret")
    if auth == MetricSource.Auth.BASIC and not out["username"]:
        raise Invalid("Required with auth 'basic'.", field="username")
    if auth == MetricSource.Auth.NONE:
        out["username"], out["secret"] = "", ""
    out["timeout_seconds"] = _number(merged["timeout_seconds"], "timeout_seconds", low=0.1, high=60)
    if merged["on_missing_data"] not in MetricSource.OnMissingData.values:
        raise Invalid(f"One of {', '.join(MetricSource.OnMissingData.values)}.", field="on_missing_data")
    out["on_missing_data"] = merged["on_missing_data"]
    return out


def source_audit(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A source's fields for the audit trail: whether there is a secret, never the secret."""
    return {**{k: v for k, v in fields.items() if k != "secret"}, "has_secret": bool(fields.get("secret"))}
