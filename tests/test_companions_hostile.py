"""The companion and placement rules against the shapes an adversarial review found: a
root-level target, paths that leave the tree, a policy or budget that cuts a served workload
off, a generated Application whose name is taken, a matrix that explodes, a kustomization
that cannot be edited as a line, and an autoscaler that queries the API server."""

from __future__ import annotations

import os

import pytest
import yaml

from cortex_school.clients.gitops import GitOpsConflict, GitOpsRepo, ensure_bare_remote, list_kustomization_resource
from cortex_school.delivery import argocd_apps_for
from cortex_school.platform_model import load_platform, read_inventory
from cortex_school.workers import render_resources
from cortex_school.workers.placement import governing_kustomization, place
from tests.test_companions import AUTHOR, CTX, REPO, a_platform, gate, plan_for, workload, world, write
from tests.timebox import within


def test_a_target_at_the_repository_root_gets_a_root_file_and_no_hang(tmp_path):
    """GIVEN a workload whose file sits at the repository root WHEN its companion is placed
    THEN the file is ``<name>.yaml`` at the root (not ``/<name>.yaml``) and looking for the
    governing kustomization ends (it looped forever on "/", holding the namespace lease)."""
    root = a_platform(tmp_path)
    write(root, "scraper.yaml", [workload("Deployment", "scraper", "tools", {"app": "scraper"},
                                          "ghcr.io/acme/scraper:1.0", 8080)])
    write(root, "argocd-apps/root.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "root", "namespace": "argocd"},
        "spec": {"source": {"repoURL": REPO, "path": "."}, "destination": {"namespace": "tools"}}}])
    plan, platform = plan_for(root, "Add a PodDisruptionBudget for the scraper Deployment", "maxUnavailable: 1")
    assert [r.companion_of for r in plan.resources] == ["Deployment/tools/scraper"]
    with within(5):
        placed = place(render_resources(plan, CTX), platform, "tools")
        assert governing_kustomization(platform, "x.yaml") is None
        assert governing_kustomization(platform, "/x.yaml") is None
    assert list(placed.files) == ["scraper-poddisruptionbudget.yaml"]
    write(root, "kustomization.yaml", "resources:\n  - scraper.yaml\n")
    assert governing_kustomization(load_platform(root), "scraper-poddisruptionbudget.yaml") == "kustomization.yaml"


@pytest.mark.parametrize("rel", ["/etc/cron.d/x.yaml", "../outside.yaml", "apps/../../outside.yaml",
                                 ".git/hooks/post-checkout", "apps/.git/config", "apps//x.yaml", "apps\\x.yaml",
                                 "linked/x.yaml"])
def test_a_commit_writes_only_plain_paths_inside_the_repository(tmp_path, rel):
    """Absolute paths, ``..``, the ``.git`` folder and a path through a symbolic link in
    the repository (one pointing out of it) are refused before anything is written."""
    seed = tmp_path / "seed"
    write(seed, "apps/tools/a.yaml", "kind: ConfigMap\n")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(str(tmp_path / "elsewhere"), seed / "linked")
    remote = ensure_bare_remote(tmp_path / "remote.git", "main", seed)
    repo = GitOpsRepo(remote=str(remote), branch="main", workdir=tmp_path / "clones", author=AUTHOR)
    with pytest.raises(GitOpsConflict):
        repo.commit_improvement("0123456789abcdef", {rel: "kind: ConfigMap\n"}, "x\n\nImprovement-Id: 0123456789abcdef")
    assert not (tmp_path / "outside.yaml").exists() and not (tmp_path / "elsewhere" / "x.yaml").exists()


def test_a_companion_network_policy_may_admit_traffic_only(tmp_path):
    """A policy over the reranker (which the change does not run) that also isolates its
    egress is refused (its DNS and dependencies would be cut off); one with no ingress
    rule denies it everything and goes to a person."""
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Allow only the API to reach the reranker with a NetworkPolicy",
                       "Add a NetworkPolicy in knowledge selecting app: reranker that allows ingress on TCP 8080 "
                       "only from pods labelled app: rag-api in the same namespace.")
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert gate(root, [manifest]) == []
    egress = yaml.safe_load(yaml.safe_dump(manifest))
    egress["spec"]["policyTypes"] = ["Ingress", "Egress"]
    assert [(v.rule, v.action) for v in gate(root, [egress])] == [("network-policy", "refuse")]
    closed = yaml.safe_load(yaml.safe_dump(manifest))
    closed["spec"].pop("ingress")
    (v,) = gate(root, [closed])
    assert (v.rule, v.action) == ("network-policy", "review") and "denies all traffic" in v.detail


def test_a_budget_is_judged_at_the_autoscalers_floor(tmp_path):
    """minAvailable 1 over the reranker (2 replicas) passes alone; with an HPA of the same
    change, or of the repository, allowing it down to 1 replica it leaves no pod to evict."""
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Add a PodDisruptionBudget to the reranker Deployment", "minAvailable: 1 with the "
                       "selector app: reranker.")
    (pdb,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert gate(root, [pdb]) == []
    plan, _ = plan_for(root, "CPU-based HorizontalPodAutoscaler for the reranker between 1 and 4 replicas",
                       "autoscaling/v2 HPA targeting 70% CPU utilisation.")
    (hpa,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    assert [(v.rule, v.action) for v in gate(root, [hpa])] == [("autoscaler", "review")]  # below its 2 replicas
    assert sorted((v.rule, v.action) for v in gate(root, [pdb, hpa])) == [("autoscaler", "review"),
                                                                       ("disruption-budget", "review")]
    write(root, "apps/knowledge/reranker/hpa.yaml", [hpa])  # the repository's own autoscaler (its floor: 1)
    assert [(v.rule, v.action) for v in gate(root, [pdb])] == [("disruption-budget", "review")]


def test_a_generated_application_whose_name_is_taken_is_a_problem(store, tmp_path):
    """The ApplicationSet over apps/* would generate 'embeddings' for a new apps/embeddings/
    folder, but the Application 'embeddings' already exists (it builds kustomize/embeddings):
    ArgoCD keeps that one, so nothing would apply the new file."""
    _, repo, cluster, cfg, _ = world(store, tmp_path, a_platform(tmp_path / "seed"))
    try:
        root = repo.sync()
        new = "apps/embeddings/cache/cache-configmap.yaml"
        apps, problems = argocd_apps_for(cluster, root, [new], cfg, overrides={new: "kind: ConfigMap\n"})
        assert apps == [] and len(problems) == 1 and "already exists" in problems[0], problems
        fine = "apps/search/meili/meili-configmap.yaml"
        assert argocd_apps_for(cluster, root, [fine], cfg, overrides={fine: "kind: ConfigMap\n"}) == (["search"], [])
    finally:
        cluster.reset()


def test_a_matrix_of_two_large_lists_is_cut_while_it_is_built(tmp_path):
    """5000 × 5000 list elements would be 25 million parameter sets: the product stops at
    the cap, in well under a few seconds."""
    elements = [{"n": str(i)} for i in range(5000)]
    write(tmp_path, "argocd-apps/big.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "big"},
        "spec": {"generators": [{"matrix": {"generators": [{"list": {"elements": elements}},
                                                           {"list": {"elements": [{"m": e["n"]} for e in elements]}}]}}],
                 "template": {"metadata": {"name": "a-{{n}}-{{m}}"},
                              "spec": {"source": {"repoURL": REPO, "path": "x/{{n}}/{{m}}"}}}}}])
    with within(20):
        sources = read_inventory(tmp_path).app_sources()
    assert 0 < len(sources) <= 5000


@pytest.mark.parametrize("text", ["resources: [a.yaml, b.yaml]\n", "resources:\n- a.yaml\nresources2: x\n",
                                  "resources: a.yaml\n", "- a.yaml\n"])
def test_a_kustomization_that_cannot_take_a_line_goes_to_a_person(text):
    """A flow-style list (appending a block would duplicate the key), a scalar, a file that
    is no mapping: the line edit is checked against the parsed result and refused when it
    did anything but add the entry."""
    if text.startswith("resources:\n- a.yaml\nresources2"):
        edited = list_kustomization_resource(text, "p.yaml")  # block style with a sibling key: fine
        assert yaml.safe_load(edited) == {"resources": ["a.yaml", "p.yaml"], "resources2": "x"}
        return
    with pytest.raises(GitOpsConflict):
        list_kustomization_resource(text, "p.yaml")


def test_a_keda_trigger_never_queries_the_api_server_or_the_systems_own_services(tmp_path):
    root = a_platform(tmp_path)
    plan, _ = plan_for(root, "Scale the reranker with a KEDA ScaledObject",
                       "Create a ScaledObject in knowledge targeting Deployment reranker with minReplicaCount 1 and "
                       "maxReplicaCount 3, using a prometheus trigger on sum(rate(http_requests_total[2m])) with "
                       "threshold 20 and serverAddress http://kps-prometheus.observability.svc:9090.")
    (manifest,) = [m for _, ms in render_resources(plan, CTX) for m in ms]
    manifest["spec"]["minReplicaCount"] = 2  # the reranker's own replicas
    assert gate(root, [manifest]) == []
    for address in ("https://kubernetes.default.svc:443", "http://redis.cortex-system.svc:6379"):
        m = yaml.safe_load(yaml.safe_dump(manifest))
        m["spec"]["triggers"][0]["metadata"]["serverAddress"] = address
        assert [v.rule for v in gate(root, [m])] == ["autoscaler"], address


def test_a_middleware_never_takes_the_traefik_name_of_another(tmp_path):
    """Traefik calls a Middleware <namespace>-<name>: knowledge/admin-auth would replace
    knowledge-admin/auth (another team's forwardAuth): refused; its own plain name passes."""
    from cortex_school.workers.plan import ImplementationPlan, PlannedResource, TraefikMiddleware

    root = a_platform(tmp_path)
    write(root, "apps/knowledge-admin/auth.yaml", [{
        "apiVersion": "traefik.io/v1alpha1", "kind": "Middleware", "metadata": {"name": "auth", "namespace": "knowledge-admin"},
        "spec": {"forwardAuth": {"address": "http://oauth2-proxy.knowledge-admin.svc/oauth2/auth"}}}])

    def mw(name: str) -> list:
        plan = ImplementationPlan(summary="x", resources=[PlannedResource(
            kind="Middleware", name=name, namespace="knowledge", middleware=TraefikMiddleware(type="compress"))])
        return [(v.rule, v.path) for v in gate(root, [m for _, ms in render_resources(plan, CTX) for m in ms])]

    assert ("middleware", "metadata.name") in mw("admin-auth")
    assert mw("compress") == []


def test_a_volume_is_never_mounted_on_tmp_nor_shared_by_replicas_on_one_node_claim():
    from cortex_school.settings import PolicySettings
    from cortex_school.workers.plan import ImplementationPlan, PlannedResource, Port, Storage
    from cortex_school.workers.policy import SystemIdentity, check_plan

    for path in ("/tmp", "/tmp/x", "/", "/a/../etc"):
        with pytest.raises(ValueError):
            Storage(size="1Gi", mount_path=path)
    plan = ImplementationPlan(summary="x", resources=[PlannedResource(
        kind="Deployment", name="web", namespace="tools", image="traefik/whoami:v1.10.3", replicas=3,
        ports=[Port(number=80)], storage=Storage(size="1Gi"))])
    policy = PolicySettings(allowed_namespaces=["tools"])
    assert [v.path for v in check_plan(plan, policy, SystemIdentity.from_policy(policy))] == ["resources[0].storage"]


def test_a_change_without_a_workload_keeps_its_files_in_one_folder(tmp_path):
    from cortex_school.workers.plan import AlertRule, ImplementationPlan, Panel, PlannedResource

    root = a_platform(tmp_path)
    plan = ImplementationPlan(summary="x", resources=[
        PlannedResource(kind="PrometheusRule", name="rag-alerts", namespace="knowledge",
                        alerts=[AlertRule(name="RagDown", expr="up == 0")]),
        PlannedResource(kind="GrafanaDashboard", name="rag-dash", namespace="knowledge",
                        panels=[Panel(title="up", expr="up")])])
    placed = place(render_resources(plan, CTX), load_platform(root), "knowledge")
    assert {f.rsplit("/", 1)[0] for f in placed.files} == {"apps/knowledge/rag-alerts"}


def test_generated_applications_outside_the_argocd_namespace_are_named_as_the_cluster_names_them(tmp_path):
    """An ApplicationSet in team-a generates team-a's Applications: on the live cluster they
    are team-a/<name>, and a same-named Application in argocd is no collision."""
    from cortex_school.clients.cluster.argo import AppSource
    from cortex_school.settings import DeploySettings

    write(tmp_path, "argocd-apps/team-a.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "team-a", "namespace": "team-a"},
        "spec": {"generators": [{"git": {"repoURL": REPO, "directories": [{"path": "apps/team-a/*"}]}}],
                 "template": {"metadata": {"name": "{{path.basename}}", "namespace": "team-a"},
                              "spec": {"source": {"repoURL": REPO, "path": "{{path}}"}}}}}])
    write(tmp_path, "apps/team-a/old/cm.yaml", "kind: ConfigMap\nmetadata: {name: x}\n")

    class Live:
        app_namespaces = ("team-a",)

        def applications(self):
            return [AppSource(name="team-a/old", repo_url=REPO, path="apps/team-a/old", namespace="team-a"),
                    AppSource(name="web", repo_url=REPO, path="apps/web", namespace="argocd")]

    new = "apps/team-a/web/web-configmap.yaml"
    assert argocd_apps_for(Live(), tmp_path, [new], DeploySettings(), overrides={new: "kind: ConfigMap\n"}) == (
        ["team-a/web"], [])
