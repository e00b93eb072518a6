#!/usr/bin/env python
"""`make bench`: run every bench/*.py script in turn; each prints `bench: <area>.<name> <value> <unit>` lines."""

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    failures = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name in {"run.py", "__init__.py"} or script.name.startswith("_"):
            continue
        started = time.monotonic()
        print(f"# {script.name}", flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=HERE.parent)
        print(
            f"# {script.name} took {time.monotonic() - started:.1f} s (exit {result.returncode})", flush=True
        )
        failures += result.returncode != 0
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
