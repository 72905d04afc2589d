"""The house rules of docs/architecture.md, checked on the source: every import of a cnnlab
module points to the same floor or one below, the module graph has no cycle, the NumPy engine
stands on the ground floor alone, no private name crosses a module boundary, and no file
grows past the size a reader can hold in mind."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cnnlab"
MAX_LINES = 460  # "about 450"

# floor of each module, by its dotted name or the longest matching package prefix
FLOORS = {
    "cnnlab": 0,
    "cnnlab.errors": 0,
    "cnnlab.outputs": 0,
    "cnnlab.arithmetic": 0,
    "cnnlab._tracing": 0,
    "cnnlab._unpickle": 0,
    "cnnlab.course": 4,
    "cnnlab.course.lessons": 0,
    "cnnlab.model_interface": 0,
    "cnnlab.machine": 0,
    "cnnlab.scratch": 1,
    "cnnlab.images": 1,
    "cnnlab.data": 1,
    "cnnlab.models": 2,
    "cnnlab.run_folder": 1,
    "cnnlab.train.distributed": 3,
    "cnnlab.train.config": 3,
    "cnnlab.train": 3,
    "cnnlab.train.setup": 3,
    "cnnlab.train.steps": 3,
    "cnnlab.train.validation": 3,
    "cnnlab.train.pipeline": 3,
    "cnnlab.train.transfer": 3,
    "cnnlab.train.recipes": 3,
    "cnnlab.train.tensorboard": 3,
    "cnnlab.inspect": 3,
    "cnnlab.graph": 3,
    "cnnlab.train.probe": 3,
    "cnnlab.runs": 4,
    "cnnlab.explorer": 5,
    "cnnlab.cli": 6,
    "cnnlab.__main__": 6,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    candidates = [
        p for p in FLOORS if module == p or (p != "cnnlab" and module.startswith(p + "."))
    ]
    assert candidates, f"{module} has no floor: add it to docs/architecture.md and FLOORS"
    return FLOORS[max(candidates, key=len)]


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported cnnlab module, names taken from it, line) for every import in the file,
    function-level imports included."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("cnnlab")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("cnnlab"):
                found.append((target, [a.name for a in node.names], node.lineno))
    return found


def resolve(target: str, names: list[str]) -> list[str]:
    """``from cnnlab.x import y`` imports module ``cnnlab.x.y`` when that is a module."""
    modules = []
    for name in names or [""]:
        candidate = f"{target}.{name}" if name else target
        path = PACKAGE.parent / Path(*candidate.split("."))
        modules.append(candidate if path.with_suffix(".py").exists() or path.is_dir() else target)
    return modules


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {
    module_name(path): {m for t, names, _ in imports(path) for m in resolve(t, names)}
    for path in SOURCES
}


def test_every_import_points_down_or_level():
    upward = [
        f"{module_name(path)}:{line} imports {target} (floor {floor(target)} > "
        f"{floor(module_name(path))})"
        for path in SOURCES
        for imported, names, line in imports(path)
        for target in resolve(imported, names)
        if floor(target) > floor(module_name(path))
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    # modules of one package form one node: a package and its modules are one room
    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2])

    edges: dict[str, set[str]] = {}
    for source, targets in GRAPH.items():
        edges.setdefault(room(source), set()).update(
            room(t) for t in targets if room(t) != room(source)
        )
    edges.pop("cnnlab", None)  # the package's own __init__ imports nothing
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


def test_the_numpy_engine_stands_on_the_ground_floor():
    outside = [
        f"{source} imports {target}"
        for source, targets in GRAPH.items()
        if source.startswith("cnnlab.scratch")
        for target in targets
        if not target.startswith("cnnlab.scratch") and floor(target) > 0
    ]
    assert not outside, outside


def test_no_command_module_imports_another():
    """The CLI's command groups share only cnnlab.cli._options (and the package itself)."""
    shared = {"cnnlab.cli", "cnnlab.cli._options"}
    crossing = [
        f"{source} imports {target}"
        for source, targets in GRAPH.items()
        if source.startswith("cnnlab.cli.") and source not in shared
        for target in targets
        if target.startswith("cnnlab.cli") and target not in shared and target != source
    ]
    assert not crossing, crossing


def test_no_private_name_crosses_a_module():
    crossing = [
        f"{module_name(path)}:{line} takes {name} from {target}"
        for path in SOURCES
        for target, names, line in imports(path)
        for name in names
        if name.startswith("_")
        and not name.startswith("__")
        and resolve(target, [name])[0] == target  # a name, not a plumbing module
    ]
    assert not crossing, "\n".join(crossing)


def test_no_file_outgrows_a_reading():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in SOURCES
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_rules_catch_what_they_promise(tmp_path):
    """The parser sees relative, absolute and function-level imports (so a passing rule is
    not a blind one)."""
    sample = PACKAGE / "runs" / "start.py"
    targets = {m for t, names, _ in imports(sample) for m in resolve(t, names)}
    assert "cnnlab.run_folder" in targets and "cnnlab.train.loop" in targets
    assert floor("cnnlab.cli.train") == 6 and floor("cnnlab.scratch.layers") == 1
    assert resolve("cnnlab", ["run_folder"]) == ["cnnlab.run_folder"]


def test_the_explorer_computes_nothing_of_its_own():
    """The web package keeps HTTP, page state and pictures: every number it shows about a
    model's insides comes from cnnlab.inspect (the trace, its explanations and gradients), so
    the command line and notebooks get the same numbers. No functional torch, autograd or hooks
    in cnnlab/explorer."""
    forbidden = (
        "torch.nn.functional",
        "autograd",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_hook",
        "conv2d",
        "conv_transpose2d",
        ".backward(",
    )
    found = []
    for path in sorted((PACKAGE / "explorer").glob("*.py")):
        text = path.read_text()
        found += [f"{path.name}: {word}" for word in forbidden if word in text]
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in ("torch.nn", "torch"):
                names = [alias.name for alias in node.names]
                if "functional" in names:
                    found.append(f"{path.name}: from {node.module} import functional")
    assert not found, found


def test_the_pages_modules_import_no_circle():
    """The explorer's ES modules (static/*.js) form no import cycle either: panels that react
    to a selection are handed to maps.js by app.js instead of imported by it."""
    import re

    static = PACKAGE / "explorer" / "static"
    graph = {
        path.name: set(
            re.findall(r'^import [^;]*? from "\./([\w.-]+\.js)";', path.read_text(), re.M | re.S)
        )
        for path in static.glob("*.js")
    }
    assert graph["app.js"] >= {"maps.js", "explain.js"}  # the parser sees real imports

    def cycle_from(start: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(graph.get(start, ())):
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            found = cycle_from(nxt, [*path, nxt])
            if found:
                return found
        return None

    cycles = [c for name in graph if (c := cycle_from(name, [name]))]
    assert not cycles, cycles[0]


def test_the_model_interface_is_read_in_one_place():
    """Every optional model attribute of cnnlab.model_interface is read through its accessors:
    no other module reads one by name, so the table there is the whole interface."""
    import re

    from cnnlab.model_interface import ATTRIBUTES

    pattern = re.compile(r"(getattr|hasattr)\([^)]*[\"'](" + "|".join(ATTRIBUTES) + r")[\"']")
    readers = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in SOURCES
        if path.name != "model_interface.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not readers, readers
    assert pattern.search('getattr(m, "fx_leaf", False)')  # the check sees a reader


# functions over 60 lines that are flat declaration tables (argument parsers, check tables,
# text layouts): allowed
DECLARATION_TABLES = {
    "cli/show.py:add_show",
    "cli/backprop.py:add_backprop",
    "inspect/backprop_walk.py:walk_lines",
}
# logic over 60 lines still to be split: none is left, and the list may only shrink
TO_SPLIT: set[str] = set()


def _long_functions() -> dict[str, int]:
    found = {}
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    found[f"{path.relative_to(PACKAGE)}:{node.name}"] = length
    return found


def test_no_new_function_outgrows_a_screen():
    """A function reads in one screen (60 lines, its docstring included), except flat
    declaration tables; ``fit`` itself stays under ~80 lines with its docstring."""
    long = _long_functions()
    new = {name: n for name, n in long.items() if name not in DECLARATION_TABLES | TO_SPLIT}
    assert not new, f"split these (or, if a flat table, list them): {new}"
    assert long.get("train/loop.py:fit", 0) <= 80
    done = sorted(TO_SPLIT - set(long))
    assert not done, f"no longer over 60 lines, take them off TO_SPLIT: {done}"


def test_inside_cnnlab_training_names_come_from_their_homes():
    """``cnnlab.train`` is the public API (``from cnnlab.train import TrainConfig, fit``);
    inside the package every name is imported from the module that defines it, so no name
    has two doors."""
    submodules = {p.stem for p in (PACKAGE / "train").glob("*.py")}
    doors = []
    for path in SOURCES:
        if path.parent.name == "train" and path.name == "__init__.py":
            continue
        for target, names, line in imports(path):
            if target == "cnnlab.train" and set(names) - submodules:
                doors.append(f"{path.relative_to(PACKAGE)}:{line} {sorted(names)}")
    assert not doors, doors


def test_models_are_hooked_in_one_place():
    """Every forward hook goes through ``inspect.hooks.forward_hooks``, which removes them
    all on exit (errors included); no module registers its own."""
    home = PACKAGE / "inspect" / "hooks.py"
    elsewhere = [
        f"{path.relative_to(PACKAGE)}:{n}"
        for path in SOURCES
        if path != home
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if "register_forward_hook(" in line or "register_forward_pre_hook(" in line
    ]
    assert not elsewhere, elsewhere
