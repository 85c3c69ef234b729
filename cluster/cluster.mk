# Local Kubernetes control plane + real KServe controller (pods simulated by kwok).
# Included from the top-level Makefile (`include cluster/cluster.mk`); see docs/local-cluster.md.
# Uses VENV, BIN, TOOLS_BIN and MLFLOW_VENV and the rules for $(VENV)/.installed and $(TOOLS_BIN)/.installed
# from the Makefile; the defaults below only matter if this file is used on its own.
VENV ?= .venv
BIN ?= $(VENV)/bin
TOOLS_BIN ?= $(CURDIR)/.tools/bin
CLUSTER_BIN ?= $(CURDIR)/.tools/cluster/bin
MLFLOW_VENV ?= .tools/mlflow-venv
# KServe's storage initializer (kserve-storage 0.21.0) for the S3 tests, in its own venv: it pins
# google-cloud-storage<3, which clashes with the project's constraints (cluster/kserve-storage.txt).
KSERVE_STORAGE_VENV ?= .tools/kserve-storage-venv
KSERVE_STORAGE_PYTHON ?= python3.11

.PHONY: cluster-build cluster-up cluster-down cluster-status cluster-test

##@ Local cluster (real API server, controllers and KServe; pods simulated by kwok)

cluster-build: ## Build etcd, Kubernetes 1.34.5, kwok, KServe and versitygw from the Go module proxy (cached; needs Go).
	CLUSTER_BIN="$(CLUSTER_BIN)" bash cluster/build.sh

cluster-up: $(VENV)/.installed $(TOOLS_BIN)/.installed cluster-build ## Start the local cluster (idempotent); KUBECONFIG=.cluster/kubeconfig.
	PATH="$(TOOLS_BIN):$$PATH" PIPESERVE_CLUSTER_BIN="$(CLUSTER_BIN)" $(BIN)/python cluster/localcluster.py up

cluster-down: ## Stop the local cluster and remove .cluster/.
	$(BIN)/python cluster/localcluster.py down

cluster-status: ## Show the local cluster's processes, ports and memory.
	PIPESERVE_CLUSTER_BIN="$(CLUSTER_BIN)" $(BIN)/python cluster/localcluster.py status

cluster-test: $(VENV)/.installed $(TOOLS_BIN)/.installed $(KSERVE_STORAGE_VENV)/.installed $(MLFLOW_VENV)/.installed cluster-build ## Run tests/cluster against the local cluster (starts and stops it if not up).
	PATH="$(TOOLS_BIN):$$PATH" PIPESERVE_CLUSTER_BIN="$(CLUSTER_BIN)" $(BIN)/python -m pytest -m cluster tests/cluster

$(KSERVE_STORAGE_VENV)/.installed: cluster/kserve-storage.txt
	$(KSERVE_STORAGE_PYTHON) -m venv $(KSERVE_STORAGE_VENV)
	$(KSERVE_STORAGE_VENV)/bin/python -m pip install --quiet --no-deps -r cluster/kserve-storage.txt
	touch $@
