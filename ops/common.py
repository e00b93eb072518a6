"""What the scripts that drive a real Slipway share — `make screenshots`, the benches and the browser tests: a JSON
call to its API and the Chromium they drive (Debian's, through Playwright; Playwright's own download does not work
on these machines)."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def call_json(url: str, key: str | None, method: str = "GET", body: object = None) -> tuple[int, Any]:
    """One API call, with a bearer token when there is one: its status and its decoded JSON body (None when it has
    none), 4xx and 5xx answers included."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        url, method=method, data=json.dumps(body).encode() if body is not None else None, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
