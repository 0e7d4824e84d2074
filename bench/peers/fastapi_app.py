"""What a user would write by hand: FastAPI + uvicorn, one model call per request, no batching.

    MODEL_DIR=.../saved_model uvicorn bench.peers.fastapi_app:app --host 127.0.0.1 --port 8101
"""

import os

import tensorflow as tf
from fastapi import FastAPI
from pydantic import BaseModel, Field

HISTORY = 8
_signature = tf.saved_model.load(os.environ["MODEL_DIR"]).signatures["serving_default"]
app = FastAPI(title="destinations (plain FastAPI)")


class Trip(BaseModel):
    cities: list[int] = Field(min_length=1)
    booker_country: str
    device_class: str
    affiliate_id: int | None = None
    k: int = Field(4, ge=1, le=100)


@app.post("/recommend")
def recommend(trip: Trip) -> dict:
    cities = trip.cities[-HISTORY:]
    out = _signature(cities=tf.constant([cities + [0] * (HISTORY - len(cities))], tf.int64),
                     booker_country=tf.constant([trip.booker_country]), device_class=tf.constant([trip.device_class]),
                     affiliate_id=tf.constant([trip.affiliate_id or 0], tf.int64), k=tf.constant(trip.k, tf.int32))
    return {"cities": out["cities"][0].numpy().tolist(), "scores": out["scores"][0].numpy().tolist()}
