"""Read a prometheus_client metric's value through its public ``collect()`` (never ``._value``)."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

__all__ = ["metric_value"]


def metric_value(metric: MetricWrapperBase, *label_values: str) -> float:
    """The current value of ``metric`` (a Counter's ``_total`` or a Gauge) for ``label_values``
    given in the metric's label order; 0 when that child has no sample yet."""
    for family in metric.collect():
        wanted = {family.name, family.name + "_total"}
        for s in family.samples:
            if s.name in wanted and tuple(s.labels.values()) == label_values:
                return float(s.value)
    return 0.0
