# intentkit image: a SageMaker bring-your-own container for both training and serving.
# SageMaker runs it with the single argument `train` or `serve`; the entry point passes it to
# `intentkit container`, which works over /opt/ml (see src/intentkit/sagemaker/image/):
#   docker build -t intentkit .                                      # CPU
#   docker build -t intentkit:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run -p 8080:8080 -v $PWD/model:/opt/ml/model:ro intentkit          # = `serve`
#   docker run -v $PWD/opt_ml:/opt/ml intentkit train                         # a training job
# Serving runs on ONNX Runtime on CPU (the `serve` extra). Run `intentkit export MODEL_DIR`
# before packaging the model, or each start re-exports into the container's cache.
FROM python:3.11-slim

# The torch wheel index: CPU by default, because the default PyPI wheel drags in ~3 GB of CUDA
# libraries a CPU endpoint never uses. For GPU instances pass a CUDA index (whl/cu128, ...);
# the CUDA runtime comes inside those wheels, the driver from the host.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Not HF_HUB_OFFLINE: a training job may download its base model (`model` hyperparameter).
    # Serving never reaches the hub anyway: the artifact carries its tokenizer and config.
    HF_HOME=/tmp/hf \
    TOKENIZERS_PARALLELISM=false

WORKDIR /app
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
COPY src ./src
# The core dependencies train (transformers, datasets, accelerate, scikit-learn); `serve` adds
# the HTTP server and ONNX Runtime.
RUN pip install ".[serve]" && rm -rf /app/src /root/.cache

# No USER: SageMaker runs BYO containers as root and mounts /opt/ml/{model,output,checkpoints}
# owned by root; a non-root user cannot write the model or output/failure there (and AWS
# documents root for inference code). Outside SageMaker, `docker run --user 1000` works for serve.
RUN mkdir -p /opt/ml/model

EXPOSE 8080
# /ping answers 200 only once the model is loaded (503 while loading).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/ping', timeout=4)"

ENTRYPOINT ["intentkit", "container"]
CMD ["serve"]
