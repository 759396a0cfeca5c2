"""The design's router, exactly, plus secondary experts."""

import pytest

from cortex_school.router import route, route_to_expert
from cortex_school.settings import EXPERTS


@pytest.mark.parametrize("category", EXPERTS)
def test_category_map_routes_each_expert_category_to_itself(category):
    """GIVEN a neutral description WHEN routed THEN the category's own expert is chosen."""
    assert route_to_expert(category, "Add a readiness probe to the ingest pipeline")[0] == category


@pytest.mark.parametrize("category", ["knowledge", "skill", "capability", "mlops"])
def test_unknown_categories_go_to_architecture(category):
    expert, reason = route_to_expert(category, "Learn how vector search ranks results")
    assert expert == "architecture"
    assert "default" in reason


@pytest.mark.parametrize(
    "description,expected",
    [
        ("Harden Grafana SECURITY headers", "security"),
        ("Add OAuth login to Langflow", "security"),  # 'auth' substring, as the design does
        ("Encrypt Qdrant snapshots at rest", "security"),
        ("Tune the Postgres connection pool", "database"),
        ("Add a Redis memory alert", "database"),
        ("Shard the database by tenant", "database"),
    ],
)
def test_keyword_overrides_beat_the_category(description, expected):
    """GIVEN a monitoring item whose text has override words THEN the override wins."""
    assert route_to_expert("monitoring", description)[0] == expected


def test_security_words_are_checked_before_database_words():
    assert route_to_expert("networking", "Encrypt Postgres replication traffic")[0] == "security"


def test_secondary_experts_are_other_domains_the_text_touches():
    routing = route(
        "monitoring",
        "Add a Redis memory alert",
        "Create a PrometheusRule and a Grafana dashboard; expose it through the Traefik ingress.",
    )
    assert routing.expert == "database"
    assert "monitoring" in routing.secondary_experts  # its own category, overridden
    assert "networking" in routing.secondary_experts
    assert "database" not in routing.secondary_experts


def test_secondary_cues_match_word_starts_not_substrings():
    routing = route("architecture", "Catalog the dialog boxes", "")
    assert "monitoring" not in routing.secondary_experts
    assert routing.secondary_experts == []
