"""The metrics health check against a real Prometheus (Debian's package) on loopback,
over synthetic series written with ``promtool tsdb create-blocks-from openmetrics``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cortex_school.clients.cluster.metrics import PrometheusMetrics
from cortex_school.delivery.health import Targets, check_metrics
from cortex_school.settings import DeploySettings

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(not (PROMETHEUS and PROMTOOL),
                                reason="Debian's prometheus package is not installed (make setup installs it)")
STEP, MINUTES = 15, 20
BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, "+Inf")


def series(ns: str, svc: str, rps: float, error_share: float, latency: float) -> list[tuple[str, str, callable]]:
    """(metric name with labels, type, value at second t) for one service's traffic."""
    base = f'namespace="{ns}",service="{svc}"'
    out = [
        (f'http_requests_total{{{base},status="200"}}', "ok", lambda t: rps * (1 - error_share) * t),
        (f'http_requests_total{{{base},status="500"}}', "err", lambda t: rps * error_share * t),
    ]
    for le in BUCKETS:
        share = 1.0 if le == "+Inf" or latency <= le else 0.0
        out.append((f'http_request_duration_seconds_bucket{{{base},le="{le}"}}', "bucket",
                    lambda t, s=share: rps * s * t))
    return out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    root = tmp_path_factory.mktemp("prometheus")
    end = int(time.time()) - 600
    start = end - MINUTES * 60
    lines = ["# TYPE http_requests_total counter", "# TYPE http_request_duration_seconds histogram"]
    traffic = (series("cortex-system", "good", 20, 0.002, 0.08)
               + series("cortex-system", "erroring", 20, 0.05, 0.08)
               + series("cortex-system", "slow", 20, 0.0, 1.8))
    counters = [s for s in traffic if s[0].startswith("http_requests_total")]
    buckets = [s for s in traffic if not s[0].startswith("http_requests_total")]
    for t in range(start, end + 1, STEP):
        for name, _, value in counters:
            lines.append(f"{name} {value(t - start):.3f} {t}")
    for t in range(start, end + 1, STEP):
        for name, _, value in buckets:
            lines.append(f"{name} {value(t - start):.3f} {t}")
    # OpenMetrics wants each family's samples together: counters first, then the histogram.
    text = "\n".join(lines) + "\n# EOF\n"
    (root / "data.om").write_text(text)
    data = root / "tsdb"
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(root / "data.om"),
                    str(data)], check=True, capture_output=True, timeout=120)
    (root / "prometheus.yml").write_text("global: {scrape_interval: 15s}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={root / 'prometheus.yml'}",
                             f"--storage.tsdb.path={data}", f"--web.listen-address=127.0.0.1:{port}",
                             "--storage.tsdb.retention.time=30d"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("prometheus did not become ready")
        yield url, end - 60
    finally:
        proc.terminate()
        proc.wait(10)


def metrics_at(prometheus) -> PrometheusMetrics:
    url, at = prometheus
    cfg = DeploySettings()
    return PrometheusMetrics(url, error_rate_query=cfg.error_rate_query, latency_query=cfg.latency_query, at=at)


def test_error_rate_and_latency_come_from_prometheus(prometheus):
    m = metrics_at(prometheus)
    assert m.error_rate("cortex-system", "good") == pytest.approx(0.002, rel=0.05)
    assert m.error_rate("cortex-system", "erroring") == pytest.approx(0.05, rel=0.05)
    assert m.p95_latency("cortex-system", "good") < 0.1
    assert m.p95_latency("cortex-system", "slow") > 1.0
    assert m.error_rate("cortex-system", "no-such-service") is None


def judge(prometheus, service, baseline=None):
    t = Targets(services=[("cortex-system", service)])
    return check_metrics(metrics_at(prometheus), t, baseline or {}, max_error_rate=0.01, max_p95=1.0,
                         baseline_factor=2.0)


def test_good_figures_pass_bad_figures_fail(prometheus):
    assert judge(prometheus, "good").outcome == "passed"
    erroring = judge(prometheus, "erroring")
    assert erroring.outcome == "failed" and "error rate 5.0% > 1%" in erroring.reason
    slow = judge(prometheus, "slow")
    assert slow.outcome == "failed" and "p95 latency" in slow.reason


def test_latency_above_twice_the_baseline_fails(prometheus):
    result = judge(prometheus, "good", baseline={"cortex-system/good": 0.02})
    assert result.outcome == "failed" and "2x baseline" in result.reason


def test_no_data_is_insufficient_evidence_never_a_pass(prometheus):
    result = judge(prometheus, "no-such-service")
    assert result.outcome == "insufficient_evidence" and "no data" in result.reason


def test_a_cronjob_has_no_http_metrics_and_says_so(prometheus):
    t = Targets(batch=[("CronJob", "cortex-system", "pg-backup")])
    result = check_metrics(metrics_at(prometheus), t, {}, max_error_rate=0.01, max_p95=1.0,
                           baseline_factor=2.0)
    assert result.outcome == "not_applicable" and "CronJob pg-backup" in result.reason
