#!/usr/bin/env python
"""`make bench`: run every bench/*.py script in turn; each prints `bench: <area>.<name> <value> <unit>` lines.

`make bench BENCH=flags_engine` (or `BENCH=rollouts_http,flags_ofrep`) runs only the scripts named, without `.py`;
arguments after a name are passed to it: `BENCH="rollouts_http postgres"` runs the HTTP rollout bench on
PostgreSQL only.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    return [
        script
        for script in sorted(HERE.glob("*.py"))
        if script.name not in {"run.py", "__init__.py"} and not script.name.startswith("_")
    ]


def selected() -> list[tuple[Path, list[str]]]:
    """The scripts BENCH names (all of them when unset), each with its arguments."""
    wanted = os.environ.get("BENCH", "").strip()
    known = {script.stem: script for script in scripts()}
    if not wanted:
        return [(script, []) for script in known.values()]
    chosen = []
    for part in wanted.split(","):
        name, *args = part.split()
        if name not in known:
            raise SystemExit(f"BENCH={wanted!r}: no bench/{name}.py (known: {', '.join(known)})")
        chosen.append((known[name], args))
    return chosen


def main() -> int:
    failures = 0
    for script, args in selected():
        started = time.monotonic()
        print(f"# {script.name}", flush=True)
        result = subprocess.run([sys.executable, str(script), *args], cwd=HERE.parent)
        print(
            f"# {script.name} took {time.monotonic() - started:.1f} s (exit {result.returncode})", flush=True
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
