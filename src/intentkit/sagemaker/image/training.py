"""The SageMaker training job: hyperparameters -> prepared data -> ``intentkit train``.

The artifact goes to ``/opt/ml/model`` (SageMaker tars it to S3), checkpoints to
``/opt/ml/checkpoints`` (synced to ``checkpoint_s3_uri``, and back onto a restarted spot job),
and a run that finds a complete checkpoint of itself there resumes from it. Several hosts in
``resourceconfig.json`` run the same ``intentkit train`` under torchrun: the DDP path the CLI
already has, nothing home-made.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from intentkit.config import TrainConfig
from intentkit.errors import ConfigError, IntentkitError
from intentkit.sagemaker.image.channels import prepared_data
from intentkit.sagemaker.image.hyperparameters import (
    Hyperparameters,
    check_train_config,
    parse_hyperparameters,
)
from intentkit.sagemaker.image.paths import OptMl, Resources, read_json, read_resources

log = logging.getLogger(__name__)

DEFAULT_MASTER_PORT = 29500
#: Instance types whose hosts talk over EFA, and those of them with EFA RDMA: the lists the
#: SageMaker Python SDK's own torchrun driver sets FI_PROVIDER / FI_EFA_USE_DEVICE_RDMA by
#: (SM_EFA_NCCL_INSTANCES, SM_EFA_RDMA_INSTANCES in container_drivers/common/utils.py of
#: https://github.com/aws/sagemaker-python-sdk). RDMA is keyed on the type, not on the mere
#: presence of an EFA device: setting it where the device has no RDMA read (g5) aborts NCCL.
EFA_INSTANCES = frozenset(
    {
        "ml.g4dn.8xlarge",
        "ml.g4dn.12xlarge",
        "ml.g5.48xlarge",
        "ml.p3dn.24xlarge",
        "ml.p4d.24xlarge",
        "ml.p4de.24xlarge",
        "ml.p5.48xlarge",
        "ml.trn1.32xlarge",
    }
)
EFA_RDMA_INSTANCES = frozenset({"ml.p4d.24xlarge", "ml.p4de.24xlarge", "ml.trn1.32xlarge"})
#: SageMaker keeps the first 1024 characters of FailureReason.
_FAILURE_MAX_CHARS = 1000


class LaunchError(IntentkitError):
    """torchrun failed on this host; each rank has already logged its own error."""

    exit_code = 1  # not necessarily the user's fault: a peer host may have died


def failure_reason(exc: BaseException) -> str:
    """One line for ``/opt/ml/output/failure``: the user error itself, or the exception type."""
    if isinstance(exc, IntentkitError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc} (unexpected; the traceback is in the job's logs)"
    return " ".join(text.split())[:_FAILURE_MAX_CHARS]


@contextmanager
def failure_reported(paths: OptMl) -> Iterator[None]:
    """Write any exception's one-line reason to ``output/failure`` (atomically), then re-raise.

    Re-raising keeps the CLI's contract: a user error exits 2 with its one line, anything
    else exits 1 with its traceback on stderr (CloudWatch keeps it).
    """
    from intentkit.fsutil import atomic_write_text

    paths.failure.unlink(missing_ok=True)  # a stale reason from a previous run would mislead
    try:
        yield
    except Exception as exc:
        try:
            atomic_write_text(paths.failure, failure_reason(exc) + "\n")
        except OSError as write_error:  # never hide the real error behind this one
            log.error("cannot write %s: %s", paths.failure, write_error)
        raise


def resume_checkpoint(checkpoint_dir: Path, cfg: TrainConfig) -> Path | None:
    """The last complete checkpoint of *this* run in ``checkpoint_dir``, None to start afresh.

    "This run" means the same resolved TrainConfig, which every checkpoint carries: resuming
    another run's checkpoint would silently train a different model, so that is an error.
    """
    from intentkit.config import to_dict
    from intentkit.training.checkpoints import RUN_CONFIG_FILE, complete_checkpoints

    done = complete_checkpoints(checkpoint_dir)
    if not done:
        return None
    last = done[-1]
    # The copy inside the checkpoint is written just after it completes: a kill in between
    # leaves only the one train() wrote beside the checkpoints at the start of the run.
    stored = read_json(last / RUN_CONFIG_FILE) or read_json(checkpoint_dir / RUN_CONFIG_FILE)
    if not isinstance(stored, dict):
        raise ConfigError(
            f"{checkpoint_dir} has no {RUN_CONFIG_FILE}: not intentkit checkpoints; give the job "
            "a new checkpoint_s3_uri or empty this one"
        )
    current = to_dict(cfg)
    changed = sorted(k for k in {*stored, *current} if stored.get(k) != current.get(k))
    if changed:
        shown = ", ".join(f"{k} {stored.get(k)!r} -> {current.get(k)!r}" for k in changed[:3])
        raise ConfigError(
            f"{checkpoint_dir} holds checkpoints of another run ({shown}); give the job a new "
            "checkpoint_s3_uri, empty that one, or train with the same hyperparameters to resume"
        )
    return last


def train_flags(hp: Hyperparameters) -> list[str]:
    """``intentkit train`` flags equal to the job's TrainConfig keys (and ``--preset``)."""
    flags = ["--preset", hp.preset] if hp.preset else []
    for name, value in hp.train.items():
        flag = f"--{name.replace('_', '-')}"
        if value is None:
            continue  # build() ignores None: same as leaving the flag out
        if name == "extra":
            if value:
                raise ConfigError(
                    "hyperparameter 'extra' works in a single training process only (intentkit "
                    "train has no --extra flag); remove it or train on one instance with at "
                    "most one GPU"
                )
            continue
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags.append(f"{flag}={value}")  # `=`: values starting with "-" stay values
    return flags


def torchrun_command(
    *,
    paths: OptMl,
    data: Path,
    hp: Hyperparameters,
    resources: Resources,
    resume: bool,
    master_port: int,
    nproc_per_node: int,
) -> list[str]:
    """The torchrun command line that runs ``intentkit train`` as this host's node."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",  # = torchrun, without relying on the script being on PATH
        f"--nnodes={len(resources.hosts)}",
        f"--node_rank={resources.node_rank}",
        f"--nproc_per_node={nproc_per_node}",
        # One host: its own loopback, whatever the host's name resolves to (or not).
        f"--master_addr={resources.hosts[0] if len(resources.hosts) > 1 else '127.0.0.1'}",
        f"--master_port={master_port}",
        "-m",
        "intentkit",
        "train",
        f"--data={data}",
        f"--out={paths.model}",
        f"--checkpoint-dir={paths.checkpoints}",
        "--resume" if resume else "--force",
        *train_flags(hp),
    ]


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def processes_per_host(resources: Resources, gpus: int) -> int | None:
    """Training processes this host starts under torchrun (one per GPU, at least one), or None
    to train in this very process: one host with at most one GPU.

    One process on a host with several GPUs would leave the HF Trainer to wrap the model in
    ``torch.nn.DataParallel`` (one process driving every GPU, which PyTorch itself recommends
    against: https://pytorch.org/docs/stable/generated/torch.nn.DataParallel.html); torchrun
    gives each GPU its own DDP process, as on several hosts.
    """
    if len(resources.hosts) == 1 and gpus <= 1:
        return None
    return max(gpus, 1)


def distributed_env(resources: Resources, environ: Mapping[str, str]) -> dict[str, str]:
    """The torchrun processes' environment: ``environ`` plus what SageMaker's own torchrun
    driver sets: ``NCCL_SOCKET_IFNAME`` (resourceconfig.json's ``network_interface_name``) and,
    on EFA instance types, ``FI_PROVIDER=efa`` (+ ``FI_EFA_USE_DEVICE_RDMA=1`` and
    ``RDMAV_FORK_SAFE=1`` where EFA has RDMA). A variable already set in ``environ`` (the
    job's ``Environment``) wins.
    """
    extra: dict[str, str] = {}
    if resources.network_interface:
        extra["NCCL_SOCKET_IFNAME"] = resources.network_interface
    if resources.instance_type in EFA_INSTANCES:
        extra["FI_PROVIDER"] = "efa"
    if resources.instance_type in EFA_RDMA_INSTANCES:
        extra["FI_EFA_USE_DEVICE_RDMA"] = "1"
        extra["RDMAV_FORK_SAFE"] = "1"  # libibverbs must survive the dataloader's fork()
    return {**extra, **environ}


def run_training_job(paths: OptMl, *, environ: Mapping[str, str]) -> Path:
    """Run the whole job under ``paths``; return the model folder (empty on non-zero ranks).

    ``environ`` is read here, once (``MASTER_PORT`` for multi-host jobs).
    """
    where = str(paths.hyperparameters)
    hp = parse_hyperparameters(read_json(paths.hyperparameters) or {}, where=where)
    cfg = check_train_config(hp, where=where)  # a bad value fails before the data is read
    resources = read_resources(paths)
    port_text = environ.get("MASTER_PORT") or str(DEFAULT_MASTER_PORT)
    if not port_text.isdigit():
        raise ConfigError(f"$MASTER_PORT must be a port number, got {port_text!r}")
    gpus = _gpus()
    nproc = processes_per_host(resources, gpus)
    if nproc is not None:
        train_flags(hp)  # fail on 'extra' before preparing data
    data = prepared_data(paths, hp)
    resume_from = resume_checkpoint(paths.checkpoints, cfg)
    if resume_from is not None:
        log.info("resuming from %s", resume_from)
    if nproc is None:
        from intentkit.training.train import train

        # force on a fresh start: it empties model/ and checkpoints/ of anything left by a
        # run killed before its first complete checkpoint (there is nothing to resume).
        return train(
            data,
            paths.model,
            checkpoint_dir=paths.checkpoints,
            preset=hp.preset,
            resume=resume_from is not None,
            force=resume_from is None,
            **hp.train,
        )
    cmd = torchrun_command(
        paths=paths,
        data=data,
        hp=hp,
        resources=resources,
        resume=resume_from is not None,
        master_port=int(port_text),
        nproc_per_node=nproc,
    )
    env = distributed_env(resources, environ)
    where = f"host {resources.current_host} of {resources.hosts}, {gpus} GPU(s)"
    log.info("%s: %s", where, " ".join(cmd))
    keys = ("NCCL_SOCKET_IFNAME", "FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA")
    log.info("torchrun environment: %s", {k: env[k] for k in keys if k in env})
    code = subprocess.run(cmd, check=False, env=env).returncode
    if code != 0:
        raise LaunchError(
            f"torchrun exited with code {code} on host {resources.current_host} (node "
            f"{resources.node_rank} of {len(resources.hosts)}); each rank's error is in the logs"
        )
    return paths.model
