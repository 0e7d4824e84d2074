"""A fake Kubernetes API server, for what a real one cannot be made to do on demand (tests/k8s runs a real one):
scripted statuses and watch events, injected failures, a cluster without some CRD.

It speaks real HTTP on loopback, so the official ``kubernetes`` client's request building, content types, JSON
decoding, watch streaming and error handling all run for real. It keeps objects in memory, answers the endpoints
the KubeRay client uses, serves the KubeRay CRDs it is given, records every request, and fails requests
on demand with the ``Status`` bodies a real API server sends.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import yaml

_CRD = re.compile(r"^/apis/apiextensions\.k8s\.io/v1/customresourcedefinitions/(?P<name>[^/]+)$")
_ITEM = re.compile(r"^(?P<base>/apis?/(?:[^/]+/)?v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+))(?:/(?P<name>[^/]+))?$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict | None


@dataclass
class FakeKubeApi:
    crds: dict[str, dict]  # name -> CustomResourceDefinition, served at the apiextensions endpoint
    objects: dict[str, dict] = field(default_factory=dict)  # item path -> object
    requests: list[Request] = field(default_factory=list)
    failures: dict[tuple[str, str], tuple[int, str, str, list]] = field(default_factory=dict)
    watch_events: dict[str, list[dict]] = field(default_factory=dict)  # collection path -> events

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail(self, method: str, path: str, status: int, reason: str, message: str, causes: list | None = None):
        self.failures[(method, path)] = (status, reason, message, causes or [])

    def put(self, path: str, obj: dict) -> None:
        self.objects[path] = obj

    def kubeconfig(self, directory: Path) -> Path:
        path = directory / "kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: dict | None = None, stream: list[dict] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if stream is not None:
                    payload = "".join(json.dumps(e) + "\n" for e in stream).encode()
                else:
                    payload = json.dumps(body or {}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _status(self, code: int, reason: str, message: str, causes: list | None = None) -> None:
                self._reply(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                   "reason": reason, "message": message, "details": {"causes": causes or []}})

            def _handle(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append(Request(self.command, url.path, parse_qs(url.query), dict(self.headers), body))
                failure = fake.failures.get((self.command, url.path))
                if failure:
                    return self._status(*failure)
                if crd := _CRD.match(url.path):
                    return self._crd(crd["name"])
                item = _ITEM.match(url.path)
                if item is None:
                    return self._status(404, "NotFound", "the server could not find the requested resource")
                query = parse_qs(url.query)
                if self.command == "GET" and item["name"] is None:
                    collection = url.path
                    if query.get("watch") in (["true"], ["True"], ["1"]):
                        return self._reply(200, stream=fake.watch_events.get(collection, []))
                    items = [o for p, o in fake.objects.items() if p.startswith(collection + "/")]
                    return self._reply(200, {"kind": "List", "apiVersion": "v1", "items": items,
                                             "metadata": {"resourceVersion": "1"}})
                if self.command == "GET":
                    obj = fake.objects.get(url.path)
                    return self._reply(200, obj) if obj else self._status(
                        404, "NotFound", f'{item["plural"]} "{item["name"]}" not found')
                if self.command in ("PATCH", "POST"):
                    path = url.path if self.command == "PATCH" else f"{url.path}/{body['metadata']['name']}"
                    stored = fake.objects.get(path, {})
                    obj = {**body, "metadata": {**body.get("metadata", {}), "uid": stored.get("metadata", {}).get(
                        "uid", str(uuid.uuid4())), "resourceVersion": str(len(fake.requests))}}
                    if "status" in stored:
                        obj["status"] = stored["status"]
                    fake.objects[path] = obj
                    return self._reply(201 if not stored else 200, obj)
                if self.command == "DELETE":
                    if fake.objects.pop(url.path, None) is None:
                        return self._status(404, "NotFound", f'{item["plural"]} "{item["name"]}" not found')
                    return self._reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
                return self._status(405, "MethodNotAllowed", self.command)

            def _crd(self, name: str) -> None:
                if name in fake.crds:
                    return self._reply(200, fake.crds[name])
                return self._status(404, "NotFound", f'customresourcedefinitions "{name}" not found')

            do_GET = do_PATCH = do_POST = do_DELETE = _handle

        return Handler
