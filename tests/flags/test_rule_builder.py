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
        Row("country", "in", "FR, DE", "on"),
        Row("age", "gte", "18", "split", {"on": "30", "off": "70"}),
        Row("beta", "exists", "", "off"),
    ]
    posted = {
        f"rule-{n}-{name}": getattr(row, name)
        for n, row in enumerate(rows)
        for name in ("attribute", "operator", "values", "serve")
    }
    posted |= {f"rule-1-weight-{name}": weight for name, weight in rows[1].weights.items()}
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
          "rule-0-weight-on": "30", "rule-0-weight-off": "60"}, "rule-0-split", "add up to 90, not 100"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
          "rule-0-weight-on": "", "rule-0-weight-off": ""}, "rule-0-split", "add up to 0, not 100"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
          "rule-0-weight-on": "thirty", "rule-0-weight-off": "70"}, "rule-0-weight-on", "whole number from 0 to 100"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
          "rule-0-weight-on": "130", "rule-0-weight-off": "-30"}, "rule-0-weight-on", "not '130'"),
        ({"rule-0-attribute": "c", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
          "rule-0-weight-on": "30.5", "rule-0-weight-off": "69.5"}, "rule-0-weight-on", "whole number"),
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
        "rule-0-weight-on": "30",
        "rule-0-weight-off": "60",
    }
    response = admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form)
    page = response.content.decode()
    assert response.status_code == 400
    assert "Rule 1: the split&#x27;s percentages add up to 90, not 100." in page
    assert 'name="rule-0-weight-on" min="0" max="100" step="1" inputmode="numeric" value="30"' in page
    assert 'name="rule-0-weight-off" min="0" max="100" step="1" inputmode="numeric" value="60"' in page
    assert 'value="country"' in page


def card_of(page: str, environment: str) -> str:
    start = page.index(f'id="state-{environment}"')
    return page[start : page.index("</form>", start)]


def row_of(card: str, n: int) -> str:
    start = card.index(f'<tr class="rule-row" data-rule="{n}"')
    return card[start : card.index("</tr>", start)]


@pytest.mark.django_db
def test_a_bad_row_says_why_beside_it_marked_invalid(admin_client, demo):
    """Rule 2 of three has a split adding up to 90: the error is in its row, its weights point at it; the other rows
    and fields are not marked, and the card's top says which rule."""
    form = {"enabled": "on", "default_variant": "on", "off_variant": "off", "rules_from": "builder"}
    for n, (attribute, serve) in enumerate((("country", "on"), ("plan", "split"), ("beta", "off"))):
        form |= {f"rule-{n}-attribute": attribute, f"rule-{n}-operator": "in", f"rule-{n}-values": "x"}
        form[f"rule-{n}-serve"] = serve
    form |= {"rule-1-weight-on": "30", "rule-1-weight-off": "60"}
    response = admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form)
    assert response.status_code == 400
    card = card_of(response.content.decode(), "staging")
    second = row_of(card, 1)
    error = '<p class="field-error" id="rule-staging-1-error">Rule 2: the split&#x27;s percentages add up to 90, not 100.</p>'
    assert error in second
    assert second.count('aria-invalid="true" aria-describedby="rule-staging-1-error"') == 2  # both weights
    assert (
        'name="rule-1-values" value="x" maxlength="2000" placeholder="FR, DE" aria-label="Rule 2 values">'
        in second
    )
    assert "aria-invalid" not in row_of(card, 0) + row_of(card, 2)
    assert card.count("field-error") == 1 and card.count("add up to 90") == 1  # said once, beside the row
    assert '<p class="error-box" role="alert">Rule 2 is not saved: see its row.</p>' in card
    saved = FlagState.objects.filter(flag__key="new-checkout", environment__name="staging").first()
    assert saved is None or len(saved.rules) != 3


@pytest.mark.django_db
def test_a_weight_that_is_not_a_percentage_is_marked_alone(admin_client, demo):
    form = {
        "enabled": "on", "rules_from": "builder", "rule-0-attribute": "country", "rule-0-operator": "in",
        "rule-0-values": "FR", "rule-0-serve": "split", "rule-0-weight-on": "130", "rule-0-weight-off": "-30",
    }  # fmt: skip
    response = admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form)
    row = row_of(card_of(response.content.decode(), "staging"), 0)
    assert response.status_code == 400
    assert "Rule 1: the weight of &#x27;on&#x27; is a whole number from 0 to 100, not &#x27;130&#x27;." in row
    on = row[row.index('name="rule-0-weight-on"') :]
    off = row[row.index('name="rule-0-weight-off"') :]
    assert 'aria-describedby="rule-staging-0-error"' in on[: on.index(">")]
    assert "aria-invalid" not in off[: off.index(">")]


@pytest.mark.django_db
def test_what_the_engine_refuses_in_a_row_is_said_beside_that_row(admin_client, demo):
    """A weight for a variant the flag does not have passes the builder's checks; the API's validation (the same
    service) refuses it, and the page says so beside the row it came from (row 3, the second rule saved)."""
    form = {
        "enabled": "on", "default_variant": "on", "off_variant": "off", "rules_from": "builder",
        "rule-0-attribute": "country", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "on",
        "rule-1-attribute": "", "rule-1-operator": "in",
        "rule-2-attribute": "plan", "rule-2-operator": "in", "rule-2-values": "pro", "rule-2-serve": "split",
        "rule-2-weight-on": "50", "rule-2-weight-nope": "50",
    }  # fmt: skip
    response = admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form)
    assert response.status_code == 400
    card = card_of(response.content.decode(), "staging")
    row = row_of(card, 1)  # the empty row is not shown again: rule 3 is the second row now
    assert "Rule 3: unknown variant &#x27;nope&#x27;" in row and 'id="rule-staging-1-error"' in row
    assert "Rule 3 is not saved: see its row." in card


@pytest.mark.django_db
def test_a_split_saved_from_the_builder_reads_back_as_numbers(admin_client, demo):
    form = {
        "enabled": "on", "default_variant": "on", "off_variant": "off", "rules_from": "builder",
        "rule-0-attribute": "country", "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "split",
        "rule-0-weight-on": "30", "rule-0-weight-off": "70",
    }  # fmt: skip
    assert admin_client.post("/apps/shop/flags/new-checkout/env/staging/", form).status_code == 302
    state = FlagState.objects.get(flag__key="new-checkout", environment__name="staging")
    assert state.rules[0]["split"] == {"on": 30, "off": 70}
    row = row_of(card_of(admin_client.get("/apps/shop/flags/new-checkout/").content.decode(), "staging"), 0)
    assert (
        'type="number" name="rule-0-weight-on" min="0" max="100" step="1" inputmode="numeric" value="30"'
        in row
    )
    assert 'name="rule-0-weight-off" min="0" max="100" step="1" inputmode="numeric" value="70"' in row
