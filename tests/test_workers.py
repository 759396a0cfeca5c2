"""Plans, manifests, schema and policy checks (no git, no worker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cortex_school.intake.ingest import parse_document
from cortex_school.validation.rag.chunking import chunk_gitops_dir
from cortex_school.settings import IngestSettings, PolicySettings
from cortex_school.workers import RENDERERS, render_plan, worker_for
from cortex_school.workers.manifests import PlanError, RenderContext
from cortex_school.workers.naming import DNS1123_LABEL, dns1123
from cortex_school.workers.plan import KIND_OWNERS, ImplementationPlan, PlannedResource, Port
from cortex_school.workers.planning import Inventory, OfflinePlanner, images_in, namespace_in, ports_in
from cortex_school.workers.policy import check_all, check_manifest
from cortex_school.workers.schema_check import SchemaChecker, crd_validators
from tests.factories import make_improvement

ROOT = Path(__file__).resolve().parent.parent
GITOPS = ROOT / "examples" / "platform" / "gitops"
SAMPLES = ROOT / "examples" / "proposals"
POLICY = PolicySettings(allowed_namespaces=["cortex-system", "cortex", "monitoring"])
CTX = RenderContext("0123456789abcdef", "vid00000001", 'Kubernetes: "Operators" (explained) — 日本語')


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    chunks, problems = chunk_gitops_dir(GITOPS)
    assert not problems
    return Inventory.from_payloads([c.payload for c in chunks])


@pytest.fixture(scope="module")
def schemas() -> SchemaChecker:
    return SchemaChecker("1.31.0")


def sample_improvements():
    out = []
    for path in sorted(SAMPLES.glob("[0-9]*.json")):
        out += parse_document(path.read_bytes(), path.name, IngestSettings()).improvements
    return out


# -- names ---------------------------------------------------------------------

@pytest.mark.parametrize("title", [
    'Kubernetes: "Operators" (explained)!', "Überwachung mit Prometheus — 日本語のタイトル",
    "日本語のみ", "x" * 300, "---", "Redis_exporter v1.62.0 / sidecar",
])
def test_names_from_hostile_titles_are_dns1123_labels(title):
    name = dns1123(title)
    assert DNS1123_LABEL.match(name) and len(name) <= 63


def test_long_names_keep_a_hash_so_they_do_not_collide():
    a, b = dns1123("a" * 70 + "one"), dns1123("a" * 70 + "two")
    assert a != b and len(a) == len(b) == 63


# -- extraction ----------------------------------------------------------------

def test_extraction_of_images_ports_and_namespaces():
    text = ("Deploy quay.io/docling-project/docling-serve and oliver006/redis_exporter:v1.62.0 in "
            "cortex-system on port 5001, selecting app.kubernetes.io/name=qdrant, TCP 6333 and 6334 "
            "from pods in the cortex namespace; redis_memory_used_bytes / redis_memory_max_bytes")
    assert images_in(text) == ["quay.io/docling-project/docling-serve", "oliver006/redis_exporter:v1.62.0"]
    assert ports_in(text) == [5001, 6333, 6334]
    assert namespace_in(text, {"cortex-system", "cortex"}, "default-ns") == "cortex-system"
    # A namespace traffic comes from is not where things go.
    assert namespace_in("allow from pods in the cortex namespace", {"cortex"}, "cortex-system") == "cortex-system"


# -- plans for the shipped samples -------------------------------------------------

def test_every_sample_plan_renders_schema_valid_and_the_gate_finds_only_what_is_wrong(inventory, schemas):
    """GIVEN the shipped samples' plans WHEN gated THEN the only findings are images the videos
    name without a tag (Docling, oauth2-proxy, the image updater), a namespace outside the
    allowlist, a certificate for someone else's domain (linkerd.io) and a Service selecting
    pods the change does not run (postgres-primary)."""
    planned, findings = 0, []
    for imp in sample_improvements():
        plan = OfflinePlanner().plan(imp, inventory)
        assert plan.planner == "offline-planner"
        if not plan.resources:
            assert plan.manual_steps, imp.description
            continue
        manifests = render_plan(plan, CTX)
        assert schemas.check_all(manifests) == [], imp.description
        findings += check_all(manifests, POLICY)
        planned += 1
    assert planned >= 8
    assert {(v.rule, v.object) for v in findings} == {
        ("image-pin", "Deployment/cortex/docling-serve"),
        ("image-pin", "Deployment/monitoring/oauth2-proxy"),
        ("image-pin", "Deployment/argocd/argocd-image-updater"),
        # The image updater belongs in argocd, which this system may not write to.
        ("namespace", "Deployment/argocd/argocd-image-updater"),
        ("certificate", "Certificate/cortex-system/linkerd-io-tls"),
        ("selector", "Service/cortex-system/postgres-primary")}


def by_description(text):
    return next(i for i in sample_improvements() if i.description == text)


def test_network_policy_sample_becomes_the_policy_the_notes_describe(inventory):
    imp = by_description("Add NetworkPolicies isolating the Qdrant namespace")
    (policy,) = OfflinePlanner().plan(imp, inventory).resources
    assert (policy.kind, policy.namespace) == ("NetworkPolicy", "cortex-system")
    assert policy.selector == {"app.kubernetes.io/name": "qdrant"}
    assert [p.number for p in policy.ports] == [6333, 6334]
    assert {(p.namespace, tuple(p.pod_labels.items())) for p in policy.allow_from} == {
        ("cortex", ()), ("monitoring", (("app.kubernetes.io/name", "prometheus"),))}
    assert worker_for(imp) == "security"


def test_exporter_sample_points_at_redis_and_gets_a_servicemonitor(inventory):
    imp = by_description("Deploy redis_exporter as a sidecar next to Redis with a ServiceMonitor")
    plan = OfflinePlanner().plan(imp, inventory)
    kinds = {(r.kind, r.namespace) for r in plan.resources}
    assert kinds == {("Deployment", "cortex-system"), ("Service", "cortex-system"),
                     ("ServiceMonitor", "monitoring")}
    deployment = next(r for r in plan.resources if r.kind == "Deployment")
    assert deployment.env[0].value == "redis://redis.cortex.svc.cluster.local:6379"
    monitor = render_plan(plan, CTX)[-1]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["cortex-system"]}
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    assert any("not as a sidecar" in s for s in plan.manual_steps)


def test_statefulset_sample_takes_image_and_ports_from_the_repository(inventory):
    imp = by_description("Run stateful Cortex services as StatefulSets with PodDisruptionBudgets")
    plan = OfflinePlanner().plan(imp, inventory)
    sts = next(r for r in plan.resources if r.kind == "StatefulSet")
    assert sts.image == "qdrant/qdrant:v1.12.4"  # from apps/cortex/qdrant.yaml
    assert (sts.storage.size, sts.storage.storage_class) == ("20Gi", "local-path")
    pdb = next(r for r in plan.resources if r.kind == "PodDisruptionBudget")
    assert pdb.min_available == 1


def test_host_level_change_has_no_manifests_only_manual_steps(inventory):
    imp = by_description("Enable encryption at rest for Kubernetes Secrets on the K3s server")
    plan = OfflinePlanner().plan(imp, inventory)
    assert plan.resources == []
    assert any("--secrets-encryption" in s for s in plan.manual_steps)


def test_burn_rate_sample_has_recording_rules_alerts_and_a_dashboard(inventory):
    imp = by_description("Define multi-window burn-rate alerts for the Traefik ingress availability SLO")
    plan = OfflinePlanner().plan(imp, inventory)
    rule = next(r for r in plan.resources if r.kind == "PrometheusRule")
    assert {r.record for r in rule.recording_rules} >= {
        "slo:traefik_service_requests:error_ratio_rate5m", "slo:traefik_service_requests:error_ratio_rate6h"}
    assert any("14.4 * 0.005" in a.expr for a in rule.alerts)  # 99.5% SLO
    dashboard = render_plan(plan, CTX)[-1]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "Error budget remaining" in dashboard["data"][next(iter(dashboard["data"]))]


def test_networking_goes_to_the_worker_that_owns_what_it_touches():
    policy = make_improvement("Add a default-deny NetworkPolicy", category="networking")
    route = make_improvement("Expose Langflow through an Ingress route", category="networking")
    assert worker_for(policy) == "security" and worker_for(route) == "integration"
    assert worker_for(make_improvement("x", category="knowledge")) == "architecture"


# -- renderers -------------------------------------------------------------------

def every_kind_plan() -> ImplementationPlan:
    from cortex_school.workers.plan import (
        AlertRule, EnvVar, Panel, Peer, RbacRule, ScaleTrigger, Storage, TraefikMiddleware)
    ns = "cortex-system"
    return ImplementationPlan(summary="all kinds", resources=[
        PlannedResource(kind="Deployment", name="docling", namespace=ns,
                        image="quay.io/docling-project/docling-serve:v1.2.0", ports=[Port(number=5001)],
                        env=[EnvVar(name="API_KEY", secret_name="docling-credentials", secret_key="api-key")]),
        PlannedResource(kind="Service", name="docling", namespace=ns, ports=[Port(number=5001)]),
        PlannedResource(kind="Ingress", name="docling", namespace=ns, host="docling.cortex.local",
                        ports=[Port(number=5001)], middlewares=["docling-limit"]),
        PlannedResource(kind="Middleware", name="docling-limit", namespace=ns,
                        middleware=TraefikMiddleware(type="rateLimit", average=50, burst=100, depth=1)),
        PlannedResource(kind="ExternalSecret", name="docling-credentials", namespace=ns,
                        secret_keys=["api-key"]),
        PlannedResource(kind="StatefulSet", name="qdrant", namespace=ns, image="qdrant/qdrant:v1.12.4",
                        ports=[Port(number=6333)], storage=Storage(size="20Gi", storage_class="local-path")),
        PlannedResource(kind="DaemonSet", name="node-agent", namespace=ns, image="ghcr.io/x/agent:1.0"),
        PlannedResource(kind="ConfigMap", name="settings", namespace=ns, config={"LOG_LEVEL": "info"}),
        PlannedResource(kind="PersistentVolumeClaim", name="hot", namespace=ns, storage=Storage(size="100Gi")),
        PlannedResource(kind="StorageClass", name="cortex-cold", namespace=ns,
                        storage=Storage(provisioner="s3.csi.example.com", parameters={"bucket": "archive"})),
        PlannedResource(kind="PodDisruptionBudget", name="qdrant", namespace=ns, min_available=1),
        PlannedResource(kind="ScaledObject", name="docling-scaler", namespace=ns, target="docling", max_replicas=3,
                        triggers=[ScaleTrigger(type="prometheus", threshold="20", query="sum(rate(up[2m]))",
                                               server_address="http://prometheus.monitoring.svc:9090")]),
        PlannedResource(kind="ScheduledJob", name="reindex", namespace=ns, image="ghcr.io/x/reindex:1.2.0",
                        schedule="*/30 * * * *", command=["reindex", "--all"]),
        PlannedResource(kind="HorizontalPodAutoscaler", name="docling", namespace=ns, target="docling",
                        min_replicas=1, max_replicas=3, cpu_utilization=70, scale_down_seconds=300),
        PlannedResource(kind="ServiceAccount", name="reader", namespace=ns),
        PlannedResource(kind="Role", name="reader", namespace=ns,
                        rbac_rules=[RbacRule(resources=["pods"], verbs=["get", "list"])]),
        PlannedResource(kind="RoleBinding", name="reader", namespace=ns, subject="reader"),
        PlannedResource(kind="NetworkPolicy", name="deny", namespace=ns, deny_all=True,
                        selector={"app.kubernetes.io/name": "qdrant"}),
        PlannedResource(kind="NetworkPolicy", name="allow", namespace=ns, selector={"app": "qdrant"},
                        allow_from=[Peer(namespace="cortex")], ports=[Port(number=6333)]),
        PlannedResource(kind="Certificate", name="docling-tls", namespace=ns, dns_names=["docling.cortex.local"]),
        PlannedResource(kind="SecretRotationCronJob", name="rotate", namespace=ns,
                        target="docling-credentials", schedule="@weekly"),
        PlannedResource(kind="MigrationJob", name="migrate", namespace=ns, image="postgres:16.4",
                        command=["psql", "-f", "/migrations/001.sql"]),
        PlannedResource(kind="BackupCronJob", name="pg-backup", namespace=ns, image="postgres:16.4",
                        schedule="0 2 * * *", command=["pg_dump"]),
        PlannedResource(kind="PrometheusRule", name="alerts", namespace=ns,
                        alerts=[AlertRule(name="High", expr="up == 0")]),
        PlannedResource(kind="VMRule", name="vm-alerts", namespace=ns,
                        alerts=[AlertRule(name="VmHigh", expr="up == 0")]),
        PlannedResource(kind="ServiceMonitor", name="docling", namespace=ns, selector={"app": "docling"},
                        ports=[Port(number=5001, name="http")]),
        PlannedResource(kind="GrafanaDashboard", name="docling", namespace=ns,
                        panels=[Panel(title="up", expr="up")]),
    ])


def test_every_kind_renders_schema_valid_policy_clean_and_traceable(schemas):
    plan = every_kind_plan()
    assert {r.kind for r in plan.resources} == set(KIND_OWNERS) == set(RENDERERS)
    manifests = render_plan(plan, CTX)
    assert schemas.check_all(manifests) == []
    # Clean but for the StorageClass, which is cluster-wide: always a person's call.
    findings = check_all(manifests, PolicySettings())
    assert findings and {(v.rule, v.action, v.object) for v in findings} == {
        ("storage-class", "review", "StorageClass/cortex-cold")}
    for m in manifests:
        assert m["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "cortex-school"
        assert m["metadata"]["annotations"]["cortex-school.io/improvement-id"] == CTX.improvement_id
        assert m["metadata"]["annotations"]["cortex-school.io/source-video"] == CTX.video_id
        assert DNS1123_LABEL.match(m["metadata"]["name"])
    assert not any(m["kind"] == "Secret" for m in manifests)


def test_a_plan_missing_what_a_kind_needs_is_a_plan_error():
    with pytest.raises(PlanError, match="needs an image"):
        render_plan(ImplementationPlan(summary="x", resources=[
            PlannedResource(kind="Deployment", name="x", namespace="cortex-system")]), CTX)


def test_plans_refuse_bad_names_and_schedules():
    with pytest.raises(ValueError):
        PlannedResource(kind="Deployment", name="Bad_Name", namespace="cortex-system")
    with pytest.raises(ValueError):
        PlannedResource(kind="BackupCronJob", name="b", namespace="cortex-system", schedule="rm -rf /")
    with pytest.raises(ValueError):
        PlannedResource(kind="Deployment", name="x", namespace="cortex-system", privileged=True)


# -- schema checks ----------------------------------------------------------------

def deployment(**container):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "namespace": "cortex-system"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [{"name": "c", "image": "i:1", **container}]}}}}


def test_strict_schema_rejects_unknown_fields_and_wrong_types(schemas):
    assert schemas.check(deployment()) == []
    (typo,) = schemas.check(deployment(imagePullPolicyy="Always"))
    assert typo.rule == "schema" and "imagePullPolicyy" in typo.detail
    assert schemas.check(deployment(ports=[{"containerPort": "http"}]))


def test_unknown_kind_is_a_finding_never_a_pass(schemas):
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"}}
    (finding,) = schemas.check(app)
    assert finding.rule == "schema-unknown" and "cannot be validated" in finding.detail


def test_crd_schemas_are_strict(schemas):
    # the five CRDs workers generate, KEDA's ScaledObject, Traefik's Middleware and VictoriaMetrics' VMRule
    assert len(crd_validators()) == 8
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "r", "namespace": "cortex-system"},
            "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}]}}
    assert schemas.check(rule) == []
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "page"  # belongs under labels
    assert schemas.check(rule)[0].rule == "schema"


def test_unsupported_kubernetes_version_fails_at_start():
    with pytest.raises(ValueError, match="KUBERNETES_VERSION"):
        SchemaChecker("0.99.0")


# -- policy ----------------------------------------------------------------------

def rules_of(manifest, policy=POLICY, generated=False):
    return {v.rule for v in check_manifest(manifest, policy, generated=generated)}


def paths_of(manifest, policy=POLICY, generated=False):
    return {v.path.rsplit(".", 1)[-1] for v in check_manifest(manifest, policy, generated=generated)}


def test_policy_blocks_privileged_host_and_root_pods():
    """GIVEN a privileged host-namespace pod WHEN audited THEN each restricted control is named."""
    m = deployment(securityContext={"privileged": True})
    m["spec"]["template"]["spec"].update(hostNetwork=True, hostPID=True,
                                         volumes=[{"name": "root", "hostPath": {"path": "/"}}])
    assert rules_of(m) == {"pod-security"}
    assert paths_of(m) >= {"privileged", "hostNetwork", "hostPID", "volumes[0]", "runAsNonRoot",
                           "allowPrivilegeEscalation", "type", "drop"}
    assert "resources" in rules_of(m, generated=True)


def test_policy_blocks_cluster_admin_wildcards_secret_data_and_foreign_namespaces():
    crb = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": "x"}, "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}}
    assert rules_of(crb) >= {"rbac-binding"}
    assert rules_of(crb, generated=True) >= {"kind"}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "x", "namespace": "cortex-system"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}]}
    assert "rbac" in rules_of(role)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "kube-system"},
              "stringData": {"k": "v"}}
    assert rules_of(secret) >= {"secret-object"}
    assert rules_of(secret, generated=True) >= {"secret-object"}


def test_policy_finds_secret_values_anywhere_and_unpinned_or_foreign_images():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "cortex"},
          "data": {"DATABASE_URL": "postgres://app:hunter2secret@postgres:5432/db"}}
    assert "secret-value" in rules_of(cm)
    env = deployment(env=[{"name": "API_TOKEN", "value": "plain"}], image="nginx")
    policy = POLICY.model_copy(update={"allowed_registries": ["ghcr.io/cortex"]})
    assert rules_of(env, policy, generated=True) >= {"secret-value", "image-pin", "image-registry"}


def test_generated_objects_must_carry_provenance():
    assert "provenance" in rules_of({"apiVersion": "v1", "kind": "ConfigMap",
                                     "metadata": {"name": "c", "namespace": "cortex"}}, generated=True)


def test_the_sample_gitops_tree_report(schemas):
    """The policy and schema checks over a real-world tree (the sample platform): what they find."""
    manifests = [d for f in sorted(GITOPS.rglob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    findings = schemas.check_all(manifests) + check_all(manifests, POLICY, generated=False)
    by_rule = {}
    for v in findings:
        by_rule.setdefault(v.rule, set()).add(v.object)
    print(json.dumps({k: sorted(v) for k, v in by_rule.items()}, indent=1))
    # ArgoCD Applications have no shipped schema: reported, not passed.
    assert any(o.startswith("Application/argocd/") for o in by_rule["schema-unknown"])
    # The sample platform's pods do not meet the restricted profile (no seccomp, no drop
    # ALL), and Traefik is published by a LoadBalancer: reported by the audit.
    assert "Deployment/cortex/redis" in by_rule["pod-security"]
    assert by_rule["service"] == {"Service/traefik/traefik"}


@pytest.mark.parametrize("rule, expected", [
    ({"apiGroups": [""], "resources": ["*"], "verbs": ["get", "list", "watch"]}, "rbac"),
    ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "create", "update",
                                                             "patch", "delete"]}, "rbac"),
    ({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind", "escalate"]},
     "rbac"),
    ({"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}, "rbac"),
    ({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}, "rbac"),
    ({"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}, "rbac"),
])
def test_rbac_that_reaches_secrets_or_escalates_is_blocked(rule, expected):
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": "cortex-system"}, "rules": [rule]}
    assert expected in rules_of(role)


def test_get_on_one_named_secret_is_least_privilege_and_allowed():
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "r", "namespace": "cortex-system"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["docling"],
                       "verbs": ["get"]}]}
    assert rules_of(role) == set()


def test_pods_may_only_reference_secrets_their_change_provides():
    """GIVEN a plan whose pod reads a secret it does not declare WHEN checked THEN the plan
    check and the gate both refuse it, naming the secret."""
    from cortex_school.workers.plan import EnvVar
    from cortex_school.workers.policy import SystemIdentity, check_plan

    plan = ImplementationPlan(summary="x", resources=[PlannedResource(
        kind="Deployment", name="thief", namespace="cortex-system", image="ghcr.io/x/y:1",
        env=[EnvVar(name="PGPASSWORD", secret_name="postgres-credentials", secret_key="password")])])
    (v,) = [v for v in check_all(render_plan(plan, CTX), POLICY) if v.rule == "secret-ref"]
    assert "postgres-credentials" in v.detail and v.path.endswith("secretKeyRef.name")
    (p,) = check_plan(plan, POLICY, SystemIdentity())
    assert p.rule == "plan-ref" and "postgres-credentials" in p.detail
    assert not [v for v in check_all(render_plan(every_kind_plan(), CTX), POLICY) if v.rule == "secret-ref"]
    assert check_plan(every_kind_plan(), POLICY, SystemIdentity()) == []


def test_an_object_that_already_exists_in_the_repository_is_not_taken_over(inventory):
    """GIVEN a plan re-defining the repo's Redis WHEN gated with the repo's facts THEN ownership."""
    from cortex_school.workers.manifest_files import repo_context
    from cortex_school.workers.policy import GateContext, check_change

    imp = make_improvement("Run our own Redis", category="architecture", type="tool",
                           notes="Deploy docker.io/evilcorp/redis:7.4 in cortex on port 6379")
    plan = OfflinePlanner().plan(imp, inventory)
    gate = repo_context(GITOPS, GateContext.default(POLICY))
    clashes = [v for v in check_change(render_plan(plan, CTX), gate) if v.rule == "ownership"]
    assert {(v.rule, v.object) for v in clashes} >= {("ownership", "Deployment/cortex/redis"),
                                                     ("ownership", "Service/cortex/redis")}


@pytest.mark.parametrize("notes", [
    "Alert on 503 errors: expr rate(x[5m]) > 1 for 5m",
    "Put it in the --- namespace with image ghcr.io/a/foo:1.0",
    "Allow from the --x namespace to the qdrant pods; isolate them",
    "NetworkPolicy selecting a/b/c=d, isolate",
    "StatefulSet with ghcr.io/a/db:1.0 on ports " + ", ".join(str(p) for p in range(8000, 8012)),
    "A 100% SLO with burn-rate alerts over http_requests_total",
])
def test_odd_notes_become_manual_steps_never_a_crash(notes, inventory):
    plan = OfflinePlanner().plan(make_improvement("Odd one", notes=notes), inventory)
    assert plan.resources or plan.manual_steps
    render_plan(plan, CTX)
