"""The package's layers, read from its source (docs/architecture.md draws the same picture).

Every import statement in ``zoo/`` counts, at module level or inside a function: a package may
import the packages below it, never one above it; no two modules import each other, directly
or round a longer loop; nothing imports another package's underscore module; an import inside
a function says why on its line (heavy or optional), except in ``zoo/cli``, whose commands import
what they use when they run so that ``zoo list`` starts no TensorFlow.
"""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zoo"

# top to bottom; a name is a package or a top-level module of zoo/ ("zoo" is zoo/__init__.py)
LAYERS = [
    {"zoo", "cli", "__main__"},
    {"pipeline"},
    {"api", "bench"},
    {"resolve"},
    {"compress", "export", "inference"},
    {"train", "callbacks"},
    {"scoring"},
    {"datapath"},
    {"datasets"},
    {"hub", "data", "losses", "metrics", "quality"},
    {"models"},
    {"record", "_keras", "errors", "_io", "_h5", "_deps", "_progress", "_version"},
]
LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules():
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "builders" in path.relative_to(PACKAGE).parts:  # the catalogue's TFDS builders: data files
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name, path):
    """(imported zoo module, line number, inside a function, the line's text) for each import."""
    tree = ast.parse(path.read_text())
    lines = path.read_text().splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                keep = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(keep + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            if target.startswith("zoo") and target in MODULES and target != name:
                yield target, node.lineno, id(node) in inner, lines[node.lineno - 1]


EDGES = {name: list(_imports(name, path)) for name, path in MODULES.items()}


def _group(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "zoo"


def test_every_package_has_a_layer():
    missing = sorted({_group(m) for m in MODULES} - set(LEVEL))
    assert not missing, f"add {missing} to LAYERS (and to docs/architecture.md)"


def test_no_package_imports_one_above_it():
    upward = [f"{m}:{line} imports {t} ({_group(m)} is below {_group(t)})"
              for m, edges in EDGES.items() for t, line, _, _ in edges
              if _group(m) != _group(t) and LEVEL[_group(m)] > LEVEL[_group(t)]]
    assert not upward, "\n".join(upward)


def test_no_module_imports_another_packages_private_module():
    private = [f"{m}:{line} imports {t}" for m, edges in EDGES.items() for t, line, _, _ in edges
               if _group(m) != _group(t) and any(p.startswith("_") for p in t.split(".")[2:])]
    assert not private, "\n".join(private)


def test_no_import_cycle():
    graph = {m: {t for t, *_ in edges} for m, edges in EDGES.items()}
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_an_import_inside_a_function_says_why():
    silent = [f"{m}:{line}: {text.strip()}" for m, edges in EDGES.items() for _, line, inner, text in edges
              if inner and "#" not in text and _group(m) != "cli"]
    assert not silent, "move these to the top of their module, or say why they wait:\n" + "\n".join(silent)


def test_importing_zoo_starts_no_tensorflow():
    code = ("import sys, zoo, zoo.hub, zoo.datasets, zoo.cli; zoo.list_models(); "
            "sys.exit('tensorflow' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:] or "import zoo imported TensorFlow"


def test_ruff_passes():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "zoo", "tests", "tools", "datasets", "setup.py"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
