"""Schema validation of manifests before they are committed.

Built-in kinds: ``kubernetes-validate`` in strict mode (unknown fields are errors) at
the configured Kubernetes version. Custom resources (PrometheusRule, ServiceMonitor,
SealedSecret, Certificate, ExternalSecret, ScaledObject): the upstream CRDs' schemas shipped
in ``schemas/``, made strict the same way; Traefik's Middleware: a schema written here for
the types this system generates only. A kind with no schema at all is a finding
("cannot validate"), never a pass.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, VersionNotSupportedError

from cortex_school.workers.policy import Violation, object_ref

SCHEMA_DIR = Path(__file__).with_name("schemas")


@lru_cache(maxsize=1)
def crd_validators() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) → a jsonschema validator, from the shipped CRD schemas."""
    validators: dict[tuple[str, str], Any] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        schema = json.loads(path.read_text())
        api_versions = schema["properties"]["apiVersion"]["enum"]
        kinds = schema["properties"]["kind"]["enum"]
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        for api_version in api_versions:
            for kind in kinds:
                validators[(api_version, kind)] = cls(schema)
    return validators


class SchemaChecker:
    def __init__(self, kubernetes_version: str) -> None:
        self.version = kubernetes_version
        try:  # fail at start-up on a version the package has no schemas for
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"}},
                kubernetes_version, strict=True)
        except (VersionNotSupportedError, IndexError, ValueError) as exc:
            # IndexError: older than every schema the package ships.
            raise ValueError(f"KUBERNETES_VERSION {kubernetes_version} has no schemas in "
                             f"kubernetes-validate: {exc or 'too old'}") from None

    def check(self, manifest: dict[str, Any]) -> list[Violation]:
        if not isinstance(manifest, dict) or not isinstance(manifest.get("apiVersion"), str) \
                or not isinstance(manifest.get("kind"), str):
            ref = object_ref(manifest) if isinstance(manifest, dict) else "?"
            return [Violation(rule="schema", object=ref,
                              detail="not a Kubernetes object (no apiVersion/kind strings)")]
        ref = object_ref(manifest)
        key = (str(manifest.get("apiVersion", "")), str(manifest.get("kind", "")))
        crd = crd_validators().get(key)
        if crd is not None:
            errors = sorted(crd.iter_errors(manifest), key=lambda e: list(e.absolute_path))
            return [Violation(rule="schema", object=ref, detail=_describe(e)) for e in errors[:5]]
        try:
            kubernetes_validate.validate(manifest, self.version, strict=True)
        except SchemaNotFoundError:
            return [Violation(rule="schema-unknown", object=ref, detail=(
                f"no schema for {key[0]} {key[1]} (Kubernetes {self.version} or the shipped "
                "CRDs): cannot be validated, so it is not committed"))]
        except kubernetes_validate.ValidationError as exc:
            return [Violation(rule="schema", object=ref, detail=_describe(exc))]
        except kubernetes_validate.InvalidSchemaError as exc:
            return [Violation(rule="schema", object=ref, detail=f"invalid schema: {exc}"[:300])]
        return []

    def check_all(self, manifests: list[dict[str, Any]]) -> list[Violation]:
        return [v for m in manifests for v in self.check(m)]


def _describe(error: Any) -> str:
    """The first line of a jsonschema error with where it happened (the full text embeds
    the whole schema)."""
    where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    return f"{where}: {str(error.message).splitlines()[0][:300]}"
