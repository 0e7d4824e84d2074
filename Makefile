# Everyday commands. `make run` and `make test` work on a fresh clone: they install what they need first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

SMOKE_DATA := .data/trips/smoke
SMOKE_SEARCHES := .data/searches/smoke
SMOKE_TRIPS := 20000
MODEL_STORE := .data/models

# Ray's single-machine mode: every Ray server this Makefile starts listens on 127.0.0.1 only.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER := 0
# The KubeRay v1.7.0 CRDs the manifests are validated against (kept beside the checkout, not in it).
export KUBERAY_CRD_DIR ?= $(abspath $(CURDIR)/../shared/kuberay/v1.7.0/crds)

HDFS_HARNESS := tests/hdfs/target/classpath.txt
# Prometheus and promtool for the monitoring tests, from Debian's package (the tests run their own Prometheus on a
# free loopback port; the image's policy-rc.d keeps the package's service from starting).
PROMTOOL := /usr/bin/promtool
# The Prometheus Operator's PodMonitor CRD, to validate prod's PodMonitor offline: taken from the operator's Go module
# (v0.85.0 is what the Go module proxy serves), cached under the user's cache dir by version.
PROMETHEUS_OPERATOR_VERSION := v0.85.0
export PROMETHEUS_OPERATOR_CRD_DIR ?= $(HOME)/.cache/travel-recsys/prometheus-operator-$(PROMETHEUS_OPERATOR_VERSION)
PODMONITOR_CRD := $(PROMETHEUS_OPERATOR_CRD_DIR)/monitoring.coreos.com_podmonitors.yaml
PROMETHEUS_OPERATOR_MODULE := github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION)
# The k8s lane's control plane (tests/k8s): Kubernetes, etcd, KWOK and the KubeRay operator built from the Go module
# proxy (~7 minutes on 2 cores the first time, ~560 MB), cached under the user's cache dir keyed by their versions.
# KubeRay's newest operator source the proxy serves is v1.6.2 (the CRDs stay v1.7.0: README, The k8s lane).
export KUBERNETES_VERSION := v1.36.3
export ETCD_VERSION := v3.6.8
export KWOK_VERSION := v0.8.0
export KUBERAY_OPERATOR_VERSION := v1.6.2
# Keyed by the build script too: a changed script builds into a new directory instead of trusting the old one.
K8S_BUILD := $(shell sha256sum tests/k8s/build.sh | cut -c1-8)
export K8S_HARNESS_DIR ?= $(HOME)/.cache/travel-recsys/k8s-$(KUBERNETES_VERSION)-etcd-$(ETCD_VERSION)-kwok-$(KWOK_VERSION)-kuberay-$(KUBERAY_OPERATOR_VERSION)-$(K8S_BUILD)
K8S_HARNESS := $(K8S_HARNESS_DIR)/bin/.complete

.PHONY: install hdfs-harness k8s-harness prometheus crds bootstrap models run precompute test validate-cluster bench bench-reliability bench-training \
	bench-precompute lock clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml client/pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e . -e client
	@touch $@

# The MiniDFSCluster the HDFS tests run against (Java 17 + Maven; dependencies stay cached in ~/.m2).
hdfs-harness: $(HDFS_HARNESS)

$(HDFS_HARNESS): tests/hdfs/pom.xml $(wildcard tests/hdfs/src/main/java/recsys/hdfs/*.java)
	mvn -q -B -f tests/hdfs/pom.xml compile

k8s-harness: $(K8S_HARNESS)

$(K8S_HARNESS):
	tests/k8s/build.sh $(K8S_HARNESS_DIR)

prometheus: $(PROMTOOL)

$(PROMTOOL):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)

crds: $(PODMONITOR_CRD)

$(PODMONITOR_CRD):
	@mkdir -p $(@D)
	curl -fsSL --retry 3 -o $(@D)/module.zip \
		https://proxy.golang.org/$(subst @,/@v/,$(PROMETHEUS_OPERATOR_MODULE)).zip
	$(PYTHON) -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
		$(@D)/module.zip $(PROMETHEUS_OPERATOR_MODULE)/example/prometheus-operator-crd/$(@F) $@.part
	mv $@.part $@ && rm $(@D)/module.zip

# Synthetic trips and the searches of a quarter of their reservations (once) -> Ray Train with 2 workers -> a
# published version of each model in the local model store.
bootstrap: install
	@test -d $(SMOKE_DATA) || $(PY) -m recsys.synthetic_trips --out $(SMOKE_DATA) --trips $(SMOKE_TRIPS) --seed 7
	@test -d $(SMOKE_SEARCHES) || $(PY) -m recsys.accommodations.synthetic_searches --trips $(SMOKE_DATA) \
		--out $(SMOKE_SEARCHES) --fraction 0.25 --seed 7
	$(PY) -m training.destinations --config configs/train/smoke.yaml
	$(PY) -m training.accommodations --config configs/train/accommodations-smoke.yaml

# Both models must be in the local store (trained first if not).
models:
	@test -f $(MODEL_STORE)/destinations/LATEST -a -f $(MODEL_STORE)/accommodations/LATEST || \
		$(MAKE) --no-print-directory bootstrap

# Serve the newest local models (training them first if the store lacks one) with HAProxy direct ingress.
run: install models
	$(PY) -m serve_apps.local configs/serve/local.yaml

# Each user's next cities and trip answer, from each user's latest trip of the smoke data, scored with Ray Data by
# the models LATEST names and published under .data/models/predictions/{destinations,trips}/ (about 2 minutes).
precompute: install models
	$(PY) -m batch.precompute --config configs/batch/destinations.yaml
	$(PY) -m batch.precompute --config configs/batch/trips.yaml

test: install $(HDFS_HARNESS) $(K8S_HARNESS) $(PROMTOOL) $(PODMONITOR_CRD)
	$(PY) -m pytest

# Render and validate the KubeRay manifests of every environment.
validate-cluster: install $(PODMONITOR_CRD)
	$(PY) -m cluster validate dev
	$(PY) -m cluster validate prod

# Serving against the in-process limit and peer servers (batch bodies as JSON and Arrow), and replica cold starts
# (~15 minutes on 2 cores; the first run also installs the peers' virtualenvs under bench/.peers); then both models
# and the trip answer (~4 minutes); then the Python client coalescing 10,000 calls (~1 minute); then the
# application metrics on and off (~6 minutes); writes bench/results/serving.*, composition.*, client.* and
# metrics_overhead.*
bench: install $(HDFS_HARNESS) models
	$(PY) -m bench.serving
	$(PY) -m bench.composition
	$(PY) -m bench.client
	$(PY) -m bench.metrics_overhead

# The served model under bad input, overload (2x, 10x; with adaptive and with fixed limits), a replica SIGKILL and a
# hot swap (~10 minutes on 2 cores); writes bench/results/reliability.*
bench-reliability: install models
	$(PY) -m bench.reliability

# Ray Train examples/s of both models with 1 and 2 workers (~25 minutes on 2 cores); writes bench/results/training.*
bench-training: install
	$(PY) -m bench.training_throughput

# The precompute job's stages and end to end with 1 and 2 scoring actors against the in-process limit of the same
# SavedModel, on the larger synthetic trips (generated if missing; ~4 minutes on 2 cores); writes
# bench/results/precompute.*
bench-precompute: install models
	$(PY) -m bench.precompute

# Re-pin every dependency after changing pyproject.toml (run in a fresh venv to drop strays).
lock: install
	$(PY) -m pip freeze --exclude-editable | grep -v '^travel-recsys' > requirements.lock

clean:
	rm -rf .data .pytest_cache
