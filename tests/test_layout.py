"""The package layout holds: imports flow one way between stages, no module imports itself back
through others, and modules stay readable."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "intentkit"

#: Stage of each top-level module or package; a module may import its own stage or earlier ones.
#: data -> inference -> export -> bulk -> evaluation -> training: the runtime (inference) runs a
#: graph it is given; export makes graphs and loads a Predictor on the backend chosen
#: (export/loader.py); bulk scores files with that loader; evaluation runs the predictor, and
#: training fits the calibration (evaluation) that inference applies at serving time.
STAGES = {
    **dict.fromkeys(("__init__", "config", "errors", "fsutil", "artifact", "modeling"), 0),
    "data": 1,
    "inference": 2,
    "export": 3,
    "bulk": 4,
    "evaluation": 5,
    "training": 6,
    "serve": 7,
    # loop/ reads what serve captured; its promote switches endpoints, so it sits beside them.
    # sagemaker/ holds the client side and, in sagemaker/image, what runs inside the image.
    **dict.fromkeys(("endpoints", "sagemaker", "loop"), 8),
    **dict.fromkeys(("quickstart", "cli", "__main__"), 9),
}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "bundled" not in p.parts)


def _stage(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _module_name(path: Path, src: Path = SRC) -> str:
    """``intentkit.a.b`` for ``src/intentkit/a/b.py`` (and ``intentkit.a`` for its __init__)."""
    parts = path.relative_to(src.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_names(path: Path) -> set[str]:
    """Dotted names of every intentkit import in ``path``, function-level ones included.

    ``from intentkit.a import b`` gives ``intentkit.a.b``, whether b is a module or a name in
    intentkit.a; :func:`import_graph` tells them apart.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {n for n in found if n.split(".")[0] == "intentkit"}


def _imported_stages(path: Path) -> set[str]:
    """Stages named by every intentkit import in ``path``, function-level ones included."""
    return {name.split(".")[1] for name in _imported_names(path) if name.count(".") >= 1}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the intentkit modules it imports (at module or function level)."""
    paths = {_module_name(p, src): p for p in sorted(src.rglob("*.py")) if "bundled" not in p.parts}
    graph = {}
    for name, path in paths.items():
        imported = set()
        for target in _imported_names(path):
            # `from intentkit.a import b`: the module intentkit.a.b if there is one, else the
            # name b lives in intentkit.a.
            module = target if target in paths else target.rpartition(".")[0]
            if module in paths and module != name:
                imported.add(module)
        graph[name] = imported
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (``[a, b, ..., a]``) in ``graph``, or None when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()  # the stdlib finds cycles for us
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_every_module_belongs_to_a_stage() -> None:
    unknown = {_stage(p) for p in _modules()} - set(STAGES)
    assert not unknown, f"add these to STAGES in tests/test_layout.py: {sorted(unknown)}"


def test_imports_flow_one_way_between_stages() -> None:
    backwards = []
    for path in _modules():
        own = STAGES[_stage(path)]
        for target in _imported_stages(path):
            if target in STAGES and STAGES[target] > own:
                backwards.append(f"{path.relative_to(SRC)} imports intentkit.{target}")
    assert not backwards, "\n".join(backwards)


def test_layout_check_catches_a_backward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from intentkit.training.train import train\n")
    assert _imported_stages(module) == {"training"}


def test_no_import_circle_anywhere_in_the_package() -> None:
    circle = find_circle(import_graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


@pytest.mark.parametrize("level", ["module", "function"])
def test_circle_check_catches_a_circle(tmp_path: Path, level: str) -> None:
    src = tmp_path / "intentkit"
    (src / "stage").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "stage" / "__init__.py").write_text("")
    (src / "stage" / "a.py").write_text("from intentkit.stage import b\n")
    (src / "stage" / "c.py").write_text("from intentkit.stage.a import x\n")
    back = "from intentkit.stage.c import y\n"
    (src / "stage" / "b.py").write_text(back if level == "module" else f"def f():\n    {back}")
    graph = import_graph(src)
    assert graph["intentkit.stage.a"] == {"intentkit.stage.b"}
    circle = find_circle(graph)
    assert circle is not None and set(circle) == {f"intentkit.stage.{m}" for m in "abc"}
    (src / "stage" / "b.py").write_text("def f():\n    return 1\n")
    assert find_circle(import_graph(src)) is None


def test_modules_stay_readable_in_one_sitting() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"
