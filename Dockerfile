# CPU serving image for an intentkit artifact; also a SageMaker bring-your-own container:
# SageMaker mounts the model at /opt/ml/model and runs `docker run IMAGE serve`, so the entry
# point is `intentkit` and a bare `serve` reads the model dir, host and port from the ENV below.
#   docker build -t intentkit .
#   docker run -p 8080:8080 -v $PWD/model:/opt/ml/model:ro intentkit
# Serving runs on ONNX Runtime (the `serve` extra includes it). Run `intentkit export MODEL_DIR`
# before packaging the model, or each start re-exports into the container's cache (read-only mount).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # The artifact carries its tokenizer: never reach for the hub at serve time.
    HF_HUB_OFFLINE=1 \
    HF_HOME=/tmp/hf \
    TOKENIZERS_PARALLELISM=false \
    INTENTKIT_MODEL_DIR=/opt/ml/model \
    INTENTKIT_HOST=0.0.0.0 \
    INTENTKIT_PORT=8080

WORKDIR /app
# torch first, from the CPU index: the default PyPI wheel drags in ~3 GB of CUDA libraries.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]" && rm -rf /app/src /root/.cache

RUN useradd --create-home --uid 1000 intentkit && mkdir -p /opt/ml/model
USER intentkit

EXPOSE 8080
# /ping answers 200 only once the model is loaded (503 while loading).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/ping', timeout=4)"

ENTRYPOINT ["intentkit"]
CMD ["serve"]
