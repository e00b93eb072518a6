"""The flag pages' forms refuse bad input on the form itself: the page again (400, 409 for a conflict), the error
beside the field it concerns (aria-invalid, aria-describedby, .field-error), everything typed kept, nothing written."""

import json

import pytest
from django.utils.html import escape

from flags.models import ChangeRequest, Flag, FlagEvent, FlagState, Segment
from flags.services import do_change_flag_state, do_create_flag, do_save_segment, do_update_flag
from releases.permissions import Actor
from tests import factories
from tests.forms import error_beside

pytestmark = pytest.mark.django_db

BAD_JSON = '[{"attribute": "plan", "operator": "in", "values": ["beta"]'  # its closing "}]" forgotten


@pytest.fixture
def panel(client):
    """shop with staging and production (changes there need a second person), flags `checkout` (boolean) and
    `banner` (string), segment `beta`; `ann` and `ben` are flag editors; the client is ann's."""
    app = factories.ApplicationFactory(slug="shop", name="Shop")
    factories.EnvironmentFactory(application=app, name="staging", position=1)
    factories.EnvironmentFactory(application=app, name="production", position=2, flag_change_requests=True)
    people = {name: factories.UserFactory(username=name) for name in ("ann", "ben")}
    for person in people.values():
        factories.MembershipFactory(user=person, application=app, role="flag_editor")
    system = Actor.system()
    do_create_flag(system, app, key="checkout")
    do_create_flag(
        system,
        app,
        key="banner",
        type="string",
        variants={"plain": "Welcome", "sale": "Sale!"},
        tags=["home"],
    )
    do_save_segment(
        system, app, name="beta", conditions=[{"attribute": "plan", "operator": "in", "values": ["beta"]}]
    )
    client.force_login(people["ann"])
    return app, people


def writes() -> tuple:
    return (
        Flag.objects.count(),
        Segment.objects.count(),
        FlagEvent.objects.count(),
        list(Segment.objects.values_list("conditions", "description")),
        list(Flag.objects.values_list("variants", "description", "owner", "tags")),
    )


def test_a_bad_new_flag_key_is_said_beside_it_with_the_name_kept(client, panel):
    before = writes()
    response = client.post("/apps/shop/flags/", {"key": "New Checkout", "name": "The new checkout flow"})
    html = response.content.decode()
    assert response.status_code == 400
    assert "A key is lowercase letters" in error_beside(html, "key", "new-flag-key-error")
    assert 'value="New Checkout"' in html and 'value="The new checkout flow"' in html
    assert writes() == before


def test_a_duplicate_flag_key_is_said_beside_it(client, panel):
    before = writes()
    response = client.post("/apps/shop/flags/", {"key": "checkout", "name": "Again"})
    html = response.content.decode()
    assert response.status_code == 409  # a conflict, said on the form
    assert "A flag &#x27;checkout&#x27; exists already." in error_beside(html, "key", "new-flag-key-error")
    assert 'value="Again"' in html
    assert writes() == before


def test_a_new_segment_with_bad_json_keeps_what_was_typed_open(client, panel):
    before = writes()
    typed = {"name": "vip", "description": "Paying a lot", "conditions": BAD_JSON}
    response = client.post("/apps/shop/flags/segments/", typed)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Conditions (a list) must be valid JSON" in error_beside(
        html, "conditions", "new-segment-conditions-error"
    )
    assert f">{escape(BAD_JSON)}</textarea>" in html
    assert 'value="vip"' in html and 'value="Paying a lot"' in html
    assert "<details open><summary>New segment</summary>" in html
    assert writes() == before


def test_a_segment_condition_the_engine_refuses_is_said_where_it_was_typed(client, panel):
    before = writes()
    conditions = '[{"attribute": "plan", "operator": "like", "values": ["b"]}]'
    response = client.post("/apps/shop/flags/segments/", {"name": "vip", "conditions": conditions})
    html = response.content.decode()
    assert response.status_code == 400
    said = error_beside(html, "conditions", "new-segment-conditions-error")
    assert said.startswith("conditions[0].operator: ") and "like" in said
    assert f">{escape(conditions)}</textarea>" in html
    assert writes() == before


def test_editing_a_segment_badly_reopens_that_segment_with_the_text_kept(client, panel):
    before = writes()
    response = client.post(
        "/apps/shop/flags/segments/",
        {"name": "beta", "existing": "1", "description": "Beta testers", "conditions": BAD_JSON},
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "must be valid JSON" in error_beside(html, "conditions", "segment-beta-conditions-error")
    assert "<details open><summary><code>beta</code>" in html  # that segment's form, open
    assert f">{escape(BAD_JSON)}</textarea>" in html and 'value="Beta testers"' in html
    assert "<details><summary>New segment</summary>" in html  # the new segment's form untouched, closed
    assert "new-segment-conditions-error" not in html
    assert writes() == before
    fixed = BAD_JSON + "}]"
    ok = client.post("/apps/shop/flags/segments/", {"name": "beta", "existing": "1", "conditions": fixed})
    assert ok.status_code == 302 and ok["Location"] == "/apps/shop/flags/"
    assert "Segment beta saved." in client.get(ok["Location"]).content.decode()


def test_bad_variants_json_reopens_the_flag_form_with_everything_kept(client, panel):
    before = writes()
    typed = {
        "variants": '{"plain": "Hi", "sale": ',
        "description": "Top banner",
        "owner": "ann",
        "tags": "a, b",
    }
    response = client.post("/apps/shop/flags/banner/edit/", typed)
    html = response.content.decode()
    assert response.status_code == 400
    assert "Variants (an object of name → value) must be valid JSON" in error_beside(
        html, "variants", "variants-error"
    )
    assert '<details id="flag-edit" open>' in html
    assert f">{escape(typed['variants'])}</textarea>" in html
    assert 'value="Top banner"' in html and 'value="ann"' in html and 'value="a, b"' in html
    assert writes() == before


@pytest.mark.parametrize(
    "variants, said",
    [
        ('{"plain": 5, "sale": "Sale!"}', "variants.plain: Variant &#x27;plain&#x27; is not a string."),
        # a variant the flag serves is gone: the flag's states no longer compile with what was typed
        ('{"sale": "Sale!"}', "plain"),
    ],
)
def test_variants_the_service_refuses_are_said_beside_them(client, panel, variants, said):
    app, _ = panel
    staging = app.environments.get(name="staging")
    do_change_flag_state(Actor.system(), Flag.objects.get(key="banner"), staging, default_variant="plain")
    before = writes()
    response = client.post("/apps/shop/flags/banner/edit/", {"variants": variants, "tags": "home"})
    html = response.content.decode()
    assert response.status_code == 400
    assert said in error_beside(html, "variants", "variants-error")
    assert f">{escape(variants)}</textarea>" in html
    assert writes() == before


def test_too_many_tags_are_refused_not_cut(client, panel):
    before = writes()
    tags = ", ".join(f"t{n}" for n in range(21))
    response = client.post(
        "/apps/shop/flags/banner/edit/", {"variants": '{"plain": "Welcome"}', "tags": tags}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "At most 20 tags (there are 21)." in error_beside(html, "tags", "tags-error")
    assert f'value="{tags}"' in html
    assert writes() == before
    saved = client.post(
        "/apps/shop/flags/banner/edit/", {"variants": '{"plain": "Welcome", "sale": "Sale!"}', "tags": "x, y"}
    )
    assert saved.status_code == 302 and Flag.objects.get(key="banner").tags == ["x", "y"]


def test_an_overlong_decision_comment_is_said_beside_it_and_the_change_stays_open(client, panel):
    app, people = panel
    flag = Flag.objects.get(key="checkout")
    production = app.environments.get(name="production")
    change = do_change_flag_state(Actor(people["ben"]), flag, production, enabled=True)
    assert isinstance(change, ChangeRequest)
    comment = "Looks right. " * 200  # 2,600 characters: over the 2,000 a comment holds
    response = client.post(
        f"/apps/shop/flags/checkout/changes/{change.pk}/", {"decision": "approve", "comment": comment}
    )
    html = response.content.decode()
    assert response.status_code == 400
    assert "at most 2000 characters" in error_beside(html, "comment", f"comment-error-{change.pk}")
    assert f'value="{comment}"' in html
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.OPEN and change.comment == ""
    assert not FlagState.objects.filter(environment=production, enabled=True).exists()


def test_a_proposed_change_is_said_in_words_not_as_a_python_dict(client, panel):
    app, people = panel
    flag = Flag.objects.get(key="checkout")
    production = app.environments.get(name="production")
    do_change_flag_state(Actor(people["ben"]), flag, production, enabled=True, rollout_percentage=30)
    html = client.get("/apps/shop/flags/checkout/").content.decode()
    proposal = html[html.index("Waiting for a second person") :].split("</span>", 1)[0]
    assert "switched on" in proposal and "30 %" in proposal and "proposed by ben" in proposal
    assert "{" not in proposal and "True" not in proposal


def test_a_change_that_can_no_longer_apply_is_said_on_its_decision_form_and_stays_open(client, panel):
    """Ben proposed serving `sale` in production; `sale` was removed from the flag since. Approving it fails only
    when it is applied: the flag page says why on that change's form, with ann's comment kept, and nothing moves."""
    app, people = panel
    flag = Flag.objects.get(key="banner")
    production = app.environments.get(name="production")
    change = do_change_flag_state(
        Actor(people["ben"]), flag, production, enabled=True, default_variant="sale"
    )
    assert isinstance(change, ChangeRequest)
    do_update_flag(Actor.system(), flag, variants={"plain": "Welcome", "spring": "Spring!"})
    before = writes()
    response = client.post(
        f"/apps/shop/flags/banner/changes/{change.pk}/", {"decision": "approve", "comment": "Ship the sale"}
    )
    html = response.content.decode()
    assert response.status_code in (400, 409)
    assert 'value="Ship the sale"' in html
    said = html[html.index(f'id="change-error-{change.pk}"') :].split("</p>", 1)[0]
    assert "This change can no longer be applied" in said and "sale" in said
    assert "cannot apply now" in html  # the proposal itself says so too, for everyone looking
    change.refresh_from_db()
    assert change.status == ChangeRequest.Status.OPEN and change.comment == ""
    assert writes() == before
    assert not FlagState.objects.filter(environment=production, enabled=True).exists()


def test_a_good_flag_edit_still_redirects_and_says_so(client, panel):
    response = client.post(
        "/apps/shop/flags/banner/edit/",
        {"variants": json.dumps({"plain": "Hello", "sale": "Sale!"}), "owner": "ann", "tags": ""},
    )
    assert response.status_code == 302 and response["Location"] == "/apps/shop/flags/banner/"
    assert (
        "banner: variants, description, owner and tags saved."
        in client.get(response["Location"]).content.decode()
    )
    assert Flag.objects.get(key="banner").variants == {"plain": "Hello", "sale": "Sale!"}
