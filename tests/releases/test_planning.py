"""Property tests for the pure rollout planner (no Django, no database)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from releases.planning import (
    Analysis,
    AnalysisSpec,
    BlueGreen,
    Canary,
    Cautious,
    Deploy,
    Done,
    HealthCheck,
    ManualGate,
    Pause,
    PlanError,
    PreDeploy,
    Progress,
    Revert,
    Rollback,
    Rolling,
    Smoke,
    StrategyError,
    Switch,
    Watch,
    current_wave,
    next_action,
    parse_strategy,
    plan,
    plan_revert,
    record,
    slots,
    strategy_to_dict,
)

target_lists = st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=40)
nonempty_targets = st.lists(st.text(min_size=1, max_size=8), unique=True, min_size=1, max_size=40)


@st.composite
def canary_steps(draw):
    steps = draw(st.lists(st.integers(1, 99), unique=True, max_size=5))
    return (*sorted(steps), 100)


specs = st.none() | st.builds(
    AnalysisSpec,
    template=st.sampled_from(["checkout", "errors-1", "p95_latency"]),
    duration_seconds=st.none() | st.integers(1, 3600),
    interval_seconds=st.none() | st.integers(1, 60),
    count=st.none() | st.integers(1, 100),
)

strategies = st.one_of(
    st.builds(Cautious, analysis=specs, watch=specs),
    st.builds(
        Rolling, batch_size=st.integers(1, 12), max_unavailable=st.integers(1, 5), analysis=specs, watch=specs
    ),
    st.builds(
        Rolling,
        batch_percent=st.integers(1, 100),
        max_unavailable=st.integers(1, 5),
        analysis=specs,
        watch=specs,
    ),
    st.builds(Canary, steps=canary_steps(), pause_seconds=st.integers(0, 120), analysis=specs, watch=specs),
    st.builds(Rollback, batch_size=st.none() | st.integers(1, 12)),
    st.sampled_from(
        [BlueGreen(live="blue"), BlueGreen(live="green"), BlueGreen(live="green", switch_back=True)]
    ),
    st.builds(BlueGreen, live=st.sampled_from(["blue", "green"]), watch=specs),
)


def make_plan(targets, strategy, **options):
    if isinstance(strategy, BlueGreen) and len(targets) < 2:
        with pytest.raises(PlanError):
            plan(targets, strategy, **options)
        return None
    return plan(targets, strategy, **options)


# --- plan shape ---------------------------------------------------------------------------


@given(target_lists, strategies)
def test_every_target_planned_exactly_once_in_given_order(targets, strategy):
    p = make_plan(targets, strategy)
    if p is None:
        return
    order = p.deploy_order
    assert len(order) == len(set(order))
    assert set(order) | set(p.untouched) == set(targets)
    assert not set(order) & set(p.untouched)
    # Order is the caller's: waves are consecutive slices of the given list (blue/green: of its idle slot).
    assert list(order) == [t for t in targets if t in set(order)]
    assert [w.index for w in p.waves] == list(range(len(p.waves)))
    switch_back = isinstance(strategy, BlueGreen) and strategy.switch_back
    assert all(w.targets for w in p.waves) or switch_back  # switching back moves traffic only
    assert all(w.health for w in p.waves)


@given(target_lists)
def test_cautious_waves_double(targets):
    sizes = [len(w.targets) for w in plan(targets, Cautious()).waves]
    for index, size in enumerate(sizes):
        if index < len(sizes) - 1:
            assert size == 2**index
        else:
            assert 1 <= size <= 2**index


@given(target_lists, st.integers(1, 12), st.integers(1, 5))
def test_rolling_batches_never_exceed_batch_size(targets, batch, max_unavailable):
    p = plan(targets, Rolling(batch_size=batch, max_unavailable=max_unavailable))
    sizes = [len(w.targets) for w in p.waves]
    assert all(size == batch for size in sizes[:-1])
    assert all(size <= batch for size in sizes)
    assert all(w.max_parallel == min(batch, max_unavailable) for w in p.waves)


@given(nonempty_targets, st.integers(1, 100))
def test_rolling_percent_is_at_least_one(targets, pct):
    p = plan(targets, Rolling(batch_percent=pct))
    expected = max(1, len(targets) * pct // 100)
    assert max(len(w.targets) for w in p.waves) == expected


@given(target_lists, canary_steps(), st.integers(0, 100))
def test_canary_steps_are_cumulative_and_final_covers_all(targets, steps, pause):
    p = plan(targets, Canary(steps=steps, pause_seconds=pause))
    if not targets:
        assert p.waves == ()
        return
    reached = 0
    for wave in p.waves:
        reached += len(wave.targets)
        assert wave.traffic_percent in steps
        assert reached == math.ceil(wave.traffic_percent * len(targets) / 100)
    assert p.waves[-1].traffic_percent == 100
    assert reached == len(targets)
    percents = [w.traffic_percent for w in p.waves]
    assert percents == sorted(set(percents))
    for wave in p.waves[:-1]:
        assert wave.analysis and wave.pause_seconds == pause
    assert not p.waves[-1].analysis and p.waves[-1].pause_seconds == 0


def test_canary_default_steps_on_ten_targets():
    p = plan([f"web-{i}" for i in range(10)], Canary())
    assert [len(w.targets) for w in p.waves] == [1, 2, 2, 5]
    assert [w.traffic_percent for w in p.waves] == [5, 25, 50, 100]


def test_blue_green_deploys_idle_slot_only():
    p = plan(["a", "b", "c", "d", "e"], BlueGreen(live="blue"))
    assert p.untouched == ("a", "b", "c")
    assert p.waves[0].targets == ("d", "e")
    assert p.waves[0].switch and p.waves[0].smoke
    assert plan(["a", "b", "c"], BlueGreen(live="green")).waves[0].targets == ("a", "b")


@given(
    st.lists(st.text(min_size=1, max_size=8), unique=True, min_size=2, max_size=40),
    st.sampled_from(["blue", "green"]),
    st.booleans(),
    st.booleans(),
)
def test_switching_back_deploys_nothing_and_only_moves_traffic(targets, live, pre, manual):
    p = plan(targets, BlueGreen(live=live, switch_back=True), pre_deploy=pre, smoke=True, manual_gates=manual)
    idle = slots(targets)["green" if live == "blue" else "blue"]
    log, final = drive(p, set())
    assert [a for a, _ in log] == [Switch(wave=0, targets=idle), Done(outcome="succeeded")]
    assert not final.deployed and p.deploy_order == ()


@given(st.lists(st.text(min_size=1, max_size=8), unique=True, min_size=2, max_size=40))
def test_slots_split_every_target_into_exactly_one_slot(targets):
    by_slot = slots(targets)
    assert by_slot["blue"] + by_slot["green"] == tuple(targets)
    assert 0 <= len(by_slot["blue"]) - len(by_slot["green"]) <= 1
    # Alternating releases deploy to blue and green in turn, never to the slot serving traffic.
    assert plan(targets, BlueGreen(live="blue")).deploy_order == by_slot["green"]
    assert plan(targets, BlueGreen(live="green")).deploy_order == by_slot["blue"]


def test_rollback_is_fast_path():
    p = plan(["a", "b", "c"], Rollback(), pre_deploy=True, smoke=True, manual_gates=True)
    assert [w.targets for w in p.waves] == [("a", "b", "c")]
    assert not p.pre_deploy
    wave = p.waves[0]
    assert (wave.smoke, wave.pause_seconds, wave.analysis, wave.manual_gate) == (False, 0, False, False)
    assert [w.targets for w in plan(["a", "b", "c"], Rollback(batch_size=2)).waves] == [("a", "b"), ("c",)]


def test_duplicate_targets_rejected():
    with pytest.raises(PlanError, match="web-1"):
        plan(["web-1", "web-2", "web-1"], Cautious())


def test_manual_gates_on_all_but_last_wave():
    p = plan(["a", "b", "c", "d"], Cautious(), manual_gates=True)
    assert [w.manual_gate for w in p.waves] == [True, True, False]


# --- driving next_action ------------------------------------------------------------------


def drive(p, failures, *, max_steps=10_000):
    """Run a reconciler loop, failing the targets / gates the test picked; return the log."""
    progress, log = Progress(), []
    for _ in range(max_steps):
        action = next_action(p, progress)
        assert next_action(p, progress) == action  # idempotent
        log.append((action, progress))
        if isinstance(action, Done):
            return log, progress
        match action:
            case Deploy() | HealthCheck():
                bad = [t for t in action.targets if (type(action).__name__, t) in failures]
                progress = record(progress, action, ok=not bad, failed=bad)
            case Revert():
                progress = record(progress, action)
            case _:
                progress = record(
                    progress,
                    action,
                    ok=(type(action).__name__, action.wave) not in failures
                    if hasattr(action, "wave")
                    else True,
                )
    raise AssertionError("reconciler did not finish")


@st.composite
def scenarios(draw):
    strategy = draw(strategies)
    targets = draw(
        nonempty_targets
        if not isinstance(strategy, BlueGreen)
        else st.lists(st.text(min_size=1, max_size=8), unique=True, min_size=2, max_size=40)
    )
    options = draw(
        st.fixed_dictionaries(
            {"pre_deploy": st.booleans(), "smoke": st.booleans(), "manual_gates": st.booleans()}
        )
    )
    p = plan(targets, strategy, **options)
    failure_points = st.one_of(
        st.tuples(st.sampled_from(["Deploy", "HealthCheck"]), st.sampled_from(targets)),
        st.tuples(
            st.sampled_from(["Smoke", "Pause", "Analysis", "ManualGate", "Switch", "Watch"]),
            st.integers(0, max(len(p.waves) - 1, 0)),
        ),
    )
    failures = draw(st.sets(failure_points, max_size=3) | st.just(set()))
    return p, failures


@settings(max_examples=300)
@given(scenarios())
def test_driving_to_completion_deploys_each_target_once_and_reverts_what_it_touched(scenario):
    p, failures = scenario
    log, final = drive(p, failures)
    deploys = [t for action, _ in log if isinstance(action, Deploy) for t in action.targets]
    assert len(deploys) == len(set(deploys)), "a target was deployed twice"
    outcome = log[-1][0].outcome
    if outcome == "succeeded":
        assert deploys == list(p.deploy_order), "a target was skipped or reordered"
        assert final.healthy == set(p.deploy_order)
        assert not any(isinstance(a, Revert) for a, _ in log)
    else:
        reverts = [a for a, _ in log if isinstance(a, Revert)]
        touched = set(deploys)
        assert final.touched == touched
        if touched:
            assert len(reverts) == 1
            assert set(reverts[0].targets) == touched
            assert reverts[0].targets == tuple(reversed(deploys))
        else:
            assert not reverts
        # Nothing deploys once the revert has begun.
        first_revert = next((i for i, (a, _) in enumerate(log) if isinstance(a, Revert | Done)), None)
        assert not any(isinstance(a, Deploy) for a, _ in log[first_revert:])
    # Deploy batches respect the wave and its parallelism limit.
    for action, _ in log:
        if isinstance(action, Deploy):
            wave = p.waves[action.wave]
            assert set(action.targets) <= set(wave.targets)
            assert len(action.targets) <= (wave.max_parallel or len(wave.targets))


@given(scenarios(), st.data())
def test_failure_at_any_point_reverts_exactly_the_touched_targets(scenario, data):
    p, _ = scenario
    log, _ = drive(p, set())
    steps = [(a, pr) for a, pr in log if isinstance(a, Deploy | HealthCheck)]
    if not steps:
        return
    action, progress = data.draw(st.sampled_from(steps))
    victim = data.draw(st.sampled_from(action.targets))
    progress = record(progress, action, ok=False, failed=[victim])
    revert = next_action(p, progress)
    assert isinstance(revert, Revert)
    assert set(revert.targets) == progress.deployed | progress.failed
    assert revert.targets == plan_revert([t for t in p.deploy_order if t in progress.touched])
    assert next_action(p, record(progress, revert)) == Done(outcome="reverted")


@given(
    st.lists(st.text(min_size=1, max_size=8), unique=True, min_size=2, max_size=20),
    st.sampled_from(["blue", "green"]),
    st.booleans(),
    st.booleans(),
)
def test_blue_green_switches_only_after_health_and_smoke_of_idle_slot(targets, live, pre, manual):
    p = plan(targets, BlueGreen(live=live), pre_deploy=pre, manual_gates=manual)
    log, final = drive(p, set())
    actions = [a for a, _ in log]
    switch_at = next(i for i, a in enumerate(actions) if isinstance(a, Switch))
    before = actions[:switch_at]
    idle = set(p.waves[0].targets)
    assert {t for a in before if isinstance(a, HealthCheck) for t in a.targets} == idle
    assert any(isinstance(a, Smoke) for a in before)
    assert not any(isinstance(a, Deploy) and set(a.targets) & set(p.untouched) for a in actions)
    assert actions[switch_at + 1 :] == [Done(outcome="succeeded")]
    # A failed smoke test never reaches the switch.
    log, _ = drive(p, {("Smoke", 0)})
    assert not any(isinstance(a, Switch) for a, _ in log)
    assert log[-1][0] == Done(outcome="reverted")


def test_gate_order_and_current_wave():
    p = plan(
        ["a", "b", "c"],
        Canary(steps=(50, 100), pause_seconds=30),
        pre_deploy=True,
        smoke=True,
        manual_gates=True,
    )
    log, _ = drive(p, set())
    kinds = [type(a).__name__ for a, _ in log]
    assert kinds == [
        "PreDeploy",
        "Deploy",
        "HealthCheck",
        "Smoke",
        "Pause",
        "Analysis",
        "ManualGate",
        "Deploy",
        "HealthCheck",
        "Smoke",
        "Done",
    ]
    assert isinstance(log[4][0], Pause) and log[4][0].seconds == 30
    assert isinstance(log[5][0], Analysis) and log[5][0].traffic_percent == 50
    assert isinstance(log[6][0], ManualGate)
    assert isinstance(log[0][0], PreDeploy)
    assert [current_wave(p, pr) for _, pr in log] == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, None]


def test_partially_recorded_deploy_resumes_without_repeating():
    p = plan(["a", "b", "c", "d"], Rollback())
    progress = Progress(deployed=frozenset({"a", "c"}))  # worker died half-way through the batch
    assert next_action(p, progress) == HealthCheck(wave=0, targets=("a", "c"))
    progress = record(progress, HealthCheck(wave=0, targets=("a", "c")))
    assert next_action(p, progress) == Deploy(wave=0, targets=("b", "d"))


def test_abort_reverts_and_failed_revert_is_retried():
    p = plan(["a", "b"], Rollback())
    progress = Progress(deployed=frozenset({"a", "b"})).abort()
    action = next_action(p, progress)
    assert action == Revert(targets=("b", "a"))
    progress = record(progress, action, ok=False, failed=["a"])
    assert next_action(p, progress) == Revert(targets=("a",))
    assert next_action(p, record(progress, Revert(targets=("a",)))) == Done(outcome="reverted")


def test_empty_plan_is_done():
    assert next_action(plan([], Cautious()), Progress()) == Done(outcome="succeeded")


def test_plan_revert_dedupes_latest_first():
    assert plan_revert(["a", "b", "c", "b"]) == ("b", "c", "a")


# --- parse_strategy -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"kind": "cautious"}, Cautious()),
        ({"kind": "rolling", "batch_size": 2}, Rolling(batch_size=2)),
        (
            {"kind": "rolling", "batch_percent": 25, "max_unavailable": 2},
            Rolling(batch_percent=25, max_unavailable=2),
        ),
        ({"kind": "blue_green"}, BlueGreen()),
        ({"kind": "blue_green", "live": "green"}, BlueGreen(live="green")),
        (
            {"kind": "blue_green", "live": "green", "switch_back": True},
            BlueGreen(live="green", switch_back=True),
        ),
        ({"kind": "canary", "steps": [5, 25, 50, 100], "pause_seconds": 60}, Canary()),
        ({"kind": "canary"}, Canary(steps=(5, 25, 50, 100), pause_seconds=60)),
        ({"kind": "rollback"}, Rollback()),
        ({"kind": "rollback", "batch_size": 3}, Rollback(batch_size=3)),
        (
            {
                "kind": "canary",
                "steps": [10, 50, 100],
                "analysis": {"template": "checkout", "duration_seconds": 30},
            },
            Canary(steps=(10, 50, 100), analysis=AnalysisSpec(template="checkout", duration_seconds=30)),
        ),
        (
            {
                "kind": "cautious",
                "analysis": {"template": "checkout"},
                "watch": {"template": "soak", "duration_seconds": 600},
            },
            Cautious(
                analysis=AnalysisSpec(template="checkout"),
                watch=AnalysisSpec(template="soak", duration_seconds=600),
            ),
        ),
        (
            {"kind": "blue_green", "watch": {"template": "soak"}},
            BlueGreen(watch=AnalysisSpec(template="soak")),
        ),
        ({"kind": "cautious", "analysis": None}, Cautious()),
        (
            {"kind": "canary", "analysis": {"template": "checkout", "interval_seconds": 5, "count": 12}},
            Canary(analysis=AnalysisSpec(template="checkout", interval_seconds=5, count=12)),
        ),
    ],
)
def test_parse_strategy_valid(data, expected):
    assert parse_strategy(data) == expected


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([], "kind"),
        ({}, "kind"),
        ({"kind": "yolo"}, "kind"),
        ({"kind": "cautious", "batch_size": 2}, "batch_size"),
        ({"kind": "rolling"}, "batch_size"),
        ({"kind": "rolling", "batch_size": 2, "batch_percent": 10}, "batch_size"),
        ({"kind": "rolling", "batch_size": 0}, "batch_size"),
        ({"kind": "rolling", "batch_size": -3}, "batch_size"),
        ({"kind": "rolling", "batch_size": "2"}, "batch_size"),
        ({"kind": "rolling", "batch_size": True}, "batch_size"),
        ({"kind": "rolling", "batch_size": 2.0}, "batch_size"),
        ({"kind": "rolling", "batch_percent": 0}, "batch_percent"),
        ({"kind": "rolling", "batch_percent": 101}, "batch_percent"),
        ({"kind": "rolling", "batch_size": 2, "max_unavailable": 0}, "max_unavailable"),
        ({"kind": "rolling", "batch_size": 2, "surge": 1}, "surge"),
        ({"kind": "blue_green", "live": "red"}, "live"),
        ({"kind": "blue_green", "live": 1}, "live"),
        ({"kind": "blue_green", "switch_back": "yes"}, "switch_back"),
        ({"kind": "canary", "steps": [5, 25, 50]}, "steps"),
        ({"kind": "canary", "steps": [25, 5, 100]}, "steps"),
        ({"kind": "canary", "steps": [5, 5, 100]}, "steps"),
        ({"kind": "canary", "steps": [0, 100]}, "steps"),
        ({"kind": "canary", "steps": [50, 150]}, "steps"),
        ({"kind": "canary", "steps": []}, "steps"),
        ({"kind": "canary", "steps": "5,100"}, "steps"),
        ({"kind": "canary", "steps": [5, "25", 100]}, "steps"),
        ({"kind": "canary", "pause_seconds": -1}, "pause_seconds"),
        ({"kind": "canary", "pause_seconds": "60"}, "pause_seconds"),
        ({"kind": "canary", "weights": [1]}, "weights"),
        ({"kind": "rollback", "batch_size": 0}, "batch_size"),
        ({"kind": "canary", "analysis": "checkout"}, "analysis"),
        ({"kind": "canary", "analysis": {}}, "analysis.template"),
        ({"kind": "canary", "analysis": {"template": "Check Out"}}, "analysis.template"),
        ({"kind": "canary", "analysis": {"template": 3}}, "analysis.template"),
        (
            {"kind": "canary", "analysis": {"template": "c", "duration_seconds": 0}},
            "analysis.duration_seconds",
        ),
        (
            {"kind": "canary", "analysis": {"template": "c", "duration_seconds": "30"}},
            "analysis.duration_seconds",
        ),
        ({"kind": "canary", "analysis": {"template": "c", "interval": 3}}, "analysis.interval"),
        (
            {"kind": "canary", "analysis": {"template": "c", "interval_seconds": 0}},
            "analysis.interval_seconds",
        ),
        (
            {"kind": "canary", "analysis": {"template": "c", "interval_seconds": 3601}},
            "analysis.interval_seconds",
        ),
        (
            {"kind": "canary", "analysis": {"template": "c", "interval_seconds": 1.5}},
            "analysis.interval_seconds",
        ),
        ({"kind": "canary", "analysis": {"template": "c", "count": 0}}, "analysis.count"),
        ({"kind": "canary", "analysis": {"template": "c", "count": "10"}}, "analysis.count"),
        ({"kind": "canary", "watch": {"template": "c", "count": True}}, "watch.count"),
        (
            {"kind": "canary", "analysis": {"template": "c", "interval_seconds": 3600, "count": 25}},
            "analysis.count",
        ),  # more than 24 hours
        (
            {"kind": "cautious", "watch": {"template": "c", "duration_seconds": 86401}},
            "watch.duration_seconds",
        ),
        (
            {"kind": "blue_green", "analysis": {"template": "c"}},
            "analysis",
        ),  # one wave: nothing between waves
        ({"kind": "rollback", "watch": {"template": "c"}}, "watch"),  # the fast path has no gates
    ],
)
def test_parse_strategy_errors_name_the_field(data, field):
    with pytest.raises(StrategyError) as excinfo:
        parse_strategy(data)
    assert excinfo.value.field == field
    assert excinfo.value.message
    assert str(excinfo.value).startswith(f"{field}: ")


@given(strategies)
def test_strategy_json_round_trips(strategy):
    assert parse_strategy(strategy_to_dict(strategy)) == strategy


# --- analysis between waves and the post-deploy watch ---------------------------------------------


@given(
    nonempty_targets,
    st.sampled_from(["cautious", "rolling", "canary"]),
    specs,
    specs,
    st.booleans(),
    st.booleans(),
)
def test_analysis_runs_between_waves_and_the_watch_after_the_last(
    targets, kind, analysis, watch, smoke, manual
):
    strategy = {
        "cautious": Cautious(analysis=analysis, watch=watch),
        "rolling": Rolling(batch_size=2, analysis=analysis, watch=watch),
        "canary": Canary(steps=(10, 50, 100), pause_seconds=0, analysis=analysis, watch=watch),
    }[kind]
    p = plan(targets, strategy, smoke=smoke, manual_gates=manual)
    log, _ = drive(p, set())
    actions = [a for a, _ in log]
    analyses = [a for a in actions if isinstance(a, Analysis)]
    between = len(p.waves) - 1
    if analysis is not None or kind == "canary":  # canary always asks; without a template, the hook
        assert [a.wave for a in analyses] == list(range(between))
        assert all(a.template == (analysis.template if analysis else None) for a in analyses)
        assert all(a.duration_seconds == (analysis.duration_seconds if analysis else None) for a in analyses)
    else:
        assert analyses == []
    for a in analyses:  # each analysis follows its wave's deploys and precedes the next wave's
        at = actions.index(a)
        assert isinstance(actions[at + 1], ManualGate | Deploy)
        assert any(isinstance(b, HealthCheck) and b.wave == a.wave for b in actions[:at])
    watches = [a for a in actions if isinstance(a, Watch)]
    if watch is None:
        assert watches == []
    else:  # once, the last gate before Done: after every target is healthy
        assert watches == [
            Watch(wave=len(p.waves) - 1, template=watch.template, duration_seconds=watch.duration_seconds)
        ]
        assert actions[-2] == watches[0] and actions[-1] == Done(outcome="succeeded")


@given(nonempty_targets, st.sampled_from(["Analysis", "Watch"]), st.integers(0, 5))
def test_a_failed_analysis_or_watch_reverts_exactly_the_deployed_targets(targets, gate, wave):
    spec = AnalysisSpec(template="checkout")
    p = plan(targets, Cautious(analysis=spec, watch=spec))
    wave = min(wave, len(p.waves) - 1)
    log, final = drive(p, {(gate, wave)})
    gates = [a for a, _ in log if type(a).__name__ == gate and a.wave == wave]
    if not gates:  # no analysis after the last wave, no watch before it
        assert log[-1][0] == Done(outcome="succeeded")
        return
    deployed_before = [
        t for a, _ in log[: [a for a, _ in log].index(gates[0])] if isinstance(a, Deploy) for t in a.targets
    ]
    reverts = [a for a, _ in log if isinstance(a, Revert)]
    assert log[-1][0] == Done(outcome="reverted")
    assert reverts == [Revert(targets=tuple(reversed(deployed_before)))]
    assert not any(isinstance(a, Deploy) for a, _ in log[[a for a, _ in log].index(gates[0]) :])


def test_blue_green_watches_after_the_switch_but_never_when_switching_back():
    spec = AnalysisSpec(template="soak", duration_seconds=60)
    actions = [a for a, _ in drive(plan(["a", "b", "c", "d"], BlueGreen(watch=spec), smoke=True), set())[0]]
    assert [type(a).__name__ for a in actions[-3:]] == ["Switch", "Watch", "Done"]
    back = plan(["a", "b"], BlueGreen(live="green", switch_back=True, watch=spec))
    assert not any(isinstance(a, Watch) for a, _ in drive(back, set())[0])
