"""Train the accommodation ranking model with Ray Train and publish it to the model store.

    python -m training.accommodations --config configs/train/accommodations.yaml
    ray job submit --working-dir . -- python -m training.accommodations --config configs/train/accommodations.yaml

The model's part of the shared job (:mod:`training.job`): impression rows become one padded list per search (Ray
Data groups them by search), the vocabularies and the property catalogue are fitted on the training searches, the
fixed-sort baselines (popularity, review score, price, the site's order) beside them; the network is trained
listwise (softmax cross-entropy against each search's graded relevance) with position as a training-only term, and
selected by validation NDCG@10; the published SavedModel is scored through its signature on held-out searches.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import tensorflow as tf
import tf_keras as keras
from pydantic import BaseModel, ConfigDict, Field

import training  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads Keras)
from recsys.accommodations import signature
from recsys.accommodations.baselines import Popularity, fixed_sorts, ranking_metrics
from recsys.accommodations.catalogue import CATALOGUE_FILE, Catalogue
from recsys.accommodations.features import CONTEXT, ITEMS, RELEVANCE, Vocabulary, lists_from_searches
from recsys.accommodations.model import (
    NDCG,
    AccommodationRanker,
    FeatureEncoder,
    ModelConfig,
    build_network,
    listwise_softmax_loss,
)
from recsys.accommodations.runtime import Ranker
from recsys.accommodations.searches import SEARCH_SCHEMA, check_search_schema
from recsys.errors import DataError
from recsys.manifest import VOCABULARY_FILE, Metrics, Signature
from recsys.splits import TEST, TRAIN, VALIDATION
from training import data, job
from training.config import Hyperparameters, JobConfig
from recsys.tables import DataFiles
from training.data import TrainingData
from training.task import Task

_ROWS_PER_BLOCK = 1_000_000
_MODEL_COLUMNS = [*CONTEXT, *ITEMS, RELEVANCE]


class AccommodationHyperparameters(Hyperparameters):
    min_property_count: int = Field(3, ge=1, description="properties shown less often share the out-of-vocabulary "
                                                         "slot")


class AccommodationsConfig(JobConfig):
    model_name: str = "accommodations"
    model: ModelConfig = ModelConfig()
    hyperparameters: AccommodationHyperparameters


class AccommodationState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vocabulary: Vocabulary
    city_prices: dict[int, float]


class AccommodationMetrics(Metrics):
    """Held-out NDCG@10 and MRR of the model, and of each baseline (``baselines.<name>.ndcg_at_10``)."""

    ndcg_at_10: float = Field(ge=0, le=1)
    mrr: float = Field(ge=0, le=1)
    baselines: dict[str, dict[str, float]]
    test_searches: int = Field(ge=0)
    validation_ndcg_at_10: float


class AccommodationTask(Task[AccommodationsConfig, AccommodationState]):
    name = "accommodations"
    config_type = AccommodationsConfig
    state_type = AccommodationState
    metric = "ndcg_at_10"

    def check_schema(self, schema: pa.Schema, source: str) -> None:
        check_search_schema(schema, source)

    def prepare(self, files: DataFiles, config: AccommodationsConfig) -> TrainingData:
        # Hash-partitioned by search, so that every search lies whole in one block.
        blocks = max(2, -(-files.rows // _ROWS_PER_BLOCK))
        lists = (data.read(files, SEARCH_SCHEMA.names).repartition(blocks, keys=["srch_id"])
                 .map_batches(lists_from_searches, batch_size=None, batch_format="pyarrow",
                              fn_kwargs={"list_size": config.model.list_size})
                 .materialize())
        train = lists.filter(expr=f"split == '{TRAIN}'").select_columns(_MODEL_COLUMNS).materialize()
        driver = data.to_numpy(train)
        if len(driver[RELEVANCE]) == 0:
            raise DataError(f"{files.uri}: no training searches")
        validation = lists.filter(expr=f"split == '{VALIDATION}'").select_columns(_MODEL_COLUMNS).materialize()
        test = data.to_numpy(lists.filter(expr=f"split == '{TEST}'").select_columns(_MODEL_COLUMNS))
        return TrainingData(train=train, validation=validation, driver=driver, test=test,
                            counts={"impressions": files.rows, "train_searches": len(driver[RELEVANCE]),
                                    "validation_searches": validation.count(), "test_searches": len(test[RELEVANCE])})

    def fit_state(self, data: TrainingData, config: AccommodationsConfig) -> AccommodationState:
        return AccommodationState(
            vocabulary=Vocabulary.fit(data.driver, config.hyperparameters.min_property_count),
            city_prices=Catalogue.from_lists(data.driver).city_medians())

    def baselines(self, data: TrainingData, config: AccommodationsConfig) -> dict:
        popularity = Popularity(data.driver["prop_id"], data.driver[RELEVANCE])
        return {name: ranking_metrics(data.test[RELEVANCE], scores)
                for name, scores in fixed_sorts(data.test, popularity).items()}

    def build_network(self, config: AccommodationsConfig, state: AccommodationState) -> keras.Model:
        return build_network(config.model, state.vocabulary.sizes())

    def compile(self, network: keras.Model, config: AccommodationsConfig) -> None:
        network.compile(optimizer=keras.optimizers.Adam(config.hyperparameters.learning_rate),
                        loss=listwise_softmax_loss, metrics=[NDCG(10, name=self.metric)])

    def examples(self, rows: dict[str, np.ndarray], for_training: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        features = {name: rows[name] for name in (*CONTEXT, *ITEMS)}
        if not for_training:  # as served: no position (the term is then the same for every candidate)
            features["position"] = np.zeros_like(features["position"])
        return features, rows[RELEVANCE]

    def encoder(self, state: AccommodationState) -> Callable[[dict[str, tf.Tensor], tf.Tensor], tuple]:
        encoder = FeatureEncoder(state.vocabulary, state.city_prices)
        return lambda features, relevance: (encoder(features), relevance)

    def export(self, network: keras.Model, config: AccommodationsConfig, state: AccommodationState,
               data: TrainingData, out_dir: Path) -> None:
        catalogue = Catalogue.from_lists(data.driver)
        AccommodationRanker(network, state.vocabulary, catalogue).save(str(out_dir / "saved_model"))
        catalogue.write(out_dir / CATALOGUE_FILE)
        (out_dir / VOCABULARY_FILE).write_text(state.vocabulary.model_dump_json(indent=1))

    def evaluate(self, saved_model_dir: Path, data: TrainingData, config: AccommodationsConfig, baselines: dict,
                 validation: float) -> Metrics:
        test = data.test
        scores = Ranker(saved_model_dir).score_shown(test)
        metrics = ranking_metrics(test[RELEVANCE], scores)
        return AccommodationMetrics(ndcg_at_10=metrics["ndcg_at_10"], mrr=metrics["mrr"], baselines=baselines,
                                    test_searches=len(test[RELEVANCE]), validation_ndcg_at_10=validation)

    def signature(self) -> Signature:
        return signature.describe()

    def vocabulary_sizes(self, state: AccommodationState) -> dict[str, int]:
        return state.vocabulary.sizes()


TASK = AccommodationTask()

if __name__ == "__main__":
    # The task of the importable module, not of __main__: Ray ships it to the workers by reference.
    from training.accommodations import TASK as task
    sys.exit(job.main(task))
