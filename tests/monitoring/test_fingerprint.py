"""Fingerprints group one error across ids and line numbers and keep different errors apart."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from monitoring.fingerprint import Frame, fingerprint, normalise_message, parse_stacktrace, title, top_frames

FRAMES = [
    Frame(module="django.core.handlers", function="inner", in_app=False),
    Frame(module="shop.views", function="checkout", lineno=12, in_app=True),
    Frame(module="shop.cart", function="total", lineno=40, in_app=True),
]


def moved(frames, delta):
    return [
        Frame(module=f.module, function=f.function, lineno=(f.lineno or 0) + delta, in_app=f.in_app)
        for f in frames
    ]


ids = st.integers(min_value=0, max_value=10**12)


@given(ids, ids, st.integers(min_value=-5, max_value=500))
def test_the_same_error_with_other_ids_and_lines_is_one_group(a, b, delta):
    first = fingerprint("KeyError", f"'user-{a}' missing in order {uuid.uuid4()}", FRAMES)
    second = fingerprint("KeyError", f"'user-{b}' missing in order {uuid.uuid4()}", moved(FRAMES, delta))
    assert first == second


@given(ids, ids)
def test_messages_alone_group_across_numbers_uuids_and_hex(a, b):
    def message(n):
        return f"Order {n} failed for {uuid.UUID(int=n)} at 0x{n:x} commit {n:040x}"

    assert normalise_message(message(a)) == normalise_message(message(b))
    assert fingerprint("OrderError", message(a)) == fingerprint("OrderError", message(b))


@given(st.text(max_size=200))
def test_normalising_is_idempotent(text):
    once = normalise_message(text)
    assert normalise_message(once) == once


@given(
    st.text(min_size=1, max_size=30, alphabet=st.characters(categories=["L"])),
    st.text(min_size=1, max_size=30, alphabet=st.characters(categories=["L"])),
)
def test_different_types_are_different_groups(a, b):
    if a.strip() != b.strip():
        assert fingerprint(a, "boom", FRAMES) != fingerprint(b, "boom", FRAMES)


def test_different_functions_or_modules_are_different_groups():
    other_function = [*FRAMES[:2], Frame(module="shop.cart", function="add", in_app=True)]
    other_module = [*FRAMES[:2], Frame(module="shop.payment", function="total", in_app=True)]
    prints = {fingerprint("KeyError", "x", f) for f in (FRAMES, other_function, other_module)}
    assert len(prints) == 3


def test_library_frames_below_the_app_do_not_split_groups():
    deeper = [*FRAMES, Frame(module="json.decoder", function="decode", in_app=False)]
    assert fingerprint("ValueError", "x", FRAMES) == fingerprint("ValueError", "x", deeper)


def test_top_frames_are_the_innermost_in_app_ones_first():
    assert [f.function for f in top_frames(FRAMES)] == ["total", "checkout"]
    assert [f.function for f in top_frames([Frame(function="a"), Frame(function="b")])] == ["b", "a"]


def test_a_custom_fingerprint_overrides_and_can_extend_the_default():
    assert fingerprint("E", "x", FRAMES, ["payments"]) == fingerprint("Other", "y", (), ["payments"])
    extended = fingerprint("E", "x", FRAMES, ["{{ default }}", "eu"])
    assert extended != fingerprint("E", "x", FRAMES) and extended != fingerprint(
        "F", "x", FRAMES, ["{{ default }}", "eu"]
    )


def test_titles_are_normalised_first_lines():
    assert title("KeyError", "'user-4711'\nmore") == "KeyError: 'user-<n>'"
    assert title("", "") == "Error"
    assert len(title("E", "x" * 5000)) == 500


def test_python_javascript_and_jvm_traces_are_read_innermost_last():
    python = (
        'Traceback (most recent call last):\n  File "/srv/shop/views.py", line 12, in checkout\n'
        '  File "/srv/shop/cart.py", line 40, in total\nKeyError: 1'
    )
    assert [f.function for f in parse_stacktrace(python)] == ["checkout", "total"]
    js = "TypeError: x\n    at total (/app/cart.js:10:5)\n    at checkout (/app/views.js:3:1)"
    assert [f.function for f in parse_stacktrace(js)] == ["checkout", "total"]
    jvm = "java.lang.NullPointerException\n\tat com.shop.Cart.total(Cart.java:42)\n\tat com.shop.Main.main(Main.java:7)"
    assert [(f.module, f.function) for f in parse_stacktrace(jvm)] == [
        ("com.shop.Main", "main"),
        ("com.shop.Cart", "total"),
    ]


@given(st.integers(min_value=1, max_value=10**6), st.integers(min_value=1, max_value=10**6))
def test_text_traces_group_across_line_numbers(a, b):
    def trace(n):
        return f'  File "/srv/shop-{n % 7}.0/shop/views.py", line {n}, in checkout\n  File "cart.py", line {n + 1}, in total'

    assert fingerprint("KeyError", "", parse_stacktrace(trace(a))) == fingerprint(
        "KeyError", "", parse_stacktrace(trace(b))
    )
