"""The platform model on hostile input: a GitOps repository and a proposal's text written to
break it. Nothing may raise, hang or take super-linear time; what cannot be read is
listed in ``inventory.unreadable`` with its reason, or ignored."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cortex_school.platform_model import Platform, build_platform, read_inventory
from cortex_school.platform_model import argocd
from cortex_school.platform_model import model as platform_model
from cortex_school.platform_model.mentions import mentions
from cortex_school.validation.already_deployed import AlreadyDeployedCheck
from cortex_school.validation.dependencies import PlatformDependencyCheck
from tests.factories import make_improvement

APP = "apiVersion: argoproj.io/v1alpha1\nkind: Application\n"
APPSET = "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\n"


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def model(root: Path) -> Platform:
    """The whole pipeline a validate worker runs on a checkout."""
    return build_platform(read_inventory(root))


def reasons(root: Path) -> dict[str, str]:
    return dict(read_inventory(root).unreadable)


def run_checks(platform: Platform, text: str) -> None:
    """Every entry point that reads a proposal's text."""
    mentions(text, platform)
    improvement = make_improvement(text, notes=text)
    AlreadyDeployedCheck(lambda: platform).run(improvement)
    PlatformDependencyCheck(lambda: platform).run(improvement)


# -- shapes no Kubernetes object has -----------------------------------------------------

ODD_FILES: dict[str, dict[str, str | bytes]] = {
    "top-level list, scalar, null": {"a.yaml": "- 1\n- [2]\n- null\n---\n5\n---\nnull\n"},
    "metadata a list or a number": {"a.yaml": "kind: Deployment\nmetadata: [1]\n---\nkind: Pod\nmetadata: 5\n"},
    "labels with odd values": {"a.yaml": "kind: Deployment\nmetadata: {name: x, labels: {app: {a: 1}, 1: 2, "
                                         "null: [1], 2001-01-01: b}}\n"},
    "spec.template a string, matchLabels a number": {
        "a.yaml": "kind: Deployment\nmetadata: {name: x}\nspec: {template: str, selector: {matchLabels: 5}}\n"},
    "containers a dict, ports strings": {
        "a.yaml": "kind: Deployment\nmetadata: {name: x}\nspec: {template: {spec: {containers: {a: 1}}}}\n---\n"
                  "kind: Deployment\nmetadata: {name: y}\nspec: {template: {spec: {containers: [{image: 5, "
                  "ports: x}, {ports: ['80', {containerPort: '80'}, {containerPort: 99999999999999999999}]}]}}}\n"},
    "Chart.yaml empty": {"c/Chart.yaml": ""},
    "Chart.yaml a list": {"c/Chart.yaml": "- 1\n- name: x\n  dependencies: 5\n"},
    "Chart.yaml dependencies: 5": {"c/Chart.yaml": "name: x\ndependencies: 5\nversion: {a: 1}\n"},
    "Chart.yaml odd names": {"c/Chart.yaml": "name: [1]\ndependencies: [5, {name: [1]}, {name: 0}]\n"},
    "values with odd images": {"c/Chart.yaml": "name: x\n",
                               "c/values.yaml": "image: 5\nb: {image: {repository: [1]}}\n"
                                                "c: {image: {repository: r, registry: [1], tag: [1]}}\nd: {enabled: 5}\n"},
    "kustomization with odd fields": {
        "k/kustomization.yaml": "namespace: ns\nresources: [../../../../etc, 5, '', /, ../../../../etc/passwd]\n"
                                "images: x\nhelmCharts: {}\n"},
    "kustomization odd entries": {
        "k/kustomization.yaml": "images: [5, {name: [1]}, {newName: x, newTag: [1]}]\n"
                                "helmCharts: [5, {name: x, valuesInline: 5, namespace: [1]}]\nnamespace: [1]\n"},
    "kustomization a list or a scalar": {"k/kustomization.yaml": "- 1\n", "l/kustomization.yaml": "5\n"},
    "Application spec null": {"a.yaml": APP + "metadata: {name: a}\nspec: null\n"},
    "Application source [] and sources [5]": {
        "a.yaml": APP + "metadata: {name: a, namespace: [1]}\nspec: {source: [], sources: [5], destination: 5}\n---\n"
                  + APP + "metadata: {name: b}\nspec: {source: {path: [1], chart: {a: 1}, helm: {values: 5, "
                  "valuesObject: [1]}, directory: {include: [1], exclude: 5, recurse: 1}}}\n"},
    "ApplicationSet odd generators": {
        "a.yaml": APPSET + "metadata: {name: a}\nspec: {generators: [{git: x}, {git: {directories: {}}}, "
                  "{git: {directories: [5, {path: [1]}, {path: '[', exclude: true}, {path: '***'}]}}, "
                  "{matrix: 5}, {matrix: {generators: 5}}], template: 5}\n"},
    "not UTF-8": {"a.yaml": b"\xff\xfe\x00kind: x", "c/Chart.yaml": b"\xff", "k/kustomization.yaml": b"\xc3\x28"},
    "YAML a constructor refuses": {"a.yaml": "? [a]\n: b\n---\n<<: 5\n---\nt: 2001-13-45\n---\nx: !!binary zz\n"
                                             "---\nn: " + "9" * 5000 + "\n---\nx: !!python/object:os.system y\n"},
    "self-referencing aliases": {"a.yaml": "&a [*a]\n---\n&b {kind: Pod, metadata: {name: p}, spec: *b}\n"},
    "kind: List with odd items": {"a.yaml": "kind: List\nitems: [5, null, [1], {kind: Pod, metadata: {name: p}}]\n"},
}


@pytest.mark.parametrize("files", ODD_FILES.values(), ids=list(ODD_FILES))
def test_files_of_odd_shapes_are_read_or_listed_never_raised(tmp_path, files):
    """GIVEN files whose YAML is not the shape Kubernetes expects WHEN the model is built THEN it is built."""
    for rel, text in files.items():
        write(tmp_path, rel, text)
    platform = model(tmp_path)
    run_checks(platform, "Deploy Qdrant and add a PDB for the x Deployment.")


def test_folders_with_manifest_names_are_listed_as_unreadable(tmp_path):
    """GIVEN Chart.yaml, values.yaml and kustomization.yaml that are folders WHEN read THEN each is listed unreadable."""
    for rel in ("c/Chart.yaml", "c/values.yaml", "k/kustomization.yaml"):
        (tmp_path / rel).mkdir(parents=True)
    assert {"c/Chart.yaml", "c/values.yaml"} <= set(reasons(tmp_path))


# -- names a path cannot have; symlinks ----------------------------------------------------


def test_a_kustomization_resource_with_a_nul_byte_is_skipped(tmp_path):
    """GIVEN a kustomization listing a resource with a NUL byte WHEN read THEN no ValueError and the rest is read."""
    write(tmp_path, "k/kustomization.yaml", 'namespace: ns\nresources: ["a\\0b", cm.yaml]\n')
    write(tmp_path, "k/cm.yaml", "kind: ConfigMap\nmetadata: {name: c}\n")
    assert [o.namespace for o in read_inventory(tmp_path).objects] == ["ns"]


def test_a_kustomization_resource_that_is_a_symlink_loop_is_skipped(tmp_path):
    """GIVEN an applied kustomization listing a symlink loop WHEN read THEN no RuntimeError from resolve()."""
    write(tmp_path, "k/kustomization.yaml", "namespace: ns\nresources: [loop, ../x]\n")
    (tmp_path / "k/loop").symlink_to(tmp_path / "k/loop")
    (tmp_path / "x").symlink_to(tmp_path / "x")
    write(tmp_path, "app.yaml", APP + "metadata: {name: a}\nspec: {source: {path: k}}\n")
    assert [a.name for a in read_inventory(tmp_path).applications] == ["a"]


def test_symlink_loops_and_links_to_outside_folders_are_not_followed(tmp_path):
    """GIVEN a file symlink loop, a folder link to the repo itself and one to /etc WHEN read THEN the walk ends."""
    (tmp_path / "a.yaml").symlink_to(tmp_path / "b.yaml")
    (tmp_path / "b.yaml").symlink_to(tmp_path / "a.yaml")
    (tmp_path / "self").symlink_to(tmp_path)
    (tmp_path / "etc").symlink_to("/etc")
    write(tmp_path, "c/Chart.yaml", "name: c\n")
    (tmp_path / "c/values.yaml").symlink_to(tmp_path / "c/values.yaml")
    inv = read_inventory(tmp_path)
    assert inv.objects == [] and "c/values.yaml" in dict(inv.unreadable)


def test_a_manifest_symlinked_to_a_file_outside_the_repository_is_not_read(tmp_path):
    """GIVEN a.yaml linking to a file outside the checkout WHEN read THEN it is listed unreadable, not read."""
    outside = write(tmp_path, "outside/secret.yaml", "kind: Secret\nmetadata: {name: leaked}\n")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.yaml").symlink_to(outside)
    inv = read_inventory(repo)
    assert inv.objects == [] and "symlink out of the repository" in dict(inv.unreadable)["a.yaml"]


@pytest.mark.timeout(20)
@pytest.mark.parametrize("rel", ["c/Chart.yaml", "c/values.yaml", "k/kustomization.yaml"])
def test_a_chart_or_kustomization_file_linked_to_dev_zero_is_not_read(tmp_path, rel):
    """GIVEN Chart.yaml, values.yaml or kustomization.yaml linking to /dev/zero WHEN read THEN no endless read."""
    write(tmp_path, "c/Chart.yaml", "name: c\n")
    (tmp_path / rel).unlink(missing_ok=True)
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).symlink_to("/dev/zero")
    assert rel in reasons(tmp_path)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("rel", ["c/Chart.yaml", "c/values.yaml", "k/kustomization.yaml"])
def test_a_chart_or_kustomization_file_that_is_a_fifo_does_not_block(tmp_path, rel):
    """GIVEN Chart.yaml, values.yaml or kustomization.yaml that is a FIFO WHEN read THEN listed as not a regular file."""
    write(tmp_path, "c/Chart.yaml", "name: c\n")
    (tmp_path / rel).unlink(missing_ok=True)
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(tmp_path / rel)
    assert reasons(tmp_path)[rel] == "not a regular file"


def test_paths_too_long_to_stat_are_left_out(tmp_path):
    """GIVEN folders nested past PATH_MAX WHEN read THEN no ENAMETOOLONG OSError and the shallower files are read."""
    write(tmp_path, "a.yaml", "kind: Pod\nmetadata: {name: p}\n")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for _ in range(200):
            os.mkdir("d" * 30)
            os.chdir("d" * 30)
        Path("Chart.yaml").write_text("name: deep\n")
        Path("b.yaml").write_text("kind: Pod\nmetadata: {name: q}\n")
    finally:
        os.chdir(cwd)
    assert [o.name for o in model(tmp_path).inventory.objects] == ["p"]


# -- nesting ---------------------------------------------------------------------------------


def test_block_style_nesting_under_the_parser_limit_is_refused(tmp_path):
    """GIVEN a file of 999 nested block sequences (no brackets) WHEN read THEN listed as too deep, no RecursionError."""
    write(tmp_path, "a.yaml", "- " * 999 + "x\n")
    write(tmp_path, "b.yaml", "kind: Pod\nmetadata:\n  name: p\n  labels:\n    app:\n" + "    - " * 900 + "x\n")
    found = reasons(tmp_path)
    assert "nested deeper" in found["a.yaml"] and "nested deeper" in found["b.yaml"]


@pytest.mark.parametrize("values", ["[" * 5000, "t: 2001-13-45", "n: " + "9" * 5000, "a: &a [*a]",
                                    "x: !!python/object:os.system y", "a: {b: 1", "- " * 999 + "x"])
def test_application_inline_helm_values_that_cannot_be_parsed_are_ignored(tmp_path, values):
    """GIVEN an Application whose helm.values string is hostile YAML WHEN read THEN the chart is kept, no exception."""
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"},
           "spec": {"source": {"repoURL": "https://charts.example", "chart": "falco", "helm": {"values": values}}}}
    write(tmp_path, "app.json", json.dumps(app))  # a JSON string: its brackets are not the file's nesting
    assert [c.name for c in model(tmp_path).inventory.charts] == ["falco"]


@pytest.mark.slow
def test_large_values_files_are_read_or_refused(tmp_path):
    """GIVEN values.yaml with 110k images (220k nodes) WHEN read THEN it is refused by the node cap."""
    write(tmp_path, "c/Chart.yaml", "name: c\n")
    write(tmp_path, "c/values.yaml", "".join(f"k{i}: {{image: r{i}}}\n" for i in range(110_000)))
    assert "expands to more than" in reasons(tmp_path)["c/values.yaml"]


# -- size: nothing quadratic in the repository ------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(20)
def test_many_chart_folders_and_files_are_read_in_linear_time(tmp_path):
    """GIVEN 3000 chart folders and 3000 manifest folders WHEN read THEN not files x charts path comparisons."""
    for i in range(3000):
        write(tmp_path, f"charts/c{i}/Chart.yaml", f"name: c{i}\n")
        write(tmp_path, f"m/m{i}/x.yaml", f"kind: ConfigMap\nmetadata: {{name: c{i}}}\n")
    inv = read_inventory(tmp_path)
    assert len(inv.charts) == 3000 and len(inv.objects) == 3000


@pytest.mark.timeout(20)
def test_many_objects_of_one_component_are_collected_in_linear_time(tmp_path):
    """GIVEN 18000 Deployments labelled app=qdrant WHEN the platform is built THEN not objects x objects comparisons."""
    for f in range(9):
        write(tmp_path, f"f{f}.yaml", "".join(f"---\nkind: Deployment\nmetadata: {{name: d{f}-{i}, "
                                              "labels: {app: qdrant}}\n" for i in range(2000)))
    assert len(model(tmp_path).components["qdrant"].objects) == 18000


def test_directory_generators_beyond_the_match_budget_are_listed(tmp_path, monkeypatch):
    """GIVEN more ApplicationSet patterns x folders than the budget WHEN read THEN the rest are listed, not matched."""
    monkeypatch.setattr(argocd, "MAX_GENERATOR_MATCHES", 50)
    write(tmp_path, "set.yaml", "".join(
        f"---\n{APPSET}metadata: {{name: s{i}}}\nspec: {{generators: [{{git: {{directories: [{{path: 'apps/a{i}'}}]}}}}],"
        " template: {metadata: {name: '{{path.basename}}'}, spec: {source: {path: '{{path}}'}}}}\n"
        for i in range(20)))
    for i in range(20):
        write(tmp_path, f"apps/a{i}/x.yaml", f"kind: ConfigMap\nmetadata: {{name: c{i}}}\n")
    inv = read_inventory(tmp_path)
    assert any("directory generators not matched" in why for _, why in inv.unreadable)
    assert inv.find("ConfigMap", "", "c0").deployed is True  # within the budget: matched as before


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_thousands_of_application_sets_over_thousands_of_folders_stay_bounded(tmp_path):
    """GIVEN 4000 ApplicationSets with a glob each and 4000 folders WHEN read THEN the match budget bounds it."""
    write(tmp_path, "set.yaml", "".join(
        f"---\n{APPSET}metadata: {{name: s{i}}}\nspec: {{generators: [{{git: {{directories: [{{path: 'q{i}*/*'}}]}}}}]}}\n"
        for i in range(4000)))
    for i in range(4000):
        write(tmp_path, f"apps/a{i}/x.yaml", f"kind: ConfigMap\nmetadata: {{name: c{i}}}\n")
    assert any("directory generators not matched" in why for _, why in read_inventory(tmp_path).unreadable)


# -- proposal text -----------------------------------------------------------------------------


@pytest.fixture
def platform(tmp_path) -> Platform:
    write(tmp_path, "a.yaml", "kind: Deployment\nmetadata: {name: qdrant, namespace: k, labels: {app: a-b}}\n"
                              "---\nkind: Deployment\nmetadata: {name: redis, namespace: k}\n")
    return model(tmp_path)


@pytest.mark.parametrize("text", [
    "deploy redis and qdrant. " * 40_000,  # 1 MB
    " ".join(f"w{i}" for i in range(100_000)),  # 100k words
    "\n" * 1_000_000,
    "dерlоy Qdrаnt, іnstall rеdis İİİ ß ﬁ " * 500,  # Cyrillic homoglyphs, case-changing letters
    "".join(chr(c) for c in range(0x20, 0x3000)) * 2,
    "\x00" * 20_000,
    "\ud800 deploy redis",  # a lone surrogate
    ", " * 10_000, "redis:" * 4000, "a/" * 10_000, "a/b:" * 5000,
], ids=["1MB", "100k-words", "newlines", "homoglyphs", "unicode", "nul", "surrogate", "commas", "colons",
        "slashes", "image-like"])
def test_odd_proposal_texts_are_read(platform, text):
    """GIVEN a proposal text that is huge, odd or not words WHEN mentions and both checks run THEN no exception."""
    run_checks(platform, text)


@pytest.mark.timeout(20)
def test_long_whitespace_runs_are_split_in_linear_time(platform):
    """GIVEN clauses of 20k spaces, tabs or no-break spaces WHEN checked THEN the clause regex does not backtrack."""
    for blank in (" ", "\t", "\u00a0", " \t"):
        run_checks(platform, "x" + blank * (20_000 // len(blank)) + "y")


@pytest.mark.timeout(20)
def test_long_dotted_or_dashed_words_are_scanned_for_images_in_linear_time(platform):
    """GIVEN 20k characters of a.a.a. or a-a-a- WHEN checked THEN the image regex is not tried from every word."""
    for word in ("a.", "a-"):
        run_checks(platform, word * 10_000)


@pytest.mark.timeout(20)
def test_a_component_named_thousands_of_times_is_read_in_linear_time(platform):
    """GIVEN a clause naming components 5000 times WHEN checked THEN each mention does not re-lowercase the clause."""
    for text in ("a b " * 5000, "a  b " * 4000, "redis " * 3300, "deploy a b " * 1800, "qdrant a b " * 2200,
                 "relies on a b " * 1400):
        run_checks(platform, text)


def test_an_image_of_an_own_component_is_still_recognised(platform):
    """GIVEN text naming registry.example/team/a-b:1 WHEN read THEN the platform's own component a-b is found."""
    assert [m.component for m in mentions("Roll out registry.example/team/a-b:1.2", platform)] == ["a-b"]
