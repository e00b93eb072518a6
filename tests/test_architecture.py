"""The layers hold: no import cycle among the apps' modules (imports inside functions count too), pure modules
import no Django, and the release write path's modules each import on their own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("releases", "environments", "flags", "monitoring", "dashboard", "config")
PURE = [
    "flags.engine",
    "flags.engine.evaluation",
    "flags.history",
    "releases.planning",
    "monitoring.judge",
    "monitoring.expressions",
    "monitoring.anomaly",
    "monitoring.fingerprint",
    "monitoring.charts",
]
PURE_FILES = [
    "config/jsonbody.py",
    "config/ratelimit.py",
]  # config/__init__ loads the Celery app: the file itself must stay pure
WRITE_PATH = [
    "releases.lifecycle",
    "releases.rollouts",
    "releases.rollouts.reconciler",
    "releases.rollouts.folding",
    "releases.rollouts.retries",
    "releases.rollouts.dispatching",
    "releases.rollouts.liveness",
    "releases.rollouts.gates",
    "releases.rollouts.drivers",
    "releases.rollouts.controls",
    "releases.dispatch",
    "releases.promotions",
    "releases.notifications",
    "releases.tasks",
    "releases.services",
    "environments.jobs",
    "environments.agent_asgi",
    "environments.agent_api",
    "flags.services",
    "monitoring.services",
]


def modules(root: Path = ROOT, apps: tuple[str, ...] = APPS) -> dict[str, Path]:
    found = {}
    for app in apps:
        for path in (root / app).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if "migrations" in parts or "agent" in parts[1:-1]:  # the agent is a separate program
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def import_graph(mods: dict[str, Path] | None = None) -> dict[str, set[str]]:
    mods = modules() if mods is None else mods
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_walk_sees_imports_inside_functions(tmp_path):
    """A synthetic package, so the test does not depend on what the apps happen to import where: an import inside a
    function (and a relative one inside a method) is an edge, and closes a cycle."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text(
        "def later():\n    from pkg.c import thing  # inside a function\n    return thing\n"
    )
    (package / "c.py").write_text("class C:\n    def m(self):\n        from . import a\n        return a\n")
    (package / "d.py").write_text("import os\n")
    graph = import_graph(modules(tmp_path, ("pkg",)))
    assert graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg"} | {"pkg.a"}
    assert graph["pkg.d"] == set()
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_among_the_apps_modules():
    assert cycles(import_graph()) == []


def test_the_engine_never_imports_an_interface():
    graph = import_graph()
    interfaces = {
        m
        for m in graph
        if m.endswith(("_asgi", "_api", ".views", ".consumers", ".tasks"))
        or ".api." in m
        or m.startswith("dashboard.")
        and m != "dashboard.live"
    }
    engine = [m for m in graph if m.startswith("releases.rollouts")]
    for module in (
        *engine,
        "releases.lifecycle",
        "releases.dispatch",
        "releases.promotions",
        "environments.jobs",
        "flags.services",
    ):
        assert not graph[module] & interfaces, (module, graph[module] & interfaces)


def _run(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_pure_modules_import_without_django():
    code = (
        "import importlib.util, sys\nfor name in {!r}:\n    __import__(name)\n"
        "for path in {!r}:\n"
        "    spec = importlib.util.spec_from_file_location(path, path)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')], 'django imported'"
    )
    process = _run(code.format(PURE, PURE_FILES))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


@pytest.mark.slow
def test_each_module_of_the_write_path_imports_alone():
    """A fresh interpreter per module, so an import order that only works by luck shows up."""
    code = (
        "import django, os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "django.setup()\nimport {}"
    )
    processes = {name: _run(code.format(name)) for name in WRITE_PATH}
    failures = {}
    for name, process in processes.items():
        output, _ = process.communicate(timeout=120)
        if process.returncode != 0:
            failures[name] = output[-2000:]
    assert failures == {}


GENERIC_ERRORS = {"Conflict", "Forbidden", "NotFound", "Invalid", "SlipwayError"}


def test_raised_domain_errors_name_their_condition():
    """A client tells conditions apart by `code`: no module raises the generic 409/403/404 ("conflict",
    "forbidden", "not_found") but a named subclass from its app's exceptions.py; a plain `Invalid` is only for a
    field's validation and names the field."""
    generic = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            func = node.exc.func
            raised = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if raised not in GENERIC_ERRORS:
                continue
            if raised == "Invalid" and any(keyword.arg == "field" for keyword in node.exc.keywords):
                continue
            generic.append(f"{path.relative_to(ROOT)}:{node.lineno} raises {raised}")
    assert not generic, "\n".join(generic)


# Imports inside functions hide a load order: each one left in these modules says on its line why it must wait.
NO_HIDDEN_IMPORTS = [
    *WRITE_PATH,
    "releases.rollouts.common",
    "releases.models",
    "releases.selectors",
    "releases.queue",
    "config.errors",
    "config.api_errors",
    "config.parsers",
    "config.api",
]


def test_the_write_path_imports_at_the_top_or_says_why_not():
    mods, hidden = modules(), []
    for name in NO_HIDDEN_IMPORTS:
        lines = mods[name].read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import | ast.ImportFrom) and "#" not in lines[node.lineno - 1]:
                    hidden.append(
                        f"{mods[name].relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
                    )
    assert not hidden, "imports inside functions without a reason:\n" + "\n".join(hidden)


def test_domain_errors_load_without_drf():
    """Models raise domain errors, and DRF's views load the API's settings, which load the models: `config.errors`
    must not import DRF (the handler is `config.api_errors`), or the models need an import inside `save()`."""
    code = (
        "import os, sys\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings')\n"
        "import config.errors\nassert 'rest_framework.views' not in sys.modules, 'config.errors loads DRF views'"
    )
    process = _run(code)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output


def test_effects_after_commit_go_through_one_helper():
    """`config.effects.after_commit` is the one place that calls `transaction.on_commit`."""
    direct = []
    for name, path in modules().items():
        if name == "config.effects":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called == "on_commit":
                    direct.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not direct, "transaction.on_commit outside config/effects.py:\n" + "\n".join(direct)
