"""A Ray Train checkpoint to the published form: a SavedModel with the serving signature."""

from __future__ import annotations

import json
from pathlib import Path

from recsys.manifest import SAVED_MODEL_DIR, VOCABULARY_FILE
from recsys.model import DestinationRecommender, build_network
from training.train_loop import STATE_FILE, WEIGHTS_FILE, LoopConfig


def export_checkpoint(checkpoint_dir: Path, out_dir: Path) -> LoopConfig:
    """Rebuild the network the checkpoint was trained with, load its weights and save the SavedModel under
    ``out_dir/saved_model`` and the vocabulary (the ids and values the model knows, most frequent first) as
    ``out_dir/vocabulary.json``; returns the loop config read from the checkpoint."""
    state = json.loads((checkpoint_dir / STATE_FILE).read_text())
    loop = LoopConfig.model_validate(state["loop"])
    network = build_network(loop.model, loop.vocabulary.sizes())
    network.load_weights(str(checkpoint_dir / WEIGHTS_FILE))
    DestinationRecommender(network, loop.vocabulary, loop.model).save(str(out_dir / SAVED_MODEL_DIR))
    (out_dir / VOCABULARY_FILE).write_text(loop.vocabulary.model_dump_json(indent=1))
    return loop
