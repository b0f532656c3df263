"""The endpoint registry: one JSON file of deployed endpoints (every target) in the state dir.

Writers hold a file lock (``endpoints.json.lock``) for read-modify-write and replace the file
atomically, so two ``intentkit deploy`` runs never lose each other's record and a reader never
sees half a file. Every record has ``name``, ``target`` (``local`` when absent: records
written before targets existed), ``url``, ``model`` and ``started``; the rest is the target's own
(a local record's ``pid``, ``create_time``, ``log``; a SageMaker record's ARNs and region).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
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


class Registry:
    """Records keyed by name, stored in ``state_dir/endpoints.json`` (endpoints, the default) or
    another ``file`` under another ``key`` (``jobs.json``: the SageMaker jobs intentkit started)."""

    def __init__(
        self, state_dir: str | Path, *, file: str = REGISTRY_FILE, key: str = "endpoints"
    ) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / file
        self.key = key
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
        return data.get(self.key, {}) if isinstance(data, dict) else {}

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
                atomic_write_json(self.path, {"version": 1, self.key: records})

    def all(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every record (no lock: the file is replaced atomically)."""
        return self._read()

    def get(self, name: str) -> dict[str, Any] | None:
        """The record named ``name``, or None."""
        return self._read().get(name)

    def prune(self, is_stale: Callable[[dict[str, Any]], bool]) -> list[str]:
        """Drop the records ``is_stale`` says are gone (e.g. a dead local process); their names."""
        gone = []
        with self.edit() as records:
            for name, rec in list(records.items()):
                if is_stale(rec):
                    gone.append(name)
                    del records[name]
        return gone
