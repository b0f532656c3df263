"""One ``--target``: every command that takes it accepts the same values and refuses any other
with the same one-line error, before doing anything (intentkit.endpoints.check_target)."""

from __future__ import annotations

from pathlib import Path

import pytest

from intentkit.cli import main
from intentkit.endpoints import TARGETS

#: Each command's argv up to --target; with a valid target each fails later, on its own checks.
COMMANDS = {
    "train": ["train", "--data", "{tmp}/nodata", "--out", "{tmp}/out"],
    "deploy": ["deploy", "{tmp}/nomodel", "--name", "e1"],
    "predict": ["predict", "hello"],
}


def _run(argv: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main([a.format(tmp=tmp) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_unknown_target_the_same_way(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run([*COMMANDS[command], "--target", "kubernetes"], tmp_path, capsys)
    assert code == 2
    assert err == "error: --target kubernetes: unknown target; use local or sagemaker\n"
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_command_accepts_every_target(
    command: str, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run([*COMMANDS[command], "--target", target], tmp_path, capsys)
    # Refused later for the missing data/model/flags, never for the target itself.
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "unknown target" not in err


def test_the_targets_are_local_and_sagemaker() -> None:
    assert sorted(TARGETS) == ["local", "sagemaker"]
