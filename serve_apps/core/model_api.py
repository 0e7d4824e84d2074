"""The HTTP face every model application has: one request, many requests in one body, and the model's status.

A model app names its path and its request and answer types; :class:`ModelApi` makes the FastAPI app (the shared
edge, :func:`serve_apps.core.http_edge.ingress_api`), the batch body types, the request columns
(:class:`~serve_apps.core.arrow_body.RequestColumns`) and the three routes, added to the deployment class by
:meth:`ModelApi.routes` so that they are its methods (Serve's class-based view binds them to the replica). The
batch route reads JSON or an Arrow stream and answers either, as the caller's ``Content-Type`` and ``Accept`` say.
Deployment handles call ``recommend`` with a request object, or ``infer`` with a record batch of request columns
(no HTTP, no per-row objects)::

    API = ModelApi(title=..., description=..., path="/recommend", request=RecommendRequest,
                   answer=RecommendResponse, batch_name="Batch", max_batch_requests=1024, ...)

    @serve.deployment(name="Destinations")
    @serve.ingress(API.app)
    @API.routes
    class Destinations(ModelReplica[...]):
        open_runtime = DestinationRuntime.open

        def predict(self, model, rows, shapes): ...
"""

# No `from __future__ import annotations`: the route functions below are annotated with the app's own types, which
# FastAPI reads at runtime to validate and document the bodies.
import json

import pyarrow as pa
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from serve_apps.core.arrow_body import ARROW_STREAM, VERSION_METADATA, RequestColumns, read_stream, write_stream
from serve_apps.core.errors import MalformedBody, documented_responses
from serve_apps.core.http_edge import ingress_api
from serve_apps.core.media_types import JSON, media_type
from serve_apps.core.status import ModelStatus

ERRORS = documented_responses(400, 413, 415, 500, 503)
MAX_BODY_BYTES = 8 << 20
VERSION_HEADER = "X-Model-Version"


class ModelApi:
    """One model application's HTTP routes, body types and request columns."""

    def __init__(self, *, title: str, description: str, path: str, request: type[BaseModel],
                 answer: type[BaseModel], batch_name: str, max_batch_requests: int, single_summary: str,
                 batch_summary: str) -> None:
        self.app = ingress_api(title=title, description=description, max_body_bytes=MAX_BODY_BYTES)
        self.path, self.request, self.answer = path, request, answer
        self.columns = RequestColumns(request, max_rows=max_batch_requests)
        self.batch_request: type[BaseModel] = create_model(
            f"{batch_name}Request", __config__=ConfigDict(extra="forbid"),
            requests=(list[request], Field(min_length=1, max_length=max_batch_requests)))
        self.batch_response: type[BaseModel] = create_model(
            f"{batch_name}Response",
            results=(list[answer], Field(description="one result per request, in the same order")))
        self._summaries = single_summary, batch_summary
        _document_schema(self.app, self.batch_request)

    async def read_batch(self, request: Request) -> pa.RecordBatch:
        """A batch body's rows as columns: JSON (``{"requests": [...]}``) or an Arrow IPC stream, a column per
        field of the request type."""
        body = await request.body()
        if media_type(request) == ARROW_STREAM:
            return self.columns.from_arrow(read_stream(body, MAX_BODY_BYTES))
        try:
            data = json.loads(body)
        except ValueError:
            raise MalformedBody("body is not valid UTF-8 JSON text") from None
        try:
            batch = self.batch_request.model_validate(data)
        except ValidationError as err:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in err.errors()]) from None
        return self.columns.from_models(batch.requests)

    def batch_answer(self, request: Request, answers: pa.RecordBatch) -> Response:
        """The answers in the type the caller accepts: an Arrow stream if it says so, else JSON; the model
        version in a header (and the Arrow schema's metadata) either way."""
        headers = {VERSION_HEADER: answers.schema.metadata[VERSION_METADATA].decode()}
        if ARROW_STREAM in request.headers.get("accept", ""):
            return Response(write_stream(answers), media_type=ARROW_STREAM, headers=headers)
        return JSONResponse({"results": answers.to_pylist()}, headers=headers)

    def routes(self, cls: type) -> type:
        """Class decorator: add ``POST <path>``, ``POST <path>/batch`` and ``GET /model`` to a ModelReplica, and
        give it this app (``cls.api``) and request columns (``cls.columns``)."""
        name = self.path.strip("/").replace("/", "_")
        request_type, answer_type, api = self.request, self.answer, self

        async def single(self, request: request_type) -> answer_type:
            [answer] = (await self.infer(api.columns.from_models([request]))).to_pylist()
            return answer_type.model_validate(answer)

        async def batch(self, request: Request) -> Response:
            return api.batch_answer(request, await self.infer(await api.read_batch(request)))

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
        self.app.post(f"{self.path}/batch", response_model=self.batch_response, responses={
            200: {"description": "the answers, in the request order",
                  "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
                  "headers": {VERSION_HEADER: {"description": "the model version(s) that answered",
                                               "schema": {"type": "string"}}}},
            422: {"description": "a field (and, in an Arrow body, the row) that breaks the request type's rules",
                  "content": {JSON: {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}},
            **ERRORS}, openapi_extra={"requestBody": {"required": True, "content": {
                JSON: {"schema": {"$ref": f"#/components/schemas/{self.batch_request.__name__}"}},
                ARROW_STREAM: {"schema": {"type": "string", "format": "binary",
                                          "description": "an Arrow IPC stream, one column per request field"}}}}},
        )(batch)
        self.app.get("/model", response_model=ModelStatus)(model)
        cls.api, cls.columns = self.app, self.columns
        return cls


def _document_schema(app, model: type[BaseModel]) -> None:
    """Add ``model`` (and the types it uses) to the app's OpenAPI components: the batch route reads its body itself
    (JSON or Arrow), so FastAPI does not know the JSON type."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = build()
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
                components.setdefault(name, definition)
        return app.openapi_schema

    app.openapi = openapi
