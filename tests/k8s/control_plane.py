"""A real Kubernetes control plane and the real KubeRay operator, in a private network namespace.

``make k8s-harness`` builds the binaries from the Go module proxy (tests/k8s/build.sh) into the user's cache dir.
:class:`ControlPlane` starts them inside a network namespace of its own (only ``lo`` and one veth link to this
process' namespace, so nothing they do can leave the machine): etcd, kube-apiserver (client certificates, RBAC,
the default admission plugins, PodSecurity among them), kube-controller-manager, kube-scheduler, KWOK (fake nodes
that "run" pods without containers, their IPs from ``POD_CIDR``) and the KubeRay operator. ``POD_CIDR`` is routed to
``lo`` in the namespace, so every pod address is local there: a real process started in the namespace with
:meth:`ControlPlane.spawn` answers for every pod (the operator reaches "the head pod's dashboard" through the API
server's service proxy, and finds a real Ray head).

Everything is stopped by PID (process group) on :meth:`close`, and the namespace and link are deleted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes import config as kube_config

from tests.k8s.pki import Pki

# Where `make k8s-harness` put the binaries (the Makefile exports it, keyed by the versions it builds).
HARNESS_DIR = os.environ.get("K8S_HARNESS_DIR")
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"
SERVICE_CIDR = "10.96.0.0/16"
API_PORT = 6443
# KWOK manages only nodes carrying this annotation (the nodes this harness creates).
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
ADMIN = "recsys-admin"


class ControlPlane:
    """A running control plane. ``kubeconfig(user)`` writes a kubeconfig for a user of a client certificate;
    ``admin`` is an ApiClient in ``system:masters``."""

    def __init__(self, work_dir: Path, crd_files: list[Path]) -> None:
        if not HARNESS_DIR or not (Path(HARNESS_DIR) / "bin" / ".complete").exists():
            raise RuntimeError(f"no control plane built in K8S_HARNESS_DIR={HARNESS_DIR!r}: run the tests with "
                               f"make test (it runs make k8s-harness and sets it)")
        self._bin = Path(HARNESS_DIR) / "bin"
        self.dir = work_dir
        self.logs = work_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._processes: list[tuple[str, subprocess.Popen]] = []
        suffix = os.getpid() % 100_000
        self.netns = f"recsys-k8s-{suffix}"
        self._host_link = f"rk{suffix}h"
        # A /30 of its own per test process; the API server listens on the namespace's end.
        subnet = 16 + os.getpid() % 200
        self._host_ip, self.api_ip = f"10.250.{subnet}.1", f"10.250.{subnet}.2"
        try:
            self._network()
            self.pki = Pki(work_dir / "pki")
            self._start_etcd()
            self._start_api_server()
            self.admin_kubeconfig = self.kubeconfig(ADMIN, groups=("system:masters",))
            self.admin = self.api_client(self.admin_kubeconfig)
            self.wait(lambda: client.VersionApi(self.admin).get_code(), "the API server", 60)
            # CRDs first: a controller manager that starts before them lags ~30 s in garbage-collecting their pods.
            self.install(crd_files)
            inside = self.kubeconfig(ADMIN, groups=("system:masters",), server=f"https://127.0.0.1:{API_PORT}",
                                     name="inside")
            self._start_controllers(inside)
            self._start("kwok", [
                f"--kubeconfig={inside}", f"--config={self._bin / 'kwok-stages.yaml'}", "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--cidr={NODE_IP}/24", f"--node-ip={NODE_IP}", "--server-address=127.0.0.1:10247",
                # Node leases are the heartbeat (the node's status is renewed only every ~10 minutes): without
                # them the node-lifecycle controller marks the nodes NotReady, and their pods with them.
                "--node-lease-duration-seconds=40"])
            self._start("ray-operator", [
                f"--kubeconfig={inside}", "--enable-leader-election=false", "--use-kubernetes-proxy",
                "--metrics-addr=127.0.0.1:8082", "--health-probe-bind-address=127.0.0.1:8083"])
        except BaseException:
            self.close()
            raise

    # -- clients -----------------------------------------------------------------------------------------

    def kubeconfig(self, user: str, groups: tuple[str, ...] = (), server: str | None = None,
                   name: str | None = None) -> Path:
        """A kubeconfig authenticating as ``user`` (in ``groups``) by a client certificate of the test CA."""
        cert, key = self.pki.client(user, groups)
        path = self.dir / f"{name or user}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "lane",
            "clusters": [{"name": "lane", "cluster": {"server": server or f"https://{self.api_ip}:{API_PORT}",
                                                      "certificate-authority": str(self.pki.ca)}}],
            "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
            "contexts": [{"name": "lane", "context": {"cluster": "lane", "user": user}}],
        }))
        return path

    @staticmethod
    def api_client(kubeconfig: Path) -> client.ApiClient:
        return kube_config.new_client_from_config(config_file=str(kubeconfig))

    def install(self, files: list[Path]) -> None:
        """Create the CustomResourceDefinitions of ``files`` and wait until each is established."""
        extensions = client.ApiextensionsV1Api(self.admin)
        names = []
        for path in files:
            crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
            extensions.create_custom_resource_definition(crd)
            names.append(crd["metadata"]["name"])
        for name in names:
            self.wait(lambda name=name: any(
                c.type == "Established" and c.status == "True"
                for c in extensions.read_custom_resource_definition(name).status.conditions or []) or None,
                f"CRD {name}", 60)

    def add_node(self, name: str, cpu: str = "64", memory: str = "256Gi", labels: dict | None = None,
                 taints: list[dict] | None = None, extended: dict | None = None) -> None:
        """A KWOK node: the scheduler binds pods to it and KWOK reports them Running with an IP of POD_CIDR."""
        capacity = {"cpu": cpu, "memory": memory, "pods": "110", **(extended or {})}
        client.CoreV1Api(self.admin).create_node({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: "fake"},
                         "labels": {"kubernetes.io/hostname": name, "type": "kwok", **(labels or {})}},
            "spec": {"taints": taints or []},
            "status": {"capacity": capacity, "allocatable": capacity},
        })

    # -- processes in the namespace ----------------------------------------------------------------------

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        """Start ``argv`` inside the namespace (in a process group of its own, logged to logs/<name>.log); it is
        stopped with the control plane unless stopped before with :meth:`stop`."""
        log = open(self.logs / f"{name}.log", "ab")
        process = subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
        log.close()
        self._processes.append((name, process))
        return process

    def stop(self, process: subprocess.Popen, timeout: float = 30) -> None:
        """Stop a process :meth:`spawn` started, and its whole process group."""
        self._processes = [(name, p) for name, p in self._processes if p is not process]
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            except ProcessLookupError:
                pass
        # Whatever the group left behind (a Ray head's workers re-parented to init) goes with it.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        for _, process in reversed(self._processes):
            self.stop(process)
        subprocess.run(["ip", "link", "del", self._host_link], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    # -- start-up ----------------------------------------------------------------------------------------

    def _network(self) -> None:
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)  # a crashed run's leftover
        subprocess.run(["ip", "link", "del", self._host_link], capture_output=True)
        inner = f"rk{os.getpid() % 100_000}n"
        for command in (["ip", "netns", "add", self.netns],
                        ["ip", "link", "add", self._host_link, "type", "veth", "peer", "name", inner,
                         "netns", self.netns],
                        ["ip", "addr", "add", f"{self._host_ip}/30", "dev", self._host_link],
                        ["ip", "link", "set", self._host_link, "up"],
                        ["ip", "-n", self.netns, "addr", "add", f"{self.api_ip}/30", "dev", inner],
                        ["ip", "-n", self.netns, "link", "set", inner, "up"],
                        ["ip", "-n", self.netns, "link", "set", "lo", "up"],
                        # Every pod address is this namespace's own: a process listening on 0.0.0.0 answers it.
                        ["ip", "-n", self.netns, "route", "add", "local", POD_CIDR, "dev", "lo"]):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"{' '.join(command)}: {result.stderr.strip()} (the k8s lane needs root: "
                                   f"it creates a network namespace)")

    def _start_etcd(self) -> None:
        data = self.dir / "etcd"
        self._start("etcd", [f"--data-dir={data}", "--listen-client-urls=http://127.0.0.1:2379",
                             "--advertise-client-urls=http://127.0.0.1:2379",
                             "--listen-peer-urls=http://127.0.0.1:2380", "--log-level=warn",
                             "--unsafe-no-fsync"])

    def _start_api_server(self) -> None:
        serving_cert, serving_key = self.pki.serving("kube-apiserver", ["127.0.0.1", self.api_ip, "10.96.0.1"],
                                                     ["kubernetes", "kubernetes.default.svc", "localhost"])
        self._sa_public, self._sa_private = self.pki.service_account_keys()
        self._start("kube-apiserver", [
            "--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0", f"--secure-port={API_PORT}",
            f"--advertise-address={self.api_ip}", f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={serving_cert}", f"--tls-private-key-file={serving_key}",
            f"--client-ca-file={self.pki.ca}", "--authorization-mode=RBAC",
            f"--service-account-key-file={self._sa_public}",
            f"--service-account-signing-key-file={self._sa_private}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            # No kubelet registers itself here: the `kubernetes` Service's endpoints are not needed.
            "--endpoint-reconciler-type=none", "--profiling=false"])

    def _start_controllers(self, kubeconfig: Path) -> None:
        # The admin identity: the controllers' own would need their bootstrap RBAC and token files.
        self._start("kube-controller-manager", [
            f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1",
            f"--service-account-private-key-file={self._sa_private}", f"--root-ca-file={self.pki.ca}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--use-service-account-credentials=false",
            # The default set (garbage collector, endpoints and endpoint slices, node lifecycle, which lifts a new
            # node's not-ready taint, service accounts, jobs); none that needs a cloud.
            "--controllers=*", "--node-monitor-grace-period=60s"])
        self._start("kube-scheduler", [f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                                       "--bind-address=127.0.0.1"])

    def _start(self, name: str, args: list[str]) -> None:
        process = self.spawn(name, [str(self._bin / name), *args])
        time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited at start ({process.returncode}): "
                               f"{(self.logs / f'{name}.log').read_text()[-2000:]}")

    def wait(self, probe, what: str, timeout: float = 120):
        """Poll ``probe`` until it returns something true; fail at once if a process of the control plane exits."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for name, process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}) while waiting for {what}: "
                                       f"{(self.logs / f'{name}.log').read_text()[-2000:]}")
            try:
                result = probe()
                if result:
                    return result
            except Exception as err:  # noqa: BLE001 - anything the probe meets before the server is up
                last = err
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready in {timeout:.0f} s: {last}")
