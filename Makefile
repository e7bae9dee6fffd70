# seqlab: set-up and the common jobs. Every target installs what it needs first.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# The CPU wheel of this version lies on the development machines' disk; elsewhere pip
# downloads it (or set TORCH="torch>=2.3" to keep a build you already have). A CUDA build:
#   make test TORCH=torch TORCH_INDEX=https://download.pytorch.org/whl/cu124
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: install tour tour-quick test test-slow bench bench-speed screenshots clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $@

tour: install
	$(BIN)/seqlab tour

tour-quick: install
	$(BIN)/seqlab tour --quick

test: install
	$(BIN)/python -m pytest -q -n 2

test-slow: install
	$(BIN)/python -m pytest -q -m slow
	HYPOTHESIS_PROFILE=slow $(BIN)/python -m pytest -q -p no:xdist tests/test_properties.py

# issue 17's table (benchmarks/results/speed_table.md), every row measured in this one run
# (about 15 minutes on 2 idle cores; run it on an otherwise idle machine)
bench-speed: install
	$(BIN)/python benchmarks/bench_recurrent_speed.py
	$(BIN)/python benchmarks/bench_charlm_loop.py
	$(BIN)/python benchmarks/bench_gpt_speed.py
	$(BIN)/python benchmarks/bench_gpt_quality.py nanogpt
	$(BIN)/python benchmarks/bench_gpt_quality.py plus
	$(BIN)/python benchmarks/bench_transformer_speed.py --only generate
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_ddp.py
	$(BIN)/python benchmarks/speed_table.py

bench: bench-speed
	$(BIN)/python benchmarks/bench_charlm_quality.py
	$(BIN)/python benchmarks/bench_transformer_speed.py
	$(BIN)/python benchmarks/bench_gpt_quality.py budget
	$(BIN)/python benchmarks/bench_finetune.py gpt
	$(BIN)/python benchmarks/bench_finetune.py bert
	$(BIN)/python benchmarks/bench_prompting.py
	$(BIN)/python benchmarks/bench_rlhf.py
	$(BIN)/python benchmarks/bench_injection.py
	$(BIN)/python benchmarks/bench_bert_mlm.py
	$(BIN)/python benchmarks/bench_hopfield.py
	$(BIN)/python benchmarks/bench_rbm.py
	$(BIN)/python benchmarks/bench_generative.py

# the explorer's pictures in README.md and docs/explore.md, over the runs of `make tour`
# (headless Chromium: apt-get install chromium, or SEQLAB_CHROMIUM=/path/to/chrome)
screenshots: install
	$(BIN)/python scripts/explore_screenshots.py tour/runs --out docs/img/explore

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
