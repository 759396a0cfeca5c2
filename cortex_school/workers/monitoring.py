"""Monitoring worker: PrometheusRules, ServiceMonitors and Grafana dashboard ConfigMaps."""

from __future__ import annotations

import json

from cortex_school.workers.manifests import Manifest, PlanError, RenderContext, metadata
from cortex_school.workers.plan import PlannedResource

KINDS = ("PrometheusRule", "ServiceMonitor", "GrafanaDashboard", "VMRule")


def prometheus_rule(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.alerts and not res.recording_rules:
        raise PlanError(f"PrometheusRule {res.name} has no rules")
    rules: list[dict] = [{"record": r.record, "expr": r.expr} for r in res.recording_rules]
    for alert in res.alerts:
        rules.append({
            "alert": alert.name, "expr": alert.expr, "for": alert.duration,
            "labels": {"severity": alert.severity},
            "annotations": {"summary": alert.summary or alert.name,
                            "cortex_improvement_id": ctx.improvement_id},
        })
    return [{
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": metadata(res, ctx, labels={"release": "prometheus"}),
        "spec": {"groups": [{"name": res.name, "rules": rules}]},
    }]


def vm_rule(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    """The same rules for the VictoriaMetrics operator (its VMRule has the PrometheusRule
    spec): what a platform monitored by VictoriaMetrics evaluates."""
    (rule,) = prometheus_rule(res, ctx)
    return [{**rule, "apiVersion": "operator.victoriametrics.com/v1beta1", "kind": "VMRule",
             "metadata": metadata(res, ctx)}]


def service_monitor(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.selector or not res.ports:
        raise PlanError(f"ServiceMonitor {res.name} needs the target's labels and port")
    port = res.ports[0]
    spec: dict = {
        "selector": {"matchLabels": dict(res.selector)},
        "endpoints": [{"port": port.name or f"port-{port.number}",
                       "interval": res.interval or "30s", "path": res.path or "/metrics"}],
    }
    if res.target_namespace and res.target_namespace != res.namespace:
        spec["namespaceSelector"] = {"matchNames": [res.target_namespace]}
    return [{"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
             "metadata": metadata(res, ctx, labels={"release": "prometheus"}), "spec": spec}]


def grafana_dashboard(res: PlannedResource, ctx: RenderContext) -> list[Manifest]:
    if not res.panels:
        raise PlanError(f"dashboard {res.name} has no panels")
    dashboard = {
        "title": res.purpose[:100] or res.name,
        "uid": res.name[:40],
        "tags": ["cortex-school"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "panels": [
            {"id": n, "type": "timeseries", "title": p.title,
             "gridPos": {"h": 8, "w": 12, "x": 12 * ((n - 1) % 2), "y": 8 * ((n - 1) // 2)},
             "datasource": {"type": "prometheus", "uid": "prometheus"},
             "targets": [{"refId": "A", "expr": p.expr}]}
            for n, p in enumerate(res.panels, start=1)
        ],
    }
    # The Grafana sidecar picks up ConfigMaps labelled grafana_dashboard.
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": metadata(res, ctx, labels={"grafana_dashboard": "1"}),
             "data": {f"{res.name}.json": json.dumps(dashboard, indent=2, sort_keys=True)}}]


RENDERERS = {
    "PrometheusRule": prometheus_rule,
    "VMRule": vm_rule,
    "ServiceMonitor": service_monitor,
    "GrafanaDashboard": grafana_dashboard,
}
