"""``intentkit container train|serve``: the SageMaker container contract.

SageMaker runs the image with the single argument ``train`` or ``serve``; the Dockerfile's
``ENTRYPOINT ["intentkit", "container"]`` passes it through. ``$INTENTKIT_OPT_ML`` (default
``/opt/ml``) moves every path and is read here, once, when a command starts.
"""

from __future__ import annotations

import logging
import os

import typer

from intentkit.cli.app import app

container_app = typer.Typer(
    help="SageMaker container entry points over /opt/ml (docker run IMAGE train|serve).",
    no_args_is_help=True,
)
app.add_typer(container_app, name="container")


@container_app.command("train")
def train_cmd() -> None:
    """Run a SageMaker training job from /opt/ml (or $INTENTKIT_OPT_ML).

    Reads input/config/hyperparameters.json (each key an `intentkit train` option: epochs,
    batch-size, model, preset...; plus text-column, label-column, test-size, min-per-label for
    raw data; SageMaker's own sagemaker_* and _* keys, such as a tuning job's
    _tuning_objective_metric, are ignored), resourceconfig.json and the `train` channel
    (or the only one) under input/data: a folder from `intentkit data prepare`, or CSV/TSV/
    JSON/JSONL/Parquet file(s) prepared on the fly into input/prepared. Writes the model to
    model/ and checkpoints to checkpoints/, resuming from a complete checkpoint of the same
    run found there. Several hosts train one model under torchrun ($MASTER_PORT, default
    29500). On failure, a one-line reason goes to output/failure; exit 2 for user errors, 1
    otherwise.
    """
    from intentkit.sagemaker.image.paths import opt_ml_from_env
    from intentkit.sagemaker.image.training import failure_reported, run_training_job

    # The job's only record is its log: say what was detected and decided.
    logging.getLogger("intentkit.sagemaker.image").setLevel(logging.INFO)
    paths = opt_ml_from_env()
    with failure_reported(paths):
        out = run_training_job(paths, environ=dict(os.environ))
    typer.echo(f"model written to {out}")


@container_app.command("serve")
def serve_cmd() -> None:
    """Serve /opt/ml/model (or $INTENTKIT_OPT_ML/model) on 0.0.0.0:8080 until SIGTERM.

    The same server as `intentkit serve`: GET /ping, POST /invocations ({"text": ...} ->
    {"predicted_class", "confidence"}), /predict, /info, /health, /metrics.
    $SAGEMAKER_BIND_TO_PORT (set by SageMaker in inference pipelines), else $INTENTKIT_PORT,
    overrides the port. Request limits follow SageMaker's payload sizes (6 MB, or
    $SAGEMAKER_MAX_PAYLOAD_IN_MB in batch transform) instead of serve's 1 MB. One process
    batches every request; $SAGEMAKER_MODEL_SERVER_WORKERS is logged as not used.
    """
    from intentkit.sagemaker.image.paths import opt_ml_from_env
    from intentkit.sagemaker.image.serving import port_from_env, serve_model

    serve_model(opt_ml_from_env(), port=port_from_env(os.environ), environ=os.environ)
