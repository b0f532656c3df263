"""``intentkit data sample``: reproducible few-shot sets; val sampled alike, test untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from intentkit.data.dataset import load_prepared
from train_helpers import assert_one_line_error, keywords_prepared, run_cli


def _sample(capsys, data: Path, out: Path, k: int, seed: int) -> Path:
    code, err = run_cli(capsys, "data", "sample", str(data), "--per-label", str(k),
                        "--seed", str(seed), "--out", str(out))  # fmt: skip
    assert code == 0, err
    return out


def test_same_seed_same_rows_other_seed_other_rows_test_identical(
    kw_data: Path, tmp_path: Path, capsys
) -> None:
    parent = load_prepared(kw_data)
    a = load_prepared(_sample(capsys, kw_data, tmp_path / "a", 5, 1))
    b = load_prepared(_sample(capsys, kw_data, tmp_path / "b", 5, 1))
    c = load_prepared(_sample(capsys, kw_data, tmp_path / "c", 5, 2))
    pd.testing.assert_frame_equal(a.train, b.train)
    pd.testing.assert_frame_equal(a.val, b.val)
    assert set(a.train["text"]) != set(c.train["text"])
    for s in (a, c):
        pd.testing.assert_frame_equal(s.test, parent.test)  # copied as is, row for row
        assert s.train["label"].value_counts().to_dict() == {lab: 5 for lab in parent.labels}
        assert s.val["label"].value_counts().to_dict() == {lab: 5 for lab in parent.labels}
        assert set(s.train["text"]) <= set(parent.train["text"])
        assert set(s.val["text"]) <= set(parent.val["text"])
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["sample"]["per_label"] == 5 and stats["sample"]["seed"] == 1
    assert stats["parent"]["path"] == str(kw_data.resolve())
    assert stats["rows"] == {"train": 15, "test": len(parent.test), "val": 15}
    assert (
        stats["fingerprint"]
        != json.loads((tmp_path / "c" / "stats.json").read_text())["fingerprint"]
    )


def test_without_val_split_val_is_carved_from_unchosen_train_rows(
    keywords_jsonl: Path, tmp_path: Path, capsys
) -> None:
    parent_dir = keywords_prepared(keywords_jsonl, tmp_path / "noval", with_val=False)
    parent = load_prepared(parent_dir)
    s = load_prepared(_sample(capsys, parent_dir, tmp_path / "s", 4, 0))
    assert len(s.val) == 4 * len(parent.labels)
    assert not set(s.val["text"]) & set(s.train["text"])
    assert set(s.val["text"]) <= set(parent.train["text"])


def test_label_with_fewer_than_k_keeps_all_and_is_reported(
    kw_data: Path, tmp_path: Path, capsys
) -> None:
    parent = load_prepared(kw_data)
    smallest = int(parent.train["label"].value_counts().min())
    k = smallest + 3
    from intentkit.cli import main

    assert main(["data", "sample", str(kw_data), "-k", str(k), "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    s = load_prepared(tmp_path / "o")
    counts = s.train["label"].value_counts()
    assert int(counts.min()) == smallest and int(counts.max()) <= k
    short = json.loads((tmp_path / "o" / "stats.json").read_text())["sample"]["short_labels"]
    assert short and all(v < k for v in short.values())
    assert f"fewer than {k}" in out and next(iter(short)) in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--per-label", "0"], "--per-label must be at least 1"),
        (["--per-label", "-3"], "--per-label must be at least 1"),
    ],
)
def test_bad_k_is_one_line_exit_2(kw_data: Path, tmp_path: Path, capsys, args, needle) -> None:
    code, err = run_cli(capsys, "data", "sample", str(kw_data), *args, "-o", str(tmp_path / "o"))
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o").exists()


def test_missing_folder_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nope"
    code, err = run_cli(
        capsys, "data", "sample", str(missing), "-k", "5", "-o", str(tmp_path / "o")
    )
    assert_one_line_error(code, err, str(missing), "data prepare")
