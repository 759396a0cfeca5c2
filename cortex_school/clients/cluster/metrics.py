"""Error rate and p95 latency of a service: Prometheus's HTTP API, or the simulation.

``None`` means no data: the health check reports insufficient evidence, never a pass.
"""

from __future__ import annotations

import math
from typing import Protocol

import httpx

from cortex_school.clients.cluster import cluster_error


class MetricsSource(Protocol):
    name: str

    def error_rate(self, namespace: str, service: str) -> float | None: ...

    def p95_latency(self, namespace: str, service: str) -> float | None: ...


class PrometheusMetrics:
    name = "prometheus"

    def __init__(self, url: str, *, error_rate_query: str, latency_query: str,
                 timeout: float = 10.0, at: float | None = None) -> None:
        self.url = url.rstrip("/")
        self.error_rate_query = error_rate_query
        self.latency_query = latency_query
        self.timeout = timeout
        self.at = at  # a fixed evaluation time (tests); None: now

    def query(self, promql: str) -> float | None:
        params: dict[str, str] = {"query": promql}
        if self.at is not None:
            params["time"] = str(self.at)
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=self.timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise cluster_error(f"Prometheus at {self.url}", None, str(exc)) from exc
        if response.status_code != 200 or body.get("status") != "success":
            # A query Prometheus cannot run (400, 422) fails the same way every time.
            raise cluster_error(f"Prometheus query at {self.url}", response.status_code,
                                str(body.get("error", ""))[:200], response.headers)
        data = body["data"]
        if data["resultType"] == "scalar":
            values = [data["result"][1]]
        else:
            values = [sample["value"][1] for sample in data["result"]]
        numbers = [float(v) for v in values if not math.isnan(float(v))]
        return max(numbers) if numbers else None

    def error_rate(self, namespace: str, service: str) -> float | None:
        return self.query(self.error_rate_query.format(namespace=namespace, service=service))

    def p95_latency(self, namespace: str, service: str) -> float | None:
        return self.query(self.latency_query.format(namespace=namespace, service=service))


class SimulatedMetrics:
    """The simulated cluster's traffic: 0.2% errors and 80 ms p95 unless a fault says otherwise."""

    name = "simulated"

    def __init__(self, cluster: "object") -> None:
        self.cluster = cluster

    def error_rate(self, namespace: str, service: str) -> float | None:
        if self.cluster.endpoints(namespace, service) is None:  # type: ignore[attr-defined]
            return None
        return self.cluster.error_rate(service)  # type: ignore[attr-defined]

    def p95_latency(self, namespace: str, service: str) -> float | None:
        if self.cluster.endpoints(namespace, service) is None:  # type: ignore[attr-defined]
            return None
        return 0.08
