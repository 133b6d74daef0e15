"""The house's structure, read from the source: imports only go down the README's floors, and
only avlib/run.py spells the names of a run folder's files."""
import ast
import re
from pathlib import Path

import pytest

import avlib.run

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "avlib"


def readme_floors() -> list[list[str]]:
    """The numbered floor list of README's layout section: one list of module names per floor."""
    section = ROOT.joinpath("README.md").read_text().split("## Layout (follows the data flow)")[1].split("\n## ")[0]
    floors = [re.findall(r"`?([\w]+)`?", line.split(":", 1)[1])
              for line in re.findall(r"^\d+\. [^:\n]+:.*$", section, flags=re.MULTILINE)]
    assert len(floors) >= 5, "README's layout section lists no floors"
    return floors


def module_name(path: Path) -> str:
    """avlib/metrics/fvd.py -> "metrics"; avlib/run.py -> "run"; avlib/__init__.py -> "__init__"."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def avlib_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level avlib module) of every import of avlib in ``tree``, at any depth."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from avlib import __version__` is the package's __init__; `from avlib import x` is module x
            names = ([f"avlib.{alias.name}" for alias in node.names] if node.module == "avlib"
                     else [node.module])
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "avlib":
                found.append((node.lineno, parts[1] if len(parts) > 1 else "__init__"))
    return found


def sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_readme_places_every_module_on_one_floor():
    floors = readme_floors()
    placed = [name for floor in floors for name in floor]
    assert len(placed) == len(set(placed)), f"a module on two floors: {placed}"
    modules = {module_name(path) for path in sources()} | {p.name for p in PACKAGE.iterdir() if p.is_dir()
                                                           and not p.name.startswith("__")}
    assert modules - set(placed) == set(), "modules missing from README's floors"
    assert set(placed) - modules == set(), "README's floors name modules that do not exist"


def test_imports_only_go_down_the_floors():
    floor_of = {name: level for level, floor in enumerate(readme_floors()) for name in floor}
    floor_of["__version__"] = floor_of["__init__"]  # `from avlib import __version__`
    upward = []
    for path in sources():
        importer = module_name(path)
        for line, imported in avlib_imports(ast.parse(path.read_text(), str(path))):
            if floor_of[imported] > floor_of[importer]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({importer}, floor {floor_of[importer] + 1}) "
                              f"imports {imported} (floor {floor_of[imported] + 1})")
    assert upward == []


def test_the_import_walk_sees_function_level_and_from_imports():
    """The checks above rely on the walker; it must see what a lazy import looks like."""
    tree = ast.parse("import avlib.io\ndef f():\n    from avlib.toyworld import metric_nets\n"
                     "    from avlib import __version__, run\n")
    assert avlib_imports(tree) == [(1, "io"), (3, "toyworld"), (4, "__version__"), (4, "run")]


def dotted(path: Path) -> str:
    """avlib/toyworld/build.py -> "avlib.toyworld.build"; avlib/audio/__init__.py -> "avlib.audio"."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(files: dict[str, str]) -> dict[str, set[str]]:
    """{module: the avlib modules it imports, at any depth}, over sub-packages' modules too
    (``from avlib.toyworld import data`` is an edge to ``avlib.toyworld.data``)."""
    def resolve(name: str) -> str:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, source in files.items():
        targets = []
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                targets += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets += [f"{node.module}.{alias.name}" for alias in node.names]
        graph[name] = {resolve(t) for t in targets if t.split(".")[0] == "avlib"} - {name, ""}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The modules that reach each other through imports (each group of two or more, sorted)."""
    reach = {name: set() for name in graph}
    for start in graph:
        todo = list(graph[start])
        while todo:
            name = todo.pop()
            if name in graph and name not in reach[start]:
                reach[start].add(name)
                todo += graph[name]
    groups = {tuple(sorted({start} | {n for n in reach[start] if start in reach[n]})) for start in graph}
    return sorted(list(group) for group in groups if len(group) > 1)


def test_no_import_circle_between_any_two_modules():
    """Floors say which packages may import which; within a package (or a floor) two modules
    importing each other -- even inside functions -- are a circle this finds."""
    assert import_cycles(module_graph({dotted(path): path.read_text() for path in sources()})) == []


def test_the_circle_check_sees_modules_of_sub_packages():
    files = {"avlib.toyworld.build": "def f():\n    from avlib.toyworld.evaluate import g\n",
             "avlib.toyworld.evaluate": "from avlib.toyworld import build\n",
             "avlib.toyworld": "", "avlib.io": "import avlib.toyworld\n"}
    assert module_graph(files)["avlib.toyworld.evaluate"] == {"avlib.toyworld.build"}
    assert import_cycles(module_graph(files)) == [["avlib.toyworld.build", "avlib.toyworld.evaluate"]]


RUN_NAMES = {value for key, value in vars(avlib.run).items()
             if re.fullmatch(r"[A-Z_]+_(FILE|DIR)", key) and isinstance(value, str)}


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def named_run_files(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string in code (not docstrings) that names a run folder's file or
    folder (one of :mod:`avlib.run`'s names): as a part of a path joined with ``/`` (in the
    text or by the ``/`` operator), or a file's name anywhere."""
    tree = ast.parse(source)
    skip = docstrings(tree)
    joined = {id(side) for node in ast.walk(tree) if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div)
              for side in (node.left, node.right)}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or id(node) in skip:
            continue
        text = node.value
        parts = text.split("/")
        if (id(node) in joined and any(part in RUN_NAMES for part in parts)
                or len(parts) > 1 and any(part.strip() in RUN_NAMES for part in parts)
                or text in RUN_NAMES and "." in text):
            found.append((node.lineno, text))
    return found


def test_only_the_run_module_names_run_files():
    assert {"config.json", "metrics.json", "index.csv", "samples", "pipeline"} <= RUN_NAMES
    offenders = [f"{path.relative_to(ROOT)}:{line}: {text!r}" for path in sources()
                 if path != PACKAGE / "run.py" for line, text in named_run_files(path.read_text())]
    assert offenders == []


@pytest.mark.parametrize("code, named", [
    ('path = run_dir / "metrics.json"', True),
    ('path = run_dir / "samples" / f"{clip}.mp4"', True),
    ('stage = "samples/index.csv"', True),
    ('print(f"wrote {run}/metrics.json")', True),
    ('row["reference"]', False),
    ('summary = run_dir / "summary"', False),
    ('"""Writes config.json."""', False),
    ('help_text = "the run folder holds everything"', False),
])
def test_the_run_file_check_finds_names_in_code_not_in_docstrings(code, named):
    assert bool(named_run_files(code)) is named


def test_each_metrics_definitions_are_the_names_the_cli_offers():
    """One list per setting: the CLI's choices and each metric's table of definitions agree."""
    from avlib import metrics
    from avlib.metrics import av_align, clipsim, fvd

    assert tuple(av_align.VERSIONS) == metrics.AV_ALIGN_VERSIONS
    assert tuple(fvd.PROTOCOLS) == metrics.FVD_PROTOCOLS
    assert tuple(clipsim.PROTOCOLS) == metrics.CLIPSIM_PROTOCOLS
