"""Custom resources (KubeRay's, and the Prometheus Operator's PodMonitor) checked against their CRD schemas the way
the API server admits them.

For a custom resource the API server, in order: drops ``null`` values of fields that are not ``nullable``, fills in
schema ``default`` values, rejects fields the schema does not know (strict field validation, as ``kubectl apply``
requests it), and validates the result against the ``openAPIV3Schema``. :func:`admit` does the same and returns
the defaulted object with every problem found, each prefixed with its field path.

The CRDs come from directories (``KUBERAY_CRD_DIR``, the KubeRay release's ``config/crd/bases``; for a PodMonitor
``PROMETHEUS_OPERATOR_CRD_DIR``, which ``make`` fills from the Go module proxy) or from the live cluster
(:meth:`CrdSchemas.from_cluster`). KubeRay's are required; the PodMonitor's only where one is rendered.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import jsonschema
import yaml

from cluster.errors import ClusterError
from cluster.resources import CUSTOM_KINDS, KINDS, POD_MONITOR, custom_kind

CRD_DIR_VARIABLE = "KUBERAY_CRD_DIR"
MONITORING_CRD_DIR_VARIABLE = "PROMETHEUS_OPERATOR_CRD_DIR"
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class CrdSchemas:
    """The ``openAPIV3Schema`` of each served version of the CRDs of :data:`cluster.resources.CUSTOM_KINDS`."""

    def __init__(self, crds: list[dict], source: str) -> None:
        self.source = source
        self._schemas: dict[tuple[str, str], dict] = {}
        for crd in crds:
            if crd.get("kind") != "CustomResourceDefinition":
                continue
            kind = crd["spec"]["names"]["kind"]
            if kind not in CUSTOM_KINDS or crd["spec"]["group"] != CUSTOM_KINDS[kind].group:
                continue
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    self._schemas[(kind, version["name"])] = version["schema"]["openAPIV3Schema"]
        missing = sorted(set(KINDS) - {kind for kind, _ in self._schemas})
        if missing:
            raise ClusterError(f"{source}: no CRD for {', '.join(missing)}")

    @classmethod
    def from_dir(cls, directory: str | os.PathLike | None = None,
                 monitoring_directory: str | os.PathLike | None = None) -> CrdSchemas:
        """KubeRay's CRDs from ``directory``, else from the directory named by ``KUBERAY_CRD_DIR``; the
        PodMonitor's from ``monitoring_directory`` or ``PROMETHEUS_OPERATOR_CRD_DIR`` if either is given."""
        directory = directory or os.environ.get(CRD_DIR_VARIABLE)
        if not directory:
            raise ClusterError(f"no CRD directory: set {CRD_DIR_VARIABLE} (e.g. ../shared/kuberay/v1.7.0/crds) "
                               "or use --from-cluster")
        crds = _read_crds(directory)
        monitoring_directory = monitoring_directory or os.environ.get(MONITORING_CRD_DIR_VARIABLE)
        if monitoring_directory:
            crds += _read_crds(monitoring_directory)
        sources = [str(directory), *([str(monitoring_directory)] if monitoring_directory else [])]
        return cls(crds, " and ".join(sources))

    @classmethod
    def from_cluster(cls, api_client, objects: list[dict]) -> CrdSchemas:
        """KubeRay's CRDs and those of the other custom kinds among ``objects`` (a PodMonitor), as installed in the
        cluster ``api_client`` talks to (what the API server will actually apply). No other CRD is read: the CLI's
        user may read no other (cluster.access)."""
        from kubernetes import client

        from cluster.errors import KubeApiError

        api = client.ApiextensionsV1Api(api_client)
        crds = []
        for kind in dict.fromkeys([*KINDS.values(), *filter(None, map(custom_kind, objects))]):
            name = f"{kind.plural}.{kind.group}"
            try:
                crds.append(api_client.sanitize_for_serialization(api.read_custom_resource_definition(name)))
            except client.ApiException as err:
                if err.status == 404 and kind.kind not in KINDS:  # optional: named when a manifest needs it
                    continue
                raise KubeApiError.from_api_exception(err, f"read CRD {name}") from err
        return cls(crds, "the cluster")

    def schema(self, kind: str, version: str) -> dict:
        if not any(known == kind for known, _ in self._schemas):
            fix = (f"install the Prometheus Operator, or set monitoring.pod_monitor: false; to validate offline set "
                   f"{MONITORING_CRD_DIR_VARIABLE}" if kind == POD_MONITOR.kind else "")
            raise ClusterError(f"{self.source}: no CRD for {kind}" + (f"; {fix}" if fix else ""))
        try:
            return self._schemas[(kind, version)]
        except KeyError:
            raise ClusterError(f"{self.source}: {kind} has no served version {version}") from None


def _read_crds(directory: str | os.PathLike) -> list[dict]:
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise ClusterError(f"{directory}: no CRD files (*.yaml)")
    # libyaml's loader when present: the CRDs are megabytes of YAML.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for p in paths for doc in yaml.load_all(p.read_text(), Loader=loader) if doc]


def admit(obj: dict, schema: dict) -> tuple[dict, list[str]]:
    """The object after null pruning and defaulting, and the problems the API server would reject it for."""
    admitted = _default(_prune_nulls(copy.deepcopy(obj), schema), schema)
    problems = [f"{path}: unknown field" for path in _unknown_fields(admitted, schema, "")]
    validator = jsonschema.Draft7Validator(_to_json_schema(schema), format_checker=_FORMATS)
    for error in sorted(validator.iter_errors(admitted), key=lambda e: list(e.absolute_path)):
        problems.append(f"{_path(error.absolute_path) or '(object)'}: {error.message}")
    return admitted, problems


def _prune_nulls(value, schema: dict):
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else {}
        for key in list(value):
            child = properties.get(key, extra)
            if value[key] is None and not child.get("nullable", False):
                del value[key]
            else:
                value[key] = _prune_nulls(value[key], child)
    elif isinstance(value, list):
        return [_prune_nulls(item, schema.get("items", {})) for item in value]
    return value


def _default(value, schema: dict):
    if isinstance(value, dict):
        for key, child in schema.get("properties", {}).items():
            if key not in value and "default" in child:
                value[key] = copy.deepcopy(child["default"])
            if key in value:
                value[key] = _default(value[key], child)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in schema.get("properties", {}):
                    value[key] = _default(value[key], extra)
    elif isinstance(value, list):
        return [_default(item, schema.get("items", {})) for item in value]
    return value


def _unknown_fields(value, schema: dict, path: str):
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                yield from _unknown_fields(child, properties[key], where)
            elif isinstance(extra, dict):
                yield from _unknown_fields(child, extra, where)
            elif properties is not None and extra is None and path != "metadata":
                yield where
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unknown_fields(item, schema.get("items", {}), f"{path}[{i}]")


def _to_json_schema(schema):
    """OpenAPI v3 schema dialect to JSON Schema: ``nullable`` becomes a null type; the rest carries over."""
    if isinstance(schema, list):
        return [_to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {k: _to_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("nullable") and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    converted.pop("nullable", None)
    return converted


_FORMATS = jsonschema.FormatChecker()


def _int_format(name: str):
    low, high = _INT_RANGES[name]

    @_FORMATS.checks(name)
    def check(value) -> bool:
        return not isinstance(value, int) or low <= value <= high


for _name in _INT_RANGES:
    _int_format(_name)


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
