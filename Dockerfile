# intentkit image: a SageMaker bring-your-own container for both training and serving.
# SageMaker runs it with the single argument `train` or `serve`; the entry point passes it to
# `intentkit container`, which works over /opt/ml (see src/intentkit/sagemaker/image/):
#   docker build -t intentkit .                                      # CPU
#   docker build -t intentkit:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run -p 8080:8080 -v $PWD/model:/opt/ml/model:ro intentkit          # = `serve`
#   docker run -v $PWD/opt_ml:/opt/ml intentkit train                         # a training job
# bench/container_image.py builds and runs it with podman, from a Debian base made locally
# (`podman build --from`): the steps below only assume a Debian/Ubuntu-like base with python3
# and its venv module, which python:3.11-slim and `debootstrap --include=python3-venv` both are.
# Serving runs on ONNX Runtime on CPU (the `serve` extra). Run `intentkit export MODEL_DIR`
# before packaging the model, or each start re-exports into the container's cache.
FROM python:3.11-slim

# The torch wheel: from a CPU index by default, because the default PyPI wheel drags in ~3 GB
# of CUDA libraries a CPU endpoint never uses. For GPU instances pass a CUDA index (whl/cu128,
# ...); the CUDA runtime comes inside those wheels, the driver from the host. TORCH_WHEELS names
# a folder of wheels mounted into the build instead (`podman build --volume DIR:/wheels:ro
# --build-arg TORCH_WHEELS=/wheels`) where the index cannot be reached.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_WHEELS=
# A CA bundle for pip behind a TLS-intercepting proxy, mounted into the build only
# (`--volume /etc/ssl/certs/ca-certificates.crt:/build-ca.crt:ro --build-arg PIP_CERT=/build-ca.crt`);
# an ARG, so it is not left in the image.
ARG PIP_CERT

# SageMaker sets SAGEMAKER_BIND_TO_PORT (and `container serve` listens there) only for images
# that declare this label; inference pipelines need it:
# https://docs.aws.amazon.com/sagemaker/latest/dg/inference-pipeline-real-time.html
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true

# A virtual environment: the same paths whatever Python the base ships (Debian's python3 refuses
# `pip install` into the system, PEP 668), and nothing of pip's own left outside it.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Not HF_HUB_OFFLINE: a training job may download its base model (`model` hyperparameter).
    # Serving never reaches the hub anyway: the artifact carries its tokenizer and config.
    HF_HOME=/tmp/hf \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
# --no-deps: torch's own requirements (sympy, networkx, ...) come from PyPI in the next step.
RUN python3 -m venv /opt/venv \
    && if [ -n "${TORCH_WHEELS}" ]; then from="--no-index --find-links ${TORCH_WHEELS}"; \
       else from="--index-url ${TORCH_INDEX}"; fi \
    && pip install --no-deps ${from} "torch==${TORCH_VERSION}"
# The dependencies first, against an empty package, so that a change under src/ rebuilds only
# the last layer. The core dependencies train (transformers, datasets, accelerate,
# scikit-learn); `serve` adds the HTTP server and ONNX Runtime.
COPY pyproject.toml README.md ./
RUN mkdir -p src/intentkit && touch src/intentkit/__init__.py \
    && pip install ".[serve]" && rm -rf /app/src /app/build /root/.cache
COPY src ./src
RUN pip install --no-deps --force-reinstall . && rm -rf /app/src /app/build /root/.cache

# No USER: SageMaker runs BYO containers as root and mounts /opt/ml/{model,output,checkpoints}
# owned by root; a non-root user cannot write the model or output/failure there (and AWS
# documents root for inference code). Outside SageMaker, `docker run --user 1000` works for serve.
RUN mkdir -p /opt/ml/model

EXPOSE 8080
# /ping answers 200 only once the model is loaded (503 while loading); on the port `serve` chose.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import os, urllib.request as u; from intentkit.sagemaker.image.serving import \
port_from_env; u.urlopen(f'http://127.0.0.1:{port_from_env(os.environ)}/ping', timeout=4)"

ENTRYPOINT ["intentkit", "container"]
CMD ["serve"]
