"""The HTTP face every model application has: one request, many requests in one body, and the model's status.

A model app names its path and its request and answer types; :class:`ModelApi` makes the FastAPI app (the shared
edge, :func:`serve_apps.core.http_edge.ingress_api`), the batch body types and the three routes, added to the
deployment class by :meth:`ModelApi.routes` so that they are its methods (Serve's class-based view binds them to
the replica, and deployment handles call them by name: ``recommend``, ``recommend_batch``, ``model``)::

    API = ModelApi(title=..., description=..., path="/recommend", request=RecommendRequest,
                   answer=RecommendResponse, batch_name="Batch", max_batch_requests=1024, ...)

    @serve.deployment(name="Destinations")
    @serve.ingress(API.app)
    @API.routes
    class Destinations(ModelReplica[...]):
        open_runtime = DestinationRuntime.open

        def predict(self, model, queries, shapes): ...
"""

# No `from __future__ import annotations`: the route functions below are annotated with the app's own types, which
# FastAPI reads at runtime to validate and document the bodies.
from pydantic import BaseModel, ConfigDict, Field, create_model

from serve_apps.core.errors import documented_responses
from serve_apps.core.http_edge import ingress_api
from serve_apps.core.status import ModelStatus

ERRORS = documented_responses(400, 413, 415, 500, 503)
MAX_BODY_BYTES = 8 << 20


class ModelApi:
    """One model application's HTTP routes and body types."""

    def __init__(self, *, title: str, description: str, path: str, request: type[BaseModel],
                 answer: type[BaseModel], batch_name: str, max_batch_requests: int, single_summary: str,
                 batch_summary: str) -> None:
        self.app = ingress_api(title=title, description=description, max_body_bytes=MAX_BODY_BYTES)
        self.path, self.request, self.answer = path, request, answer
        self.batch_request: type[BaseModel] = create_model(
            f"{batch_name}Request", __config__=ConfigDict(extra="forbid"),
            requests=(list[request], Field(min_length=1, max_length=max_batch_requests)))
        self.batch_response: type[BaseModel] = create_model(
            f"{batch_name}Response",
            results=(list[answer], Field(description="one result per request, in the same order")))
        self._summaries = single_summary, batch_summary

    def routes(self, cls: type) -> type:
        """Class decorator: add ``POST <path>``, ``POST <path>/batch`` and ``GET /model`` to a ModelReplica, and
        give it this app (``cls.api``)."""
        name = self.path.strip("/").replace("/", "_")
        request_type, answer_type = self.request, self.answer
        batch_request, batch_response = self.batch_request, self.batch_response

        async def single(self, request: request_type) -> answer_type:
            [result] = await self.infer([request])
            return result

        async def batch(self, batch: batch_request) -> batch_response:
            return batch_response(results=await self.infer(batch.requests))

        async def model(self) -> ModelStatus:
            return self.status()

        single_summary, batch_summary = self._summaries
        for method, method_name, doc in ((single, name, single_summary), (batch, f"{name}_batch", batch_summary),
                                         (model, "model", "The version this replica serves, its manifest summary, "
                                                          "load time, and the last load error.")):
            method.__name__, method.__qualname__, method.__doc__ = method_name, f"{cls.__qualname__}.{method_name}", doc
            method.__module__ = cls.__module__
            setattr(cls, method_name, method)
        self.app.post(self.path, response_model=answer_type, responses=ERRORS)(single)
        self.app.post(f"{self.path}/batch", response_model=batch_response, responses=ERRORS)(batch)
        self.app.get("/model", response_model=ModelStatus)(model)
        cls.api = self.app
        return cls
