"""GPU memory caps. There is no GPU on these machines: the cap computation is pure, and applying it is checked
against a fake TensorFlow device list (named so below)."""

from __future__ import annotations

import pytest
import tensorflow as tf

from recsys import gpu


@pytest.mark.parametrize(("fraction", "card", "context", "expected"), [
    (0.25, 16384, 512, 3584),
    (0.5, 24576, 512, 11776),
    (0.25, 16384, 0, 4096),
    (0.1, 81920, 1024, 7168),
    (1.0, 16384, 512, None),
    (0.0, 16384, 512, None),
], ids=["quarter-16g", "half-24g", "no-context", "tenth-80g", "whole-card", "no-gpu"])
def test_memory_limit_is_the_share_of_the_card_minus_the_cuda_context(fraction, card, context, expected):
    assert gpu.memory_limit_mib(fraction, card, context) == expected


def test_a_share_smaller_than_the_cuda_context_is_an_error():
    with pytest.raises(ValueError, match=r"num_gpus 0.05 of a 8192 MiB card leaves -103 MiB after the 512 MiB "
                                         r"CUDA context; give each replica a larger fraction"):
        gpu.memory_limit_mib(0.05, 8192, 512)


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, *args):
        self.calls.append(args)


def test_cap_is_applied_to_each_visible_gpu_with_a_fake_gpu(monkeypatch):
    fake_gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [fake_gpu] if kind == "GPU" else [])
    configure = _Recorder()
    monkeypatch.setattr(tf.config, "set_logical_device_configuration", configure)
    assert gpu.cap_tensorflow_memory(0.25, 16384, 512) == 3584
    [(device, [logical])] = configure.calls
    assert device is fake_gpu and logical.memory_limit == 3584


def test_unknown_card_size_falls_back_to_memory_growth_with_a_fake_gpu(monkeypatch):
    fake_gpu = tf.config.PhysicalDevice(name="/physical_device:GPU:0", device_type="GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [fake_gpu])
    growth = _Recorder()
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", growth)
    assert gpu.cap_tensorflow_memory(0.25, None, 512) is None
    assert growth.calls == [(fake_gpu, True)]


def test_nothing_happens_without_a_gpu():
    assert gpu.cap_tensorflow_memory(0.25, 16384, 512) is None
