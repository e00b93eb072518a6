"""Outbound work for steps Slipway runs itself: shell commands with the step's environment, signed webhooks."""

from __future__ import annotations

import urllib.error
import urllib.request

from django.conf import settings

from releases.models import RolloutStep


def sign(secret: str, body: bytes) -> str:
    import hashlib
    import hmac

    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def call_webhook(step: RolloutStep) -> tuple[bool, str]:
    """POST the job to the environment's URL, signed; the receiver answers 2xx now and calls back when done."""
    import json

    from django.urls import reverse

    environment = step.rollout.release.environment
    release = step.rollout.release
    body = json.dumps(
        {
            "job": step.pk,
            "action": step.action,
            "target": step.target_name,
            "version": step.version,
            "image": release.artifact.image,
            "commit": release.artifact.commit,
            "previous_version": release.previous_artifact.version if release.previous_artifact else None,
            "callback_url": settings.SLIPWAY_BASE_URL.rstrip("/")
            + reverse("rollout-callback", args=[step.pk]),
        }
    ).encode()
    request = urllib.request.Request(
        environment.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Slipway-Signature": sign(environment.webhook_secret, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return 200 <= response.status < 300, f"webhook answered {response.status}\n"
    except OSError as error:
        return False, f"webhook call failed: {error}\n"


def _run_command(command: str, step: RolloutStep, timeout: int, **extra: str) -> tuple[bool, str]:
    """Run a command of the environment's (deploy, pre-deploy, smoke, switch) with the SLIPWAY_* variables."""
    import os
    import subprocess

    release = step.rollout.release
    env = {
        **os.environ,
        "SLIPWAY_VERSION": step.version,
        "SLIPWAY_IMAGE": release.artifact.image,
        "SLIPWAY_COMMIT": release.artifact.commit,
        "SLIPWAY_TARGET": step.target_name,
        "SLIPWAY_ACTION": step.action,
        "SLIPWAY_PREVIOUS_VERSION": release.previous_artifact.version if release.previous_artifact else "",
        "SLIPWAY_ENVIRONMENT": release.environment.name,
        **extra,
    }
    try:
        done = subprocess.run(
            command,
            shell=True,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired as expired:
        out = (
            expired.stdout.decode(errors="replace")
            if isinstance(expired.stdout, bytes)
            else expired.stdout or ""
        )
        return False, f"{out}\n[slipway] killed after {timeout} s"
    return done.returncode == 0, done.stdout + done.stderr
