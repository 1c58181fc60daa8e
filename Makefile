# The template's own tasks. `make demo` and `make test` are the two commands of the README.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# uv is the only tool installed outside the lock files; it comes from PyPI when missing.
UV := $(or $(shell command -v uv 2>/dev/null),$(shell python3 -m site --user-base)/bin/uv)
export PATH := $(dir $(UV)):$(PATH)
RUN := $(UV) run --locked
DEMO := build/demo
DEMO_PORT ?= 3123
BENCH := build/bench
ROWS ?= 10000 100000 1000000

# kind for the end-to-end test, pinned: the release binary, checked against its published SHA-256.
KIND_VERSION := v0.32.0
KIND_SHA256_x86_64 := 50030de23cf40a18505f20426f6a8506bedf13c6e509244bd1fa9463721b0f54
KIND_SHA256_aarch64 := b92cd615e97585de8ddade28ed5cd7feb4248d717c233eea5b03c37298900f5d
ARCH := $(shell uname -m)
KIND := build/tools/kind-$(KIND_VERSION)-$(ARCH)

.PHONY: help demo test test-fast lint bench e2e mlflow-lock

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(UV):
	python3 -m pip install --user --quiet uv || python3 -m pip install --user --quiet --break-system-packages uv

demo: $(UV) ## Bake the default project into build/demo and run its loop: train, serve, predict
	rm -rf $(DEMO)
	$(RUN) cookiecutter --no-input --output-dir $(DEMO) .
	cd $(DEMO)/*/ && $(MAKE) setup train bento
	@# The service in its own process group, so that stopping it stops its workers too.
	cd $(DEMO)/*/ && { setsid $(MAKE) serve PORT=$(DEMO_PORT) > build/serve.log 2>&1 & server=$$!; \
	  trap 'kill -- -$$server' EXIT; \
	  timeout 120 sh -c 'until curl -sf http://127.0.0.1:$(DEMO_PORT)/readyz; do sleep 1; done'; \
	  curl -sS -X POST http://127.0.0.1:$(DEMO_PORT)/predict -H 'content-type: application/json' \
	    -d @build/example.json; echo; }
	cd $(DEMO)/*/ && $(MAKE) predict INPUT=data/split/test.parquet OUTPUT=build/predictions.csv

test: $(UV) ## Every tier of the template tests
	@# Bytecode compiled once: the tests start checkov and Python modules many times over, and
	@# where Python may not write bytecode (PYTHONDONTWRITEBYTECODE) each start compiled them anew.
	$(UV) sync --locked --compile-bytecode --quiet
	$(RUN) pytest

test-fast: $(UV) ## The tiers that do not install a baked project
	$(UV) sync --locked --compile-bytecode --quiet
	$(RUN) pytest -m "not slow"

bench: $(UV) ## Cold and no-op make train, stage imports and times as ROWS grow; make predict against ONNX alone; the image against BentoML's (podman); serving against MLflow and a bare-ASGI ceiling (wrk); the stream consumer (redis-server)
	@command -v wrk >/dev/null || { echo "make bench needs wrk for the serving benchmark: apt-get install wrk (or brew install wrk)"; exit 1; }
	rm -rf $(BENCH)
	$(RUN) cookiecutter --no-input --output-dir $(BENCH) .
	@# The project's Makefile keeps its BentoML store in its build/bentoml: the model this benchmark trained.
	project=$$(echo $(BENCH)/*/) && \
	  $(MAKE) -C $$project setup && \
	  $(RUN) python tests/bench_pipeline.py $$project --rows $(ROWS) && \
	  $(MAKE) -C $$project train register bento && \
	  $(RUN) python tests/bench_predict.py $$project && \
	  $(RUN) python tests/bench_image.py $$project && \
	  $(RUN) python tests/bench_serving.py $$project --profile 20 && \
	  $(RUN) python tests/bench_stream.py $$project

# Exact versions and hashes for the image and the tests, for every Python the template supports.
mlflow-lock: $(UV) ## Lock the platform's MLflow server: argocd/platform/mlflow/image/requirements.txt
	cd argocd/platform/mlflow/image && $(UV) pip compile --quiet --upgrade --generate-hashes \
	  --universal --python-version 3.11 requirements.in -o requirements.txt

lint: $(UV) ## pre-commit on the template itself
	$(RUN) pre-commit run --all-files --show-diff-on-failure

e2e: $(UV) ## kind + Argo CD: sync a baked project, roll it to a new digest (needs Docker, as on GitHub)
	@if [ "$$(uname -s)" != Linux ] || ! docker info >/dev/null 2>&1; then \
	  echo "e2e: skipped, it needs Linux and a Docker engine that answers (as on GitHub's runners)"; \
	  exit 0; fi; \
	$(MAKE) $(KIND) && $(RUN) python tests/e2e.py --kind $(abspath $(KIND))

$(KIND):
	mkdir -p $(@D)
	curl -fsSL --retry 3 -o $@.download \
	  https://kind.sigs.k8s.io/dl/$(KIND_VERSION)/kind-linux-$(if $(filter aarch64,$(ARCH)),arm64,amd64)
	echo "$(KIND_SHA256_$(ARCH))  $@.download" | sha256sum --check --quiet
	chmod +x $@.download && mv $@.download $@
