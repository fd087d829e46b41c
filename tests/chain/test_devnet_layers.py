"""The devnet package's layering (issue 14): its modules import one another without a cycle,
even through imports deferred into functions, and execution knows nothing of persistence."""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import reef.chain.devnet

PACKAGE = "reef.chain.devnet"
DIRECTORY = Path(reef.chain.devnet.__file__).parent


def imports_of(path: Path) -> set[str]:
    """The package's own modules that ``path`` imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.startswith(PACKAGE + "._"):
                found.add(name.removeprefix(PACKAGE + ".").split(".")[0])
    return found


def graph() -> dict[str, set[str]]:
    return {path.stem: imports_of(path) for path in DIRECTORY.glob("_*.py")}


def test_the_modules_import_each_other_without_a_cycle() -> None:
    modules = graph()
    assert {"_engine", "_devnet", "_rpc", "_provider", "_server", "_store"} <= set(modules)
    try:
        order = list(TopologicalSorter(modules).static_order())
    except CycleError as exc:  # pragma: no cover - the failure this test exists for
        raise AssertionError(f"import cycle in {PACKAGE}: {exc.args[1]}") from exc
    # Execution comes before persistence, and the JSON-RPC layer needs only execution.
    assert order.index("_engine") < order.index("_devnet")
    assert "_devnet" not in modules["_rpc"] | modules["_provider"] | modules["_format"]


def test_execution_knows_no_files() -> None:
    modules = graph()
    assert modules["_engine"].isdisjoint({"_store", "_devnet", "_server", "_anvil"})
    assert modules["_engine"] == {"_accounts", "_exec", "_trie", "_types", "_vm"}


def test_the_trie_state_and_vm_are_layered_strictly() -> None:
    modules = graph()
    # The trie nodes' memory, encodings and batched update are below everything: they know no
    # other module. py-evm's state classes sit on them alone, and the VM on the state.
    assert modules["_trie"] == set()
    assert modules["_state"] == {"_trie"}
    # The precompiles that remember their answers know nothing of the rest either.
    assert modules["_precompiles"] == set()
    assert modules["_vm"] == {"_precompiles", "_state", "_trie"}
    # Nothing but the VM module builds on the state classes directly.
    assert [name for name, imported in modules.items() if "_state" in imported] == ["_vm"]


def test_the_cycle_check_sees_deferred_imports(tmp_path: Path) -> None:
    # A check that only read module-level imports would have missed the old cycle, which
    # went through an import inside a method.
    module = tmp_path / "_x.py"
    module.write_text(f"def f():\n    from {PACKAGE}._devnet import Devnet\n")
    assert imports_of(module) == {"_devnet"}
