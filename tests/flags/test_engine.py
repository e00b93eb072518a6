"""flags.engine: pure, no Django (run with ``-p no:django``)."""

import copy
import graphlib
import re
from datetime import UTC, datetime, timedelta, timezone
from functools import cmp_to_key

import mmh3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flags.engine import (
    ErrorCode,
    Reason,
    Resolution,
    SnapshotInvalid,
    bucket,
    compile_snapshot,
    evaluate,
    evaluate_all,
    type_of_value,
    validate_snapshot_config,
    variant_bucket,
)

BOOL_VARIANTS = {"on": True, "off": False}


def make_flag(key="f", **overrides):
    flag = {
        "key": key,
        "type": "boolean",
        "variants": dict(BOOL_VARIANTS),
        "enabled": True,
        "off_variant": "off",
        "default_variant": "off",
    }
    flag.update(overrides)
    return flag


def snap(*flags, segments=None, strict=True):
    config = {"flags": list(flags)}
    if segments is not None:
        config["segments"] = segments
    return compile_snapshot(config, strict=strict)


def cond(attribute, operator, **operand):
    return {"attribute": attribute, "operator": operator, **operand}


def rollout_flag(key, percentage, weights=None, **overrides):
    return make_flag(key, rollout={"percentage": percentage, "weights": weights or {"on": 100}}, **overrides)


keys_st = st.text(min_size=1, max_size=20)
flag_keys_st = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20)


# --------------------------------------------------------------------------- reasons


def test_static_when_no_rules_and_no_rollout():
    r = evaluate(snap(make_flag(default_variant="on")), "f", {})
    assert (r.value, r.variant, r.reason, r.error_code) == (True, "on", Reason.STATIC, None)


def test_targeting_match_serves_rule_variant_with_rule_index():
    flag = make_flag(
        rules=[
            {"conditions": [cond("plan", "equals", value="pro")], "variant": "off"},
            {"conditions": [cond("country", "in", values=["FR", "DE"])], "variant": "on"},
        ]
    )
    r = evaluate(snap(flag), "f", {"country": "FR"})
    assert (r.value, r.reason, r.metadata["rule"]) == (True, Reason.TARGETING_MATCH, 1)


def test_default_when_on_and_nothing_matched():
    flag = make_flag(
        default_variant="on", rules=[{"conditions": [cond("country", "in", values=["FR"])], "variant": "off"}]
    )
    r = evaluate(snap(flag), "f", {"country": "US"})
    assert (r.value, r.variant, r.reason) == (True, "on", Reason.DEFAULT)


@pytest.mark.parametrize("default_variant", ["on", "off"])
def test_rollout_serves_its_percentage_and_off_outside(default_variant):
    """Outside the percentage a user gets the off variant, whatever the default variant is (a new boolean
    flag's default is `on`: the old engine served it to everyone outside, so 30 % meant 100 %)."""
    s = snap(rollout_flag("f", 30, default_variant=default_variant))
    for i in range(2_000):
        r = evaluate(s, "f", {"targetingKey": f"u{i}"})
        inside = bucket("f", f"u{i}") <= 30
        assert (r.value, r.variant, r.reason) == (inside, "on" if inside else "off", Reason.SPLIT)
        assert r.metadata["rollout"] is inside
    share = sum(evaluate(s, "f", {"targetingKey": f"u{i}"}).value for i in range(10_000)) / 10_000
    assert 0.28 <= share <= 0.32


def test_multivariant_rollout_outside_gets_the_off_variant():
    variants = {"blue": "#00f", "green": "#0f0", "grey": "#888"}
    s = snap(
        rollout_flag(
            "f",
            40,
            weights={"blue": 50, "green": 50},
            type="string",
            variants=variants,
            off_variant="grey",
            default_variant="blue",
        )
    )
    served = [evaluate(s, "f", {"targetingKey": f"u{i}"}).variant for i in range(5_000)]
    assert abs(served.count("grey") / 5_000 - 0.60) < 0.03
    assert (
        abs(served.count("blue") / 5_000 - 0.20) < 0.03 and abs(served.count("green") / 5_000 - 0.20) < 0.03
    )


def test_rule_split_reason_and_bucket_by():
    flag = make_flag(
        rules=[
            {"conditions": [cond("plan", "exists")], "split": {"on": 50, "off": 50}, "bucket_by": "companyId"}
        ]
    )
    s = snap(flag)
    seen = set()
    for i in range(100):
        r = evaluate(s, "f", {"plan": "pro", "companyId": f"c{i}", "targetingKey": "same"})
        assert r.reason == Reason.SPLIT and r.metadata["rule"] == 0
        assert r.variant == ("off" if variant_bucket("f", f"c{i}") < 50 else "on")  # sorted: off, on
        seen.add(r.variant)
    assert seen == {"on", "off"}


def test_disabled_serves_off_variant():
    flag = make_flag(
        enabled=False,
        off_variant="off",
        default_variant="on",
        rules=[{"targeting_keys": ["u1"], "variant": "on"}],
    )
    r = evaluate(snap(flag), "f", {"targetingKey": "u1"})
    assert (r.value, r.variant, r.reason) == (False, "off", Reason.DISABLED)


def test_string_flag_off_variant():
    flag = make_flag(
        type="string",
        variants={"blue": "#00f", "red": "#f00"},
        enabled=False,
        off_variant="red",
        default_variant="blue",
    )
    r = evaluate(snap(flag), "f", {})
    assert (r.value, r.variant, r.reason) == ("#f00", "red", Reason.DISABLED)


def test_object_and_number_flags():
    s = snap(
        make_flag(
            "o",
            type="object",
            variants={"a": {"limits": [1, 2]}, "b": {}},
            off_variant="b",
            default_variant="a",
        ),
        make_flag(
            "n", type="number", variants={"low": 1, "high": 2.5}, off_variant="low", default_variant="high"
        ),
    )
    assert evaluate(s, "o", {}).value == {"limits": [1, 2]}
    assert evaluate(s, "n", {}).value == 2.5


# --------------------------------------------------------------------------- error codes


def test_flag_not_found():
    r = evaluate(snap(make_flag()), "nope", {})
    assert (r.value, r.variant, r.reason, r.error_code) == (
        None,
        None,
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    assert "nope" in r.error_details


def test_type_mismatch_for_typed_request():
    s = snap(make_flag())
    r = evaluate(s, "f", {}, expected_type="string")
    assert (r.reason, r.error_code) == (Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    assert evaluate(s, "f", {}, expected_type="boolean").reason == Reason.STATIC


@pytest.mark.parametrize("context", [{}, {"targetingKey": ""}, {"targetingKey": None}, {"targetingKey": 1.5}])
def test_targeting_key_missing_for_rollout(context):
    r = evaluate(snap(rollout_flag("f", 50, default_variant="on")), "f", context)
    assert (r.value, r.variant, r.reason, r.error_code) == (
        False,
        "off",
        Reason.ERROR,
        ErrorCode.TARGETING_KEY_MISSING,
    )


def test_targeting_key_missing_for_rule_split_on_custom_attribute():
    flag = make_flag(
        rules=[
            {"conditions": [cond("plan", "exists")], "split": {"on": 50, "off": 50}, "bucket_by": "companyId"}
        ]
    )
    r = evaluate(snap(flag), "f", {"plan": "pro", "targetingKey": "u1"})
    assert r.error_code == ErrorCode.TARGETING_KEY_MISSING and "companyId" in r.error_details


def test_targeting_key_not_needed_when_rule_matches_first():
    flag = rollout_flag(
        "f", 50, rules=[{"conditions": [cond("country", "in", values=["FR"])], "variant": "on"}]
    )
    assert evaluate(snap(flag), "f", {"country": "FR"}).reason == Reason.TARGETING_MATCH


def test_int_targeting_key_is_stringified():
    s = snap(rollout_flag("f", 50))
    assert evaluate(s, "f", {"targetingKey": 1234}) == evaluate(s, "f", {"targetingKey": "1234"})


@pytest.mark.parametrize("context", [["targetingKey"], "targetingKey", 42])
def test_invalid_context(context):
    r = evaluate(snap(rollout_flag("f", 50)), "f", context)
    assert (r.reason, r.error_code, r.value) == (Reason.ERROR, ErrorCode.INVALID_CONTEXT, False)


def test_general_error_when_context_misbehaves():
    class Exploding(dict):
        def get(self, *args):
            raise RuntimeError("boom")

    r = evaluate(snap(rollout_flag("f", 50)), "f", Exploding())
    assert (r.error_code, r.reason) == (ErrorCode.GENERAL, Reason.ERROR) and "boom" in r.error_details


def test_none_context_is_empty():
    assert evaluate(snap(make_flag()), "f").reason == Reason.STATIC


def test_parse_error_in_lenient_mode_isolates_the_broken_flag():
    good = make_flag("good", default_variant="on", prerequisites=[{"flag": "bad", "variant": "on"}])
    other = make_flag("other", default_variant="on")
    bad = make_flag("bad", default_variant="missing")
    with pytest.raises(SnapshotInvalid):
        snap(good, bad, other)
    s = snap(good, bad, other, strict=False)
    r = evaluate(s, "bad", {})
    assert (r.reason, r.error_code) == (Reason.ERROR, ErrorCode.PARSE_ERROR)
    assert evaluate(s, "other", {}).value is True
    assert evaluate(s, "good", {}).reason == Reason.DISABLED  # prerequisite in error -> unmet


# --------------------------------------------------------------------------- segments, targeting, prerequisites


def test_segment_rule():
    segments = {
        "staff": {
            "conditions": [
                cond("email", "ends_with", values=["@slipway.dev"]),
                cond("verified", "equals", value=True),
            ]
        }
    }
    s = snap(make_flag(rules=[{"segment": "staff", "variant": "on"}]), segments=segments)
    assert evaluate(s, "f", {"email": "ann@slipway.dev", "verified": True}).reason == Reason.TARGETING_MATCH
    assert evaluate(s, "f", {"email": "ann@slipway.dev", "verified": 1}).reason == Reason.DEFAULT
    assert evaluate(s, "f", {"email": "ann@example.com", "verified": True}).reason == Reason.DEFAULT


def test_individual_targeting():
    s = snap(make_flag(rules=[{"targeting_keys": ["u1", "u2"], "variant": "on"}]))
    assert evaluate(s, "f", {"targetingKey": "u2"}).value is True
    assert evaluate(s, "f", {"targetingKey": "u3"}).value is False
    assert evaluate(s, "f", {"targetingKey": ["u1"]}).value is False  # unhashable: no match, no crash
    assert evaluate(s, "f", {}).reason == Reason.DEFAULT


def test_prerequisites():
    parent = make_flag(
        "parent", rules=[{"conditions": [cond("beta", "equals", value=True)], "variant": "on"}]
    )
    child = make_flag("child", default_variant="on", prerequisites=[{"flag": "parent", "variant": "on"}])
    s = snap(parent, child)
    assert evaluate(s, "child", {"beta": True}).value is True
    r = evaluate(s, "child", {"beta": False})
    assert (r.value, r.reason, r.metadata["prerequisite"]) == (False, Reason.DISABLED, "parent")


def test_prerequisite_chain():
    a = make_flag("a", default_variant="on")
    b = make_flag("b", default_variant="on", prerequisites=[{"flag": "a", "variant": "on"}])
    c = make_flag("c", default_variant="on", prerequisites=[{"flag": "b", "variant": "on"}])
    assert evaluate(snap(a, b, c), "c", {}).value is True
    assert evaluate(snap({**a, "enabled": False}, b, c), "c", {}).value is False


def test_evaluate_all():
    s = snap(make_flag("a"), rollout_flag("b", 100))
    results = evaluate_all(s, {"targetingKey": "u"})
    assert set(results) == {"a", "b"} and all(isinstance(r, Resolution) for r in results.values())
    assert results["b"].reason == Reason.SPLIT


class _Exploding(dict):
    def get(self, *args):
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"targetingKey": "u", "country": "FR"},
        {"targetingKey": 7},
        {"targetingKey": ["unhashable"]},
        ["targetingKey"],
        42,
        _Exploding(),
    ],
)
def test_evaluate_all_answers_what_evaluate_answers(context):
    # evaluate_all calls the compiled evaluators directly: each flag's resolution, errors included, must be the
    # one `evaluate` gives for it.
    s = snap(
        make_flag("static"),
        rollout_flag("rolled", 50),
        make_flag("targeted", rules=[{"targeting_keys": ["u"], "variant": "on"}]),
        make_flag("gated", default_variant="on", prerequisites=[{"flag": "rolled", "variant": "on"}]),
        make_flag("off", enabled=False),
    )
    assert evaluate_all(s, context) == {key: evaluate(s, key, context) for key in s.flags}


def test_flag_metadata_is_echoed():
    s = snap(make_flag(metadata={"owner": "payments"}, rules=[{"targeting_keys": ["u"], "variant": "on"}]))
    assert dict(evaluate(s, "f", {"targetingKey": "u"}).metadata) == {"owner": "payments", "rule": 0}
    assert dict(evaluate(s, "f", {}).metadata) == {"owner": "payments"}


def test_type_of_value():
    assert [type_of_value(v) for v in (True, "x", 1, 1.5, {}, None)] == [
        "boolean",
        "string",
        "number",
        "number",
        "object",
        None,
    ]


# --------------------------------------------------------------------------- version / etag


def test_version_is_content_hash():
    config = {"flags": [make_flag(rules=[{"targeting_keys": ["u"], "variant": "on"}])]}
    reordered = {"flags": [dict(reversed(list(config["flags"][0].items())))]}
    changed = copy.deepcopy(config)
    changed["flags"][0]["enabled"] = False
    assert compile_snapshot(config).version == compile_snapshot(reordered).version
    assert compile_snapshot(config).version != compile_snapshot(changed).version


def test_snapshot_does_not_see_later_config_edits():
    config = {"flags": [make_flag(default_variant="on")]}
    s = compile_snapshot(config)
    config["flags"][0]["variants"]["on"] = False
    assert evaluate(s, "f", {}).value is True


# --------------------------------------------------------------------------- validation


def paths(config):
    return {path for path, _ in validate_snapshot_config(config)}


def test_valid_config_has_no_errors():
    config = {
        "segments": {"staff": {"conditions": [cond("email", "ends_with", values=["@x"])]}},
        "flags": [
            rollout_flag(
                "f",
                30,
                weights={"on": 60, "off": 40},
                rules=[
                    {"segment": "staff", "variant": "on"},
                    {"targeting_keys": ["u"], "split": {"on": 100}},
                    {
                        "conditions": [
                            cond("v", "semver_gt", value="1.2.3-rc.1"),
                            cond("t", "before", value="2030-01-01T00:00:00Z"),
                            cond("n", "gte", value=3),
                            cond("x", "exists"),
                        ],
                        "variant": "off",
                    },
                ],
            )
        ],
    }
    assert validate_snapshot_config(config) == []


@pytest.mark.parametrize(
    ("flag", "path"),
    [
        (
            make_flag(
                rules=[
                    {
                        "conditions": [cond("a", "equals", value=1), cond("a", "matches", value="x")],
                        "variant": "on",
                    }
                ]
            ),
            "flags[0].rules[0].conditions[1].operator",
        ),
        (make_flag(variants={"on": True, "off": "no"}), "flags[0].variants.off"),
        (make_flag(type="number", variants={"on": True, "off": 0}), "flags[0].variants.on"),
        (make_flag(type="number", variants={"on": float("nan"), "off": 0}), "flags[0].variants.on"),
        (
            make_flag(type="string", variants={"on": "x", "off": "y"}, default_variant="nope"),
            "flags[0].default_variant",
        ),
        (make_flag(rules=[{"targeting_keys": ["u"], "variant": "maybe"}]), "flags[0].rules[0].variant"),
        (
            make_flag(rules=[{"targeting_keys": ["u"], "split": {"on": 60, "off": 30}}]),
            "flags[0].rules[0].split",
        ),
        (
            make_flag(rules=[{"targeting_keys": ["u"], "split": {"on": 60, "nope": 40}}]),
            "flags[0].rules[0].split.nope",
        ),
        (rollout_flag("f", 50, weights={"on": 50, "off": 49}), "flags[0].rollout.weights"),
        (rollout_flag("f", 101), "flags[0].rollout.percentage"),
        (make_flag(rules=[{"segment": "ghosts", "variant": "on"}]), "flags[0].rules[0].segment"),
        (make_flag(rules=[{"variant": "on"}]), "flags[0].rules[0]"),
        (
            make_flag(rules=[{"targeting_keys": ["u"], "variant": "on", "split": {"on": 100}}]),
            "flags[0].rules[0]",
        ),
        (
            make_flag(rules=[{"conditions": [cond("a", "lt", value="3")], "variant": "on"}]),
            "flags[0].rules[0].conditions[0].value",
        ),
        (
            make_flag(rules=[{"conditions": [cond("a", "semver_eq", value="1.2")], "variant": "on"}]),
            "flags[0].rules[0].conditions[0].value",
        ),
        (
            make_flag(rules=[{"conditions": [cond("a", "after", value="tomorrow")], "variant": "on"}]),
            "flags[0].rules[0].conditions[0].value",
        ),
        (
            make_flag(rules=[{"conditions": [cond("a", "in", values=[])], "variant": "on"}]),
            "flags[0].rules[0].conditions[0].values",
        ),
        (
            make_flag(rules=[{"conditions": [cond("a", "starts_with", values=[1])], "variant": "on"}]),
            "flags[0].rules[0].conditions[0].values[0]",
        ),
        (
            make_flag(rules=[{"conditions": [cond("", "exists")], "variant": "on"}]),
            "flags[0].rules[0].conditions[0].attribute",
        ),
        (make_flag(prerequisites=[{"flag": "ghost", "variant": "on"}]), "flags[0].prerequisites[0].flag"),
        (make_flag(prerequisites=[{"flag": "f", "variant": "on"}]), "flags[0].prerequisites[0].flag"),
        (make_flag(enabeld=True), "flags[0].enabeld"),
        (make_flag(type="json"), "flags[0].type"),
    ],
)
def test_validation_reports_field_path(flag, path):
    assert path in paths({"flags": [flag]})
    with pytest.raises(SnapshotInvalid) as excinfo:
        compile_snapshot({"flags": [flag]})
    assert path in {p for p, _ in excinfo.value.errors}


def test_validation_duplicate_keys_and_garbage():
    assert "flags[1].key" in paths({"flags": [make_flag(), make_flag()]})
    assert validate_snapshot_config([]) == [("", "config must be an object")]
    assert "flags[0]" in paths({"flags": ["nope"]})
    assert "segments.s.conditions" in paths({"segments": {"s": {"conditions": []}}, "flags": []})


def test_validation_prerequisite_unknown_variant():
    a = make_flag("a")
    b = make_flag("b", prerequisites=[{"flag": "a", "variant": "maybe"}])
    assert "flags[1].prerequisites[0].variant" in paths({"flags": [a, b]})


def test_validation_prerequisite_cycle():
    a = make_flag("a", prerequisites=[{"flag": "b", "variant": "on"}])
    b = make_flag("b", prerequisites=[{"flag": "a", "variant": "on"}])
    errors = validate_snapshot_config({"flags": [a, b]})
    assert any("cycle" in message and "a -> b -> a" in message for _, message in errors)


@settings(max_examples=200)
@given(n=st.integers(1, 6), data=st.data())
def test_prerequisite_cycles_rejected_iff_graph_has_cycle(n, data):
    edges = data.draw(
        st.sets(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda e: e[0] != e[1]))
    )
    flags = [
        make_flag(
            f"f{i}", prerequisites=[{"flag": f"f{j}", "variant": "on"} for i2, j in sorted(edges) if i2 == i]
        )
        for i in range(n)
    ]
    sorter = graphlib.TopologicalSorter({f"f{i}": {f"f{j}" for i2, j in edges if i2 == i} for i in range(n)})
    try:
        sorter.prepare()
        has_cycle = False
    except graphlib.CycleError:
        has_cycle = True
    errors = validate_snapshot_config({"flags": flags})
    assert any("cycle" in message for _, message in errors) == has_cycle
    if not has_cycle:
        compile_snapshot({"flags": flags})  # and it evaluates without recursion trouble
        assert all(
            r.reason != Reason.ERROR for r in evaluate_all(compile_snapshot({"flags": flags}), {}).values()
        )


# --------------------------------------------------------------------------- bucketing properties


@settings(max_examples=10, deadline=None)
@given(flag_key=flag_keys_st, key_prefix=st.text(max_size=8))
def test_percentage_accuracy(flag_key, key_prefix):
    s = snap(rollout_flag(flag_key, 30))
    inside = sum(evaluate(s, flag_key, {"targetingKey": f"{key_prefix}{i}"}).value for i in range(10_000))
    assert 2_800 <= inside <= 3_200


@settings(max_examples=10, deadline=None)
@given(flag_key=flag_keys_st)
def test_weights_distribution(flag_key):
    weights = {"a": 20, "b": 30, "c": 50}
    flag = make_flag(
        flag_key,
        type="string",
        variants={"a": "A", "b": "B", "c": "C"},
        off_variant="a",
        default_variant="a",
        rules=[{"conditions": [cond("x", "exists")], "split": weights}],
    )
    s = snap(flag)
    counts = dict.fromkeys(weights, 0)
    for i in range(10_000):
        counts[evaluate(s, flag_key, {"x": 1, "targetingKey": f"user-{i}"}).variant] += 1
    for name, weight in weights.items():
        assert abs(counts[name] - weight * 100) <= 250, counts


@settings(max_examples=10, deadline=None)
@given(flag_key=flag_keys_st, percentage=st.integers(1, 99))
def test_rollout_weights_independent_of_percentage(flag_key, percentage):
    """Variants among rolled-out users follow the weights whatever the percentage (independent hash)."""
    s = snap(rollout_flag(flag_key, percentage, weights={"on": 50, "off": 50}))
    served = [evaluate(s, flag_key, {"targetingKey": f"k{i}"}) for i in range(10_000)]
    inside = [r for r in served if r.metadata["rollout"]]
    on = sum(r.variant == "on" for r in inside)
    assume(len(inside) >= 500)
    assert abs(on / len(inside) - 0.5) < 0.08


@given(flag_key=flag_keys_st, key=keys_st, percentage=st.integers(0, 100))
def test_stickiness_across_calls_and_recompiles(flag_key, key, percentage):
    config = {"flags": [rollout_flag(flag_key, percentage, weights={"on": 70, "off": 30})]}
    first = evaluate(compile_snapshot(config), flag_key, {"targetingKey": key})
    again = compile_snapshot(copy.deepcopy(config))
    assert (
        first
        == evaluate(again, flag_key, {"targetingKey": key})
        == evaluate(again, flag_key, {"targetingKey": key})
    )


@given(
    flag_key=flag_keys_st, keys=st.lists(keys_st, max_size=50), p=st.integers(0, 100), q=st.integers(0, 100)
)
def test_monotonic_rollout(flag_key, keys, p, q):
    low, high = sorted((p, q))
    s_low, s_high = snap(rollout_flag(flag_key, low)), snap(rollout_flag(flag_key, high))
    for key in keys:
        if evaluate(s_low, flag_key, {"targetingKey": key}).value:
            assert evaluate(s_high, flag_key, {"targetingKey": key}).value


@given(flag_key=flag_keys_st, key=keys_st)
def test_bucket_matches_unleash_normalisation(flag_key, key):
    assert bucket(flag_key, key) == mmh3.hash(f"{flag_key}:{key}", 0, signed=False) % 100 + 1
    assert 0 <= variant_bucket(flag_key, key) < 100


@pytest.mark.parametrize(
    ("flag_key", "key", "expected"),
    [
        ("new-checkout", "user-1", None),
        ("new-checkout", "user-2", None),
        ("dark-mode", "42", None),
        ("dark-mode", "alice@example.com", None),
    ],
)
def test_known_buckets(flag_key, key, expected):
    expected = mmh3.hash(f"{flag_key}:{key}", 0, signed=False) % 100 + 1
    assert bucket(flag_key, key) == expected
    s = snap(rollout_flag(flag_key, expected))
    assert evaluate(s, flag_key, {"targetingKey": key}).value is True
    s = snap(rollout_flag(flag_key, expected - 1))
    assert evaluate(s, flag_key, {"targetingKey": key}).value is False


def test_same_users_as_unleash_client(tmp_path):
    unleash = pytest.importorskip("UnleashClient")
    from UnleashClient.cache import FileCache
    from UnleashClient.utils import InstanceAllowType, normalized_hash

    features = {
        "version": 1,
        "features": [
            {
                "name": "new-checkout",
                "enabled": True,
                "type": "release",
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "constraints": [],
                        "parameters": {"rollout": "30", "stickiness": "userId", "groupId": "new-checkout"},
                    }
                ],
            }
        ],
    }
    cache = FileCache("engine-test", directory=str(tmp_path))
    cache.bootstrap_from_dict(features)
    client = unleash.UnleashClient(
        "http://127.0.0.1:9",
        "engine-test",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    s = snap(rollout_flag("new-checkout", 30))
    ours = [evaluate(s, "new-checkout", {"targetingKey": f"user-{i}"}).value for i in range(1_000)]
    theirs = [client.is_enabled("new-checkout", {"userId": f"user-{i}"}) for i in range(1_000)]
    assert ours == theirs and 200 < sum(ours) < 400
    assert all(
        bucket("new-checkout", f"user-{i}") == normalized_hash(f"user-{i}", "new-checkout")
        for i in range(100)
    )


# --------------------------------------------------------------------------- operators against a reference


def json_equal(a, b):
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def is_num(v):
    return isinstance(v, int | float) and not isinstance(v, bool)


SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)  # the regex from semver.org, as an independent reference


def semver_cmp(a, b):
    ma, mb = SEMVER_RE.match(a), SEMVER_RE.match(b)
    for x, y in zip(ma.groups()[:3], mb.groups()[:3], strict=True):
        if int(x) != int(y):
            return -1 if int(x) < int(y) else 1
    pa, pb = ma.group(4), mb.group(4)
    if pa is None or pb is None:
        return 0 if pa == pb else (1 if pa is None else -1)
    for x, y in zip(pa.split("."), pb.split("."), strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return (len(pa.split(".")) > len(pb.split("."))) - (len(pa.split(".")) < len(pb.split(".")))


def as_instant(v):
    if isinstance(v, datetime):
        moment = v
    elif isinstance(v, str):
        try:
            moment = datetime.fromisoformat(v)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def reference(operator, v, operand):
    """The condition's definition, written the obvious way; ``v is None`` means missing."""
    if operator == "not_equals":
        return not reference("equals", v, operand)
    if operator == "not_in":
        return not reference("in", v, operand)
    if v is None:
        return False
    match operator:
        case "equals":
            return json_equal(v, operand)
        case "in":
            return any(json_equal(v, o) for o in operand)
        case "contains":
            if isinstance(v, str):
                return any(isinstance(o, str) and o in v for o in operand)
            if isinstance(v, list):
                return any(json_equal(item, o) for item in v for o in operand)
            return False
        case "starts_with":
            return isinstance(v, str) and any(v.startswith(o) for o in operand)
        case "ends_with":
            return isinstance(v, str) and any(v.endswith(o) for o in operand)
        case "lt" | "lte" | "gt" | "gte":
            if not is_num(v):
                return False
            return {"lt": v < operand, "lte": v <= operand, "gt": v > operand, "gte": v >= operand}[operator]
        case "semver_lt" | "semver_eq" | "semver_gt":
            if not (isinstance(v, str) and SEMVER_RE.match(v)):
                return False
            c = semver_cmp(v, operand)
            return {"semver_lt": c < 0, "semver_eq": c == 0, "semver_gt": c > 0}[operator]
        case "before" | "after":
            moment = as_instant(v)
            bound = as_instant(operand)
            if moment is None:
                return False
            return moment < bound if operator == "before" else moment > bound
        case "exists":
            return True
    raise AssertionError(operator)


def check_operator(operator, context_value, **operand):
    flag = make_flag(rules=[{"conditions": [cond("attr", operator, **operand)], "variant": "on"}])
    context = {} if context_value is None else {"attr": context_value}
    got = evaluate(snap(flag), "f", context)
    assert got.reason in (Reason.TARGETING_MATCH, Reason.DEFAULT), got
    expected = reference(operator, context_value, operand.get("value", operand.get("values")))
    assert (got.reason == Reason.TARGETING_MATCH) == expected, (operator, context_value, operand)


small_text = st.text(alphabet="abcAB1-", max_size=4)
scalars = st.one_of(small_text, st.booleans(), st.integers(-3, 3), st.floats(-3, 3, allow_nan=False))
context_values = st.one_of(
    st.none(), scalars, st.lists(scalars, max_size=3), st.dictionaries(small_text, scalars, max_size=2)
)


@given(op=st.sampled_from(["equals", "not_equals"]), v=context_values, operand=scalars)
def test_equality_operators(op, v, operand):
    check_operator(op, v, value=operand)


@given(
    op=st.sampled_from(["in", "not_in", "contains"]),
    v=context_values,
    operands=st.lists(scalars, min_size=1, max_size=4),
)
def test_membership_operators(op, v, operands):
    check_operator(op, v, values=operands)


@given(
    op=st.sampled_from(["in", "not_in", "contains", "starts_with", "ends_with"]),
    v=st.one_of(st.none(), small_text, st.lists(small_text, max_size=3)),
    operands=st.lists(small_text, min_size=1, max_size=3),
)
def test_string_operators(op, v, operands):
    check_operator(op, v, values=operands)


@given(
    op=st.sampled_from(["lt", "lte", "gt", "gte"]),
    v=st.one_of(
        st.none(), st.integers(-5, 5), st.floats(-5, 5), st.just(float("nan")), st.booleans(), small_text
    ),
    operand=st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False)),
)
def test_numeric_operators(op, v, operand):
    check_operator(op, v, value=operand)


prerelease_ids = st.one_of(
    st.integers(0, 3).map(str), st.sampled_from(["alpha", "beta", "rc", "a-1", "0a", "x9"])
)
semvers = st.builds(
    lambda core, pre, build: (
        ".".join(map(str, core)) + (f"-{'.'.join(pre)}" if pre else "") + (f"+{build}" if build else "")
    ),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 12)),
    st.lists(prerelease_ids, max_size=3),
    st.sampled_from(["", "build.5", "sha-1f"]),
)


@given(
    op=st.sampled_from(["semver_lt", "semver_eq", "semver_gt"]),
    v=st.one_of(
        st.none(),
        semvers,
        st.sampled_from(["1.2", "01.2.3", "1.2.3-", "1.2.3-01", "v1.2.3", "1.2.3+", ""]),
        st.integers(0, 3),
    ),
    operand=semvers,
)
def test_semver_operators(op, v, operand):
    check_operator(op, v, value=operand)


def test_semver_precedence_examples():
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]  # semver.org, section 11
    assert sorted(reversed(chain), key=cmp_to_key(semver_cmp)) == chain
    for lower, higher in zip(chain, chain[1:], strict=False):
        check_operator("semver_lt", lower, value=higher)
        assert reference("semver_lt", lower, higher)


aware = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2040, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]),
)
naive = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    op=st.sampled_from(["before", "after"]),
    v=st.one_of(
        st.none(),
        aware,
        aware.map(datetime.isoformat),
        naive.map(datetime.isoformat),
        st.just("not a date"),
        st.integers(),
    ),
    operand=st.one_of(aware, naive).map(datetime.isoformat),
)
def test_instant_operators(op, v, operand):
    check_operator(op, v, value=operand)


@given(v=context_values)
def test_exists(v):
    check_operator("exists", v)


def test_missing_attribute_semantics():
    for operator, operand in [
        ("equals", {"value": "x"}),
        ("in", {"values": ["x"]}),
        ("contains", {"values": ["x"]}),
        ("starts_with", {"values": ["x"]}),
        ("gt", {"value": 0}),
        ("semver_gt", {"value": "0.0.0"}),
        ("after", {"value": "2000-01-01"}),
        ("exists", {}),
    ]:
        flag = make_flag(rules=[{"conditions": [cond("a", operator, **operand)], "variant": "on"}])
        assert evaluate(snap(flag), "f", {}).value is False, operator
    for operator, operand in [("not_equals", {"value": "x"}), ("not_in", {"values": ["x"]})]:
        flag = make_flag(rules=[{"conditions": [cond("a", operator, **operand)], "variant": "on"}])
        assert evaluate(snap(flag), "f", {}).value is True, operator
        both = make_flag(
            rules=[{"conditions": [cond("a", "exists"), cond("a", operator, **operand)], "variant": "on"}]
        )
        assert evaluate(snap(both), "f", {}).value is False, operator
