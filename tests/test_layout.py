"""The package layout holds: imports flow one way between stages, and modules stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "intentkit"

#: Stage of each top-level module or package; a module may import its own stage or earlier ones.
#: data -> inference -> evaluation -> training: evaluation runs the predictor, and training fits
#: the calibration (evaluation) that inference applies at serving time.
STAGES = {
    **dict.fromkeys(("__init__", "config", "errors", "fsutil", "artifact", "modeling"), 0),
    "data": 1,
    # export and bulk sit beside the runtime for now: Predictor still exports on demand.
    **dict.fromkeys(("inference", "export", "bulk"), 2),
    "evaluation": 3,
    "training": 4,
    "serve": 5,
    # loop/ reads what serve captured; its promote switches endpoints, so it sits beside them.
    # sagemaker/ holds the client side and, in sagemaker/image, what runs inside the image.
    **dict.fromkeys(("endpoints", "sagemaker", "loop"), 6),
    **dict.fromkeys(("quickstart", "cli", "__main__"), 7),
}
MAX_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "bundled" not in p.parts)


def _stage(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported_stages(path: Path) -> set[str]:
    """Stages named by every intentkit import in ``path``, function-level ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "intentkit":
                names = [f"intentkit.{a.name}" for a in node.names]
            else:
                names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "intentkit" and len(parts) > 1:
                found.add(parts[1])
    return found


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


def test_modules_stay_readable_in_one_sitting() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in _modules()
        if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"
