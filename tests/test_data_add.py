"""``intentkit data add``: reviewed rows fold into a new version; test frozen, slice held out."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from intentkit.cli import main
from intentkit.data.dataset import load_prepared
from intentkit.errors import DataError


def _labels(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_add_keeps_test_frozen_holds_out_a_slice_and_records_the_parent(
    kw_data: Path, tmp_path: Path
) -> None:
    parent = load_prepared(kw_data)
    test_text = parent.test["text"].iloc[0]
    train_text = parent.train["text"].iloc[0]
    rows = [{"text": f"cancel my booking number {i}", "label": "cancel"} for i in range(10)]
    rows += [{"text": f"  i need a flight to city {i} ", "label": "flight"} for i in range(5)]
    rows += [
        {"text": test_text, "label": "cancel"},  # in the frozen test split: never added
        {"text": train_text, "label": parent.train["label"].iloc[0]},  # already in train
        {"text": "   ", "label": "cancel"},  # empty after stripping
        {"text": "relabelled later", "label": "flight"},
        {"text": "relabelled later", "label": "cancel"},  # the last decision wins
    ]
    out = tmp_path / "v2"
    code = main(
        ["data", "add", str(kw_data), str(_labels(tmp_path / "l.jsonl", rows)), "--out", str(out)]
    )
    assert code == 0
    new = load_prepared(out)
    pd.testing.assert_frame_equal(new.test, parent.test)  # frozen, row for row
    pd.testing.assert_frame_equal(new.val, parent.val)
    reviewed = pd.read_parquet(out / "reviewed_test.parquet")
    assert sorted(reviewed["label"].value_counts().items()) == [("cancel", 2), ("flight", 1)]
    added = set(new.train["text"]) - set(parent.train["text"])
    assert len(added) + len(reviewed) == 16 and not added & set(reviewed["text"])
    assert "i need a flight to city 0" in added | set(reviewed["text"])  # stripped like prepare
    assert test_text not in added and "cancel" in new.labels
    both = pd.concat([new.train, reviewed])
    assert both.loc[both["text"] == "relabelled later", "label"].tolist() == ["cancel"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["parent"]["fingerprint"] == parent.fingerprint
    assert stats["fingerprint"] != parent.fingerprint
    assert stats["added"]["new_labels"] == ["cancel"]
    assert stats["added"]["dropped"]["already_in_data"] == 2
    assert stats["added"]["dropped"]["empty_text"] == 1
    assert stats["rows"]["reviewed_test"] == 3
    assert not any("--oos-label" in n for n in stats["notes"])  # no out_of_scope rows here
    # The parent is untouched, and a second week accumulates the reviewed slice.
    assert not (kw_data / "reviewed_test.parquet").exists()
    week2 = [{"text": f"please cancel trip {i}", "label": "cancel"} for i in range(5)]
    out3 = tmp_path / "v3"
    assert (
        main(["data", "add", str(out), str(_labels(tmp_path / "w2.jsonl", week2)), "-o", str(out3)])
        == 0
    )
    assert len(pd.read_parquet(out3 / "reviewed_test.parquet")) == 4


def test_labels_line_missing_a_field_is_named(kw_data: Path, tmp_path: Path, capsys) -> None:
    labels = _labels(tmp_path / "l.jsonl", [{"text": "a", "label": "b"}, {"text": "no label"}])
    code = main(["data", "add", str(kw_data), str(labels), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "line 2: missing label" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_nothing_new_is_an_error(kw_data: Path, tmp_path: Path) -> None:
    from intentkit.data.add import add

    text = load_prepared(kw_data).train["text"].iloc[0]
    labels = _labels(tmp_path / "l.jsonl", [{"text": text, "label": "x"}])
    with pytest.raises(DataError, match="no new rows to add \\(1 already_in_data\\)"):
        add(kw_data, labels, tmp_path / "o")


def test_out_of_scope_rows_get_a_training_note(kw_data: Path, tmp_path: Path) -> None:
    from intentkit.data.add import add

    rows = [{"text": f"what is the meaning of life {i}", "label": "out_of_scope"} for i in range(5)]
    stats = add(kw_data, _labels(tmp_path / "l.jsonl", rows), tmp_path / "o")
    assert stats["added"]["new_labels"] == ["out_of_scope"]
    assert any("--oos-label out_of_scope" in n for n in stats["notes"])
