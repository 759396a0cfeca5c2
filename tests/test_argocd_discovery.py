"""ArgoCD discovered, not guessed: which Applications apply a file of the GitOps repository
(directory, Kustomize and Helm sources; ApplicationSet generators; repo URLs), on real
checkouts of small repositories laid out the way real platforms are."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cortex_school.platform_model import read_inventory
from cortex_school.platform_model.argocd import (
    AppSource,
    Coverage,
    discover,
    list_kustomization_resource,
    normalise_repo_url,
)

REPO = "https://github.com/acme/platform.git"


def write(root: Path, rel: str, docs: list[dict] | str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(docs if isinstance(docs, str) else yaml.safe_dump_all(docs))


def application(name: str, path: str, *, repo: str = REPO, recurse: bool = False, include: str = "",
                exclude: str = "", chart: str = "") -> dict:
    source: dict = {"repoURL": repo, "targetRevision": "main"}
    if chart:
        source["chart"] = chart
    else:
        source["path"] = path
    directory = {k: v for k, v in (("recurse", recurse), ("include", include), ("exclude", exclude)) if v}
    if directory:
        source["directory"] = directory
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": "argocd"},
            "spec": {"project": "default", "source": source, "destination": {"namespace": name}}}


def configmap(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


def coverage(root: Path, overrides: dict[str, str] | None = None) -> Coverage:
    return Coverage(read_inventory(root).app_sources(), root, frozenset(), overrides or {})


def names(cov: Coverage, rel: str) -> list[str]:
    return sorted(s.name for s in cov.covering(rel))


def test_repo_urls_are_compared_normalised():
    same = {normalise_repo_url(u) for u in (
        "https://github.com/acme/platform.git", "https://GitHub.com/acme/platform/", "git@github.com:acme/platform.git",
        "ssh://git@github.com/acme/platform", "https://x-access-token:abc@github.com/acme/platform.git")}
    assert same == {"github.com/acme/platform"}
    assert normalise_repo_url("https://github.com/acme/other") != "github.com/acme/platform"


def test_applications_in_their_own_folder_apply_their_paths_with_recurse_include_exclude(tmp_path):
    """GIVEN Applications under argocd-apps/ (not apps/) WHEN a file is looked up THEN the
    directory rules decide: the path itself, below it only with recurse, include/exclude
    globs; a chart repository's Application applies no file of ours."""
    write(tmp_path, "argocd-apps/apps.yaml", [
        application("web", "apps/web"),
        application("data-all", "apps/data", recurse=True, exclude="*-test.yaml"),
        application("only-rules", "apps/rules", include="{*-rules.yaml,alerts/*}", recurse=True),
        application("falco", "", repo="https://falcosecurity.github.io/charts", chart="falco")])
    for rel in ("apps/web/a.yaml", "apps/web/sub/b.yaml", "apps/data/pg/c.yaml", "apps/data/pg/c-test.yaml",
                "apps/rules/x-rules.yaml", "apps/rules/other.yaml"):
        write(tmp_path, rel, [configmap(Path(rel).stem)])
    cov = coverage(tmp_path)
    assert names(cov, "apps/web/a.yaml") == ["web"]
    assert names(cov, "apps/web/sub/b.yaml") == []  # no recurse
    assert names(cov, "apps/data/pg/c.yaml") == ["data-all"]
    assert names(cov, "apps/data/pg/c-test.yaml") == []  # excluded
    assert names(cov, "apps/rules/x-rules.yaml") == ["only-rules"]
    assert names(cov, "apps/rules/other.yaml") == []  # not included
    assert names(cov, "apps/rules/alerts/new.yaml") == ["only-rules"]  # a file a change would add
    assert names(cov, "apps/web/README.md") == []  # not a manifest


def test_an_application_set_git_directory_generator_is_expanded_into_named_applications(tmp_path):
    """GIVEN an ApplicationSet generating one Application per apps/*/* folder (path.basename
    and goTemplate names, an excluded folder) WHEN discovered THEN each folder has its named
    Application, the excluded folder none."""
    write(tmp_path, "argocd-apps/appsets/workloads.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "workloads", "namespace": "argocd"},
        "spec": {"generators": [{"git": {"repoURL": REPO, "revision": "main", "directories": [
            {"path": "apps/*/*"}, {"path": "apps/_archive/*", "exclude": True}]}}],
            "template": {"metadata": {"name": "{{path[1]}}-{{path.basename}}"},
                         "spec": {"project": "default",
                                  "source": {"repoURL": REPO, "targetRevision": "main", "path": "{{path}}"},
                                  "destination": {"namespace": "{{path[1]}}"}}}}}])
    write(tmp_path, "argocd-apps/appsets/go.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "charts", "namespace": "argocd"},
        "spec": {"goTemplate": True, "generators": [{"git": {"repoURL": REPO, "directories": [{"path": "tools/*"}]}}],
                 "template": {"metadata": {"name": "tool-{{ .path.basename }}"},
                              "spec": {"source": {"repoURL": REPO, "path": "{{ .path.path }}"},
                                       "destination": {"namespace": "tools"}}}}}])
    for rel in ("apps/data/pg/pg.yaml", "apps/web/site/site.yaml", "apps/_archive/old/old.yaml",
                "tools/searxng/deploy.yaml"):
        write(tmp_path, rel, [configmap(Path(rel).stem)])
    sources = read_inventory(tmp_path).app_sources()
    assert {(s.name, s.path, s.generated_by) for s in sources} >= {
        ("data-pg", "apps/data/pg", "workloads"), ("web-site", "apps/web/site", "workloads"),
        ("tool-searxng", "tools/searxng", "charts")}
    cov = coverage(tmp_path)
    assert names(cov, "apps/data/pg/pdb.yaml") == ["data-pg"]
    assert names(cov, "apps/_archive/old/old.yaml") == []
    assert names(cov, "tools/searxng/deploy.yaml") == ["tool-searxng"]
    assert names(cov, "apps/data/new.yaml") == []  # apps/data itself is no generated folder


def test_a_list_generator_and_an_unknown_parameter(tmp_path):
    write(tmp_path, "bootstrap/set.yaml", [{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "envs"},
        "spec": {"generators": [{"list": {"elements": [{"env": "prod"}, {"env": "staging"}]}}],
                 "template": {"metadata": {"name": "site-{{env}}"},
                              "spec": {"source": {"repoURL": REPO, "path": "sites/{{env}}"}}}}},
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": "broken"},
         "spec": {"generators": [{"list": {"elements": [{"env": "prod"}]}}],
                  "template": {"metadata": {"name": "x-{{cluster}}"},
                               "spec": {"source": {"repoURL": REPO, "path": "x"}}}}}])
    sources = read_inventory(tmp_path).app_sources()
    assert sorted((s.name, s.path) for s in sources) == [("site-prod", "sites/prod"), ("site-staging", "sites/staging")]


def test_a_kustomize_source_applies_only_what_its_kustomization_lists(tmp_path):
    """GIVEN an Application on a Kustomize overlay listing ../../base and one file WHEN a new
    file sits beside the overlay THEN it is not applied until the kustomization lists it
    (the change's edit, given as an override), and the base's files are applied."""
    write(tmp_path, "argocd-apps/litellm.yaml", [application("litellm-prod", "apps/litellm/overlays/prod")])
    write(tmp_path, "apps/litellm/base/kustomization.yaml", "resources:\n  - deployment.yaml\n")
    write(tmp_path, "apps/litellm/base/deployment.yaml", [configmap("d")])
    kustomization = "# the prod overlay\nnamespace: ai\nresources:\n  - ../../base\n  - ingress.yaml\npatches:\n  - path: p.yaml\n"
    write(tmp_path, "apps/litellm/overlays/prod/kustomization.yaml", kustomization)
    write(tmp_path, "apps/litellm/overlays/prod/ingress.yaml", [configmap("i")])
    cov = coverage(tmp_path)
    assert cov.tool(cov.sources[0]) == "kustomize"
    assert names(cov, "apps/litellm/base/deployment.yaml") == ["litellm-prod"]
    assert names(cov, "apps/litellm/overlays/prod/ingress.yaml") == ["litellm-prod"]
    new = "apps/litellm/overlays/prod/pdb.yaml"
    assert names(cov, new) == [] and names(cov, "apps/litellm/overlays/prod/p.yaml") == []
    assert cov.kustomization_for(new) == "apps/litellm/overlays/prod/kustomization.yaml"
    edited = list_kustomization_resource(kustomization, "pdb.yaml")
    assert edited.startswith("# the prod overlay\n") and yaml.safe_load(edited)["resources"] == [
        "../../base", "ingress.yaml", "pdb.yaml"]
    assert list_kustomization_resource(edited, "pdb.yaml") == edited  # listed once
    assert names(coverage(tmp_path, {"apps/litellm/overlays/prod/kustomization.yaml": edited}), new) == ["litellm-prod"]
    assert cov.kustomization_for("apps/elsewhere/x.yaml") is None


def test_a_helm_source_applies_no_plain_file_and_values_only_sources_apply_nothing(tmp_path):
    """GIVEN an Application on a chart folder and a multi-source Application (a chart plus a
    $values ref) WHEN files are looked up THEN neither applies a plain manifest."""
    write(tmp_path, "argocd-apps/x.yaml", [
        application("mcp", "charts/mcp"),
        {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "argocd"},
         "spec": {"sources": [{"repoURL": "https://argoproj.github.io/argo-helm", "chart": "argo-cd",
                               "helm": {"valueFiles": ["$repo/bootstrap/values.yaml"]}},
                              {"repoURL": REPO, "ref": "repo"}]}}])
    write(tmp_path, "charts/mcp/Chart.yaml", "apiVersion: v2\nname: mcp\nversion: 0.1.0\n")
    write(tmp_path, "charts/mcp/pdb.yaml", [configmap("p")])
    write(tmp_path, "bootstrap/values.yaml", "server: {}\n")
    write(tmp_path, "root.yaml", [configmap("r")])
    cov = coverage(tmp_path)
    assert names(cov, "charts/mcp/pdb.yaml") == [] and names(cov, "root.yaml") == []


def test_only_applications_of_this_repository_count(tmp_path):
    write(tmp_path, "argocd-apps/x.yaml", [application("ours", "apps/a"),
                                           application("theirs", "apps/a", repo="https://github.com/other/repo")])
    sources = read_inventory(tmp_path).app_sources()
    cov = Coverage(sources, tmp_path, frozenset({normalise_repo_url("git@github.com:acme/platform.git")}))
    assert names(cov, "apps/a/x.yaml") == ["ours"]


def test_discovery_reads_live_applications_too():
    live = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "made-by-hand"},
            "spec": {"source": {"repoURL": REPO, "path": "apps/x", "directory": {"recurse": True}}}}
    (source,) = discover([("live", live)], [])
    assert source == AppSource(name="made-by-hand", repo_url=REPO, path="apps/x", recurse=True, origin="live")


@pytest.mark.parametrize("fixture,file,expected", [
    ("examples/platform-k3s/gitops", "apps/data/postgres/pdb.yaml", {"data"}),
    ("examples/platform-k3s/gitops", "apps/knowledge/qdrant/pdb.yaml", {"knowledge"}),
    ("examples/platform-holdout/gitops", "apps/shipping/label-renderer/pdb.yaml", {"shipping-label-renderer"}),
    ("examples/platform/gitops", "apps/monitoring/x.yaml", {"monitoring-apps"}),
])
def test_the_sample_platforms_layouts_are_discovered(fixture, file, expected):
    root = Path(__file__).resolve().parent.parent / fixture
    assert set(names(coverage(root), file)) == expected
