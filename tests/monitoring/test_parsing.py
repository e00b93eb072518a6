"""Envelopes, events and samples checked and shaped without a database."""

import contextlib
import gzip
import zlib
from datetime import UTC, datetime

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.parsing import (
    MAX_SAMPLES,
    BadInput,
    decompress,
    error_from_json,
    error_from_sentry,
    parse_envelope,
    parse_samples,
)


def test_envelope_items_with_and_without_length_and_other_types_skipped():
    raw = (
        b'{"event_id":"' + b"b" * 32 + b'"}\n'
        b'{"type":"session"}\n{"sid":"1"}\n'
        b'{"type":"event","length":15}\n{"message":"x"}\n'
        b'{"type":"attachment","length":3}\na\nb\n'
        b'{"type":"event"}\n{"message":"y"}'
    )
    events = parse_envelope(raw)
    assert [(n, e["message"]) for n, e in events] == [(1, "x"), (3, "y")]
    assert events[0][1]["event_id"] == "b" * 32  # from the envelope header


@pytest.mark.parametrize(
    "raw, item",
    [
        (b'{}\n{"type":"event"}\n[1]\n', 0),
        (b'{}\n{"type":"session"}\n{}\n{"type":"event","length":99}\n{}\n', 1),
        (b'{}\n{"type":"session"}\n{}\nnope\n', 1),
    ],
)
def test_bad_items_are_named(raw, item):
    with pytest.raises(BadInput) as refused:
        parse_envelope(raw)
    assert refused.value.item == item


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused_cleanly(raw):
    with contextlib.suppress(BadInput):
        parse_envelope(raw)


def test_decompression_is_bounded_and_named():
    body = b"x" * 10_000
    assert decompress(gzip.compress(body), "gzip", 20_000) == body
    assert decompress(zlib.compress(body), "deflate", 20_000) == body
    assert decompress(brotli.compress(body), "br", 20_000) == body
    for encoding, packed in (("gzip", gzip.compress(body)), ("br", brotli.compress(body))):
        with pytest.raises(BadInput) as refused:
            decompress(packed, encoding, 5_000)
        assert refused.value.status == 413
    with pytest.raises(BadInput) as refused:
        decompress(b"plain", "gzip", 5_000)
    assert refused.value.field == "Content-Encoding"
    with pytest.raises(BadInput) as refused:
        decompress(b"plain", "zstd", 5_000)
    assert refused.value.status == 415


def test_a_sentry_event_maps_release_environment_and_server_name():
    event = {
        "event_id": "C" * 32,
        "release": "shop@1.4.0",
        "environment": "staging",
        "server_name": "web-3",
        "timestamp": "2026-05-01T10:00:00.5Z",
        "exception": {
            "values": [
                {"type": "ValueError", "value": "cause"},
                {
                    "type": "KeyError",
                    "value": "'user-12'",
                    "stacktrace": {
                        "frames": [
                            {
                                "module": "shop.views",
                                "function": "checkout",
                                "lineno": 3,
                                "in_app": True,
                                "filename": "shop/views.py",
                            }
                        ]
                    },
                },
            ]
        },
    }
    error = error_from_sentry(event, "shop")
    assert (error.version, error.environment, error.target, error.type) == (
        "1.4.0",
        "staging",
        "web-3",
        "KeyError",
    )
    assert error.event_id == "c" * 32 and error.timestamp == datetime(
        2026, 5, 1, 10, 0, 0, 500000, tzinfo=UTC
    )
    assert error.title == "KeyError: 'user-<n>'" and error.culprit == "shop.views in checkout"
    assert 'File "shop/views.py", line 3, in checkout' in error.stacktrace
    assert error_from_sentry({**event, "release": "other@2"}, "shop").version == "other@2"
    assert error_from_sentry({**event, "environment": None}, "shop").environment == "production"


def test_messages_group_by_their_template():
    a = error_from_sentry(
        {"logentry": {"message": "Order %s failed", "formatted": "Order 12 failed"}}, "shop"
    )
    b = error_from_sentry(
        {"logentry": {"message": "Order %s failed", "formatted": "Order ab failed"}}, "shop"
    )
    assert a.fingerprint == b.fingerprint and a.message == "Order 12 failed" and a.type == "message"
    with pytest.raises(BadInput) as refused:
        error_from_sentry({"level": "error"}, "shop", item=2)
    assert refused.value.item == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ([], "non_field_errors"),
        ({"type": "E"}, "environment"),
        ({"environment": "production"}, "type"),
        ({"environment": "production", "type": "E", "version": 3}, "version"),
        ({"environment": "production", "type": "E", "version": "v" * 101}, "version"),
        ({"environment": "production", "type": "E", "timestamp": "yesterday"}, "timestamp"),
        ({"environment": "production", "type": "E", "fingerprint": "x"}, "fingerprint"),
    ],
)
def test_json_errors_name_the_bad_field(body, field):
    with pytest.raises(BadInput) as refused:
        error_from_json(body)
    assert refused.value.field == field


def test_json_errors_are_bounded_and_fingerprinted_from_their_trace():
    trace = 'Traceback:\n  File "shop/cart.py", line {}, in total\n' + "x" * 50_000
    a = error_from_json(
        {
            "environment": "production",
            "type": "KeyError",
            "message": "m" * 9000,
            "stacktrace": trace.format(10),
        }
    )
    b = error_from_json(
        {"environment": "production", "type": "KeyError", "message": "other", "stacktrace": trace.format(99)}
    )
    assert a.fingerprint == b.fingerprint and len(a.message) == 2000 and len(a.stacktrace) == 16_000
    c = error_from_json({"environment": "production", "type": "KeyError", "stacktrace": "weird 1\nformat 2"})
    d = error_from_json({"environment": "production", "type": "KeyError", "stacktrace": "weird 7\nformat 9"})
    assert c.fingerprint == d.fingerprint != a.fingerprint


def sample(**overrides):
    return {
        "name": "http_errors",
        "value": 3,
        "timestamp": "2026-05-01T10:00:00Z",
        "labels": {"environment": "production", "version": "1.4.0", "target": "web-3", "route": "/cart"},
        **overrides,
    }


def test_samples_are_parsed_with_their_labels():
    [s] = parse_samples([sample()])
    assert (s.name, s.value, s.environment, s.version, s.target, dict(s.labels)) == (
        "http_errors",
        3.0,
        "production",
        "1.4.0",
        "web-3",
        {"route": "/cart"},
    )
    assert parse_samples({"samples": [sample(timestamp=1_700_000_000)]})[0].timestamp.year == 2023
    assert parse_samples([sample(timestamp=None)])[0].timestamp is None


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"name": "1bad"}, "name"),
        ({"value": "3"}, "value"),
        ({"value": True}, "value"),
        ({"value": float("inf")}, "value"),
        ({"timestamp": "soon"}, "timestamp"),
        ({"labels": None}, "labels"),
        ({"labels": {"version": "1"}}, "labels.environment"),
        ({"labels": {"environment": "production", "version": 1}}, "labels.version"),
        ({"labels": {"environment": "production", "target": "t" * 101}}, "labels.target"),
    ],
)
def test_a_bad_sample_is_named_by_index_and_field(bad, field):
    with pytest.raises(BadInput) as refused:
        parse_samples([sample(), sample(), sample(**bad)])
    assert (refused.value.index, refused.value.field) == (2, field)


def test_too_many_samples_is_413():
    with pytest.raises(BadInput) as refused:
        parse_samples([sample()] * (MAX_SAMPLES + 1))
    assert refused.value.status == 413
