"""The chart's alert rules: `promtool check rules` on the shipped file, the PrometheusRule
the chart renders from it (gated like the ServiceMonitor), and a real Prometheus (Debian's
package) scraping the exporter on the real Redis and evaluating the rules."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import httpx
import pytest
import yaml

from celeryconfig import ALL_QUEUES
from cortex_school.alerts import serve
from tests.test_alerts import BREAKER, LIMITS, clean, everything_wrong  # noqa: F401 - clean is a fixture
from tests.test_chart import CHART, needs_helm, render

RULES = CHART / "rules" / "cortex-school.rules.yaml"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL),
                                      reason="Debian's prometheus package is not installed (make setup installs it)")
ALERTS = {"CortexSchoolStuckWork", "CortexSchoolReviewOlderThanADay", "CortexSchoolQueueWithoutConsumer",
          "CortexSchoolDeadLetters", "CortexSchoolRollbackFailed", "CortexSchoolCircuitBreakerOpen"}


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_every_alert_says_what_why_and_what_to_do():
    """GIVEN the shipped rules THEN the six alerts are there, each with severity as its only
    label and a summary, a description and a runbook hint."""
    found = rules()
    assert {r["alert"] for r in found} == ALERTS
    for rule in found:
        assert set(rule["labels"]) == {"severity"} and rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        assert "cortex-school" in rule["annotations"]["runbook"]
    queue = next(r for r in found if r["alert"] == "CortexSchoolQueueWithoutConsumer")
    assert queue["for"] == "10m" and "cortex_queue_consumers" in queue["expr"]


@needs_prometheus
def test_promtool_accepts_the_rules():
    out = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 6 rules found" in out.stdout


@needs_helm
def test_the_chart_ships_the_rules_as_a_prometheusrule_gated_like_the_servicemonitor(tmp_path):
    """GIVEN default values THEN a PrometheusRule whose spec is the rules file; GIVEN
    metrics.prometheusRule.enabled=false or metrics.enabled=false THEN none."""
    (rule,) = [o for o in render(tmp_path) if o["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    for values in ({"metrics": {"prometheusRule": {"enabled": False}}}, {"metrics": {"enabled": False}}):
        assert not [o for o in render(tmp_path, values) if o["kind"] == "PrometheusRule"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prometheus_scraping(clean, tmp_path):
    """The exporter on the real Redis, and a Prometheus scraping it every second and
    evaluating the shipped rules every second."""
    exporter_port, port = free_port(), free_port()
    server = serve(clean, ALL_QUEUES, exporter_port, "127.0.0.1", limits=LIMITS, breaker=BREAKER,
                   consumers=lambda: dict.fromkeys(ALL_QUEUES, 0))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "cortex-school",
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}]}))
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        server.shutdown()  # type: ignore[attr-defined]


def until(predicate, timeout=45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("timed out")


@needs_prometheus
def test_prometheus_scrapes_the_gauges_and_the_rules_fire(clean, prometheus_scraping):
    """GIVEN a failed rollback, an open breaker, a dead letter, stuck work, an old review
    and a queue with a message and no consumer WHEN a real Prometheus scrapes the exporter
    and evaluates the chart's rules THEN the gauges are queryable, the rollback and breaker
    alerts fire, and the queue and stuck alerts are pending (their `for` has not passed)."""
    everything_wrong(clean)
    url = prometheus_scraping

    def query(expr: str) -> list[dict]:
        body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
        return body["data"]["result"]

    assert until(lambda: query('cortex_queue_consumers{queue="aggregate"} == 0'))
    assert float(query('cortex_school_waiting_on_person{reason="rollback_failed"}')[0]["value"][1]) == 1
    assert float(query("cortex_school_oldest_review_age_seconds")[0]["value"][1]) > 86400
    assert float(query("cortex_school_dead_letters_total")[0]["value"][1]) == 1

    def alerts() -> dict[str, str]:
        found = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
        return {a["labels"]["alertname"]: a["state"] for a in found}

    states = until(lambda: (s := alerts()).get("CortexSchoolRollbackFailed") == "firing"
                   and s.get("CortexSchoolCircuitBreakerOpen") == "firing"
                   and "CortexSchoolQueueWithoutConsumer" in s and s)
    assert states["CortexSchoolQueueWithoutConsumer"] == "pending"
    assert states["CortexSchoolStuckWork"] == "pending"
    assert states["CortexSchoolReviewOlderThanADay"] == "pending"
    found = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    queue = next(a for a in found if a["labels"]["alertname"] == "CortexSchoolQueueWithoutConsumer")
    assert queue["labels"]["queue"] == "aggregate" and queue["labels"]["severity"] == "critical"
