"""What ``intentkit deploy --target sagemaker`` takes, checked as a whole before anything is sent.

The limits are SageMaker's own (botocore's service model for SageMaker, shapes
``ServerlessMemorySizeInMB``, ``ServerlessMaxConcurrency``, ``SamplingPercentage``), so a
mistake is one line naming the flag instead of a ValidationException after the upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from intentkit.errors import ConfigError
from intentkit.sagemaker.session import AwsSettings, split_s3_uri

#: Autoscaling target, in the unit of ``SageMakerVariantInvocationsPerInstance``: *requests*
#: (InvokeEndpoint calls) per instance per minute, whatever the number of texts in each.
#: Derived from bench/results/2026-12-02/predictor_throughput.json: ModernBERT-base (the
#: reference's model, fp32, 2 CPU threads, as an ml.c7i.large's 2 vCPUs) scores 50.6 texts/s
#: at batch 64, the batch `predict --endpoint --file` sends per request. That is
#: 50.6 / 64 * 60 = 47.4 requests a minute at saturation; 70 % of it leaves headroom for the
#: 1-2 minutes a scale-out takes to be decided plus the minutes a new instance takes to start.
#: One-text requests cost far less each (the served ModernBERT answered 48 req/s at c=32,
#: bench/results/2026-12-02/serve_load.json): raise --target-invocations for such traffic.
DEFAULT_TARGET_INVOCATIONS = int(0.7 * 50.6 / 64 * 60)  # = 33
#: ServerlessConfig: memory 1024-6144 MB in 1 GB steps; concurrency 1-200.
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
MAX_SERVERLESS_CONCURRENCY = 200
#: The SageMaker Python SDK's ServerlessInferenceConfig defaults (memory_size_in_mb=2048,
#: max_concurrency=5; aws/sagemaker-python-sdk,
#: src/sagemaker/serverless/serverless_inference_config.py).
DEFAULT_SERVERLESS_MEMORY_MB = 2048
DEFAULT_SERVERLESS_CONCURRENCY = 5


@dataclass
class SageMakerOptions:
    """What ``intentkit deploy --target sagemaker`` takes. Checked as a whole when built."""

    #: --region / --role / --bucket / --dry-run, resolved with ``INTENTKIT_SAGEMAKER_*``.
    settings: AwsSettings = field(default_factory=AwsSettings)
    #: --image: the serving image in ECR: intentkit's own (``intentkit container serve``) or a
    #: ``huggingface-pytorch-inference`` image (then the archive carries ``code/inference.py``).
    image: str | None = None
    #: --image-version: with ``--image huggingface``, the transformers version of the image.
    image_version: str | None = None
    #: --instance-type. c7i (Sapphire Rapids: AVX-512, AMX) is the cheapest fast CPU family for
    #: encoder inference; moto's validator predates it, so the tests pass ml.c5.large.
    instance_type: str | None = None
    #: --instance-count: instances the endpoint starts with.
    instance_count: int | None = None
    #: --min-instances: autoscaling floor (default: --instance-count); needs --max-instances.
    min_instances: int | None = None
    #: --max-instances: autoscaling ceiling; above 1 registers a target-tracking policy.
    max_instances: int | None = None
    #: --target-invocations: the policy's target, requests per instance per minute.
    target_invocations: int | None = None
    #: --timeout: seconds to wait for InService (SageMaker usually takes 5-10 minutes).
    timeout: float = 1800.0
    #: --serverless: a serverless endpoint (billed per request and compute time, no instances).
    serverless: bool = False
    #: --memory-mb: serverless memory (1024-6144 in 1024 steps; vCPUs grow with it).
    memory_mb: int | None = None
    #: --max-concurrency: serverless concurrent invocations (1-200).
    max_concurrency: int | None = None
    #: --capture: ``s3://BUCKET/prefix`` for endpoint data capture (requests and answers).
    capture: str | None = None
    #: --capture-sample: percentage of requests captured (1-100).
    capture_sample: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.image:
            problems.append(
                "--image is required for --target sagemaker: huggingface (AWS's Hugging Face "
                "image for the region), the intentkit image pushed to ECR (see README, Docker "
                "and SageMaker) or a huggingface-pytorch-inference image URI"
            )
        if self.serverless:
            problems += self._serverless_problems()
        else:
            problems += self._instance_problems()
        problems += self._capture_problems()
        if self.timeout <= 0:
            problems.append(f"--timeout must be positive, got {self.timeout:g}")
        if problems:
            raise ConfigError("; ".join(problems))
        if not self.serverless:
            self.instance_type = self.instance_type or "ml.c7i.large"
            self.instance_count = self.instance_count or 1
            self.target_invocations = self.target_invocations or DEFAULT_TARGET_INVOCATIONS

    def _serverless_problems(self) -> list[str]:
        problems = []
        given = {
            "--instance-type": self.instance_type,
            "--instance-count": self.instance_count,
            "--min-instances": self.min_instances,
            "--max-instances": self.max_instances,
            "--target-invocations": self.target_invocations,
        }
        flags = [flag for flag, value in given.items() if value is not None]
        if flags:
            problems.append(
                f"{', '.join(flags)}: instance settings do not apply to --serverless (it scales "
                "by itself up to --max-concurrency); drop them"
            )
        if self.capture:
            problems.append(
                "--capture: SageMaker serverless endpoints do not support data capture; drop "
                "--capture or --serverless"
            )
        memory = self.memory_mb or DEFAULT_SERVERLESS_MEMORY_MB
        if memory not in SERVERLESS_MEMORY_MB:
            problems.append(
                f"--memory-mb must be one of {', '.join(map(str, SERVERLESS_MEMORY_MB))}, "
                f"got {memory}"
            )
        concurrency = self.max_concurrency or DEFAULT_SERVERLESS_CONCURRENCY
        if not 1 <= concurrency <= MAX_SERVERLESS_CONCURRENCY:
            problems.append(f"--max-concurrency must be 1-200, got {concurrency}")
        self.memory_mb, self.max_concurrency = memory, concurrency
        return problems

    def _instance_problems(self) -> list[str]:
        problems = []
        extra = [
            flag
            for flag, value in (
                ("--memory-mb", self.memory_mb),
                ("--max-concurrency", self.max_concurrency),
            )
            if value is not None
        ]
        if extra:
            problems.append(f"{', '.join(extra)}: only with --serverless; add it or drop them")
        count = 1 if self.instance_count is None else self.instance_count
        if count < 1:
            problems.append(f"--instance-count must be at least 1, got {count}")
        if self.min_instances is not None and self.max_instances is None:
            problems.append("--min-instances needs --max-instances (it bounds autoscaling)")
        lo, hi = self.min_instances, self.max_instances
        if lo is not None and lo < 1:
            problems.append(f"--min-instances must be at least 1, got {lo}")
        if hi is not None:
            floor = count if lo is None else lo
            if hi < floor:
                flag = "--instance-count" if lo is None else "--min-instances"
                problems.append(f"--max-instances {hi} is below {flag} {floor}")
            elif not floor <= count <= hi:
                problems.append(
                    f"--instance-count {count} must lie within --min-instances "
                    f"{floor} and --max-instances {hi}"
                )
        if self.target_invocations is not None and self.target_invocations < 1:
            problems.append(
                f"--target-invocations must be at least 1, got {self.target_invocations}"
            )
        return problems

    def _capture_problems(self) -> list[str]:
        if self.capture is None:
            if self.capture_sample is not None:
                return ["--capture-sample needs --capture s3://BUCKET/PREFIX"]
            return []
        problems = []
        try:
            bucket, _ = split_s3_uri(self.capture)
        except ConfigError:
            bucket = ""
        if not bucket:
            problems.append(
                f"--capture {self.capture}: expected s3://BUCKET/PREFIX with --target sagemaker"
            )
        sample = 100 if self.capture_sample is None else self.capture_sample
        if not 1 <= sample <= 100:
            problems.append(f"--capture-sample must be a percentage 1-100, got {sample}")
        self.capture_sample = sample
        return problems

    @property
    def autoscaling(self) -> dict[str, int] | None:
        """``{"min", "max", "target_invocations"}`` when --max-instances > 1, else None."""
        if self.serverless or self.max_instances is None or self.max_instances <= 1:
            return None
        lo = self.instance_count if self.min_instances is None else self.min_instances
        return {"min": lo, "max": self.max_instances, "target_invocations": self.target_invocations}

    def variant(self) -> dict[str, Any]:
        """The ProductionVariant's capacity: instances, or a ServerlessConfig."""
        if self.serverless:
            return {
                "ServerlessConfig": {
                    "MemorySizeInMB": self.memory_mb,
                    "MaxConcurrency": self.max_concurrency,
                }
            }
        return {"InstanceType": self.instance_type, "InitialInstanceCount": self.instance_count}
