"""Evaluation counts without a database write per evaluation: counted in memory, flushed every few seconds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

from django.db import connection, transaction

from dashboard.live import publish_on_commit
from environments.models import Environment
from flags.models import EvaluationCount

FLUSH_EVERY = 5.0


class UsageCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[int, str, str]] = Counter()
        self._last_flush = time.monotonic()

    def add(self, environment_id: int, resolutions) -> None:
        with self._lock:
            for key, resolution in resolutions:
                self._counts[(environment_id, key, resolution.variant or "")] += 1
        if time.monotonic() - self._last_flush > FLUSH_EVERY:
            self.flush()

    def add_async(self, environment_id: int, resolutions) -> None:
        """From the event loop: count now, flush in a worker thread so the loop never waits on the database."""
        self.count_async([(environment_id, key, resolution.variant or "") for key, resolution in resolutions])

    def count_async(self, keys: list[tuple[int, str, str]]) -> None:
        """`add_async` for keys `(environment id, flag, variant)` made already (`flags.ofrep.bulk_answer`)."""
        with self._lock:
            self._counts.update(keys)  # counted in C
            due = time.monotonic() - self._last_flush > FLUSH_EVERY
            if due:
                self._last_flush = time.monotonic()
        if due:
            threading.Thread(target=self._flush_and_close, daemon=True).start()

    def _flush_and_close(self) -> None:
        from django.db import connection

        try:
            self.flush()
        finally:
            connection.close()

    def flush(self) -> int:
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._last_flush = time.monotonic()
        if not counts:
            return 0
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        table = EvaluationCount._meta.db_table
        # Counts of an environment deleted meanwhile are dropped, not allowed to fail the others' insert.
        existing = dict(
            Environment.objects.filter(pk__in={e for e, _, _ in counts}).values_list("pk", "application_id")
        )
        rows = [
            (environment_id, key, variant, hour, n)
            for (environment_id, key, variant), n in sorted(counts.items())
            if environment_id in existing
        ]
        if not rows:
            return 0
        # One statement, rows in a fixed order: processes flushing at once neither lose counts nor deadlock.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} (environment_id, flag_key, variant, hour, count) VALUES (%s, %s, %s, %s, %s) "
                f"ON CONFLICT (environment_id, flag_key, variant, hour) DO UPDATE SET count = {table}.count + EXCLUDED.count",
                rows,
            )
            # The flag pages' evaluation charts grow: once per application per flush, not per evaluation.
            for application_id in sorted({existing[row[0]] for row in rows}):
                publish_on_commit(f"flags.{application_id}", "flags.evaluated", application_id=application_id)
        return len(rows)


usage = UsageCounter()
