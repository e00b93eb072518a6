"""The bulk answer from pieces (`flags.ofrep.bulk_answer`) is byte for byte `bulk_body`'s, counts what it answered,
and follows a new snapshot of the environment."""

import pytest

from flags import ofrep
from flags.engine import compile_snapshot, evaluate_all


def flag(key, **overrides):
    return {
        "key": key,
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "enabled": True,
        "off_variant": "off",
        "default_variant": "off",
        **overrides,
    }


def snapshot(percentage=50, metadata=None):
    return compile_snapshot(
        {
            "flags": [
                flag("static", default_variant="on", metadata=metadata or {}),
                flag("rolled", rollout={"percentage": percentage, "weights": {"on": 100}}),
                flag(
                    "split",
                    rules=[
                        {
                            "conditions": [{"attribute": "country", "operator": "in", "values": ["FR"]}],
                            "split": {"on": 50, "off": 50},
                        }
                    ],
                ),
                flag("off", enabled=False),
            ]
        }
    )


CONTEXTS = [
    {"targetingKey": "u1", "country": "FR"},
    {"targetingKey": "u2", "country": "US"},
    {"targetingKey": "u1", "country": "FR"},  # the same answer again: from the pieces
    {"country": "FR"},  # no targeting key: TARGETING_KEY_MISSING for the rollout and the split
    ["not", "a", "mapping"],  # INVALID_CONTEXT, made per call
    {},
]


@pytest.fixture(autouse=True)
def fresh_pieces():
    ofrep._pieces.clear()
    yield
    ofrep._pieces.clear()


def test_bulk_answer_is_bulk_body():
    s = snapshot()
    for context in CONTEXTS:
        results = evaluate_all(s, context)  # type: ignore[arg-type]
        body, etag, counted = ofrep.bulk_answer(7, s.version, results)
        assert (body, etag) == ofrep.bulk_body(s.version, results)
        assert counted == [(7, key, r.variant or "") for key, r in results.items() if not r.error_code]


def test_a_new_snapshot_replaces_the_pieces_of_its_environment():
    before, after = snapshot(metadata={"owner": "a"}), snapshot(metadata={"owner": "b"})
    context = {"targetingKey": "u1", "country": "FR"}
    ofrep.bulk_answer(7, before.version, evaluate_all(before, context))
    results = evaluate_all(after, context)
    body, etag, _ = ofrep.bulk_answer(7, after.version, results)
    assert (body, etag) == ofrep.bulk_body(after.version, results) and b'"owner":"b"' in body
    assert ofrep._pieces[7][0] == after.version


def test_pieces_are_per_environment():
    s = snapshot()
    context = {"targetingKey": "u1", "country": "FR"}
    _, _, first = ofrep.bulk_answer(7, s.version, evaluate_all(s, context))
    _, _, second = ofrep.bulk_answer(8, s.version, evaluate_all(s, context))
    assert {e for e, _, _ in first} == {7} and {e for e, _, _ in second} == {8}
