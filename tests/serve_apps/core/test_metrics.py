"""The sample of rows the metrics inspect (serve_apps/core/metrics.py): every row under light traffic, every
stride-th row across model calls under heavy traffic, the stride following the last period's rows. The metrics
themselves are checked through a real Prometheus (tests/serve_apps/test_monitoring.py)."""

from __future__ import annotations

from serve_apps.core.metrics import RowSampler


def test_light_traffic_has_every_row_inspected():
    sampler = RowSampler(per_period=100)
    assert [sampler.pick(n).tolist() for n in (1, 3, 1)] == [[0], [0, 1, 2], [0]]
    sampler.next_period()
    assert sampler.stride == 1


def test_heavy_traffic_is_sampled_every_stride_th_row_across_calls():
    sampler = RowSampler(per_period=100)
    for _ in range(4):
        sampler.pick(100)
    sampler.next_period()  # 400 rows in the period: a stride of 4
    assert sampler.stride == 4
    picks = [sampler.pick(n).tolist() for n in (6, 1, 1, 3, 10)]
    assert picks == [[0, 4], [], [], [0], [1, 5, 9]]  # rows 0, 4, 8, 12, 16, 20 of the 21 answered
    sampler.next_period()  # 21 rows: back to every row, starting with the next one
    assert sampler.stride == 1 and sampler.pick(2).tolist() == [0, 1]
