"""``--image huggingface``: the Hugging Face PyTorch image (training or inference) for a region.

No image to build or push: AWS publishes these images per region, from a registry account that
differs by region (``763104351884`` in most, others in opt-in, China and GovCloud regions). The
account, the versions and the tag parts come from the SageMaker Python SDK's own table, of which
``hf_images.json`` is the subset intentkit needs (PyTorch images from transformers 4.37 for
inference, 4.46 for training), copied from
https://github.com/aws/sagemaker-python-sdk/blob/a24812666d258d9d19c9a82d0c9385ca0bd3ba01/sagemaker-core/src/sagemaker/core/image_uri_config/huggingface.json
(its ``source`` key says the same; regenerate from that file to pick up new images). The URI is
built as the SDK's ``sagemaker.core.image_uris.retrieve`` builds it:
``ACCOUNT.dkr.ecr.REGION.SUFFIX/REPOSITORY:PYTORCH-transformersVERSION-PROCESSOR-PY-CONTAINER``.

The pick: the newest version available in the region whose transformers supports the model
family (:data:`MIN_TRANSFORMERS`) and, for training, whose PyTorch meets intentkit's own floor
(:data:`MIN_TRAINING_PYTORCH`); ``--image-version`` pins one, and a too-old one is refused in
one line before anything is created. CPU or GPU image by instance type, as the SDK decides it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from intentkit.errors import ConfigError

#: What ``--image`` takes to mean "the Hugging Face image for this region".
HF_IMAGE = "huggingface"
TABLE = Path(__file__).with_name("hf_images.json")
SCOPES = ("training", "inference")
#: Oldest transformers that has each model family (``config.json``'s ``model_type``).
#: ModernBERT arrived in 4.48.0 (https://github.com/huggingface/transformers/releases/tag/v4.48.0).
MIN_TRANSFORMERS = {"modernbert": "4.48.0"}
#: Every other (BERT-family) encoder: the oldest image in the table, the first on PyTorch 2.
DEFAULT_MIN_TRANSFORMERS = "4.37.0"
#: The training job pip-installs intentkit's requirements into the image (``source_dir``); with
#: an older PyTorch than intentkit's ``torch>=2.6`` pip would replace the image's CUDA build.
MIN_TRAINING_PYTORCH = "2.6"


@dataclass(frozen=True)
class HfImage:
    """One resolved image: its URI and what it ships."""

    uri: str
    transformers: str
    pytorch: str
    python: str  #: ``py312``
    processor: str  #: ``cpu`` or ``gpu``


def is_hf_choice(image: str | None) -> bool:
    """Whether ``--image`` asks for the Hugging Face image (``huggingface``, any case)."""
    return (image or "").strip().lower() == HF_IMAGE


def check_image_flags(image: str | None, version: str | None) -> None:
    """``--image`` and ``--image-version`` as given: ``huggingface`` (optionally pinned) or an
    image URI (then ``--image-version`` does not apply); one line naming the flag otherwise."""
    from intentkit.sagemaker.jobs import check_image

    if is_hf_choice(image):
        return
    if version is not None:
        raise ConfigError(
            f"--image-version {version}: only for --image huggingface; drop it or pass that"
        )
    if not image:
        raise ConfigError(
            "--image is required for --target sagemaker: pass --image huggingface (AWS's Hugging "
            "Face image; nothing to build) or your intentkit image in ECR "
            "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/intentkit:TAG)"
        )
    check_image(image)


def resolve_image_flag(
    image: str, version: str | None, *, scope: str, region: str, instance_type: str, model: str
) -> str:
    """``--image`` as a URI: unchanged, or for ``huggingface`` the resolved image's URI."""
    check_image_flags(image, version)
    if not is_hf_choice(image):
        return image
    family = model_family(model)
    kw = {"region": region, "instance_type": instance_type, "family": family, "version": version}
    return resolve_hf_image(scope, **kw).uri


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


@lru_cache(maxsize=1)
def load_table() -> dict[str, Any]:
    """The shipped image table (``hf_images.json``): ``{scope: {repository, versions}}``."""
    return json.loads(TABLE.read_text("utf-8"))


def processor_for(instance_type: str, flag: str = "--instance-type") -> str:
    """``gpu`` for ml.g*/ml.p* instances, else ``cpu`` (the SDK's rule); Inferentia and
    Trainium need Neuron images, which intentkit does not pick."""
    match = re.match(r"^ml[._]([a-z\d-]+)\.?\w*$", instance_type)
    family = match[1] if match else ""
    if not family:
        raise ConfigError(f"{flag} {instance_type}: not a SageMaker instance type (ml.g5.xlarge)")
    if family.startswith(("inf", "trn")):
        raise ConfigError(
            f"{flag} {instance_type}: Inferentia/Trainium need Neuron images, which --image "
            "huggingface does not pick; use a CPU (ml.c7i) or GPU (ml.g5) instance"
        )
    return "gpu" if family[0] in ("g", "p") else "cpu"


def model_family(model: str) -> str:
    """The model family (``model_type``) of an artifact folder, an alias or a hub id.

    A folder's ``config.json`` says it. A hub id cannot be looked up before the job (no hub
    access is assumed here), so its name decides: ``answerdotai/ModernBERT-base`` ->
    ``modernbert``; anything else counts as BERT-family.
    """
    from intentkit.modeling import ALIASES

    config = Path(model).expanduser() / "config.json"
    if config.is_file():
        return str(json.loads(config.read_text("utf-8")).get("model_type") or "unknown")
    name = ALIASES.get(model.lower(), model).lower()
    return next((family for family in MIN_TRANSFORMERS if family in name), "bert")


def ecr_hostname(region: str) -> str:
    """``ecr.REGION.DNS-SUFFIX`` from botocore's endpoint data (``amazonaws.com.cn`` in China),
    as the SDK does; the commercial suffix for a region this botocore does not know yet."""
    from botocore.loaders import create_loader
    from botocore.regions import EndpointResolver

    endpoint = EndpointResolver(create_loader().load_data("endpoints")).construct_endpoint(
        "ecr", region
    )
    return endpoint["hostname"] if endpoint else f"ecr.{region}.amazonaws.com"


def _too_old(scope: str, entry: dict[str, Any], version: str, family: str) -> str | None:
    """Why ``version`` cannot serve/train ``family`` (None when it can)."""
    need = MIN_TRANSFORMERS.get(family, DEFAULT_MIN_TRANSFORMERS)
    if _key(version) < _key(need):
        return f"{family} needs transformers >= {need}"
    if scope == "training" and _key(entry["pytorch"]) < _key(MIN_TRAINING_PYTORCH):
        return (
            f"intentkit needs PyTorch >= {MIN_TRAINING_PYTORCH} and that image has "
            f"{entry['pytorch']}"
        )
    return None


def _pinned(versions: dict[str, Any], wanted: str) -> str:
    """The table version ``--image-version`` names: exact (4.56.2) or major.minor (4.56)."""
    found = [v for v in versions if v == wanted or v.startswith(wanted + ".")]
    if not found:
        raise ConfigError(
            f"--image-version {wanted}: no such Hugging Face image; known transformers "
            f"versions: {', '.join(versions)}"
        )
    return max(found, key=_key)


def resolve_hf_image(
    scope: str,
    *,
    region: str,
    instance_type: str,
    family: str,
    version: str | None = None,
    table: dict[str, Any] | None = None,
) -> HfImage:
    """The image URI for ``scope`` (``training`` or ``inference``) in ``region``.

    Args:
        region: the job's or endpoint's region (the registry account depends on it).
        instance_type: decides CPU or GPU (training images are GPU only).
        family: the model's ``model_type`` (:func:`model_family`).
        version: ``--image-version`` (transformers version, ``4.56`` or ``4.56.2``); None
            picks the newest that fits.
        table: the image table (default: the shipped :func:`load_table`).

    Raises:
        ConfigError: one line naming the flag: unknown region or version, a CPU instance for
            training, or an image too old for the model family.
    """
    spec = (table or load_table())[scope]
    processor = processor_for(instance_type)
    kind = "training" if scope == "training" else "inference"
    in_region = {v: e for v, e in spec["versions"].items() if region in e["registries"]}
    if not in_region:
        raise ConfigError(
            f"--region {region}: AWS publishes no Hugging Face PyTorch {kind} image there; "
            "pick another --region or pass your own --image URI"
        )
    if version is not None:
        chosen = _pinned(spec["versions"], version)
        if chosen not in in_region:
            raise ConfigError(
                f"--image-version {version}: not published in {region}; there: "
                f"{', '.join(in_region)}"
            )
        why = _too_old(scope, in_region[chosen], chosen, family)
        if why:
            raise ConfigError(
                f"--image-version {version}: too old ({why}); drop --image-version to pick the "
                "newest that fits"
            )
    else:
        fits = [v for v, e in in_region.items() if not _too_old(scope, e, v, family)]
        if not fits:
            newest = max(in_region, key=_key)
            why = _too_old(scope, in_region[newest], newest, family)
            raise ConfigError(
                f"--region {region}: its newest Hugging Face {kind} image (transformers "
                f"{newest}) is too old ({why}); pick another --region or pass your own --image URI"
            )
        chosen = max(fits, key=_key)
    entry = in_region[chosen]
    if processor not in entry["container"]:
        raise ConfigError(
            f"--instance-type {instance_type}: the Hugging Face {kind} images are "
            f"{'/'.join(entry['container']).upper()} only; pick e.g. ml.g5.xlarge"
        )
    tag = "-".join(
        (
            f"{entry['pytorch']}-transformers{chosen}",
            processor,
            entry["py"],
            entry["container"][processor],
        )
    )
    uri = f"{entry['registries'][region]}.dkr.{ecr_hostname(region)}/{spec['repository']}:{tag}"
    return HfImage(uri, chosen, entry["pytorch"], entry["py"], processor)
