#!/usr/bin/env python
"""`make screenshots`: every picture in docs/img, taken afresh from the demo, the same way each time.

Starts Slipway as `make run` does — on the embedded default (SQLite, in-process worker, in-memory channel layer):
`migrate`, `load_demo`, `ensure_admin`, then `manage.py serve` with its demo fleet of eight deploy agents — in a
throwaway data directory, on a free port (the fleet's services on eight free ports too), so it runs beside a
`make run`. Then Debian's Chromium (headless, through Playwright) logs in as the demo's people with the one-time
passwords the commands printed and walks the demo through what the docs show:

1. as it loads: the overview, the application's pipeline, bob's approval, the inbox as alice (her changes
   highlighted), the release page as the admin (why it is not shipping), the flags list and a flag
   page as the product manager (after an SDK's evaluations through OFREP and one toggle of hers);
2. alice and carol approve, the admin approves for the unlinked contractor: `1.3.0` rolls out to production — a
   canary of two hosts, 40 s of analysis against the other six, then the rest — pictured while it is analysed,
   and once done at 390 px (its steps as a phone shows them);
3. `1.3.1-errors` (carol's change, approved by her) goes to production; its canary's analysis fails and reverts it:
   the release page's "Why this release was reverted" and its analysis section, the Errors page, the production
   environment page and the application page.

Each picture waits for the state it shows (Playwright waits with timeouts, no fixed sleeps); the whole run takes
three to five minutes. Pictures go to docs/img (`--out DIR` for elsewhere). The data directory is removed
afterwards unless the run fails or `--keep` is given; the server's log is in it (`serve.log`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ops.common import CHROMIUM, CHROMIUM_ARGS, call_json  # noqa: E402

WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
WAIT_MS = 30_000  # a page or an element
ROLLOUT_MS = 240_000  # a production rollout: deploys, 40 s of analysis, the rest (or the revert)
# What picks another runtime than the embedded default: `make run` on a developer's machine sets none of these.
NOT_EMBEDDED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_QUEUE",
    "CHANNEL_PREFIX",
    "SLIPWAY_ENV",
    "SLIPWAY_BASE_URL",
    "STATIC_ROOT",
    "CELERY_BEAT_SCHEDULE_FILENAME",
)


def say(text: str) -> None:
    print(f"screenshots: {text}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_block(size: int) -> int:
    """The first of `size` consecutive free ports (the demo fleet's services)."""
    for _ in range(200):
        first = random.randrange(20000, 60000 - size)
        with contextlib.ExitStack() as stack:
            try:
                for port in range(first, first + size):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return first
    raise RuntimeError(f"no {size} consecutive free ports")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if value := predicate():
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(every)


class Demo:
    """A Slipway on the embedded default with the demo loaded, as `make run` starts it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.fleet_port = free_block(8)
        self.env = {k: v for k, v in os.environ.items() if k not in NOT_EMBEDDED}
        self.env.update(
            SLIPWAY_DATA_DIR=str(data_dir),
            PORT=str(self.port),  # the base URL: the DSN the demo services report their errors to
            SLIPWAY_DEMO_FLEET="1",
            SLIPWAY_DEMO_FLEET_FIRST_PORT=str(self.fleet_port),
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        self.passwords: dict[str, str] = {}
        self.server: subprocess.Popen[bytes] | None = None
        self.tokens: dict[str, str] = {}

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def load(self) -> None:
        """make run's first three steps; the passwords they print, by username."""
        self.manage("migrate", "--noinput", "-v", "0")
        printed = self.manage("load_demo")
        self.passwords.update(re.findall(r"(\w+) \([^)]*\) / ([\w-]+)", printed))
        printed = self.manage("ensure_admin")
        admin = re.search(r"Created administrator '(\w+)' with password: (\S+)", printed)
        if admin is None or set(self.passwords) != {"alice", "bob", "carol", "pm"}:
            raise RuntimeError(f"the demo's users were not printed as expected:\n{printed}")
        self.passwords[admin[1]] = admin[2]
        # The API for what the pictures don't show (status polls, requesting a release), and an SDK's OFREP tokens.
        self.tokens["admin"] = self.manage(
            "create_api_token", "--user", "admin", "--scope", "admin", "--name", "screenshots"
        ).split()[-1]
        for environment in ("staging", "production"):
            self.tokens[environment] = self.manage(
                "create_api_token",
                "--user",
                "pm",
                "--scope",
                "flags:read",
                "--environment",
                f"shop/{environment}",
                "--name",
                f"sdk-{environment}",
            ).split()[-1]

    def serve(self) -> None:
        log = open(self.data_dir / "serve.log", "wb")  # noqa: SIM115 - the server's, closed with it
        self.server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: self.api("/environments/production/targets/")[0] == 200, 60, "the server")
        wait_until(
            lambda: [t["status"] for t in self.api("/environments/production/targets/")[1]] == ["online"] * 8,
            90,
            "the demo fleet's eight agents online",
        )

    def stop(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.terminate()  # serve stops its worker and the demo fleet first
        try:
            self.server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait(timeout=10)

    def api(self, path: str, method: str = "GET", body: object = None) -> tuple[int, Any]:
        return call_json(f"{self.url}/api/v1/applications/shop{path}", self.tokens["admin"], method, body)

    def release(self, version: str, environment: str = "production") -> dict[str, Any]:
        status, page = self.api(f"/releases/?environment={environment}")
        return next(r for r in page["results"] if r["version"] == version)

    def evaluate(self, environment: str, n: int) -> None:
        """What an application's OpenFeature SDK asks: every flag for one user (OFREP's bulk evaluation)."""
        country = ("FR", "DE", "US", "GB", "NL")[n % 5]
        email = f"user{n}@example.com" if n % 7 == 0 else f"user{n}@mail.example"
        status, _ = call_json(
            f"{self.url}/ofrep/v1/evaluate/flags",
            self.tokens[environment],
            "POST",
            {"context": {"targetingKey": f"user-{n}", "country": country, "email": email}},
        )
        if status != 200:
            raise RuntimeError(f"OFREP answered {status}")


class Camera:
    """Chromium with one logged-in page per person; pictures saved under `out`."""

    def __init__(self, browser: Any, demo: Demo, out: Path) -> None:
        self.browser = browser
        self.demo = demo
        self.out = out
        self.pages: dict[str, Any] = {}

    def page(self, username: str, viewport: dict[str, int] = WIDE) -> Any:
        key = f"{username}@{viewport['width']}"
        if key not in self.pages:
            context = self.browser.new_context(viewport=viewport)
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            page.goto(self.demo.url + "/login/")
            page.get_by_label("Username").fill(username)
            page.get_by_label("Password").fill(self.demo.passwords[username])
            page.keyboard.press("Enter")
            page.wait_for_url(lambda url: "/login/" not in url)
            self.pages[key] = page
        return self.pages[key]

    def open(self, username: str, path: str, viewport: dict[str, int] = WIDE) -> Any:
        page = self.page(username, viewport)
        page.goto(self.demo.url + path)
        settle(page)
        return page

    def save(
        self, page: Any, name: str, *, full_page: bool = False, clip: dict[str, float] | None = None
    ) -> None:
        settle(page)
        path = self.out / name
        page.screenshot(path=str(path), full_page=full_page or clip is not None, clip=clip)
        say(f"{name} ({page.url.removeprefix(self.demo.url)})")

    def save_element(self, page: Any, selector: str, name: str) -> None:
        settle(page)
        page.locator(selector).screenshot(path=str(self.out / name))
        say(f"{name} ({selector} of {page.url.removeprefix(self.demo.url)})")


def settle(page: Any) -> None:
    """Loaded, the live view's socket up (no "Reconnecting…"), no field focused (no focus ring in the picture)."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function("!document.body.classList.contains('live-down')")
    page.evaluate("document.activeElement && document.activeElement.blur()")


def down_to(page: Any, selector: str) -> dict[str, float]:
    """The page's width, from its top down to just below the element."""
    box = page.locator(selector).bounding_box()
    scrolled = page.evaluate("window.scrollY")
    return {
        "x": 0,
        "y": 0,
        "width": page.viewport_size["width"],
        "height": scrolled + box["y"] + box["height"] + 16,
    }


def approve(page: Any, release_id: int, button: str) -> None:
    """Click the card's approve button and wait for htmx's answer: the card without it (or gone, in the inbox, once
    nothing waits for anyone there)."""
    card = page.locator(f"#release-{release_id}")
    card.get_by_role("button", name=button).click()
    card.get_by_role("button", name=button).wait_for(state="detached")


def shoot(camera: Camera) -> None:
    demo = camera.demo
    pending = demo.release("1.3.0")
    rid = pending["id"]

    # 1. The demo as it loads.
    page = camera.open("admin", "/")
    page.get_by_text("Waiting for your approval").wait_for()
    camera.save(page, "overview.png")
    page = camera.open("admin", "/apps/shop/")
    page.get_by_text("Waiting between environments").wait_for()
    camera.save(page, "pipeline.png")  # the first screen: pipeline, promote, what waits, the newest build

    approve(camera.open("bob", "/approvals/"), rid, "Approve my changes")
    page = camera.open("alice", "/approvals/")
    page.get_by_text("bob approved").wait_for()
    camera.save(page, "inbox.png", full_page=True)
    page = camera.open("admin", f"/releases/{rid}/")
    page.get_by_text("Why is this not shipping?").wait_for()
    camera.save(page, "release.png", full_page=True)

    # Flags: an SDK evaluates for a few hundred users; the product manager switches search-v2 on in staging.
    for n in range(240):
        demo.evaluate("production", n)
        if n % 3 == 0:
            demo.evaluate("staging", n)
    page = camera.open("pm", "/apps/shop/flags/")
    page.get_by_role("switch", name="search-v2 in staging").click()
    page.locator('[aria-label="search-v2 in staging"][aria-checked="true"]').wait_for()
    page = camera.open("pm", "/apps/shop/flags/")  # the list as anyone opening it sees it (no flash message)
    camera.save(page, "flags.png", full_page=True)
    page = camera.open("pm", "/apps/shop/flags/new-checkout/")

    def charted() -> bool:
        # Counts are flushed every 5 s when an evaluation comes in: one more now and then until both charts show.
        demo.evaluate("production", 1000)
        demo.evaluate("staging", 1000)
        return page.locator("#chart-staging svg.chart, #chart-production svg.chart").count() == 2

    wait_until(charted, 60, "the evaluation charts", every=1)
    camera.save(page, "flag.png", full_page=True)

    # 2. Everyone approves: 1.3.0 rolls out as a canary, pictured during its analysis.
    for username in ("alice", "carol"):
        approve(camera.open(username, f"/releases/{rid}/"), rid, "Approve my changes")
    page = camera.open("admin", f"/releases/{rid}/")
    approve(page, rid, "Approve for dave@contractor.example")
    # The canary's two hosts deployed and checked; the analysis running (it lasts 40 s): a few points in.
    page.locator('tr[data-action="analysis"][data-status="running"]').wait_for(timeout=ROLLOUT_MS)
    camera.save(page, "rollout-live.png", clip=down_to(page, "#rollout"))
    page.locator('#release-head[data-status="succeeded"]').wait_for(timeout=ROLLOUT_MS)
    say("1.3.0 succeeded in production")
    # At 390 px once its steps are in: the tables a phone shows as labelled cards.
    page = camera.open("admin", f"/releases/{rid}/", PHONE)
    page.locator("#rollout table.steps td[data-label]").first.wait_for()
    camera.save(page, "release-390.png", full_page=True)

    # 3. 1.3.1-errors: carol's change, approved by her; its canary fails analysis and is reverted.
    status, body = demo.api("/releases/", "POST", {"environment": "production", "version": "1.3.1-errors"})
    if status != 201:
        raise RuntimeError(f"requesting 1.3.1-errors answered {status}: {body}")
    rid = body["id"]
    if body["status"] == "pending_approval":
        approve(camera.open("carol", f"/releases/{rid}/"), rid, "Approve my changes")
    page = camera.open("admin", f"/releases/{rid}/")
    page.locator('#progress[data-rollout-status="reverted"]').wait_for(timeout=ROLLOUT_MS)
    page.locator("#analysis-summary .analysis-failure").wait_for()
    say("1.3.1-errors reverted by its analysis")
    page = camera.open("admin", f"/releases/{rid}/")
    box = page.locator("#analysis-summary").bounding_box()
    camera.save(
        page,
        "release-reverted.png",
        clip={"x": 0, "y": 0, "width": WIDE["width"], "height": box["y"] + box["height"] + 24},
    )
    camera.save_element(page, "#analysis", "release-analysis.png")
    page = camera.open("admin", "/apps/shop/errors/?environment=production")
    page.locator("tr[data-group]").first.wait_for()
    camera.save(page, "errors.png", full_page=True)
    page = camera.open("admin", "/apps/shop/env/production/")
    page.get_by_role("heading", name=re.compile("Production runs 1.3.0")).wait_for()
    camera.save(page, "environment.png", full_page=True)
    page = camera.open("admin", "/apps/shop/")
    camera.save(page, "application.png", full_page=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="where the pictures go")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (database, server log)")
    options = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("screenshots: needs Playwright (in requirements.lock: `make install`)", file=sys.stderr)
        return 2
    if not Path(CHROMIUM).exists():
        print("screenshots: needs Chromium: sudo apt-get install chromium", file=sys.stderr)
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="slipway-screenshots-"))
    demo = Demo(data_dir)
    ok = False
    try:
        say(f"loading the demo into {data_dir}")
        demo.load()
        demo.serve()
        say(f"serving at {demo.url}, demo fleet on 127.0.0.1:{demo.fleet_port}–{demo.fleet_port + 7}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            camera = Camera(browser, demo, options.out)
            try:
                shoot(camera)
            except Exception:
                for key, page in camera.pages.items():
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(data_dir / f"failed-{key}.png"), full_page=True)
                raise
            finally:
                browser.close()
        ok = True
    finally:
        demo.stop()
        if ok and not options.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
        else:
            say(f"data directory kept: {data_dir} (serve.log, failed-*.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
