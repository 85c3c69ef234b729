# pipeserve runtime image: `pipeserve serve` over REST :8080 and gRPC :8081 (Open Inference Protocol v2),
# used as the KServe ClusterServingRuntime in manifests/runtime/; and the image of every pipeline step
# with `pipeserve compile --image` (KFP replaces the entry point; the steps then install nothing).
#
#   docker build -t ghcr.io/pipeserve/pipeserve-runtime:0.1.0 .
#   docker run -p 8080:8080 -p 8081:8081 -v "$PWD/build/model:/mnt/models:ro" ghcr.io/pipeserve/pipeserve-runtime:0.1.0
#
# The Python dependencies are exactly the pins the tests run with (constraints.txt).
# tests/test_runtime_image.py checks this file, since CI has no Docker engine.

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src/ src/
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt . \
 && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11.7-slim-bookworm
LABEL org.opencontainers.image.title="pipeserve-runtime" \
      org.opencontainers.image.description="Open Inference Protocol v2 server for pipeserve model directories (KServe runtime)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/pipeserve/pipeserve"
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
# KFP's launcher puts a step's artifacts under /gcs, /minio and /s3 (kubeflow/pipelines#5673): the
# user must be able to write there when the image runs pipeline steps.
RUN groupadd --gid 10001 pipeserve && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin pipeserve \
 && mkdir -p /gcs /minio /s3 && chown 10001:10001 /gcs /minio /s3
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
ENTRYPOINT ["pipeserve", "serve"]
# Without arguments (plain `docker run`): serve the mounted repository on all interfaces.
# KServe replaces CMD with the runtime's args (--model_name, --model_dir, --http_port, --grpc_port).
CMD ["/mnt/models", "--host", "0.0.0.0", "--http-port", "8080", "--grpc-port", "8081"]
