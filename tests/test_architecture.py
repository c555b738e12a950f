"""The architecture holds: import-linter's contracts (pyproject.toml) are kept and no serkit module is in an import cycle."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_are_kept(capsys):
    pytest.importorskip("importlinter")
    import logging

    from importlinter.cli import lint_imports

    # lint_imports configures logging with disable_existing_loggers: every logger created before it
    # (serkit's, once any test module imported serkit) would stay disabled for the tests after this one
    loggers = {
        name: lg.disabled for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)
    }
    sys.path.insert(0, str(ROOT / "src"))
    try:
        code = lint_imports(config_filename=str(ROOT / "pyproject.toml"))
    finally:
        sys.path.remove(str(ROOT / "src"))
        for name, disabled in loggers.items():
            logging.getLogger(name).disabled = disabled
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 kept, 0 broken" in out


def _cycles(graph, modules):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in modules:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_module_is_in_an_import_cycle():
    """Module by module, imports inside functions included: a package importing its own submodules is
    fine, a submodule importing its package (or any loop) is not."""
    grimp = pytest.importorskip("grimp")
    sys.path.insert(0, str(ROOT / "src"))
    try:
        graph = grimp.build_graph("serkit", cache_dir=None)
    finally:
        sys.path.remove(str(ROOT / "src"))
    assert _cycles(graph, sorted(graph.modules)) == []


def test_the_cycle_finder_finds_a_cycle():
    class Graph:
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

        def find_modules_directly_imported_by(self, m):
            return self.edges.get(m, set())

    assert _cycles(Graph(), ["a", "b", "c", "d"]) == [["a", "b", "c"]]


def test_a_registry_loads_its_plugins_once_for_every_thread(tmp_path, monkeypatch):
    """Threads that look up a name while the plugin modules are still importing wait for them
    (a bug once gave "unknown feature set 'ge2e'; known: " to every file but the first of a batch)."""
    import importlib
    import threading

    from serkit._registry import Registry

    pkg = tmp_path / "plugpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "slow.py").write_text(
        "import time\nfrom tests.test_architecture import REG\ntime.sleep(0.3)\nREG.add('slow', 42)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    global REG
    REG = Registry("thing", plugins=("plugpkg", ("slow",)))
    found, errors = [], []

    def look():
        try:
            found.append(REG.get("slow"))
        except Exception as exc:  # pragma: no cover - the failure this test guards against
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and found == [42] * 8
    assert importlib.import_module("plugpkg.slow").REG is REG


REG = None
