"""A validator written independently of this project accepts the manifests: kubeconform (Go, its own JSON-Schema
engine), with the Kubernetes schemas that kubernetes-validate ships and JSON schemas converted from the KubeRay
CRDs the openapi2jsonschema way (strict: no properties beyond the schema)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from cluster import environments, manifests
from tests.cluster.conftest import COMMIT
from tests.support import ROOT

KUBECONFORM = "github.com/yannh/kubeconform/cmd/kubeconform@v0.8.0"
KUBERNETES_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


@pytest.fixture(scope="module")
def kubeconform() -> Path:
    found = shutil.which("kubeconform")
    if found:
        return Path(found)
    tools = ROOT / ".data" / "tools"
    if not (tools / "kubeconform").exists():
        subprocess.run(["go", "install", KUBECONFORM], env={**os.environ, "GOBIN": str(tools)}, check=True,
                       timeout=900, capture_output=True)
    return tools / "kubeconform"


def _strict(schema):
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _standalone(schema, definitions: dict, seen: tuple = ()):
    """kubernetes-validate's schemas point into a shared definitions file; kubeconform wants them inlined."""
    if isinstance(schema, list):
        return [_standalone(s, definitions, seen) for s in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref", "")
    if "#/$defs/" in ref:
        name = ref.split("#/$defs/", 1)[1]
        return {} if name in seen else _standalone(definitions[name], definitions, (*seen, name))
    return {k: _standalone(v, definitions, seen) for k, v in schema.items()}


@pytest.fixture(scope="module")
def schemas_dir(tmp_path_factory, installed_crds) -> Path:
    """Kubernetes schemas (made standalone) for the built-in kinds rendered, and the KubeRay CRDs as JSON schemas."""
    root = tmp_path_factory.mktemp("kubeconform-schemas")
    source = KUBERNETES_SCHEMAS / "v1.32.0-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    for name in ("namespace-v1", "configmap-v1", "networkpolicy-networking-v1"):
        schema = _standalone(json.loads((source / f"{name}.json").read_text()), definitions)
        (root / "kubernetes" / f"{name}.json").parent.mkdir(parents=True, exist_ok=True)
        (root / "kubernetes" / f"{name}.json").write_text(json.dumps(schema))
    for crd in installed_crds.values():
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            path = root / group / f"{kind}_{version['name']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(_strict(version["schema"]["openAPIV3Schema"])))
    return root


def run_kubeconform(binary: Path, schemas: Path, documents: list[dict], tmp_path: Path) -> dict:
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    result = subprocess.run([
        str(binary), "-strict", "-summary", "-output", "json", "-kubernetes-version", "1.32.0",
        "-schema-location", f"{schemas}/kubernetes/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json",
        "-schema-location", f"{schemas}/{{{{ .Group }}}}/{{{{ .ResourceKind }}}}_{{{{ .ResourceAPIVersion }}}}.json",
        str(path)], capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    report["exit"] = result.returncode
    return report


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_kubeconform_accepts_the_rendered_manifests(kubeconform, schemas_dir, tmp_path, env):
    documents = manifests.render(environments.load(env), COMMIT)
    report = run_kubeconform(kubeconform, schemas_dir, documents, tmp_path)
    assert report["exit"] == 0, report["resources"]
    assert report["summary"] == {"valid": len(documents), "invalid": 0, "errors": 0, "skipped": 0}


def test_kubeconform_rejects_a_broken_manifest(kubeconform, schemas_dir, tmp_path):
    documents = manifests.render(environments.load("prod"), COMMIT)
    by_kind = {document["kind"]: document for document in documents}
    by_kind["RayService"]["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    by_kind["RayCluster"]["spec"]["headGroupSpec"]["serviceTipe"] = "ClusterIP"
    report = run_kubeconform(kubeconform, schemas_dir, documents, tmp_path)
    assert report["exit"] == 1
    assert report["summary"]["invalid"] == 2
    messages = " ".join(str(r.get("msg")) for r in report["resources"])
    assert "minReplicas" in messages and "serviceTipe" in messages
