"""Clients of the systems around the pipeline: the GitOps repository (git) and the
cluster (the Kubernetes API with ArgoCD, Prometheus, or the simulation). Each maps its
failures onto :mod:`cortex_school.errors`. The LLM backends live with the experts
(:mod:`cortex_school.experts`), the state store in :mod:`cortex_school.store`."""
