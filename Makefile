# Entry points (each sets up .venv first, then runs):
#   make repro   dvc repro on the default profile (params.yaml); JOBS=N: N train stages at once
#   make restore back to the baseline after an experiment (needs one `dvc repro` first)
#   make gpu-check  the one device check (benchmarks/gpu_check.py; without CUDA its small variant)
#   make test    ruff, the import contracts (lint-imports), the test suite, then tests/measure
#                in .venv-base, a base install (`pip install .`: no pipeline extra; what CI runs)
#   make test-fast  ruff, lint-imports and the tests marked neither e2e nor slow (the inner loop)
#   make test-base  tests/measure (the API and the CLI) in .venv-base alone (torch BASE_TORCH)
#   make test-images  the images extra over torch BASE_TORCH (.venv-images; docs/api.md)
#   make paper   the paper's Figure-1 setup as a named DVC experiment (JOBS=N, EXACT=1)
#   make bench   the evaluation benchmark (by hand, prints ratios)
#   make bench-kernels  pinned against native CPU kernels (by hand, prints ratios)
#   make bench-paper    the paper profile's cost and disk on the device present (by hand)
#   make profile AGAINST=REV [ORIGINAL=PATH]  where the default repro's time goes, against REV
PYTHON ?= python3
VENV := .venv
BASE_VENV := .venv-base
IMAGES_VENV := .venv-images
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

.PHONY: setup repro restore test test-fast test-base test-images side-venvs paper gpu-check bench bench-kernels bench-paper \
	profile

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -e '.[pipeline,test]'
	touch $@

repro: setup
	$(if $(JOBS),python -m normbounds.pipeline.parallel --jobs $(JOBS),dvc repro)

# back to the baseline after an experiment: params and results from git, checkpoints from
# the DVC cache, which a fresh clone does not have until its first `dvc repro`
restore: setup
	@test -d .dvc/cache || { echo "error: restore: the DVC cache is empty (a fresh clone):" \
		"run \`dvc repro\` first; it trains the checkpoints once, and restores then come" \
		"from the cache" >&2; exit 1; }
	git checkout -- . && dvc checkout

# .venv is built beside the two small venvs, which are built one after the other (pip mostly
# waits on the disk; three pips at once slowed the largest, .venv), then the suites run
test:
	$(MAKE) -j2 setup side-venvs
	ruff check .
	lint-imports
	python -m pytest -n 2 --dist loadgroup --durations=15
	$(MAKE) -j2 test-base test-images

side-venvs:
	$(MAKE) $(BASE_VENV)/.installed
	$(MAKE) $(IMAGES_VENV)/.installed

# The API and the CLI as a researcher installs them: `pip install .` (torch, numpy, scipy)
# plus pytest, with none of the pipeline extra, on the oldest torch of the base range
# (BASE_TORCH; .venv has the newest, the pipeline's pin). Rebuilt when pyproject.toml or
# the package's sources change (it is a copy, not an editable install). One worker: in this
# machine's fresh-clone CI runs, two workers took 105 s for these 127 tests, one 33 s.
BASE_TORCH ?= 2.13.0
$(BASE_VENV)/.installed: pyproject.toml Makefile $(shell find src -name '*.py')
	rm -rf $(BASE_VENV)
	$(PYTHON) -m venv $(BASE_VENV)
	$(BASE_VENV)/bin/pip install -q torch==$(BASE_TORCH)
	$(BASE_VENV)/bin/pip install -q . pytest
	@$(BASE_VENV)/bin/python -c 'import torch; v = torch.__version__.split("+")[0]; \
		assert v == "$(BASE_TORCH)", f"$(BASE_VENV) has torch {v}, not $(BASE_TORCH)"'
	touch $@

test-base: $(BASE_VENV)/.installed
	@! $(BASE_VENV)/bin/python -c 'import yaml' 2>/dev/null \
		|| { echo "$(BASE_VENV) holds PyYAML: not a base install"; exit 1; }
	$(BASE_VENV)/bin/python -m pytest --durations=5 tests/measure

# The images extra as docs/api.md documents it, over torch BASE_TORCH: here that is PyTorch's
# CPU-only build (the file on this machine's disk), beside which PyPI's torchvision does not
# load. tests/measure/test_install_matrix.py checks what each install gives (46 s to build
# here).
$(IMAGES_VENV)/.installed: pyproject.toml Makefile $(shell find src -name '*.py')
	rm -rf $(IMAGES_VENV)
	$(PYTHON) -m venv $(IMAGES_VENV)
	$(IMAGES_VENV)/bin/pip install -q torch==$(BASE_TORCH)
	$(IMAGES_VENV)/bin/pip install -q '.[images]' torch==$(BASE_TORCH) pytest
	touch $@

test-images: $(IMAGES_VENV)/.installed
	$(IMAGES_VENV)/bin/python -m pytest -p no:cacheprovider tests/measure/test_install_matrix.py  # beside test-base: one cache writer

test-fast: setup
	ruff check .
	lint-imports
	python -m pytest -n 2 -m "not e2e and not slow"

# train.precision and train.compile: what `make gpu-check` measured fastest on this device
# (benchmarks/gpu_check.json; none measured: fp32 without compile). EXACT=1 keeps the exact
# reproduction (fp32: TF32 and bf16 change the trained weights, so every bound a little).
PAPER_SPEED = $(if $(EXACT),,$(shell python benchmarks/gpu_check.py --recommend 2>/dev/null))

paper: setup
ifdef JOBS
	dvc exp run $(PAPER) $(PAPER_SPEED) check
	python -m normbounds.pipeline.parallel --jobs $(JOBS)
	dvc exp save -n paper
else
	dvc exp run -n paper $(PAPER) $(PAPER_SPEED)
endif

gpu-check: setup
	python benchmarks/gpu_check.py

bench: setup
	python benchmarks/eval_checkpoint.py

bench-kernels: setup
	python benchmarks/kernels.py

bench-paper: setup
	python benchmarks/paper_scale.py

profile: setup
	python benchmarks/profile_repro.py --against $(or $(AGAINST),HEAD) \
		$(if $(ORIGINAL),--original $(ORIGINAL)) $(if $(REPRO),--repro)
