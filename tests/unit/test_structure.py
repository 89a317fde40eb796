"""The shape of wmlib: no import cycle (every import counts, also one inside a function), and
profiles stay plain data."""
import ast
from pathlib import Path

import wmlib

ROOT = Path(wmlib.__file__).parent


def _module(path: Path) -> str:
    parts = ["wmlib", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(unresolved: list | None = None) -> dict[str, set[str]]:
    """wmlib module -> the wmlib modules it imports (``from . import x`` names module x when x is one).
    Relative imports of no module of wmlib are appended to ``unresolved``."""
    files = {_module(p): p for p in ROOT.rglob("*.py")}
    graph = {m: set() for m in files}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
                stem = ".".join(base + ([node.module] if node.module else []))
                if node.level and stem not in files and unresolved is not None:
                    unresolved.append(f"{mod}: from {'.' * node.level}{node.module or ''} import ...")
                targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle found by a depth-first search (each reported once, from its first module)."""
    found, state = [], {}

    def visit(m, stack):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_wmlib_has_no_import_cycle_and_every_relative_import_resolves():
    unresolved = []
    assert cycles(import_graph(unresolved)) == []
    assert unresolved == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_profiles_import_nothing_of_wmlib_and_layers_point_down():
    graph = import_graph()
    assert graph["wmlib.profiles"] == set()
    assert graph["wmlib.timing"] == set()  # the work ledger: a leaf every layer may note its work in
    assert graph["wmlib.cells"] <= {"wmlib.train", "wmlib.timing"}  # the engine knows nothing of watermarking
    for low in ("wmlib.train", "wmlib.verify", "wmlib.zoo", "wmlib.keys", "wmlib.data", "wmlib.plots"):
        assert not {m for m in graph[low] if m.startswith(("wmlib.schemes", "wmlib.attacks", "wmlib.compare"))}, low
    assert not any(m.startswith("wmlib.attacks") for s in graph if s.startswith("wmlib.schemes") for m in graph[s])


NOTEBOOKS = sorted((ROOT.parent / "notebooks").glob("*.ipynb"))


def _bound(node) -> list[str]:
    """The names an assignment, a loop or a ``with`` binds."""
    targets = (node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For))
               else [i.optional_vars for i in node.items if i.optional_vars] if isinstance(node, ast.With) else [])
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def notebook_findings(cells: list[str]) -> list[str]:
    """What keeps a notebook from being thin and plain: a function or class it defines (``def``, ``class``
    or a name bound to a lambda: the logic lives in wmlib), a code cell of 60 lines or more, and a name
    it imported that a cell binds again (a later cell then calls the wrong thing)."""
    found, imported = [], set()
    for i, src in enumerate(cells):
        if len(src.splitlines()) >= 60:
            found.append(f"cell {i}: {len(src.splitlines())} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                found.append(f"cell {i}: defines {node.name}")
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
                found.append(f"cell {i}: binds {ast.unparse(node.targets[0])} to a lambda")
            found += [f"cell {i}: binds the imported name {n}" for n in _bound(node) if n in imported]
        imported |= {(a.asname or a.name).split(".")[0] for node in ast.walk(ast.parse(src))
                     if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
    return found


def imported_names(cells: list[str]) -> set[str]:
    """The names a notebook's imports bind."""
    return {(a.asname or a.name).split(".")[0] for src in cells for node in ast.walk(ast.parse(src))
            if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}


def test_notebooks_define_no_function_and_keep_code_cells_under_60_lines():
    import json
    assert len(NOTEBOOKS) == 7
    for path in NOTEBOOKS:
        cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert notebook_findings(cells) == [], path.name


def test_no_notebook_imports_a_name_that_is_one_of_its_knobs():
    """report.start reads a chapter's knobs from the notebook's globals by name (papermill's parameters): an
    imported module of a knob's name would be read as that knob (``schemes`` is the comparison's)."""
    import json

    from wmlib import settings
    for path in NOTEBOOKS:
        cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert imported_names(cells) & set(settings.names(path.stem)) == set(), path.name


def test_the_notebook_check_finds_a_function_a_lambda_and_a_long_cell():
    assert notebook_findings(["def f():\n    return 1", "g = lambda x: x", "x = 1\n" * 60, "y = [lambda: 0]"]) == [
        "cell 0: defines f", "cell 1: binds g to a lambda", "cell 2: 60 lines"]
    assert notebook_findings(["from wmlib import schemes\nimport pandas as pd", "schemes, k = {}, 1\nfor pd in []: pass",
                              "out = schemes.build('x')"]) == ["cell 1: binds the imported name schemes",
                                                              "cell 1: binds the imported name pd"]


def test_the_generic_modules_name_no_watermark_and_settings_asks_no_chapter_name():
    """The catalogue (wmlib.schemes) is where a watermark is named: the comparison, the settings and the
    integrity chapter ask only the contract, and settings ask a knob's presence, never which chapter runs."""
    import re

    from wmlib import attacks, schemes
    names = sorted(set(schemes.CATALOGUE) | {"afs", "ds", "ew", "proposal", "function-coupled", "zhang", "namba"}, key=len,
                   reverse=True)
    named = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])", re.I)
    for module in ("compare", "settings", "integrity"):  # in any string of the code, messages and f-strings too (not prose)
        tree = ast.parse((ROOT / f"{module}.py").read_text())
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
        said = sorted({m.group(0) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                       and id(n) not in prose for m in named.finditer(n.value)})
        assert said == [], module
    # nor does the comparison name an attack but the unattacked 'none': each attack says what it is asked (Attack.question)
    tree = ast.parse((ROOT / "compare.py").read_text())
    assert {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in attacks.REGISTRY} == {"none"}
    validate = next(n for n in ast.walk(ast.parse((ROOT / "settings.py").read_text()))
                    if isinstance(n, ast.FunctionDef) and n.name == "validate")
    asks = [ast.unparse(n) for n in ast.walk(validate) if isinstance(n, ast.Compare)
            and any(isinstance(x, ast.Name) and x.id == "chapter" for x in (n.left, *n.comparators))]
    assert asks == []
