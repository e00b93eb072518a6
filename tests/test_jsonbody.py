"""The bounded JSON body parser (config/jsonbody.py): pure, no database."""

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import jsonbody
from config.jsonbody import BodyError, deeper_than, id_from_path, parse, positive_id

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=30,
)


def depth(value) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(json_values, st.integers(0, 8))
def test_depth_is_measured_like_a_recursive_walk(value, limit):
    raw = json.dumps(value).encode()
    assert deeper_than(raw, limit) == (depth(value) > limit)


@given(json_values)
def test_what_fits_comes_back_unchanged(value):
    assert parse(json.dumps(value), max_depth=64) == value


def standard(raw, **options):
    """`parse` through the standard parser and its hooks only (no orjson fast path)."""
    fast = jsonbody._NUL_ESCAPE
    jsonbody._NUL_ESCAPE = b""  # in every body
    try:
        return parse(raw, **options)
    finally:
        jsonbody._NUL_ESCAPE = fast


@given(json_values, st.booleans())
def test_the_fast_path_gives_what_the_standard_parser_gives(value, ascii_only):
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    parsed = parse(raw, max_depth=64)
    assert parsed == standard(raw, max_depth=64) == value
    assert json.dumps(parsed) == json.dumps(value)  # same types too: 1 stays an int, 1.0 a float


@pytest.mark.parametrize(
    "raw",
    [
        b'{"context": {"targetingKey": "user-1", "country": "FR", "age": 42, "score": -0.5}}',
        b'{"targetingKey": "9223372036854775808"}',
        b'{"big": 1e300, "small": -1.5e-300, "edge": 9223372036854775807, "low": -9223372036854775808}',
        b'{"huge": 18446744073709551615}',  # orjson reads it as an int: refused by both paths
        b'\xef\xbb\xbf{"bom": true}',  # orjson refuses a BOM, the standard parser takes it
        b"  [1, 2.5, true, null]  ",
    ],
)
def test_bodies_parse_alike_on_either_path(raw):
    try:
        expected = standard(raw)
    except BodyError as error:
        assert refused(raw).as_json() == error.as_json()
        return
    assert parse(raw) == expected == json.loads(raw)


def refused(raw, **limits) -> BodyError:
    with pytest.raises(BodyError) as caught:
        parse(raw, **limits)
    return caught.value


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"[" * 33 + b"]" * 33,
    ],
)
def test_deep_json_is_a_400_naming_the_depth_without_recursing(raw):
    started = time.monotonic()
    error = refused(raw)
    assert (error.status, error.code) == (400, "too_deep") and "32 levels" in error.detail
    assert time.monotonic() - started < 0.5


def test_brackets_inside_strings_do_not_count():
    raw = json.dumps({"output": "[" * 10_000, "nested": [[[1]]]}).encode()
    assert parse(raw)["nested"] == [[[1]]]


@pytest.mark.parametrize(
    "raw,code",
    [
        (b"x" * (1024 * 1024 + 1), "too_large"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"id": 99999999999999999999999}', "out_of_range"),
        (b'{"id": 9223372036854775808}', "out_of_range"),
        (b'{"id": -9223372036854775809}', "out_of_range"),
        (b"1" * 5000, "out_of_range"),  # longer than Python's int parsing allows
        (b'{"x": 1e999}', "out_of_range"),
        (b'{"x": NaN}', "invalid_json"),
        (b'{"x": Infinity}', "invalid_json"),
        (b'{"x": "\\ud800"}', "invalid_json"),
        (b'{"\\u0000": 1}', "invalid_json"),
        (b'["a\\u0000b"]', "invalid_json"),
    ],
)
def test_bad_bodies_are_refused_with_a_code(raw, code):
    error = refused(raw)
    assert error.code == code
    assert error.status == (413 if code == "too_large" else 400)
    assert error.as_json() == {"code": code, "detail": error.detail}


def test_limits_and_nul_replacement():
    assert parse(b"") is None and parse(b"  ", empty={}) == {}
    assert parse(b'{"a": [1, 2]}', max_depth=2) == {"a": [1, 2]}
    assert refused(b'{"a": [1, 2]}', max_depth=1).code == "too_deep"
    assert refused(b"[1]" * 10, max_bytes=20).detail == "The body is larger than 20 bytes."
    assert parse(b'{"out\\u0000": ["a\\u0000", {"b": "\\u0000"}]}', replace_nul=True) == {
        "out\ufffd": ["a\ufffd", {"b": "\ufffd"}]
    }
    assert parse(b'"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is fine
    assert parse(b"9223372036854775807") == jsonbody.INT64_MAX


def test_ids():
    assert positive_id(7, "job") == 7
    for bad in (0, -1, 2**63, True, 1.0, "7", None):
        with pytest.raises(BodyError) as caught:
            positive_id(bad, "job")
        assert (caught.value.status, caught.value.field) == (400, "job")
    assert id_from_path("42") == 42 and id_from_path("9223372036854775807") == 2**63 - 1
    for bad in ("0", "-1", "99999999999999999999999", "9223372036854775808", "abc", "", "١٢", "1e3", " 1"):
        assert id_from_path(bad) is None
