"""The package layout is the pipeline: stage packages import only down the line, no cycles, small
modules. These are the rules docs/ARCHITECTURE.md states; this test keeps them true."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "samrs_hf"

# Each stage may import from the stages before it in this order (and from itself).
PIPELINE = ("common", "sources", "sam", "build", "hub", "analysis")
ALLOWED = {stage: set(PIPELINE[: i + 1]) for i, stage in enumerate(PIPELINE)}
ALLOWED["sep"] = {"common", "sources", "hub", "analysis", "sep"}
TOP = {"cli", "demo", "loading_scripts", "__init__", "__main__"}  # wiring on top: may import anything

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
KERNEL_FILES = {"sam/relpos_flash.py"}  # the Triton kernel file: exempt from both limits


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of the samrs_hf modules ``path`` imports (at any depth in the file)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t == "samrs_hf" or t.startswith("samrs_hf.")}
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_stages_import_only_down_the_pipeline():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        stage = _stage(name)
        if stage in TOP:
            continue
        for target in _imports(name, path) - {"samrs_hf", "samrs_hf.__version__"}:
            if _stage(target) not in ALLOWED.get(stage, {stage}):
                wrong.append(f"{name} -> {target}")
    assert not wrong, "upward or sideways imports:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    modules = _modules()
    graph = {name: {t for t in _imports(name, path) if t in modules and t != name}
             for name, path in modules.items()}
    # A package's __init__ importing its own submodules is how a package re-exports: not a cycle.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("path", sorted(ROOT.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_small(path):
    rel = str(path.relative_to(ROOT))
    if rel in KERNEL_FILES:
        pytest.skip("the Triton kernel file is exempt")
    text = path.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{rel}: {lines} lines"
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{rel}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_tests_import_from_the_package_not_from_other_test_files():
    """Shared test data lives in tests/support_*.py and conftest.py; a test file never imports another one,
    nor anything from benchmarks/ (whose figures are not contracts) -- except test_benchmarks.py, which tests
    the benchmark scripts themselves."""
    benchmark_modules = {p.stem for p in (ROOT.parent / "benchmarks").glob("*.py")}
    offenders = []
    for path in sorted((ROOT.parent / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                top = name.split(".")[0]
                if top.startswith("test_") or (top in benchmark_modules | {"benchmarks"}
                                               and path.name != "test_benchmarks.py"):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders
