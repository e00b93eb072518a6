"""The rule builder: rules as rows and back, saved through the same service and checks as the API."""

import pytest
from django.core.management import call_command

from flags.models import FlagEvent, FlagState
from flags.rule_builder import Row, RowError, rows_of, rules_from_rows


def test_rows_round_trip_the_rules_they_can_show():
    rules = [
        {"conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}], "variant": "on"},
        {
            "conditions": [{"attribute": "age", "operator": "gte", "value": 18}],
            "split": {"on": 30, "off": 70},
        },
        {"conditions": [{"attribute": "beta", "operator": "exists"}], "variant": "off"},
    ]
    rows = rows_of(rules)
    assert rows == [
        Row("country", "in", "FR, DE", "on", ""),
        Row("age", "gte", "18", "split", "on=30, off=70"),
        Row("beta", "exists", "", "off", ""),
    ]
    posted = {f"rule-{n}-{name}": getattr(row, name) for n, row in enumerate(rows) for name in Row.__slots__}
    assert rules_from_rows(posted) == rules


def test_rules_the_builder_cannot_show_keep_the_json():
    assert rows_of([{"segment": "beta-testers", "variant": "on"}]) is None
    two = [{"attribute": "a", "operator": "exists"}, {"attribute": "b", "operator": "exists"}]
    assert rows_of([{"conditions": two, "variant": "on"}]) is None
    assert rows_of([]) == []


@pytest.mark.parametrize(
    ("posted", "field", "says"),
    [
        ({"rule-0-attribute": "age", "rule-0-operator": "gte", "rule-0-values": "old", "rule-0-serve": "on"},
         "rule-0-values", "'old' is not a number"),
        ({"rule-0-attribute": "age", "rule-0-operator": "gte", "rule-0-values": "1, 2", "rule-0-serve": "on"},
         "rule-0-values", "one value"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "", "rule-0-serve": "on"},
         "rule-0-values", "give the values"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
          "rule-0-split": "on=30, off=60"}, "rule-0-split", "add up to 90, not 100"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
          "rule-0-split": "on thirty"}, "rule-0-split", "variant=percent"),
        ({"rule-0-attribute": "c", "rule-0-operator": "regex", "rule-0-values": "FR", "rule-0-serve": "on"},
         "rule-0-operator", "choose an operator"),
    ],
)  # fmt: skip
def test_a_row_that_cannot_be_a_rule_names_its_field(posted, field, says):
    with pytest.raises(RowError) as refused:
        rules_from_rows(posted)
    assert refused.value.field == field and says in refused.value.detail


def test_empty_and_removed_rows_are_skipped():
    posted = {
        "rule-0-attribute": "country", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "on",
        "rule-0-remove": "on",
        "rule-1-attribute": "", "rule-1-operator": "in",
        "rule-2-attribute": "plan", "rule-2-operator": "equals", "rule-2-values": "pro", "rule-2-serve": "on",
    }  # fmt: skip
    assert rules_from_rows(posted) == [
        {"conditions": [{"attribute": "plan", "operator": "equals", "value": "pro"}], "variant": "on"}
    ]


@pytest.fixture
def demo(db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("load_demo")


@pytest.mark.django_db
def test_a_rule_added_in_the_builder_is_saved_and_the_history_says_so(admin_client, demo):
    page = admin_client.get("/apps/shop/flags/new-checkout/").content.decode()
    assert 'name="rule-0-attribute"' in page  # the builder's empty row
    form = {
        "enabled": "on",
        "default_variant": "on",
        "off_variant": "off",
        "rules_from": "builder",
        "rules": "[not json: ignored in builder mode",
        "rule-0-attribute": "country",
        "rule-0-operator": "in",
        "rule-0-values": "FR, DE",
        "rule-0-serve": "on",
    }
    response = admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form)
    assert response.status_code == 302
    state = FlagState.objects.get(flag__key="new-checkout", environment__name="staging")
    assert state.rules == [
        {"conditions": [{"attribute": "country", "operator": "in", "values": ["FR", "DE"]}], "variant": "on"}
    ]
    assert FlagEvent.objects.filter(flag__key="new-checkout").exists()
    history = admin_client.get("/apps/shop/flags/new-checkout/").content.decode()
    assert "rule 1 added: country in FR, DE → on" in history  # the field-level diff


@pytest.mark.django_db
def test_a_bad_row_is_refused_with_what_was_typed_kept(admin_client, demo):
    form = {
        "enabled": "on",
        "rules_from": "builder",
        "rule-0-attribute": "country",
        "rule-0-operator": "in",
        "rule-0-values": "FR",
        "rule-0-serve": "split",
        "rule-0-split": "on=30, off=60",
    }
    response = admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form)
    page = response.content.decode()
    assert response.status_code == 400
    assert "Rule 1: the split&#x27;s percentages add up to 90, not 100." in page
    assert 'value="on=30, off=60"' in page and 'value="country"' in page
