"""monitoring.expressions: conditions parsed without eval, checked when saved, evaluated safely."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.expressions import EvaluationError, ExpressionInvalid, compile_expression

VALUES = {"error_rate": 0.004, "latency_p95": 250.0, "result": [0.995, 0.5], "nan": math.nan, "zero": 0.0}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("error_rate < 0.01", True),
        ("result[0] >= 0.99 and latency_p95 < 300", True),
        ("result[1] >= 0.99 or latency_p95 > 200", True),
        ("not error_rate < 0.01", False),
        ("! (error_rate < 0.01) || latency_p95 == 250", True),
        ("error_rate < 0.01 && latency_p95 != 250", False),
        ("true or false and false", True),  # and binds tighter than or
        ("not false and false", False),  # not binds tighter than and
        ("error_rate * 100 < 0.5", True),
        ("-latency_p95 < -200 + 1", True),
        ("(latency_p95 - 50) / 2 == 100", True),
        ("1e-3 < error_rate", True),
        (".5 < result[1] + 0.1", True),
        ("nan < 1 or nan >= 1", False),  # comparisons with NaN are false
        ("nan != nan", True),
        ("latency_p95 / zero > 1e308", True),  # x/0 is inf
        ("zero / zero == zero / zero", False),  # 0/0 is NaN
    ],
)
def test_conditions_evaluate(source, expected):
    assert compile_expression(source).evaluate(VALUES) is expected


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        ("error_rate <", 12, "ends too early"),
        ("error_rate = 0.01", 11, "compare with `==`"),
        ("error_rate < 0.01 & x < 1", 18, "write `and`"),
        ("0 < error_rate < 1", 15, "one comparison at a time"),
        ("error_rate", 0, "expected a condition"),
        ("(error_rate < 1", 15, "expected `)`"),
        ("error_rate < 1)", 14, "unexpected ')'"),
        ("error_rate and x < 1", 0, "`and` needs a condition"),
        ("not error_rate", 4, "`not` needs a condition"),
        ("(a < 1) + 1 > 0", 1, "`+` needs a number"),
        ("result[0.5] > 0", 7, "whole number"),
        ("result[0 > 0", 9, "expected `]`"),
        ("", 0, "empty expression"),
        ("__import__('os').system('true')", 11, 'unexpected character "\'"'),
        ("a < 1 # comment", 6, "unexpected character '#'"),
    ],
)
def test_invalid_conditions_name_the_position(source, position, message):
    with pytest.raises(ExpressionInvalid) as error:
        compile_expression(source, field="success_condition")
    assert error.value.position == position
    assert message in error.value.message
    assert str(error.value).startswith(f"success_condition: {error.value.message} at position {position + 1}")


def test_deep_nesting_and_long_sources_are_refused_not_crashed():
    with pytest.raises(ExpressionInvalid, match="nested too deeply"):
        compile_expression("(" * 200 + "a < 1" + ")" * 200)
    with pytest.raises(ExpressionInvalid, match="nested too deeply"):
        compile_expression("not " * 200 + "a < 1")
    with pytest.raises(ExpressionInvalid, match="longer than"):
        compile_expression("a < 1 and " * 200 + "a < 1")


def test_evaluation_errors_say_what_is_missing():
    expression = compile_expression("result[2] > 0")
    with pytest.raises(EvaluationError, match=r"result has 2 value\(s\): no \[2\]"):
        expression.evaluate(VALUES)
    with pytest.raises(EvaluationError, match="index it"):
        compile_expression("result > 0").evaluate(VALUES)
    with pytest.raises(EvaluationError, match="not a list"):
        compile_expression("error_rate[0] > 0").evaluate(VALUES)
    with pytest.raises(EvaluationError, match="no value named 'p99'"):
        compile_expression("p99 > 0").evaluate(VALUES)
    with pytest.raises(EvaluationError, match="not a number"):
        compile_expression("label > 0").evaluate({"label": "high"})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab01.<>=!&|()[]-+*/ andortuefls", max_size=40))
def test_any_text_compiles_or_is_refused_with_a_position(source):
    try:
        compile_expression(source)
    except ExpressionInvalid as error:
        assert 0 <= error.position <= len(source)


# Random well-typed trees, rendered to text; the expected value is computed from the tree itself.
numbers = st.recursive(
    st.one_of(
        st.floats(0, 100, allow_nan=False).map(lambda f: (repr(round(f, 3)), round(f, 3))),
        st.sampled_from([("x", 3.0), ("y", -2.5), ("r[1]", 7.0)]),
    ),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from("+-*"), inner).map(
            lambda t: (
                f"({t[0][0]} {t[1]} {t[2][0]})",
                {"+": t[0][1] + t[2][1], "-": t[0][1] - t[2][1], "*": t[0][1] * t[2][1]}[t[1]],
            )
        ),
        inner.map(lambda t: (f"-{t[0]}", -t[1])),
    ),
    max_leaves=6,
)
comparisons = st.tuples(numbers, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), numbers).map(
    lambda t: (
        f"{t[0][0]} {t[1]} {t[2][0]}",
        {
            "<": t[0][1] < t[2][1],
            "<=": t[0][1] <= t[2][1],
            ">": t[0][1] > t[2][1],
            ">=": t[0][1] >= t[2][1],
            "==": t[0][1] == t[2][1],
            "!=": t[0][1] != t[2][1],
        }[t[1]],
    )
)
conditions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "&&"]), inner).map(
            lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", t[0][1] and t[2][1])
        ),
        st.tuples(inner, st.sampled_from(["or", "||"]), inner).map(
            lambda t: (f"({t[0][0]} {t[1]} {t[2][0]})", t[0][1] or t[2][1])
        ),
        inner.map(lambda t: (f"not {t[0]}", not t[1])),
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(conditions)
def test_conditions_evaluate_like_their_tree(condition):
    source, expected = condition
    assert compile_expression(source).evaluate({"x": 3.0, "y": -2.5, "r": [0.0, 7.0]}) is expected
