"""Implementation workers (architecture, integration, security, database, monitoring).

Filled by the implementation issue: each turns an approved improvement's plan into
policy-checked Kubernetes manifests committed to the GitOps repository.
"""
