"""The local endpoint registry: one JSON file of deployed servers in the user's state directory.

Writers hold a file lock (``endpoints.json.lock``) for read-modify-write and replace the file
atomically, so two ``intentkit deploy`` runs never lose each other's record and a reader never
sees half a file. Records: ``name, pid, create_time, host, port, url, model, started, log, auth``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError
from intentkit.fsutil import atomic_write_json

REGISTRY_FILE = "endpoints.json"


def default_state_dir() -> Path:
    """platformdirs' per-user state folder for intentkit (e.g. ~/.local/state/intentkit)."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("intentkit"))


def process_alive(pid: int, create_time: float | None = None) -> bool:
    """True when ``pid`` runs and (if given) was started at ``create_time`` (no recycled pid).

    Zombies count as dead; one that is our own child is reaped on the way.
    """
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            return False
        if create_time is not None and abs(proc.create_time() - create_time) > 1.0:
            return False
        return True
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class Registry:
    """Endpoint records keyed by name, stored in ``state_dir/endpoints.json``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / REGISTRY_FILE
        self.log_dir = self.state_dir / "logs"

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.path} is not valid JSON ({exc}); delete it (running servers keep running)"
            ) from exc
        return data.get("endpoints", {}) if isinstance(data, dict) else {}

    @contextmanager
    def edit(self) -> Iterator[dict[str, dict[str, Any]]]:
        """Lock, yield the records for in-place changes, write them back atomically."""
        from filelock import FileLock  # a transformers/huggingface_hub dependency already

        self.state_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=30):
            records = self._read()
            before = json.dumps(records, sort_keys=True)
            yield records
            if json.dumps(records, sort_keys=True) != before:
                atomic_write_json(self.path, {"version": 1, "endpoints": records})

    def all(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every record (no lock: the file is replaced atomically)."""
        return self._read()

    def get(self, name: str) -> dict[str, Any] | None:
        """The record named ``name``, or None."""
        return self._read().get(name)

    def prune(self) -> list[str]:
        """Drop records whose process is gone; return their names."""
        gone = []
        with self.edit() as records:
            for name, rec in list(records.items()):
                if not process_alive(int(rec["pid"]), rec.get("create_time")):
                    gone.append(name)
                    del records[name]
        return gone
