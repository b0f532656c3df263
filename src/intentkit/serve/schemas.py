"""Request and response models of the HTTP API (they also drive the OpenAPI docs at /docs).

Strict string fields: pydantic v2 never coerces ``123`` into ``"123"``, so a wrong type is a 422,
not a silent prediction on the text "123".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class InvocationRequest(BaseModel):
    """SageMaker ``POST /invocations`` body: one text, or a list of texts."""

    text: str | list[str] = Field(
        description="A text, or a list of texts (answered with a list in the same order)."
    )


class InvocationLine(BaseModel):
    """One line of an ``application/jsonlines`` batch-transform body."""

    model_config = ConfigDict(extra="ignore")

    text: str


class Invocation(BaseModel):
    """The reference handler's answer for one text."""

    predicted_class: str = Field(description="The answered label (the reject label when rejected)")
    confidence: float = Field(description="Calibrated top-class probability")


class PredictRequest(BaseModel):
    """TEI-shaped ``POST /predict`` body."""

    inputs: str | list[str] = Field(description="A text, or a list of texts")
    top_k: int | None = Field(
        default=None, ge=1, description="Class scores to return per text (default: all)"
    )
    raw_scores: bool = Field(
        default=False,
        description="Un-normalised logits (no temperature, no softmax, no rejection)",
    )


class Score(BaseModel):
    """One label with its score."""

    label: str
    score: float


class CalibrationSummary(BaseModel):
    """What the server does with the artifact's calibration."""

    temperature: float | None = None
    threshold: float | None = None
    reject_label: str | None = None
    oos_label: str | None = None
    reject_enabled: bool = Field(description="False when started with --no-reject")
    oos_scorer: str = Field(
        default="softmax",
        description="Out-of-scope score in use: softmax | mahalanobis | knn | combined",
    )
    oos_threshold: float | None = Field(
        default=None, description="Threshold on the feature scorer's score (-distance)"
    )
    oos_prior: float | None = Field(
        default=None, description="Out-of-scope share the served confidence assumes"
    )


class Info(BaseModel):
    """``GET /info``: what is being served and how."""

    model_id: str
    model_path: str
    labels: list[str]
    max_input_length: int = Field(description="Longer texts are truncated to this many tokens")
    max_batch_size: int
    max_batch_tokens: int
    max_wait_ms: float
    max_queue: int
    max_texts_per_request: int
    device: str
    backend: str = "torch"
    version: str
    calibration: CalibrationSummary | None
    auth: bool = Field(description="Whether a bearer token is required")


class ErrorResponse(BaseModel):
    """Every non-2xx answer."""

    error: str
    error_type: str
