"""GPU memory caps for Ray actors that share a card (Serve replicas, batch scoring actors).

Ray's fractional GPUs (``num_gpus: 0.25``) are bookkeeping only: they decide how many actors land on a card, not
how much memory each may take, and TensorFlow takes nearly all of it by default, so the second actor on the card
fails to allocate (ray#13680). An actor therefore caps TensorFlow to its share of the card
(:func:`cap_this_actor`) before TensorFlow touches the GPU.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess

log = logging.getLogger(__name__)


def memory_limit_mib(fraction: float, card_mib: int, context_mib: int) -> int | None:
    """TensorFlow's memory limit for a replica granted ``fraction`` of a card of ``card_mib``.

    Each process also spends ``context_mib`` outside TensorFlow's allocator (the CUDA context), so that comes off
    the share. ``None`` means no cap: no GPU, or the whole card.
    """
    if fraction <= 0 or fraction >= 1:
        return None
    limit = math.floor(card_mib * fraction) - context_mib
    if limit <= 0:
        raise ValueError(f"num_gpus {fraction} of a {card_mib} MiB card leaves {limit} MiB after the "
                         f"{context_mib} MiB CUDA context; give each replica a larger fraction")
    return limit


def card_memory_mib(gpu_id: str) -> int | None:
    """Total memory of GPU ``gpu_id`` as nvidia-smi reports it, or None when there is no nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits", "-i", gpu_id],
                         capture_output=True, text=True, timeout=10, check=True)
    return int(out.stdout.strip().splitlines()[0])


def cap_tensorflow_memory(fraction: float, card_mib: int | None, context_mib: int) -> int | None:
    """Apply the cap to every GPU TensorFlow sees (Ray sets CUDA_VISIBLE_DEVICES to the replica's card).

    Must run before TensorFlow initialises the GPU. Without a known card size it falls back to memory growth,
    which at least stops TensorFlow from taking the whole card up front.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus or fraction <= 0 or fraction >= 1:
        return None
    if card_mib is None:
        log.warning("GPU fraction %.2f but the card size is unknown (no nvidia-smi, no gpu_memory_mib): "
                    "using memory growth instead of a hard cap", fraction)
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        return None
    limit = memory_limit_mib(fraction, card_mib, context_mib)
    for gpu in gpus:
        tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
    log.info("GPU fraction %.2f of a %d MiB card: TensorFlow capped at %d MiB", fraction, card_mib, limit)
    return limit


def cap_this_actor(card_mib: int | None, context_mib: int) -> int | None:
    """Cap TensorFlow to the GPU fraction Ray granted the calling actor; a no-op without a GPU.

    ``card_mib`` is the memory of one card (probed with nvidia-smi when None).
    """
    import ray

    fraction = float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    gpu_ids = ray.get_gpu_ids()
    if fraction <= 0 or not gpu_ids:
        return None
    return cap_tensorflow_memory(fraction, card_mib or card_memory_mib(str(gpu_ids[0])), context_mib)
