# kurate — developer entry points. `make demo` and `make test` work on a fresh machine with
# Python 3.11, git and make: both create .venv and install everything first.
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kurate-installed
DEMO_DATA ?= demo-data
DEMO_OUT ?= demo-output
COMPILED ?= compiled
# Images: names come from kurate.deploy.images (one place); REGISTRY also reaches `make compile` as KURATE_REGISTRY.
REGISTRY ?= $(or $(KURATE_REGISTRY),ghcr.io/kurate)
# The container engine: ENGINE=docker|podman, else the kit's CONTAINER_ENGINE, else the first of docker/podman
# that answers. Extra build flags (the kit's CONTAINER_BUILD_FLAGS: mounts pip needs here) and PYTHON_IMAGE
# (the Dockerfile's base) come from the environment too.
ifeq ($(origin ENGINE),undefined)
ENGINE := $(or $(CONTAINER_ENGINE),$(shell for e in docker podman; do $$e info >/dev/null 2>&1 && { echo $$e; break; }; done))
endif
BUILD_FLAGS ?= $(CONTAINER_BUILD_FLAGS)
PYTHON_IMAGE ?=
PRETRAINED_WEIGHTS ?=
DETECTOR_WEIGHTS ?=
IMAGE_NAMES ?=

# Tests and the demo never reach a cloud: dummy credentials, no metadata-server probes.
OFFLINE_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
	AWS_EC2_METADATA_DISABLED=true NO_GCE_CHECK=true GOOGLE_CLOUD_PROJECT=kurate-test \
	HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

.PHONY: install demo test test-all test-images compile images push lint lint-imports format bench sanity clean

install: $(STAMP)

# The exact versions the images pin (images/requirements/*.txt) constrain the dev environment too,
# so the tests test what the images ship.
IMAGE_PINS := $(wildcard images/requirements/*.txt)

$(STAMP): pyproject.toml $(IMAGE_PINS)
	@test -n "$(PY)" || { echo "Python 3.11 not found"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -e '.[all]' $(addprefix -c ,$(IMAGE_PINS))
	@touch $(STAMP)

demo: install
	@test -d $(DEMO_DATA) || $(OFFLINE_ENV) $(BIN)/python -m kurate.demo_data $(DEMO_DATA)
	$(OFFLINE_ENV) $(BIN)/kurate input_dir=$(DEMO_DATA) output_dir=$(DEMO_OUT) \
		stopping_condition.n_samples=0.1 dump_dataset=True output_image_size=128 lightly.loader.batch_size=32

test: install
	$(OFFLINE_ENV) $(BIN)/pytest

test-all: install
	$(OFFLINE_ENV) $(BIN)/pytest -m "not containers"

sanity: install
	$(OFFLINE_ENV) $(BIN)/kurate sanity_check=True

# Cluster options: flags in COMPILE_FLAGS (e.g. COMPILE_FLAGS="--gpu-count 2") or KURATE_* env; see the README.
compile: install
	KURATE_REGISTRY=$(REGISTRY) $(BIN)/python -m kurate.pipelines.compile --out-dir $(COMPILED) $(COMPILE_FLAGS)

# Every image from the one images/Dockerfile (target = name), tagged <REGISTRY>/kurate-<name>:<version>
# (the all-in-one: <REGISTRY>/kurate:<version>); IMAGE_NAMES="base embed" builds a subset. Stages are shared:
# embed, train, pretag and kurate reuse one torch layer. Prints each image's size (shared layers counted in each).
images: install
	@test -n "$(ENGINE)" && $(ENGINE) info >/dev/null 2>&1 || { \
	  echo "make images: no working container engine (docker or podman with a running daemon) found"; exit 1; }
	@version=$$($(BIN)/python -c 'import kurate; print(kurate.__version__)'); \
	names="$(IMAGE_NAMES)"; [ -n "$$names" ] || names=$$($(BIN)/python -m kurate.deploy.images | cut -d' ' -f1); \
	for name in $$names; do \
	  image=$$(KURATE_REGISTRY=$(REGISTRY) $(BIN)/python -m kurate.deploy.images $$name); \
	  echo "building $$image (target $$name)"; start=$$(date +%s); \
	  $(ENGINE) build -f images/Dockerfile --target $$name $(BUILD_FLAGS) \
	    $(if $(PYTHON_IMAGE),--build-arg PYTHON_IMAGE=$(PYTHON_IMAGE)) --build-arg KURATE_VERSION=$$version \
	    --build-arg PRETRAINED_WEIGHTS="$(PRETRAINED_WEIGHTS)" --build-arg DETECTOR_WEIGHTS="$(DETECTOR_WEIGHTS)" \
	    -t $$image . || exit 1; \
	  echo "built $$image in $$(( $$(date +%s) - start )) s"; \
	done; \
	for name in $$names; do \
	  image=$$(KURATE_REGISTRY=$(REGISTRY) $(BIN)/python -m kurate.deploy.images $$name); \
	  printf '%-45s %6s MB\n' $$image $$(( $$($(ENGINE) image inspect --format '{{.Size}}' $$image) / 1000000 )); \
	done

# The images built, then the pipeline run in them (kfp.local DockerRunner and the compiled Argo steps as
# containers) and Lightly's `docker run` command against the all-in-one image, on tiny data.
test-images: images
	$(OFFLINE_ENV) CONTAINER_ENGINE=$(ENGINE) KURATE_REGISTRY=$(REGISTRY) $(BIN)/pytest -m containers tests/images

push: images
	@names="$(IMAGE_NAMES)"; [ -n "$$names" ] || names=$$($(BIN)/python -m kurate.deploy.images | cut -d' ' -f1); \
	for name in $$names; do \
	  $(ENGINE) push $$(KURATE_REGISTRY=$(REGISTRY) $(BIN)/python -m kurate.deploy.images $$name) || exit 1; \
	done

# Import contracts ([tool.importlinter] in pyproject.toml) over the library AND the KFP layers: those are
# installed as kurate.components / kurate.pipelines but live in components/ and pipelines/, so the import
# graph is read from a tree of symlinks that puts all three where `import kurate...` finds them.
IMPORT_GRAPH := build/import-graph

lint-imports: install
	@rm -rf $(IMPORT_GRAPH) && mkdir -p $(IMPORT_GRAPH)
	@cp -rs $(CURDIR)/shared/kurate $(IMPORT_GRAPH)/kurate
	@cp -rs $(CURDIR)/components $(IMPORT_GRAPH)/kurate/components
	@cp -rs $(CURDIR)/pipelines $(IMPORT_GRAPH)/kurate/pipelines
	cd $(IMPORT_GRAPH) && PYTHONPATH=$(CURDIR)/$(IMPORT_GRAPH) $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml

lint: install lint-imports
	$(BIN)/python -m ruff check shared components pipelines tests bench
	$(BIN)/python -m ruff format --check shared components pipelines tests bench
	$(BIN)/python -m mypy shared/kurate components pipelines
	$(BIN)/hadolint -c images/hadolint.yaml images/Dockerfile

format: install
	$(BIN)/ruff format shared components pipelines tests bench
	$(BIN)/ruff check --fix shared components pipelines tests bench

bench: install
	$(OFFLINE_ENV) $(BIN)/python bench/run.py

clean:
	rm -rf $(DEMO_OUT) $(COMPILED)/*/.tmp-* .pytest_cache .mypy_cache .ruff_cache
