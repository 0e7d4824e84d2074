"""KServe's Python ModelServer serving the SavedModel (v1 protocol: POST /v1/models/destinations:predict with
{"instances": [...]}); it has no request batching of its own, so each call runs its instances in one model call.

    MODEL_DIR=.../saved_model PORT=8102 bench/.peers/kserve/bin/python -m bench.peers.kserve_model

KServe's REST server binds 0.0.0.0 with no setting for it; the benchmark keeps every server on loopback, so
uvicorn's Config is made to bind 127.0.0.1 before KServe creates it. Settings come from the environment because
KServe parses sys.argv itself.
"""

import os

import uvicorn

from bench.peers import saved_model

_Config = uvicorn.Config


class _LoopbackConfig(_Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = _LoopbackConfig

import kserve  # noqa: E402  (after the patch: KServe builds its uvicorn Config from this module)


class Destinations(kserve.Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.load()

    def load(self) -> bool:
        self.signature = saved_model.load(self.model_dir)
        self.ready = True
        return True

    def predict(self, payload: dict, headers: dict | None = None, response_headers: dict | None = None) -> dict:
        return {"predictions": saved_model.recommend(self.signature, payload["instances"])}


if __name__ == "__main__":
    model = Destinations("destinations", os.environ["MODEL_DIR"])
    kserve.ModelServer(http_port=int(os.environ["PORT"]), enable_grpc=False, workers=1,
                       enable_latency_logging=False).start([model])
