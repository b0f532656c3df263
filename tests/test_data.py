"""`intentkit data prepare`: splitter properties, cleaning counts, file formats, bundled data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from intentkit.cli import main
from intentkit.config import DataConfig, build, load_preset
from intentkit.data.dataset import load_prepared
from intentkit.data.prepare import prepare
from intentkit.data.split import TEST, TRAIN, VAL, stratified_split


def _labels(sizes: dict[str, int]) -> list[str]:
    rng = np.random.default_rng(0)
    labels = [name for name, n in sizes.items() for _ in range(n)]
    rng.shuffle(labels)
    return labels


SIZES = {f"l{i}": n for i, n in enumerate([2, 3, 5, 7, 10, 11, 13, 50, 99, 100, 101, 333])}


# -- splitter -------------------------------------------------------------------------------------


@pytest.mark.parametrize("test_size,val_size", [(0.2, 0.0), (0.25, 0.1), (0.5, 0.3), (0.1, 0.05)])
def test_split_is_stratified_within_one_row_per_label(test_size: float, val_size: float) -> None:
    labels = np.array(_labels(SIZES))
    codes = stratified_split(labels, test_size=test_size, val_size=val_size, seed=1)
    for name, n in SIZES.items():
        mine = codes[labels == name]
        assert abs((mine == TEST).sum() - n * test_size) < 1, name
        assert (mine == TRAIN).sum() >= 1, name
        if val_size:
            # val is capped so train keeps a row: the one place a label may fall short
            assert (mine == VAL).sum() - n * val_size < 1, name
            if n >= 5:
                assert abs((mine == VAL).sum() - n * val_size) < 1, name
    # the total matches the requested share (largest-remainder rounding)
    assert abs((codes == TEST).sum() - len(labels) * test_size) <= 1


def test_split_seed_determinism_and_no_overlap() -> None:
    labels = _labels(SIZES)
    a = stratified_split(labels, test_size=0.2, val_size=0.1, seed=7)
    b = stratified_split(labels, test_size=0.2, val_size=0.1, seed=7)
    c = stratified_split(labels, test_size=0.2, val_size=0.1, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # every row lands in exactly one split
    assert set(np.unique(a)) == {TRAIN, VAL, TEST}
    assert ((a == TRAIN).sum() + (a == VAL).sum() + (a == TEST).sum()) == len(labels)


def _write_jsonl(path: Path, rows: list[tuple[str, str | None]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    return path


def _many_rows(n_labels: int = 4, per_label: int = 25) -> list[tuple[str, str]]:
    return [
        (f"{lab} request number {i}", lab)
        for lab in "abcdefgh"[:n_labels]
        for i in range(per_label)
    ]


def test_prepare_same_seed_same_files_other_seed_differs(tmp_path: Path) -> None:
    src = _write_jsonl(tmp_path / "d.jsonl", _many_rows())
    s1 = prepare(str(src), tmp_path / "a", config=DataConfig(seed=3))
    s2 = prepare(str(src), tmp_path / "b", config=DataConfig(seed=3))
    s3 = prepare(str(src), tmp_path / "c", config=DataConfig(seed=4))
    assert s1["fingerprint"] == s2["fingerprint"] != s3["fingerprint"]
    assert s1["source"]["fingerprint"] == s3["source"]["fingerprint"]
    a, c = load_prepared(tmp_path / "a"), load_prepared(tmp_path / "c")
    assert a.train.equals(load_prepared(tmp_path / "b").train)
    assert set(a.test.text) != set(c.test.text)
    assert not set(a.train.text) & set(a.test.text)
    assert a.test.label.value_counts().to_dict() == {"a": 5, "b": 5, "c": 5, "d": 5}


# -- cleaning -------------------------------------------------------------------------------------


def test_dedupe_conflicts_empty_and_null_counts(tmp_path: Path) -> None:
    rows = _many_rows()
    rows += [("a request number 0", "a")] * 2  # 2 exact duplicates
    rows += [("  a request number 1 ", "a")]  # duplicate after stripping whitespace
    # conflicting: every copy goes; the repeated ("book it", "a") counts as a duplicate first
    rows += [("book it", "a"), ("book it", "b"), (" book it", "a")]
    rows += [("", "a"), ("   ", "b"), (None, "c")]  # 3 empty texts
    rows += [("no label here", None), ("blank label", "  ")]  # 2 null labels
    src = _write_jsonl(tmp_path / "d.jsonl", rows)
    stats = prepare(str(src), tmp_path / "out")
    assert stats["dropped"] == {
        "empty_text": 3,
        "null_label": 2,
        "duplicate": 4,
        "conflicting_label": 2,
        "leakage_test": 0,
        "leakage_val": 0,
    }
    assert sum(stats["rows"].values()) == 100
    assert stats["source"]["rows"] == {"all": len(rows)}
    ds = load_prepared(tmp_path / "out")
    assert "book it" not in set(ds.train.text) | set(ds.test.text)
    assert ds.labels == ["a", "b", "c", "d"]


def _save_dict(path: Path, splits: dict[str, list[tuple[str, str]]], class_label: bool = False):
    import datasets

    names = sorted({lab for rows in splits.values() for _, lab in rows})
    feats = datasets.Features(
        {
            "utterance": datasets.Value("string"),
            "intent": datasets.ClassLabel(names=names) if class_label else datasets.Value("string"),
        }
    )
    dd = datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(
                {
                    "utterance": [t for t, _ in rows],
                    "intent": [names.index(lab) if class_label else lab for _, lab in rows],
                },
                features=feats,
            )
            for name, rows in splits.items()
        }
    )
    dd.save_to_disk(str(path))
    return path


def test_datasets_folder_with_splits_keeps_them_and_removes_leakage(tmp_path: Path) -> None:
    train = _many_rows(3, 10)
    test = [(f"test {lab} {i}", lab) for lab in "abc" for i in range(4)] + train[:2]  # 2 leaked
    val = [(f"val {lab} {i}", lab) for lab in "abc" for i in range(2)] + [train[5], test[0]]
    folder = _save_dict(
        tmp_path / "saved", {"train": train, "validation": val, "test": test}, class_label=True
    )
    assert main(["data", "prepare", str(folder), "--out", str(tmp_path / "out")]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["split"] == "official"
    assert stats["dropped"]["leakage_test"] == 2
    assert stats["dropped"]["leakage_val"] == 2  # one also in train, one also in test
    assert stats["rows"] == {"train": 30, "val": 6, "test": 12}
    assert stats["source"]["text_column"] == "utterance"
    assert stats["source"]["label_column"] == "intent"
    ds = load_prepared(tmp_path / "out")
    assert ds.labels == ["a", "b", "c"]  # ClassLabel ids mapped back to names
    assert not set(ds.val.text) & (set(ds.train.text) | set(ds.test.text))


def test_datasets_folder_single_split_is_split(tmp_path: Path) -> None:
    import datasets

    rows = _many_rows(3, 10)
    ds = datasets.Dataset.from_dict({"text": [t for t, _ in rows], "label": [x for _, x in rows]})
    ds.save_to_disk(str(tmp_path / "one"))
    _save_dict(tmp_path / "train-only", {"train": rows})
    for name in ("one", "train-only"):
        stats = prepare(str(tmp_path / name), tmp_path / f"out-{name}")
        assert stats["split"] == "stratified"
        assert stats["rows"] == {"train": 24, "test": 6}


def test_hub_id_goes_through_load_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    folder = _save_dict(tmp_path / "saved", {"train": _many_rows(3, 10), "test": _many_rows(3, 2)})
    calls = []

    def fake_load_dataset(name: str, config: str | None = None):
        calls.append((name, config))
        return datasets.load_from_disk(str(folder))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    stats = prepare("someone/intents:full", tmp_path / "out", config=DataConfig(resplit=True))
    assert calls == [("someone/intents", "full")]
    assert stats["source"]["kind"] == "hub" and stats["source"]["id"] == "someone/intents:full"
    assert stats["dropped"]["duplicate"] == 6  # test rows repeat train rows; pooled by --resplit
    assert stats["rows"] == {"train": 24, "test": 6}


def test_hub_unreachable_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # conftest sets HF_DATASETS_OFFLINE=1: datasets answers like an unreachable hub, at once
    code = main(["data", "prepare", "nobody/no-such-dataset", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "cannot reach the Hugging Face hub" in err and "local file" in err
    assert not (tmp_path / "o").exists()


# -- file formats ---------------------------------------------------------------------------------


def test_formats_and_labels_as_strings(tmp_path: Path) -> None:
    rows = [(f"text {i}, with comma", f"0{i % 3}") for i in range(30)]
    frame = pd.DataFrame(rows, columns=["Utterance", "intent"])
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_csv(tmp_path / "d.tsv", index=False, sep="\t")
    frame.to_json(tmp_path / "d.json", orient="records")
    frame.to_parquet(tmp_path / "d.parquet")
    ints = frame.assign(intent=[i % 3 for i in range(30)])
    ints.to_json(tmp_path / "ints.jsonl", orient="records", lines=True)
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": frame.to_dict("records")}))
    mixed = [{"text": f"t{i}", "label": i % 2 if i % 4 else str(i % 2)} for i in range(20)]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mixed))
    for name in ("d.csv", "d.tsv", "d.json", "d.parquet", "wrapped.json"):
        stats = prepare(str(tmp_path / name), tmp_path / f"out-{name}")
        assert stats["num_labels"] == 3, name
        assert load_prepared(tmp_path / f"out-{name}").labels == ["00", "01", "02"], name
        assert "text column 'Utterance' detected" in " ".join(stats["notes"]), name
    assert load_prepared(prepare_dir(tmp_path, "ints.jsonl")).labels == ["0", "1", "2"]
    assert load_prepared(prepare_dir(tmp_path, "mixed.jsonl")).labels == ["0", "1"]
    bom = tmp_path / "bom.csv"  # Excel's UTF-8 export: BOM + CRLF
    bom.write_bytes(
        b"\xef\xbb\xbftext,label\r\n" + b"".join(b"t%d,x%d\r\n" % (i, i % 2) for i in range(10))
    )
    assert load_prepared(prepare_dir(tmp_path, "bom.csv")).labels == ["x0", "x1"]
    table = pd.read_parquet(tmp_path / "out-d.csv" / "train.parquet")
    assert list(table.columns) == ["text", "label"]
    assert table["text"].str.contains(", with comma").all()


def prepare_dir(tmp_path: Path, name: str) -> Path:
    prepare(str(tmp_path / name), tmp_path / f"out-{name}")
    return tmp_path / f"out-{name}"


def test_preset_bitext_columns_and_flags_override(tmp_path: Path) -> None:
    rows = [
        {"flags": "B", "instruction": f"q{i}", "category": f"C{i % 2}", "intent": f"i{i % 5}"}
        for i in range(40)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "bitext.csv", index=False)
    cfg = build(DataConfig, load_preset("bitext-travel")["data"], seed=5)
    stats = prepare(str(tmp_path / "bitext.csv"), tmp_path / "out", config=cfg)
    assert stats["source"]["label_column"] == "category" and stats["num_labels"] == 2
    assert stats["options"]["seed"] == 5
    code = main(
        ["data", "prepare", str(tmp_path / "bitext.csv"), "--out", str(tmp_path / "o2")]
        + ["--preset", "bitext-travel", "--label-column", "intent", "--test-size", "0.25"]
    )
    assert code == 0
    stats = json.loads((tmp_path / "o2" / "stats.json").read_text())
    assert stats["num_labels"] == 5 and stats["rows"] == {"train": 30, "test": 10}


def test_force_replaces_and_val_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src = _write_jsonl(tmp_path / "d.jsonl", _many_rows())
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("x")
    args = ["data", "prepare", str(src), "--out", str(out), "--val-size", "0.2", "--force"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "labels.json",
        "stats.json",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]
    assert "train" in capsys.readouterr().out
    ds = load_prepared(out)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (60, 20, 20)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


# -- bundled datasets -----------------------------------------------------------------------------

BUNDLED_CASES = [
    # name, flags, source rows, prepared rows, labels
    ("clinc150", [], (15000, 3000, 4500), (14996, 2997, 4498), 150),
    ("clinc150", ["--include-oos"], (15100, 3100, 5500), (15096, 3097, 5498), 151),
    ("clinc150-travel", [], (1500, 300, 450), (1500, 300, 450), 15),
    ("clinc150-travel", ["--include-oos"], (1600, 400, 1450), (1600, 400, 1450), 16),
    ("banking77", [], (10003, 3080), (9999, 3073), 77),
]


@pytest.mark.parametrize("name,flags,source_rows,rows,n_labels", BUNDLED_CASES)
def test_bundled_datasets(
    tmp_path: Path, name: str, flags: list[str], source_rows: tuple, rows: tuple, n_labels: int
) -> None:
    assert main(["data", "prepare", name, "--out", str(tmp_path / "o"), *flags]) == 0
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    splits = ("train", "val", "test") if len(rows) == 3 else ("train", "test")
    assert tuple(stats["source"]["rows"][s] for s in splits) == source_rows
    assert tuple(stats["rows"][s] for s in splits) == rows
    assert stats["num_labels"] == n_labels and stats["split"] == "official"
    assert stats["source"]["license"].startswith("CC BY")
    ds = load_prepared(tmp_path / "o")
    assert len(ds.labels) == n_labels and ("oos" in ds.labels) == ("--include-oos" in flags)


def test_bundled_cleaning_is_recorded() -> None:
    # What cleaning does to the official splits (see stats.json "dropped_by_split").
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        clinc = prepare("clinc150", Path(tmp) / "c")
        bank = prepare("banking77", Path(tmp) / "b")
    # CLINC150: 4 texts carry two labels (8 rows: 4 train, 2 val, 2 test); 1 val text is in train
    assert clinc["dropped_by_split"]["conflicting_label"] == {"train": 4, "val": 2, "test": 2}
    assert clinc["dropped_by_split"]["leakage_val"] == {"val": 1}
    # Banking77: 5 duplicates once whitespace is stripped, 6 test texts also in train
    assert bank["dropped_by_split"]["duplicate"] == {"train": 4, "test": 1}
    assert bank["dropped_by_split"]["leakage_test"] == {"test": 6}


def test_resplit_pools_official_splits(tmp_path: Path) -> None:
    stats = prepare("clinc150-travel", tmp_path / "o", config=DataConfig(resplit=True))
    assert stats["split"] == "stratified"
    assert stats["rows"] == {"train": 1800, "test": 450}
    assert set(stats["label_counts"]["test"].values()) == {30}
