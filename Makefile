# Two commands on a fresh machine: `make demo` (the main job, tiny profile, offline) and
# `make test`. Both create or update .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test demo reproduce lab browser-check clean-notebooks paper-smoke

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	# CLIP's real BPE vocabulary (tests/test_real_tokenizer.py, make paper-smoke) ships in
	# open_clip_torch; installed without its dependencies (torchvision, timm), which avlib
	# never imports and which are not built for the local torch wheel.
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps open_clip_torch==3.3.0
	# Compile librosa's numba kernels once (tests compare avlib's onset detector with
	# librosa's), before parallel test workers would race to cache them.
	$(BIN)/python -c "import librosa, numpy; librosa.onset.onset_detect(y=numpy.random.default_rng(0).uniform(-1, 1, 11025), sr=22050)"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	# One thread per worker: two workers with two threads each thrash the two cores.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 tests
	# Every stored notebook output must come back (nbval): one process, the notebooks in order
	# (05-08 read the runs 04 and 07 make), default runs made afresh in an empty AVLIB_RUNS, as
	# `make demo` made the stored ones; headless, no progress bars, one thread like its kernels.
	runs=$$(mktemp -d) && AVLIB_RUNS=$$runs AVLIB_HEADLESS=1 OMP_NUM_THREADS=1 \
		$(BIN)/python -m pytest -p no:xdist -p no:cacheprovider -q \
		--nbval notebooks/ --nbval-sanitize-with notebooks/nbval_sanitize.cfg; \
		status=$$?; rm -rf $$runs; exit $$status

# Also refreshes the committed notebooks' outputs in place (default parameters, as nbval
# re-runs them); one thread per kernel, as under `make test`, so the stored numbers come back.
demo: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/avlib reproduce --profile tiny

reproduce: demo

# The paper profile end to end on a CPU with full-size random stand-ins (not part of `make test`;
# measured 23 min and 10.0 GiB peak on 2 shared cores): see benchmarks/paper_smoke.sh.
paper-smoke: $(STAMP)
	bash benchmarks/paper_smoke.sh

# Kernels start in notebooks/; runs still go to ./runs (avlib.io.runs_dir). Loopback only; IPC
# kernel sockets (no "running over TCP without encryption" warning).
# No news pop-up: JupyterLab's announcements extension fetches nothing.
lab: $(STAMP)
	$(BIN)/jupyter lab --ip=127.0.0.1 --KernelManager.transport=ipc --LabApp.news_url=None notebooks/

# Every notebook run in JupyterLab by headless Chromium, plus a click of the explorer and the
# rater (tools/browser_check.py). Installs Debian's chromium + chromium-driver (apt, as root)
# and selenium; not part of `make test`.
browser-check: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev,browser]"
	$(BIN)/python tools/browser_check.py
