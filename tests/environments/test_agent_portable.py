"""The deploy agent is copied to a host as it is: `environments/agent/` alone, on nothing but Python's standard
library (docs/rollouts.md, "Installing an agent on a host")."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "environments" / "agent"

# Not `-I`: it drops the working directory from sys.path, so `-m environments.agent` would not find the copy, and it
# keeps site-packages, where the editable install of Slipway would quietly provide the project's own agent instead.
# -E (no PYTHON* variables), -s (no user site) and -S (no site-packages at all) leave the working directory and
# the standard library: a host where only the copied directory exists.
ISOLATED = [sys.executable, "-E", "-s", "-S"]


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Path:
    """A directory holding only a copy of environments/agent/: no environments/__init__.py, no Django."""
    root = tmp_path_factory.mktemp("host")
    shutil.copytree(AGENT, root / "environments" / "agent", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run(host: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ISOLATED, *args], cwd=host, capture_output=True, text=True, timeout=30)


def test_only_the_copy_is_there(host):
    assert sorted(p.relative_to(host).as_posix() for p in host.rglob("*") if p.is_file()) == [
        "environments/agent/__init__.py",
        "environments/agent/__main__.py",
    ]
    probe = run(
        host,
        "-c",
        "import sys, environments.agent.__main__ as m; print(m.__file__); "
        "print(sorted(n.split('.')[0] for n in sys.modules if n.split('.')[0] in "
        "('django', 'rest_framework', 'releases', 'config', 'flags', 'monitoring', 'dashboard')))",
    )
    assert probe.returncode == 0, probe.stderr
    where, imported = probe.stdout.splitlines()
    assert Path(where).resolve().is_relative_to(host.resolve())  # the copy ran, not the project's agent
    assert imported == "[]"


def test_help_runs_from_the_copy(host):
    result = run(host, "-m", "environments.agent", "--help")
    assert result.returncode == 0, result.stderr
    assert "--deploy-command" in result.stdout and "--registration-token" in result.stdout
    assert result.stderr == ""


def test_missing_required_flags_is_a_usage_error(host):
    result = run(host, "-m", "environments.agent", "--registration-token", "slr_x", "--name", "web-1")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: slipway-agent")
    assert "error: missing --url, --workdir" in result.stderr
