"""Evaluation counts without a database write per evaluation: counted in memory, flushed every few seconds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import F

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

    def flush(self) -> int:
        with self._lock:
            counts, self._counts = self._counts, Counter()
            self._last_flush = time.monotonic()
        if not counts:
            return 0
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        with transaction.atomic():
            for (environment_id, key, variant), n in counts.items():
                updated = EvaluationCount.objects.filter(environment_id=environment_id, flag_key=key, variant=variant,
                                                         hour=hour).update(count=F("count") + n)
                if not updated:
                    EvaluationCount.objects.create(environment_id=environment_id, flag_key=key, variant=variant,
                                                   hour=hour, count=n)
        return len(counts)


usage = UsageCounter()
