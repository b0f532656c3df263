"""The ``--target sagemaker`` options shared by ``train``, ``deploy`` and ``predict``.

Typer reads these annotations at runtime, so they use ``Optional[...]`` (Python 3.10).
Values left unset fall back to ``INTENTKIT_SAGEMAKER_*`` in
:meth:`intentkit.sagemaker.session.AwsSettings.resolve`, read once when the command starts.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

_Str = Optional[str]  # noqa: UP045

Region = Annotated[
    _Str,
    typer.Option(help="SageMaker: AWS region (default: $INTENTKIT_SAGEMAKER_REGION, AWS_REGION)."),
]
Role = Annotated[
    _Str,
    typer.Option(
        help="SageMaker: execution role ARN (default: $INTENTKIT_SAGEMAKER_ROLE).",
    ),
]
Bucket = Annotated[
    _Str,
    typer.Option(
        help="SageMaker: S3 bucket for data and models (default: $INTENTKIT_SAGEMAKER_BUCKET, "
        "else sagemaker-REGION-ACCOUNT, created if missing)."
    ),
]
Image = Annotated[
    _Str,
    typer.Option(
        help="SageMaker: huggingface (AWS's Hugging Face PyTorch image for the region; nothing "
        "to build) or a container image URI (the intentkit image pushed to ECR)."
    ),
]
ImageVersion = Annotated[
    _Str,
    typer.Option(
        help="SageMaker, with --image huggingface: the image's transformers version (4.56 or "
        "4.56.2; default: the newest in the region that supports the model)."
    ),
]
JobName = Annotated[
    _Str, typer.Option(help="SageMaker: job name (default intentkit-<UTC timestamp>).")
]
NoWait = Annotated[
    bool, typer.Option("--no-wait", help="SageMaker: print the job name and return.")
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="SageMaker: print the API requests as JSON lines; send none."),
]


def aws_settings(region: str | None, role: str | None, bucket: str | None, dry_run: bool) -> object:
    """The resolved :class:`~intentkit.sagemaker.session.AwsSettings` (flags, then env)."""
    from intentkit.sagemaker.session import AwsSettings

    return AwsSettings.resolve(region=region, role=role, bucket=bucket, dry_run=dry_run)
