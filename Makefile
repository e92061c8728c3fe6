# Entry points (each sets up .venv first, then runs):
#   make repro   dvc repro on the default profile (params.yaml)
#   make test    ruff, the import contracts (lint-imports) and the test suite (what CI runs)
#   make test-fast  ruff + the tests not marked e2e (the inner loop, about a minute or two)
#   make paper   the paper's Figure-1 setup as a named DVC experiment
#   make bench   the evaluation benchmark (by hand, prints ratios)
#   make bench-kernels  pinned against native CPU kernels (by hand, prints ratios)
#   make bench-paper    the paper profile's cost and disk on the device present (by hand)
PYTHON ?= python3
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# The paper's Figure 1: MNIST (60k/10k), CONV-3-{200,600,1000}, 5 seeds, batch 32, lr 0.01
# decayed by 0.1 at epochs 60/120/160, momentum 0.9, weight decay 3e-3, 500 epochs, MSE,
# a checkpoint every 10 epochs. MNIST is downloaded into data.root (needs network).
# The evaluation batch is bound.eval_batch_size: auto (sized by the device's memory).
PAPER := -S data.dataset=mnist -S data.download=true \
	-S 'grid.depths=[3]' -S 'grid.widths=[200,600,1000]' -S 'grid.seeds=[0,1,2,3,4]' \
	-S train.epochs=500 -S train.batch_size=32 -S train.lr=0.01 -S train.momentum=0.9 \
	-S train.weight_decay=0.003 -S 'train.milestones=[60,120,160]' -S train.lr_factor=0.1 \
	-S train.loss=mse -S train.save_every=10 -S model.kernel_size=2 -S model.stride=1

.PHONY: setup repro test test-fast paper bench bench-kernels bench-paper

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[pipeline,test]'
	touch $@

repro: setup
	dvc repro

test: setup
	ruff check .
	lint-imports
	python -m pytest

test-fast: setup
	ruff check .
	lint-imports
	python -m pytest -m "not e2e"

paper: setup
	dvc exp run -n paper $(PAPER)

bench: setup
	python benchmarks/eval_checkpoint.py

bench-kernels: setup
	python benchmarks/kernels.py

bench-paper: setup
	python benchmarks/paper_scale.py
