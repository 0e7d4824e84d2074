# Everyday commands. `make run` and `make test` work on a fresh clone: they install what they need first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

SMOKE_DATA := .data/trips/smoke
SMOKE_TRIPS := 20000
MODEL_STORE := .data/models
MODEL_NAME := destinations

# Ray's single-machine mode: every Ray server this Makefile starts listens on 127.0.0.1 only.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
# The KubeRay v1.7.0 CRDs the manifests are validated against (kept beside the checkout, not in it).
export KUBERAY_CRD_DIR ?= $(abspath $(CURDIR)/../shared/kuberay/v1.7.0/crds)

HDFS_HARNESS := tests/hdfs/target/classpath.txt

.PHONY: install hdfs-harness bootstrap run test validate-cluster bench bench-reliability bench-training lock clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

# The MiniDFSCluster the HDFS tests run against (Java 17 + Maven; dependencies stay cached in ~/.m2).
hdfs-harness: $(HDFS_HARNESS)

$(HDFS_HARNESS): tests/hdfs/pom.xml $(wildcard tests/hdfs/src/main/java/recsys/hdfs/*.java)
	mvn -q -B -f tests/hdfs/pom.xml compile

# Synthetic trips (once) -> Ray Train with 2 workers -> a published version in the local model store.
bootstrap: install
	@test -d $(SMOKE_DATA) || $(PY) -m recsys.synthetic_trips --out $(SMOKE_DATA) --trips $(SMOKE_TRIPS) --seed 7
	$(PY) -m training.destinations --config configs/train/smoke.yaml

# Serve the newest local model (training one first if the store is empty) with HAProxy direct ingress.
run: install
	@test -f $(MODEL_STORE)/$(MODEL_NAME)/LATEST || $(MAKE) --no-print-directory bootstrap
	$(PY) -m serve_apps.local configs/serve/local.yaml

test: install $(HDFS_HARNESS)
	$(PY) -m pytest

# Render and validate the KubeRay manifests of every environment.
validate-cluster: install
	$(PY) -m cluster validate dev
	$(PY) -m cluster validate prod

# Serving against the in-process limit and peer servers, and replica cold starts (~13 minutes on 2 cores; the
# first run also installs the peers' virtualenvs under bench/.peers); writes bench/results/serving.*
bench: install $(HDFS_HARNESS)
	@test -f $(MODEL_STORE)/$(MODEL_NAME)/LATEST || $(MAKE) --no-print-directory bootstrap
	$(PY) -m bench.serving

# The served model under bad input, overload (2x, 10x), a replica SIGKILL and a hot swap (~8 minutes on 2 cores);
# writes bench/results/reliability.*
bench-reliability: install
	@test -f $(MODEL_STORE)/$(MODEL_NAME)/LATEST || $(MAKE) --no-print-directory bootstrap
	$(PY) -m bench.reliability

# Ray Train examples/s with 1 and 2 workers (~10 minutes on 2 cores); writes bench/results/training.*
bench-training: install
	$(PY) -m bench.training_throughput

# Re-pin every dependency after changing pyproject.toml (run in a fresh venv to drop strays).
lock: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^travel-recsys' > requirements.lock

clean:
	rm -rf .data .pytest_cache
