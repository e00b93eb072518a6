"""Each application's `access_version` as this process last saw it, for caches of token checks (the OFREP route).

A cached token check remembers the version it was made under; once this process knows a newer one, the check is
made again before the token is used. Services that change access (`do_grant_role`, `do_revoke_role`,
`do_revoke_api_token`) tell this process after commit (`saw`), so here it applies at once; other processes
read the versions in the background at most every `CHECK_EVERY` seconds (`refresh`), so there it applies within
about that time. Versions only grow, so a late or racing reader can never move one back.
"""

from __future__ import annotations

import threading
import time

CHECK_EVERY = 0.25

# application id → (highest version seen, when the database was last asked)
_versions: dict[int, tuple[int, float]] = {}
_lock = threading.Lock()  # writers only (request threads after commit, refresh threads); readers take none


def known(application_id: int) -> tuple[int, float] | None:
    """(version, checked at) without touching the database: the hot path's read."""
    return _versions.get(application_id)


def saw(application_id: int, version: int, *, checked: bool = False) -> None:
    """Record a version read or written in this process; `checked` also resets the background-check clock."""
    with _lock:
        old = _versions.get(application_id)
        checked_at = time.monotonic() if checked or old is None else old[1]
        _versions[application_id] = (max(version, old[0] if old else version), checked_at)


def refresh(application_ids) -> None:
    """Read the current versions of some applications (one small query); run off the request path."""
    from releases.models import Application

    ids = list(application_ids)
    for pk, version in Application.objects.filter(pk__in=ids).values_list("pk", "access_version"):
        saw(pk, version, checked=True)


def stale(application_id: int) -> bool:
    entry = _versions.get(application_id)
    return entry is None or time.monotonic() - entry[1] >= CHECK_EVERY


def clear() -> None:
    _versions.clear()
