"""Helpers shared by the serving tests."""

from __future__ import annotations

from fastapi.testclient import TestClient


def metric(client: TestClient, name: str, **labels: str) -> float:
    """The value of one Prometheus sample (0 when absent)."""
    return metric_text(client.get("/metrics").text, name, **labels)


def metric_text(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        metric_name, _, label_text = key.partition("{")
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and got == want:
            return float(value)
    return 0.0
