import signal

import uvicorn
from django.conf import settings
from django.core.management.base import BaseCommand

from config.runtime import start_embedded_services


class Command(BaseCommand):
    help = "Serve Slipway's ASGI app (HTTP + WebSockets) with uvicorn; embedded mode also runs its worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-embedded", action="store_true", help="Don't start in-process worker or demo fleet."
        )

    def handle(self, *, host, port, no_embedded, **options):
        stop = None if no_embedded else start_embedded_services(port=port)

        def stop_and_exit(signum, frame):
            # uvicorn re-raises the signal it stopped on: stop the worker and the demo fleet first.
            if stop is not None:
                stop()
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop_and_exit)
        try:
            uvicorn.run(
                "config.asgi:application",
                host=host,
                port=port,
                lifespan="off",
                timeout_graceful_shutdown=3,
                log_level="info" if settings.DEBUG else "warning",
                ws="websockets-sansio",
            )
        finally:
            if stop is not None:
                stop()
                stop = None
