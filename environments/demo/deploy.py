"""The demo agents' deploy command: "installs" $SLIPWAY_VERSION by rewriting the service's state file.

`python -m environments.demo.deploy --state-file DIR/state.json`
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args()
    version = os.environ["SLIPWAY_VERSION"]
    target = os.environ.get("SLIPWAY_TARGET", "?")
    for line in (
        f"{target}: fetching shop {version}",
        f"{target}: unpacking",
        f"{target}: switching traffic",
    ):
        print(line, flush=True)
        time.sleep(0.1)
    tmp = args.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version}))
    os.replace(tmp, args.state_file)
    print(f"{target}: now serving {version}", flush=True)


if __name__ == "__main__":
    main()
