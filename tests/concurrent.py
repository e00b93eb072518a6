"""Racing callers on real PostgreSQL: threads released together, each with its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable


def at_once[T](call: Callable[[], T], times: int = 4, timeout: float = 60) -> tuple[list[T], list[Exception]]:
    """Run `call` in `times` threads released by one barrier; their results and their exceptions."""
    from django.db import connection

    barrier = threading.Barrier(times)
    results: list[T] = []
    errors: list[Exception] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(call())
        except Exception as error:  # collected for the test to assert on
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results, errors
