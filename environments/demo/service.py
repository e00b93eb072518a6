"""A tiny demo web service: serves the version in its state file; `/health` fails for a `broken` version.

`python -m environments.demo.service --port 9101 --state-file DIR/state.json --name web-1`
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def current_version(state_file: Path) -> str | None:
    try:
        return json.loads(state_file.read_text()).get("version")
    except (OSError, ValueError):
        return None


def make_handler(state_file: Path, name: str):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            version = current_version(state_file)
            if self.path == "/health":
                healthy = version is not None and "broken" not in version
                self.reply(
                    200 if healthy else 500,
                    "application/json",
                    json.dumps({"version": version, "healthy": healthy}),
                )
            else:
                self.reply(200, "text/html", f"<h1>shop {version or '(nothing deployed)'} on {name}</h1>")

        def reply(self, status: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    parser.add_argument("--name", default="web")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(args.state_file, args.name))
    server.serve_forever()


if __name__ == "__main__":
    main()
