"""Flag history in words: field by field, as people read a change."""

from hypothesis import given
from hypothesis import strategies as st

from flags.history import describe_change, describe_state

BEFORE = {
    "enabled": True,
    "off_variant": "off",
    "default_variant": "on",
    "rules": [],
    "prerequisites": [],
    "rollout": {"percentage": 10, "weights": {"on": 100}},
}


def test_rollout_and_switch_in_words():
    after = {**BEFORE, "enabled": False, "rollout": {"percentage": 30, "weights": {"on": 100}}}
    assert describe_change(BEFORE, after) == ["switched off", "rollout: 10 % (on) → 30 % (on)"]


def test_rules_added_changed_removed():
    rule = {
        "conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}],
        "variant": "on",
    }
    staff = {"segment": "staff", "split": {"on": 50, "off": 50}}
    assert describe_change(BEFORE, {**BEFORE, "rules": [rule]}) == ["rule 1 added: country in FR, DE → on"]
    assert describe_change({**BEFORE, "rules": [rule, staff]}, {**BEFORE, "rules": [rule]}) == [
        "rule 2 removed: segment staff → split off 50 % / on 50 %"
    ]
    older = {**rule, "conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}]}
    assert describe_change({**BEFORE, "rules": [older]}, {**BEFORE, "rules": [rule]}) == [
        "rule 1: plan is pro → on → country in FR, DE → on"
    ]


def test_no_python_reprs_and_variants_item_by_item():
    lines = describe_change(
        {"variants": {"on": True, "off": False}}, {"variants": {"on": True, "off": False, "beta": True}}
    )
    assert lines == ["variant beta added: true"]
    assert "True" not in " ".join(describe_change({"default_variant": "on"}, {"default_variant": "off"}))
    assert describe_change({"owner": ""}, {"owner": "alice"}) == ["owner: — → alice"]


def test_describe_state():
    assert describe_state(BEFORE) == "on · 10 %"
    assert describe_state({**BEFORE, "rollout": None}) == "on"
    assert describe_state({**BEFORE, "enabled": False}) == "off"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(st.sampled_from(["enabled", "rules", "rollout", "variants", "owner", "x"]), json_values),
    st.dictionaries(st.sampled_from(["enabled", "rules", "rollout", "variants", "owner", "x"]), json_values),
)
def test_any_json_is_described_without_error_and_equal_is_empty(before, after):
    lines = describe_change(before, after)
    assert all(isinstance(line, str) for line in lines)
    assert describe_change(before, before) == []
