"""``predict --endpoint NAME`` for a SageMaker endpoint: ``InvokeEndpoint`` with the local
server's body (``{"text": [...]}``), split so no request exceeds SageMaker's payload limit.

InvokeEndpoint takes at most 6 MB per request (``Body``: "Maximum length of 6291456",
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html) and
answers a larger one with HTTP 413; a batch of long texts is therefore sent as several requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from intentkit.errors import ConfigError, ModelError
from intentkit.sagemaker.session import Aws

#: InvokeEndpoint's maximum body, in bytes.
MAX_BODY = 6 * 1024 * 1024
_OVERHEAD = len(json.dumps({"text": []}).encode())


def _body(texts: list[str]) -> bytes:
    return json.dumps({"text": texts}).encode("utf-8")


def split_under_limit(
    texts: list[str], endpoint: str, limit: int = MAX_BODY
) -> Iterator[list[str]]:
    """``texts`` in order, as consecutive groups whose request body fits in ``limit`` bytes.

    A text that alone does not fit is a one-line error naming its size.
    """
    group: list[str] = []
    size = _OVERHEAD
    for text in texts:
        # json.dumps of the list joins items with ", ": 2 bytes each after the first
        cost = len(json.dumps(text).encode("utf-8")) + (2 if group else 0)
        if _OVERHEAD + cost > limit:
            raise ConfigError(
                f"--endpoint {endpoint}: a text of {cost / 1e6:.1f} MB as JSON is over "
                "SageMaker's 6 MB request limit (InvokeEndpoint); shorten it"
            )
        if size + cost > limit:
            yield group
            group, size = [], _OVERHEAD
            cost -= 2
        group.append(text)
        size += cost
    if group:
        yield group


class SageMakerInvoker:
    """``sagemaker-runtime InvokeEndpoint`` with the local server's body: ``{"text": [...]}``."""

    def __init__(self, aws: Aws, endpoint: str) -> None:
        """Invoke ``endpoint`` through ``aws`` (IAM-signed; SageMaker has no bearer tokens)."""
        self.aws = aws
        self.endpoint = endpoint

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        """The endpoint's answers for ``texts``: ``[{"predicted_class", "confidence"}, ...]``."""
        answers: list[dict[str, Any]] = []
        for group in split_under_limit(texts, self.endpoint):
            answers += self._invoke(group)
        return answers

    def _invoke(self, texts: list[str]) -> list[dict[str, Any]]:
        resp = self.aws.call(
            "sagemaker-runtime",
            "invoke_endpoint",
            step=f"--endpoint {self.endpoint}",
            EndpointName=self.endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=_body(texts),
        )
        raw = resp["Body"].read()
        try:
            answers = json.loads(raw)
        except ValueError:
            raise ModelError(
                f"--endpoint {self.endpoint}: the endpoint answered non-JSON: {raw[:120]!r}"
            ) from None
        if isinstance(answers, dict):  # a one-element list may come back unwrapped
            answers = [answers]
        if not isinstance(answers, list) or len(answers) != len(texts):
            got = len(answers) if isinstance(answers, list) else type(answers).__name__
            raise ModelError(
                f"--endpoint {self.endpoint}: expected {len(texts)} answers, got {got}; "
                "is the endpoint serving an intentkit model?"
            )
        return answers
