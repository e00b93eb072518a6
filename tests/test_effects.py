"""`config.effects.after_commit`: the one way effects wait for the commit."""

import pytest
from django.db import transaction

from config.effects import after_commit


def test_an_effect_runs_after_commit_with_its_arguments(db, django_capture_on_commit_callbacks):
    seen = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        after_commit(seen.append, 12)
        after_commit(lambda: seen.append("bare"))
        assert seen == []
    assert seen == [12, "bare"] and len(callbacks) == 2


def test_a_robust_effect_failing_leaves_the_others_and_a_plain_one_reaches_the_caller(transactional_db):
    seen = []

    def fail():
        raise RuntimeError("effect failed")

    with transaction.atomic():
        after_commit(fail)
        after_commit(seen.append, "after")
    assert seen == ["after"]
    with pytest.raises(RuntimeError), transaction.atomic():
        after_commit(fail, robust=False)


def test_nothing_runs_for_a_rolled_back_transaction(transactional_db):
    seen = []
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        after_commit(seen.append, 1)
        raise ZeroDivisionError
    assert seen == []
