"""Text people type has a maximum everywhere: a 3,000-character flag name or key is refused with a 400 naming the
field, beside the field on the page (what was typed kept) and in the API's field-keyed errors; and every text field
of every page form and input serializer declares its maximum."""

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest
from django import forms
from rest_framework import serializers

from flags.models import Flag
from tests import factories
from tests.conftest import token_client

ROOT = Path(__file__).resolve().parents[2]
LONG = "a" * 3000
# Not typed by people: the response shape the docs show, and what error SDKs and metric pushers send, which the
# parser (monitoring/parsing.py) cuts to its documented limits instead of refusing an error report.
MACHINE = {
    "config.schema.Error.code",
    "config.schema.Error.detail",
    "monitoring.api.views.ErrorIn.message",
    "monitoring.api.views.ErrorIn.stacktrace",
    "monitoring.api.views.ErrorIn.fingerprint",
    "monitoring.api.views.SampleLabels.environment",
    "monitoring.api.views.SampleLabels.version",
    "monitoring.api.views.SampleLabels.target",
}
APPS = ("config", "dashboard", "environments", "flags", "monitoring", "releases")


@pytest.fixture
def editor(client, app):
    person = factories.UserFactory(username="pm")
    factories.MembershipFactory(user=person, application=app, role="flag_editor")
    client.force_login(person)
    return client


@pytest.mark.parametrize(
    "field,other", [("name", {"key": "new-checkout"}), ("key", {"name": "New checkout"})]
)
def test_the_page_refuses_a_3000_character_flag_field_beside_it(editor, field, other):
    response = editor.post("/apps/shop/flags/", {field: LONG, **other})
    assert response.status_code == 400
    html = response.content.decode()
    error_id = f"new-flag-{field}-error"
    assert f'<p class="field-error" id="{error_id}">' in html
    assert f'aria-invalid="true" aria-describedby="{error_id}"' in html
    assert f'value="{LONG}"' in html  # what was typed is kept
    assert not Flag.objects.exists()


@pytest.mark.parametrize("field", ["name", "key"])
def test_the_api_refuses_a_3000_character_flag_field_naming_it(app, field):
    person = factories.UserFactory(username="pm")
    factories.MembershipFactory(user=person, application=app, role="flag_editor")
    api = token_client(person, "flags:write")
    body = {"key": "new-checkout", "name": "New checkout", field: LONG}
    response = api.post("/api/v1/applications/shop/flags/", body, format="json")
    errors = response.json()
    assert response.status_code == 400 and set(errors) == {field, "code"}, errors
    assert any("no more than" in message for message in errors[field])
    assert not Flag.objects.exists()


def _modules():
    for app in APPS:
        package = importlib.import_module(app)
        for info in pkgutil.walk_packages(package.__path__, f"{app}."):
            if ".migrations" in info.name or ".management" in info.name:
                continue
            try:
                yield importlib.import_module(info.name)
            except ImportError:  # an optional driver's dependency
                continue


def _text_fields():
    """(where, field) for each text field of the project's own forms and input serializers."""
    seen = set()
    for module in _modules():
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or cls in seen:
                continue
            seen.add(cls)
            if issubclass(cls, forms.BaseForm):
                for field_name, field in cls.base_fields.items():
                    if isinstance(field, forms.CharField):
                        yield f"{cls.__module__}.{name}.{field_name}", field
            elif issubclass(cls, serializers.Serializer) and not name.endswith("Out"):
                for field_name, field in cls._declared_fields.items():
                    if field.read_only:
                        continue
                    if isinstance(field, serializers.ListField) and isinstance(
                        field.child, serializers.CharField
                    ):
                        field = field.child
                    if isinstance(field, serializers.CharField):
                        yield f"{cls.__module__}.{name}.{field_name}", field


def test_every_typed_text_field_has_a_maximum():
    fields = list(_text_fields())
    assert len(fields) > 20  # the walk found the forms and serializers
    assert "flags.views.NewFlagForm.name" in {where for where, _ in fields}
    assert "flags.api.views.FlagIn.name" in {where for where, _ in fields}
    unbounded = [where for where, field in fields if not field.max_length and where not in MACHINE]
    assert not unbounded, unbounded


def _condition(attribute: str, values: list[str]) -> list[dict]:
    return [{"conditions": [{"attribute": attribute, "operator": "in", "values": values}], "variant": "on"}]


@pytest.mark.parametrize(
    "rules,field",
    [
        (_condition(LONG, ["FR"]), "rules[0].conditions[0].attribute"),
        (_condition("country", ["FR", LONG]), "rules[0].conditions[0].values[1]"),
        ([{"targeting_keys": ["ann", LONG], "variant": "on"}], "rules[0].targeting_keys[1]"),
    ],
)
def test_the_api_refuses_a_3000_character_rule_attribute_or_value_naming_it(app, rules, field):
    """The engine's validation (shared by the API and the panel) has the maxima: a JSON string is not a form field."""
    factories.EnvironmentFactory(application=app, name="production")
    person = factories.UserFactory(username="pm")
    factories.MembershipFactory(user=person, application=app, role="flag_editor")
    api = token_client(person, "flags:write")
    assert (
        api.post("/api/v1/applications/shop/flags/", {"key": "new-checkout"}, format="json").status_code
        == 201
    )
    url = "/api/v1/applications/shop/flags/new-checkout/environments/production/"
    response = api.patch(url, {"rules": rules}, format="json")
    body = response.json()
    assert response.status_code == 400 and body["code"] == "flag_config_invalid", body
    assert "at most" in str(body[field]) and "3,000" in str(body[field]), body
    assert LONG not in response.content.decode()  # named, not echoed


def test_the_api_refuses_a_3000_character_variant_name(app):
    factories.EnvironmentFactory(application=app, name="production")
    person = factories.UserFactory(username="pm")
    factories.MembershipFactory(user=person, application=app, role="flag_editor")
    api = token_client(person, "flags:write")
    body = {"key": "colour", "type": "string", "variants": {"red": "red", LONG: "blue"}}
    response = api.post("/api/v1/applications/shop/flags/", body, format="json")
    errors = response.json()
    assert response.status_code == 400 and "variants" in errors, errors
    assert "at most 100 characters" in str(errors["variants"])
    assert not Flag.objects.exists()


def test_the_panel_refuses_a_long_rule_attribute_beside_its_row(editor, app):
    factories.EnvironmentFactory(application=app, name="staging")
    assert editor.post("/apps/shop/flags/", {"key": "new-checkout"}).status_code == 302
    form = {
        "enabled": "on", "default_variant": "on", "off_variant": "off", "rules_from": "builder",
        "rule-0-attribute": "c" * 150, "rule-0-operator": "in", "rule-0-values": "FR", "rule-0-serve": "on",
    }  # fmt: skip
    response = editor.post("/apps/shop/flags/new-checkout/env/staging/", form)
    assert response.status_code == 400
    assert "at most 100 characters" in response.content.decode()
