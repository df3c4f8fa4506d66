# Two commands on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo clip is rendered (seeded, ~7 s) from the committed fixture faces rather than committed.
SAMPLE := .cache/sample/clip.mp4

.PHONY: setup demo test lint train accelerator-pack clean

$(BIN)/aicctv: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: sudo apt install python3 python3-venv" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV) || { echo "error: cannot create a venv: sudo apt install python3-venv" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/aicctv
	$(BIN)/python -m edge.vision.fetch

$(SAMPLE): tests/fixtures/faces bench/clipgen.py
	$(BIN)/python -m bench.clipgen --out $(dir $@) --data tests/fixtures/faces --visitors 12 --seed 1

# Broker (embedded), one edge replaying the sample clip, one central subscriber: the hourly table.
demo: setup $(SAMPLE)
	$(BIN)/aicctv demo --clip $(SAMPLE)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Retrain the age/gender model from scratch into .cache/runs/release (UTKFace, LFW and FairFace:
# the model card's "Retrain"); the shipped model stays until `python -m conversion.pipeline` installs it.
train: setup
	$(BIN)/pip install --quiet -e '.[train]'
	$(BIN)/python -m conversion.pipeline --no-install

# What the next accelerator run carries (model card, "Retrain"): every training cache, the pack and
# the wheels the host lacks. About 20 minutes on 2 cores: start it first thing, before a device
# is lent (one was, for 12 minutes, mid-stop on 2026-12-05). Needs FairFace and All-Age-Faces at
# ../extra-faces (model card, "Data").
ACCEL_SETS := lfw fairface aaf
accelerator-pack: setup
	$(BIN)/pip install --quiet -e '.[train]'
	@test -f .cache/utkface/meta.npz || $(BIN)/python -m conversion.prepare
	@for set in $(ACCEL_SETS); do test -f .cache/$$set/meta.npz || $(BIN)/python -m conversion.photos $$set || exit 1; done
	$(BIN)/python -m conversion.pack pack --out .cache/pack --context 1.5 --quality 60 --held-out 200 \
		--sets utkface $(ACCEL_SETS)
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .cache/whl \
		keras==3.15.1 namex optree paho-mqtt
	@total=$$(( $$(du -sb .cache/pack .cache/whl | awk '{s += $$1} END {print s}') + \
		$$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) )); \
		echo "pack, wheels and repository: $$((total / 1048576)) MiB of the 64 MiB a device call carries"

clean:
	rm -rf $(VENV) .cache build *.egg-info
