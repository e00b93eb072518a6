"""Small promises every page keeps: a favicon, a way back from the API docs, confirmations without inline script."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 301 and response["Location"].endswith("favicon.svg")


def test_api_docs_link_back_to_slipway(admin_client):
    schema = admin_client.get("/api/v1/schema/?format=json").json()
    assert "[← Back to Slipway](/)" in schema["info"]["description"]


@pytest.mark.parametrize(
    "template", sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob("*/templates/**/*.html"))
)
def test_templates_carry_no_inline_event_handlers(template):
    """Confirmations and slider values come from static/js/slipway.js via data attributes (CSP-friendly)."""
    text = (ROOT / template).read_text()
    assert not re.search(r"\son(click|submit|input|change|load)=", text), template
