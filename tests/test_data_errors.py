"""Bad input to `intentkit data prepare`: one line naming the problem and the fix, exit code 2,
nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from intentkit.cli import main


def _jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    return path


def _good_rows() -> list[tuple[str, str]]:
    return [(f"{lab} {i}", lab) for lab in ("a", "b") for i in range(10)]


def _snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _fail(
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    args: list[str],
    *fix: str,
    out: Path | None = None,
) -> str:
    out = out or tmp_path / "out"
    before = _snapshot(out)
    siblings = set(out.parent.iterdir())
    code = main(["data", "prepare", *args, "--out", str(out)])
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, captured
    assert err.startswith("error: ") and "\n" not in err, err
    for word in fix:
        assert word in err, err
    assert _snapshot(out) == before  # not created, or not changed
    assert set(out.parent.iterdir()) == siblings  # no temp folder left behind
    return err


def test_missing_file(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    _fail(capsys, tmp_path, [str(tmp_path / "nope.csv")], "no such file", "check the path")


def test_unknown_bundled_name(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    _fail(capsys, tmp_path, ["clinc15"], "clinc150, clinc150-travel, banking77")


def test_not_utf8(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = tmp_path / "latin1.csv"
    src.write_bytes("text,label\ncafé crème,a\nthé,b\n".encode("latin-1"))
    _fail(capsys, tmp_path, [str(src)], "not UTF-8", "re-save it as UTF-8")
    utf16 = tmp_path / "u16.jsonl"
    utf16.write_bytes('{"text": "hi", "label": "a"}\n'.encode("utf-16"))
    _fail(capsys, tmp_path, [str(utf16)], "UTF-8")


@pytest.mark.parametrize(
    "name,content,fix",
    [
        ("broken.parquet", b"PAR1 this is not parquet", "cannot read it as parquet"),
        ("broken.jsonl", b'{"text": "a", "label": "x"}\n{"text": oops}\n', "line 2: invalid JSON"),
        ("broken.json", b'[{"text": "a", "label": "x"},', "invalid JSON"),
        ("list.json", b'["a", "b"]', "expected a list of objects"),
        ("data.xlsx", b"PK\x03\x04", "use CSV, TSV, JSON, JSONL or Parquet"),
        ("empty.csv", b"", "expected a header row"),
    ],
)
def test_unreadable_files(
    capsys: pytest.CaptureFixture, tmp_path: Path, name: str, content: bytes, fix: str
) -> None:
    (tmp_path / name).write_bytes(content)
    _fail(capsys, tmp_path, [str(tmp_path / name)], fix)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "d.jsonl", _good_rows())
    src.chmod(0)
    _fail(capsys, tmp_path, [str(src)], "permission denied")


def test_ragged_csv(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = tmp_path / "ragged.csv"
    src.write_text('text,label\nhello,a\n"multi\nline",b\nbook a flight, now,c\nbye,d\n')
    _fail(capsys, tmp_path, [str(src)], "line 5 has 3 fields", "header has 2", "quote fields")


@pytest.mark.parametrize("flag", ["--text-column", "--label-column"])
def test_unknown_column_lists_columns(
    capsys: pytest.CaptureFixture, tmp_path: Path, flag: str
) -> None:
    src = _jsonl(tmp_path / "d.jsonl", _good_rows())
    _fail(capsys, tmp_path, [str(src), flag, "utt"], f"{flag} utt", "columns are text, label")


def test_no_detectable_column(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = tmp_path / "d.csv"
    src.write_text("body,tag\nhello,a\nbye,b\n")
    _fail(capsys, tmp_path, [str(src)], "columns are body, tag", "--text-column NAME")


def test_empty_after_cleaning(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "d.jsonl", [("  ", "a"), ("", "b"), ("text", "")])
    _fail(capsys, tmp_path, [str(src)], "no rows left after cleaning", "2 empty_text", "--text-col")


def test_single_label(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "d.jsonl", [(f"t{i}", "only") for i in range(10)])
    _fail(capsys, tmp_path, [str(src)], "only one label ('only')", "--label-column")


def test_too_few_rows_per_label(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rows = _good_rows() + [("rare one", "rare"), ("odd", "odd2"), ("odd again", "odd2")]
    src = _jsonl(tmp_path / "d.jsonl", rows)
    err = _fail(capsys, tmp_path, [str(src), "--min-per-label", "3"], "rare (1)", "odd2 (2)")
    assert "--min-per-label 1" in err
    assert (
        main(["data", "prepare", str(src), "--out", str(tmp_path / "ok"), "--min-per-label", "1"])
        == 0
    )


@pytest.mark.parametrize(
    "flags,fix",
    [
        (["--test-size", "1.5"], "--test-size must be a share between 0 and 1"),
        (["--test-size", "0"], "--test-size 0.2"),
        (["--val-size", "1"], "--val-size must be a share in [0, 1)"),
        (["--val-size", "-0.1"], "--val-size 0.1"),
        (["--test-size", "0.6", "--val-size", "0.4"], "lower one of them"),
    ],
)
def test_bad_sizes(
    capsys: pytest.CaptureFixture, tmp_path: Path, flags: list[str], fix: str
) -> None:
    src = _jsonl(tmp_path / "d.jsonl", _good_rows())
    _fail(capsys, tmp_path, [str(src), *flags], fix)


def test_out_not_empty_without_force(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "d.jsonl", _good_rows())
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    _fail(capsys, tmp_path, [str(src)], "is not empty", "--force", out=out)


def test_more_refusals(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "d.jsonl", _good_rows())
    _fail(capsys, tmp_path, [str(src), "--include-oos"], "drop --include-oos")
    _fail(capsys, tmp_path, ["banking77", "--include-oos"], "clinc150, clinc150-travel")
    _fail(
        capsys, tmp_path, [str(src), "--text-column", "text", "--label-column", "text"], "pick two"
    )
    _fail(capsys, tmp_path, [str(src), "--preset", "nope"], "choose one of")
    _fail(capsys, tmp_path, [str(tmp_path)], "not one saved with datasets")
    # --force must never delete the source it reads
    inside = tmp_path / "folder"
    inside.mkdir()
    moved = _jsonl(inside / "d.jsonl", _good_rows())
    _fail(capsys, tmp_path, [str(moved), "--force"], "choose another --out", out=inside)
    assert moved.exists()


def test_too_small_for_a_test_split(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    src = _jsonl(tmp_path / "d.jsonl", [("a", "x"), ("b", "y")])
    _fail(capsys, tmp_path, [str(src), "--min-per-label", "1"], "test split is empty", "add rows")


def test_unseen_labels_in_official_test(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    import datasets

    dd = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"text": ["a", "b", "c", "d"], "label": list("xxyy")}
            ),
            "test": datasets.Dataset.from_dict({"text": ["e", "f"], "label": ["x", "z"]}),
        }
    )
    dd.save_to_disk(str(tmp_path / "saved"))
    capsys.readouterr()  # drop datasets' progress bars
    _fail(capsys, tmp_path, [str(tmp_path / "saved")], "labels z occur in val/test", "--resplit")


def test_typer_usage_errors_exit_2(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    code = main(["data", "prepare", "clinc150", "--out", str(tmp_path / "o"), "--test-size", "x"])
    assert code == 2 and "--test-size" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
