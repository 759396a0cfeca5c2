"""The offline planner: the common change shapes, recognised in the proposal's text."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from cortex_school.models import Improvement
from cortex_school.platform_model import Platform
from cortex_school.workers.naming import dns1123, with_suffix
from cortex_school.workers.plan import (
    AlertRule,
    EnvVar,
    ImplementationPlan,
    IngressRule,
    Panel,
    Peer,
    PlannedResource,
    Port,
    RecordingRule,
    Storage,
    TraefikMiddleware,
)
from cortex_school.workers.planning.companions import Target, companions, dashboard, resolve_targets
from cortex_school.workers.planning.extraction import (
    _DOMAIN,
    _EXPR_FOR,
    _HOST_LEVEL,
    _MANUAL_VERBS,
    _MIN_AVAILABLE,
    _SELECTING,
    _SEVERITY,
    _STORAGE_CLASS,
    KNOWN_EXPORTERS,
    _text,
    app_name_for_image,
    base_name,
    camel,
    images_in,
    ingress_host_in,
    interval_in,
    issuer_in,
    namespace_in,
    ports_in,
    schedule_in,
    sentences,
    size_in,
    volume_in,
)
from cortex_school.workers.planning.inventory import OFFLINE_PLANNER, Inventory


class OfflinePlanner:
    """Deterministic plans from explicit patterns (no LLM). Named in every plan it makes."""

    name = OFFLINE_PLANNER

    def __init__(self, default_namespace: str = "cortex-system") -> None:
        self.default_namespace = default_namespace

    def plan(self, improvement: Improvement, inventory: Inventory,
             platform: Platform | None = None) -> ImplementationPlan:
        """``platform`` (the platform model at the revision being changed): companions of
        the existing objects the text names are planned from their records first, and
        nothing is planned again for those objects."""
        text = _text(improvement)
        known = inventory.namespaces | {self.default_namespace, "monitoring", "kube-system"}
        if platform is not None:
            known |= set(platform.inventory.namespaces())
        ns = namespace_in(text, known, self.default_namespace)
        resources: list[PlannedResource] = []
        manual: list[str] = []
        lowered = text.lower()
        served: list[Target] = []
        if platform is not None:
            found, served = companions(improvement, text, platform, manual)
            resources.extend(found)

        def attempt(what: str, recipe: Any) -> None:
            # Odd values in the text (a 70-character namespace, an alert named '503...')
            # make that part of the plan a manual step, never a crash.
            try:
                resources.extend(recipe())
            except (ValidationError, ValueError) as exc:
                why = (exc.errors()[0]["msg"] if isinstance(exc, ValidationError) and exc.errors()
                       else str(exc))
                manual.append(f"{what}: could not be planned from the text ({why})"[:300])

        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", ns):
            manual.append(f"namespace {ns[:70]!r} is not a valid namespace; used {self.default_namespace}")
            ns = self.default_namespace
        if re.search(r"network ?polic|default[- ]deny|isolat", lowered):
            attempt("NetworkPolicy", lambda: self._network_policies(improvement, text, ns, inventory, platform))
        if re.search(r"statefulset", lowered) and not served:
            attempt("StatefulSet", lambda: self._statefulset(improvement, text, ns, inventory))
        if re.search(r"prometheusrule|alert|burn[- ]rate", lowered):
            attempt("PrometheusRule", lambda: _as_rule_kind(self._alerts(improvement, text, ns), text, platform))
        if re.search(r"grafana|dashboard", lowered):
            attempt("dashboard", lambda: self._dashboard(improvement, text, ns, resources)
                    or dashboard(improvement, text, ns))
        if re.search(r"\bbackups?\b", lowered) and schedule_in(text):
            attempt("backup", lambda: self._backup(improvement, text, ns, inventory, manual))
        if re.search(r"\bmiddlewares?\b", lowered):
            attempt("Middleware", lambda: self._middleware(improvement, text, ns, manual))
        if re.search(r"\bcertificate|\btls\b", lowered) and _DOMAIN.search(text):
            attempt("Certificate", lambda: self._certificate(improvement, text, ns))
        if re.search(r"rotat", lowered) and "secret" in lowered and schedule_in(text):
            attempt("secret rotation", lambda: self._rotation(improvement, text, ns))
        service = _service_name(improvement, inventory)
        if service and not served and not any(r.kind in ("Service", "StatefulSet") for r in resources):
            attempt("Service", lambda: self._service(service, text, ns, inventory, manual))
        images = [i for i in images_in(text) if not any(r.image == i for r in resources)]
        if served:  # the images of what a companion serves are not deployed again
            running = {image for t in served for image in t.obj.images}
            images = [i for i in images if i not in running]
        schedule = schedule_in(text)
        if images and schedule and re.search(r"\bcron ?jobs?\b|\bscheduled (?:job|task)\b", lowered) \
                and not any(r.kind in ("BackupCronJob", "SecretRotationCronJob") for r in resources):
            attempt("scheduled job", lambda: [PlannedResource(
                kind="ScheduledJob", name=app_name_for_image(images[0]), namespace=ns, image=images[0],
                schedule=schedule, command=command_in(text), purpose=improvement.description[:200])])
            images = images[1:]
        if images and improvement.type.value != "concept":
            attempt("workload", lambda: self._workloads(improvement, text, ns, images, inventory, manual))

        for sentence in sentences(improvement.implementation_notes):
            if _MANUAL_VERBS.search(sentence) or _HOST_LEVEL.search(sentence):
                manual.append(sentence.rstrip(".,; "))
        resources = _without_imageless_workloads(resources, manual)
        _serve_certificates(resources)
        _attach_middlewares(resources)
        if resources:
            manual.extend(unplanned_kinds(text, resources))
            if platform is not None:
                manual.extend(needs_cluster_rbac(text, platform))
                manual.extend(edits_of_existing(improvement.implementation_notes, platform,
                                                companion=any(r.companion_of for r in resources)))
        if not resources and not any(m.startswith(NOT_PLANNED) for m in manual):
            manual.append(_why_nothing(improvement, text, platform))
        summary = improvement.description[:200]
        if served:
            summary = (f"{summary} (for {', '.join(t.describe() for t in served[:3])})")[:500]
        return ImplementationPlan(summary=summary, resources=_unique(resources),
                                  manual_steps=manual, planner=self.name)

    # -- recipes ----------------------------------------------------------------
    def _network_policies(self, imp: Improvement, text: str, ns: str, inventory: Inventory,
                          platform: Platform | None = None) -> list[PlannedResource]:
        out: list[PlannedResource] = []
        deny_all = bool(re.search(r"default[- ]deny|empty podselector|all other ingress .*denied",
                                  text, re.I))
        selector = _selector(text, inventory)
        if deny_all and not selector:
            out.append(PlannedResource(kind="NetworkPolicy", name="default-deny-ingress",
                                       namespace=ns, deny_all=True,
                                       purpose="deny all ingress unless another policy allows it"))
        peers: list[Peer] = []
        for m in re.finditer(r"from (?:pods in )?(?:the )?([a-z0-9-]+) namespace", text):
            peers.append(Peer(namespace=m.group(1)))
        for m in re.finditer(r"from (?:the )?pods labell?ed `?([a-z0-9][a-z0-9./-]*[a-z0-9])\s?[=:]\s*[\"']?"
                             r"([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])(?:\s+in (?:the )?(same|[a-z0-9-]+) namespace)?",
                             text):
            other = m.group(3) if m.group(3) and m.group(3) != "same" else None
            peers.append(Peer(namespace=other, pod_labels={m.group(1): m.group(2)}))
        for m in re.finditer(r"from ([A-Z][A-Za-z]+) in (?:the )?([a-z0-9-]+)", text):
            app = m.group(1).lower()
            target = inventory.workload(app)
            labels = {"app.kubernetes.io/name": target.labels.get("app.kubernetes.io/name", app)
                      if target else app}
            peers.append(Peer(namespace=m.group(2), pod_labels=labels))
        known = inventory.namespaces | (set(platform.inventory.namespaces()) if platform is not None else set())
        per_port = ingress_rules_in(text, known)
        if per_port and selector:
            served = _served_by(selector, ns, platform)
            app = selector.get("app.kubernetes.io/name") or next(iter(selector.values()))
            out.append(PlannedResource(
                kind="NetworkPolicy", name=with_suffix(f"allow-{app}", "ingress"),
                namespace=served.namespace if served else ns, selector=selector, ingress_rules=per_port,
                companion_of=f"{served.kind}/{served.namespace}/{served.name}" if served else None,
                purpose=f"admit only the named sources to {app}, each on its ports"))
            return out
        if peers:
            target_app = selector.get("app.kubernetes.io/name") if selector else None
            dest = re.search(r"\bto (?:the )?([A-Za-z][\w-]*) (?:service|pods?|deployment)\b", text)
            if not selector and dest:  # "to the Langflow service": allow to that app only
                item = inventory.workload(dest.group(1).lower())
                app = item.labels.get("app.kubernetes.io/name", item.name) if item else \
                    dns1123(dest.group(1))
                selector, target_app = {"app.kubernetes.io/name": app}, app
            if not selector:
                for item in inventory.mentioned(text):
                    selector = {"app.kubernetes.io/name":
                                item.labels.get("app.kubernetes.io/name", item.name)}
                    target_app = item.name
                    break
            name = with_suffix(f"allow-{target_app or 'ingress'}", "ingress") if target_app \
                else "allow-ingress"
            served = _served_by(selector, ns, platform)
            out.append(PlannedResource(
                kind="NetworkPolicy", name=name, namespace=served.namespace if served else ns, selector=selector,
                allow_from=peers, ports=[Port(number=p) for p in ports_in(text)],
                companion_of=f"{served.kind}/{served.namespace}/{served.name}" if served else None,
                purpose=f"admit only the named sources to {target_app or 'the namespace'}"))
        elif selector:
            out.append(PlannedResource(kind="NetworkPolicy", name=with_suffix(
                selector.get("app.kubernetes.io/name", "pods"), "deny-ingress"), namespace=ns,
                selector=selector, deny_all=True, purpose="deny all ingress"))
        return out

    def _middleware(self, imp: Improvement, text: str, ns: str, manual: list[str]) -> list[PlannedResource]:
        """A Traefik Middleware of an allowlisted type with the values the text writes
        ("rateLimit average 50, burst 100", "HSTS for a year", "at most 20 in-flight
        requests"); a type never generated (forwardAuth, basicAuth, chain, plugin, request
        headers) is named as not planned."""
        lowered = text.lower()
        never = re.search(r"\b(forward ?auth|basic ?auth|digest ?auth|chain|plugin|strip ?prefix|replace ?path|"
                          r"ip ?(?:allow|white) ?list|custom ?request ?headers?)\b", lowered)
        if never:
            manual.append(f"{NOT_PLANNED}a {never.group(1)} Middleware (only rateLimit, inFlightReq, security "
                          "response headers, compress and redirectScheme are generated)")
        count = lambda pattern: int(m.group(1)) if (m := re.search(pattern, text, re.I)) else None  # noqa: E731
        depth = count(r"\bdepth:?\s*(\d{1,2})\b")
        spec: TraefikMiddleware | None = None
        if re.search(r"rate[- ]?limit", lowered):
            period = re.search(r"\bperiod:?\s*(\d{1,4}[sm])\b", text) or re.search(r"\bper (second|minute)\b", lowered)
            spec = TraefikMiddleware(type="rateLimit", average=count(r"\baverage:?\s*(\d{1,6})\b"),
                                     burst=count(r"\bburst:?\s*(\d{1,6})\b"), depth=depth,
                                     period=({"second": "1s", "minute": "1m"}.get(period.group(1), period.group(1))
                                             if period else None))
        elif re.search(r"in[- ]?flight|concurrent requests", lowered):
            spec = TraefikMiddleware(type="inFlightReq", depth=depth, amount=count(
                r"\b(?:amount:?\s*|at most\s+)(\d{1,6})\b") or count(r"\b(\d{1,6})\s+(?:in[- ]?flight|concurrent)"))
        elif re.search(r"\bhsts\b|strict-transport|security headers|frame ?deny|nosniff|referrer", lowered):
            year = 31_536_000 if re.search(r"\bhsts\b|strict-transport", lowered) else None
            spec = TraefikMiddleware(
                type="headers", sts_seconds=count(r"\b(?:stsSeconds|max-age)[:= ]\s*(\d{1,8})") or year,
                frame_deny=bool(re.search(r"frame ?deny|x-frame-options|clickjack|security headers", lowered)),
                content_type_nosniff="nosniff" in lowered or "security headers" in lowered)
        elif re.search(r"\bcompress", lowered):
            spec = TraefikMiddleware(type="compress")
        elif re.search(r"redirect\w* (?:\w+ )?to https|https redirect|redirectscheme", lowered):
            spec = TraefikMiddleware(type="redirectScheme")
        if spec is None:
            return []
        if spec.type == "rateLimit" and spec.average is None:
            manual.append(f"{NOT_PLANNED}the rate limit: the text names no average (requests per period)")
            return []
        if spec.type == "inFlightReq" and spec.amount is None:
            manual.append(f"{NOT_PLANNED}the in-flight limit: the text names no amount")
            return []
        # "a Middleware (traefik.io/v1alpha1) rag-api-ratelimit", "Middleware `limits`": a name, not a word
        named = re.search(r"\bMiddleware\b(?:\s*\([^)]{0,60}\))?\s+(?:`([a-z0-9][-a-z0-9]{0,61}[a-z0-9])`|"
                          r"([a-z0-9]+(?:-[a-z0-9]+)+))(?=[\s,.;]|$)", text)
        words = {"rateLimit": "ratelimit", "inFlightReq": "inflight", "headers": "headers", "compress": "compress",
                 "redirectScheme": "https-redirect"}
        name = (named.group(1) or named.group(2))[:63] if named else \
            with_suffix(base_name(imp.description), words[spec.type])
        return [PlannedResource(kind="Middleware", name=name, namespace=ns, middleware=spec,
                                purpose=imp.description[:200])]

    def _statefulset(self, imp: Improvement, text: str, ns: str,
                     inventory: Inventory) -> list[PlannedResource]:
        mentioned = inventory.mentioned(text)
        images = images_in(text)
        source = mentioned[0] if mentioned else None
        image = images[0] if images else (source.images[0] if source else None)
        name = source.name if source else (app_name_for_image(image) if image else
                                           dns1123(imp.description, max_length=40))
        ports = ports_in(text) or (list(source.ports) if source else [])
        size = size_in(text)
        storage = Storage(size=size, storage_class=(_STORAGE_CLASS.search(text) or [None, None])[1]) \
            if size else None
        out = [PlannedResource(
            kind="StatefulSet", name=name, namespace=ns, image=image,
            ports=[Port(number=p, name=f"p{p}") for p in ports], storage=storage,
            purpose=imp.description[:200],
            dependencies=[], selector={"app.kubernetes.io/name": name})]
        if re.search(r"poddisruptionbudget|\bpdb\b", text, re.I):
            m = _MIN_AVAILABLE.search(text)
            out.append(PlannedResource(
                kind="PodDisruptionBudget", name=name, namespace=ns,
                min_available=int(m.group(1)) if m else 1,
                selector={"app.kubernetes.io/name": name},
                purpose="keep a replica up during voluntary disruptions"))
        return out

    def _alerts(self, imp: Improvement, text: str, ns: str) -> list[PlannedResource]:
        severity_match = _SEVERITY.search(text)
        severity = severity_match.group(1) if severity_match else "warning"
        if re.search(r"burn[- ]rate", text, re.I):
            return [self._burn_rate(imp, text, ns)]
        m = _EXPR_FOR.search(text)
        if not m:
            written = alerts_written(text)
            if not written:
                return []
            return [PlannedResource(kind="PrometheusRule", name=base_name(imp.description), namespace=ns,
                                    alerts=written, purpose=imp.description[:200])]
        alert = AlertRule(name=camel(base_name(imp.description).replace("-", " ")),
                          expr=m.group(1).strip().rstrip(","), duration=m.group(2),
                          severity=severity, summary=imp.description[:200])
        return [PlannedResource(kind="PrometheusRule", name=base_name(imp.description),
                                namespace=ns, alerts=[alert], purpose=imp.description[:200])]

    def _burn_rate(self, imp: Improvement, text: str, ns: str) -> PlannedResource:
        metric_match = re.search(r"\b([a-z_:][a-z0-9_:]*_total)\b", text)
        metric = metric_match.group(1) if metric_match else "http_requests_total"
        slo_match = re.search(r"(\d{1,3}(?:\.\d+)?)\s?%\s*(?:availability\s*)?SLO", text)
        objective = float(slo_match.group(1)) / 100 if slo_match else 0.999
        if not 0.5 <= objective < 1:
            raise ValueError(f"SLO objective {objective:.2%} leaves no error budget to burn")
        budget = round(1 - objective, 6)
        base = re.sub(r"_total$", "", metric)
        windows = [w for w in ("5m", "30m", "1h", "6h") if re.search(rf"\b{w}\b", text)] or \
            ["5m", "1h", "6h"]
        windows = sorted(set(windows) | {"5m", "30m", "1h", "6h"},
                         key=lambda w: int(w[:-1]) * (60 if w.endswith("h") else 1))
        error_selector = 'code=~"5.."'
        recording = [RecordingRule(
            record=f"slo:{base}:error_ratio_rate{w}",
            expr=(f"sum(rate({metric}{{{error_selector}}}[{w}])) / sum(rate({metric}[{w}]))"))
            for w in windows]
        alerts = [
            AlertRule(name=f"{camel(base, 3)}ErrorBudgetBurnFast",
                      expr=(f"slo:{base}:error_ratio_rate1h > (14.4 * {budget}) and "
                            f"slo:{base}:error_ratio_rate5m > (14.4 * {budget})"),
                      duration="2m", severity="critical",
                      summary=f"{metric}: burning the {objective:.3%} SLO budget 14.4x too fast"),
            AlertRule(name=f"{camel(base, 3)}ErrorBudgetBurnSlow",
                      expr=(f"slo:{base}:error_ratio_rate6h > (6 * {budget}) and "
                            f"slo:{base}:error_ratio_rate30m > (6 * {budget})"),
                      duration="15m", severity="warning",
                      summary=f"{metric}: burning the {objective:.3%} SLO budget 6x too fast"),
        ]
        return PlannedResource(kind="PrometheusRule", name=with_suffix(dns1123(base), "slo-burn"),
                               namespace=ns, recording_rules=recording, alerts=alerts,
                               purpose=imp.description[:200],
                               config={"objective": str(objective)})

    def _dashboard(self, imp: Improvement, text: str, ns: str,
                   planned: list[PlannedResource]) -> list[PlannedResource]:
        panels: list[Panel] = []
        for res in planned:
            if res.kind not in ("PrometheusRule", "VMRule"):
                continue
            objective = res.config.get("objective")
            if objective and res.recording_rules:
                ratio = res.recording_rules[-1].record
                budget = round(1 - float(objective), 6)
                panels.append(Panel(title="Error budget remaining (6h burn)",
                                    expr=f"1 - ({ratio} / {budget})"))
            panels += [Panel(title=a.name, expr=a.expr) for a in res.alerts]
        if not panels:
            return []
        # The plan carries the SLO objective for rendering only; drop it from the rule.
        for res in planned:
            res.config.clear()
        return [PlannedResource(kind="GrafanaDashboard",
                                name=with_suffix(base_name(imp.description), "dashboard"),
                                namespace=ns, panels=panels, purpose=imp.description[:100])]

    def _backup(self, imp: Improvement, text: str, ns: str, inventory: Inventory,
                manual: list[str]) -> list[PlannedResource]:
        """pg_dump backups for a PostgreSQL the text names; other stores get a manual step."""
        target = next((i for i in inventory.mentioned(text) if "postgres" in " ".join(i.images)),
                      None)
        if target is None and re.search(r"postgres", text, re.I):
            target = next((i for i in inventory.items if "postgres" in " ".join(i.images)), None)
        if target is None:
            manual.append("backup: no backup recipe for the store this names (PostgreSQL only); "
                          "plan it by hand")
            return []
        images = images_in(text)
        image = images[0] if images else (target.images[0] if target else None)
        host = f"{target.name}.{target.namespace}.svc"
        secret = "postgres-backup-credentials"
        return [
            PlannedResource(kind="ExternalSecret", name=secret, namespace=ns,
                            secret_keys=["PGUSER", "PGPASSWORD", "PGDATABASE"],
                            purpose="database credentials for the backup job, from the store"),
            PlannedResource(
                kind="BackupCronJob", name=with_suffix(target.name, "backup"),
                namespace=ns, image=image, schedule=schedule_in(text),
                command=["/bin/sh", "-c", f"pg_dump -h {host} -Fc "
                         "-f /backup/$(date +%Y%m%dT%H%M%S).dump"],
                env=[EnvVar(name=k, secret_name=secret, secret_key=k)
                     for k in ("PGUSER", "PGPASSWORD", "PGDATABASE")],
                storage=Storage(size=size_in(text) or "20Gi"),
                dependencies=[f"{target.namespace}/{target.name}"], purpose=imp.description[:200]),
        ]

    def _certificate(self, imp: Improvement, text: str, ns: str) -> list[PlannedResource]:
        names = sorted(set(_DOMAIN.findall(text)))[:10]
        return [PlannedResource(kind="Certificate", name=with_suffix(dns1123(names[0]), "tls"),
                                namespace=ns, dns_names=names, issuer=issuer_in(text),
                                purpose=imp.description[:200])]

    def _rotation(self, imp: Improvement, text: str, ns: str) -> list[PlannedResource]:
        name = base_name(imp.description)
        secret = with_suffix(name, "secret")
        return [
            PlannedResource(kind="ExternalSecret", name=secret, namespace=ns,
                            secret_keys=["value"], purpose="the rotated secret, from the store"),
            PlannedResource(kind="SecretRotationCronJob", name=with_suffix(name, "rotate"),
                            namespace=ns, target=secret, schedule=schedule_in(text),
                            purpose=imp.description[:200]),
        ]

    def _service(self, name: str, text: str, ns: str, inventory: Inventory,
                 manual: list[str]) -> list[PlannedResource]:
        ports = ports_in(text)
        mentioned = [i for i in inventory.mentioned(text) if i.name != name]
        # The workload of that name; "postgres-primary" fronts postgres; else the first named.
        backend = inventory.workload(name) or next(
            (i for i in inventory.items if i.images and name.startswith(f"{i.name}-")), None) \
            or (mentioned[0] if mentioned else None)
        if not ports and backend:
            ports = list(backend.ports)
        if not ports:
            return []
        selector = {"app.kubernetes.io/name": backend.labels.get("app.kubernetes.io/name",
                                                                  backend.name)} if backend else {}
        if backend and backend.namespace and backend.namespace != ns:
            manual.append(f"{backend.name} runs in namespace {backend.namespace} ({backend.file}); "
                          f"the Service in {ns} has no endpoints until it runs there too")
        return [PlannedResource(kind="Service", name=dns1123(name), namespace=ns,
                                ports=[Port(number=p, name=f"p{p}") for p in ports],
                                selector=selector or {"app.kubernetes.io/name": dns1123(name)},
                                dependencies=[f"{backend.namespace}/{backend.name}"] if backend else [],
                                purpose=f"stable ClusterIP for {backend.name if backend else name}")]

    def _workloads(self, imp: Improvement, text: str, ns: str, images: list[str],
                   inventory: Inventory, manual: list[str]) -> list[PlannedResource]:
        out: list[PlannedResource] = []
        lowered = text.lower()
        for image in images[:3]:
            app = app_name_for_image(image)
            repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
            exporter = KNOWN_EXPORTERS.get(repo)
            ports = ports_in(text) or ([exporter[2]] if exporter else [])
            port_name = "metrics" if exporter or "exporter" in repo else "http"
            env: list[EnvVar] = []
            deps: list[str] = []
            if exporter:
                target = next((i for i in inventory.mentioned(text)
                               if repo.split("_")[0] in i.name), None)
                if target and target.ports:
                    host = f"{target.name}.{target.namespace}.svc.cluster.local"
                    env.append(EnvVar(name=exporter[0],
                                      value=exporter[1].format(host=host, port=target.ports[0])))
                    deps.append(f"{target.namespace}/{target.name}")
                if "sidecar" in lowered:
                    manual.append(f"{app} runs as its own Deployment, not as a sidecar: the "
                                  "target pod's manifest is not owned by cortex-school")
            if re.search(r"api[ _-]?key|token|credential", lowered) and not exporter:
                secret = with_suffix(app, "credentials")
                out.append(PlannedResource(kind="ExternalSecret", name=secret, namespace=ns,
                                           secret_keys=["api-key"],
                                           purpose=f"credentials for {app}, from the store"))
                env.append(EnvVar(name="API_KEY", secret_name=secret, secret_key="api-key"))
            cpu, memory = requests_in(text) if len(images) == 1 else (None, None)
            out.append(PlannedResource(
                kind="Deployment", name=app, namespace=ns, image=image, replicas=1, cpu=cpu, memory=memory,
                ports=[Port(number=p, name=port_name if i == 0 else f"p{p}")
                       for i, p in enumerate(ports[:5])],
                env=env, dependencies=deps, purpose=imp.description[:200],
                storage=volume_in(text) if len(images) == 1 else None))
            route_host = ingress_host_in(text) if len(images) == 1 else None
            if route_host and not ports:
                manual.append(f"{NOT_PLANNED}the Ingress for {route_host}: the text names no port of {app} to route to")
            elif route_host:
                klass = re.search(r"\b(?:ingress )?class(?:Name)?:?\s+`?([a-z0-9][-a-z0-9.]*[a-z0-9])", text)
                out.append(PlannedResource(
                    kind="Ingress", name=app, namespace=ns, host=route_host, target=app,
                    ports=[Port(number=ports[0], name=port_name)],
                    ingress_class=klass.group(1) if klass else None, purpose=f"route {route_host} to {app}"))
            if ports:
                out.append(PlannedResource(
                    kind="Service", name=app, namespace=ns,
                    ports=[Port(number=p, name=port_name if i == 0 else f"p{p}")
                           for i, p in enumerate(ports[:5])],
                    purpose=f"cluster address of {app}"))
            if ports and ((exporter and re.search(r"servicemonitor|scrape", lowered))
                          or re.search(r"\bwith (?:a|its own) servicemonitor\b", lowered)):
                if re.search(r"honor_?labels", lowered):
                    manual.append(f"{NOT_PLANNED}honorLabels on {app}'s ServiceMonitor (the gate allows port, path "
                                  "and interval only: honoured labels can rewrite the series health checks read)")
                sm_ns = re.search(r"ServiceMonitor in (?:the )?([a-z0-9-]+)", text)
                out.append(PlannedResource(
                    kind="ServiceMonitor", name=app,
                    namespace=sm_ns.group(1) if sm_ns else ns,
                    selector={"app.kubernetes.io/name": app},
                    ports=[Port(number=ports[0], name=port_name)] if ports else [],
                    interval=interval_in(text), target_namespace=ns,
                    purpose=f"scrape {app}"))
        return out


_NOT_SERVICE_NAMES = frozenset({"instead", "port", "ports", "to", "in", "account", "accounts",
                                "mesh", "for", "of", "and", "with", "that", "the", "discovery"})


def _why_nothing(improvement: Improvement, text: str, platform: Platform | None) -> str:
    """Why a plan has no resources, as exactly as the model allows: a concept; a change to
    objects that run but are not the system's (named, with their files); else nothing the
    planner recognises, with the names it could not find."""
    if improvement.type.value == "concept":
        return "a concept: knowledge to keep, nothing to deploy"
    targets = resolve_targets(text, platform) if platform is not None else []
    if targets:
        named = "; ".join(t.describe() for t in targets[:3])
        return (f"the proposal changes what already runs ({named}); this system does not edit objects it "
                "did not create, and no companion it makes (PodDisruptionBudget, HorizontalPodAutoscaler, "
                "ServiceMonitor, NetworkPolicy) carries this change: a person makes it")
    return ("no Kubernetes resources could be derived from the proposal (no image, no existing object named, "
            "no change shape recognised); a person should plan it")


def _service_name(improvement: Improvement, inventory: Inventory) -> str | None:
    """'the Service postgres-primary': a name with a '-' or digit, or a known workload."""
    names = {i.name for i in inventory.items}
    for text in (improvement.implementation_notes, improvement.description):
        for m in re.finditer(r"\b[Ss]ervice ([a-z0-9][a-z0-9-]*[a-z0-9])\b", text):
            word = m.group(1)
            if word not in _NOT_SERVICE_NAMES and (re.search(r"[-0-9]", word) or word in names):
                return word
    return None


def _served_by(selector: dict[str, str], ns: str, platform: Platform | None) -> Any:
    """The one existing workload whose pods ``selector`` selects (in ``ns`` when that holds
    one), if exactly one does: the policy is then its companion."""
    if platform is None or not selector:
        return None
    hits = [o for o in platform.inventory.objects
            if o.kind in ("Deployment", "StatefulSet", "DaemonSet") and o.deployed is not False
            and not o.file.startswith("live:") and selector.items() <= {**o.pod_labels}.items()]
    in_ns = [o for o in hits if o.namespace == ns]
    chosen = in_ns or hits
    return chosen[0] if len(chosen) == 1 else None


def _selector(text: str, inventory: Inventory) -> dict[str, str]:
    m = _SELECTING.search(text)
    return {m.group(1): m.group(2)} if m else {}


_NEEDS_IMAGE = frozenset({"Deployment", "StatefulSet", "DaemonSet", "MigrationJob", "BackupCronJob"})


def _without_imageless_workloads(resources: list[PlannedResource],
                                 manual: list[str]) -> list[PlannedResource]:
    """A workload whose image neither the text nor the repository names is not guessed:
    it (and what only serves it) becomes a manual step."""
    dropped = {r.name for r in resources if r.kind in _NEEDS_IMAGE and not r.image}
    for name in sorted(dropped):
        manual.append(f"{name}: no image named in the proposal or found in the repository; "
                      "a person chooses one")
    return [r for r in resources if r.name not in dropped]


def _unique(resources: list[PlannedResource]) -> list[PlannedResource]:
    """One resource per (kind, namespace, name): the first wins."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in resources:
        key = (r.kind, r.namespace, r.name)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


# What a proposal asks for by kind ("a ServiceAccount", "as a CronJob", "an HPA"), and the
# plan kinds that produce it.
NOT_PLANNED = "not planned: "
_ASKED_KINDS: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"Deployment"}), "StatefulSet": frozenset({"StatefulSet"}),
    "DaemonSet": frozenset({"DaemonSet"}),
    "CronJob": frozenset({"BackupCronJob", "SecretRotationCronJob", "ScheduledJob"}),
    "Job": frozenset({"MigrationJob"}),
    "Service": frozenset({"Service", "StatefulSet"}), "Ingress": frozenset({"Ingress"}),
    "IngressRoute": frozenset(), "Middleware": frozenset({"Middleware"}), "ServiceAccount": frozenset({"ServiceAccount"}),
    "Role": frozenset({"Role"}), "RoleBinding": frozenset({"RoleBinding"}), "ClusterRole": frozenset(),
    "ClusterRoleBinding": frozenset(), "NetworkPolicy": frozenset({"NetworkPolicy"}),
    "PodDisruptionBudget": frozenset({"PodDisruptionBudget"}),
    "HorizontalPodAutoscaler": frozenset({"HorizontalPodAutoscaler"}), "ScaledObject": frozenset({"ScaledObject"}),
    "ServiceMonitor": frozenset({"ServiceMonitor"}), "PodMonitor": frozenset(),
    "PrometheusRule": frozenset({"PrometheusRule"}), "VMRule": frozenset({"VMRule"}), "ConfigMap": frozenset({"ConfigMap", "GrafanaDashboard"}),
    "SealedSecret": frozenset(), "ExternalSecret": frozenset({"ExternalSecret"}),
    "PersistentVolumeClaim": frozenset({"PersistentVolumeClaim", "BackupCronJob", "StatefulSet"}),
    "Certificate": frozenset({"Certificate"}),
}
_KIND_ALIASES = {"PVC": "PersistentVolumeClaim", "HPA": "HorizontalPodAutoscaler", "PDB": "PodDisruptionBudget"}
_ASKED = re.compile(r"\b(?:an?|as an?|new)\s+(?:[\w.:/\"'-]+\s+){0,3}?(" +
                    "|".join(sorted(set(_ASKED_KINDS) | set(_KIND_ALIASES), key=len, reverse=True)) + r")\b")


def _as_rule_kind(rules: list[PlannedResource], text: str, platform: Platform | None) -> list[PlannedResource]:
    """Alert and recording rules as the platform evaluates them: a VMRule when the text
    asks for one, or when the repository keeps its rules as VMRules and none as
    PrometheusRules (a VictoriaMetrics platform); else a PrometheusRule."""
    kinds = {o.kind for o in platform.inventory.objects} if platform is not None else set()
    vm = bool(re.search(r"\bVMRules?\b", text)) or ("VMRule" in kinds and "PrometheusRule" not in kinds)
    if vm and not re.search(r"\bPrometheusRules?\b", text):
        for r in rules:
            if r.kind == "PrometheusRule":
                r.kind = "VMRule"
    return rules


def _attach_middlewares(resources: list[PlannedResource]) -> None:
    """The plan's Middlewares go on the plan's own Ingresses of their namespace (by the
    router annotation); an existing route is never edited (named as not planned)."""
    for r in resources:
        if r.kind == "Ingress" and not r.middlewares:
            r.middlewares = [m.name for m in resources if m.kind == "Middleware" and m.namespace == r.namespace][:5]


def _serve_certificates(resources: list[PlannedResource]) -> None:
    """An Ingress serves the Secret of the plan's Certificate for its host (TLS at the
    edge with the certificate the proposal asked for)."""
    for r in resources:
        if r.kind == "Ingress" and r.certificate is None:
            cert = next((c for c in resources if c.kind == "Certificate" and c.namespace == r.namespace
                         and r.host in c.dns_names), None)
            if cert is not None:
                r.certificate = cert.name


def unplanned_kinds(text: str, resources: list[PlannedResource]) -> list[str]:
    """One manual step per kind the proposal asks for ("a ServiceAccount bound to ...", "as a
    CronJob", "a 2Gi longhorn PVC") that the plan does not produce: a plan that leaves out
    part of what was asked is not committed as if it were the whole change."""
    planned = {r.kind for r in resources}
    if any(r.storage is not None and r.kind != "StorageClass" for r in resources):
        planned.add("PersistentVolumeClaim")  # a workload's claim is rendered with it
    out = []
    for kind in dict.fromkeys(_KIND_ALIASES.get(m.group(1), m.group(1)) for m in _ASKED.finditer(text)):
        if not (_ASKED_KINDS.get(kind, frozenset()) & planned):
            article = "an" if kind[0] in "AEIOU" else "a"
            out.append(f"{NOT_PLANNED}the proposal asks for {article} {kind}, which this plan does not produce")
    return out


_COMPARISON = r"(?P<op>==|!=|>=|<=|>|<)\s*(?P<value>-?\d+(?:\.\d+)?)"
_FOR = r"(?:\s+for\s+(?P<dur>\d+[smhd]))?"
_NOTE = r"(?:\s*\((?P<note>[^()]{0,200})\))?"
_ALERT_ON = re.compile(r"\balerts?\s+(?:on|when|if)\s+(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^{}]{0,300}\})?)\s*"
                       + _COMPARISON + _FOR + _NOTE)
_AND_ALSO = re.compile(r"^\s*(?:,\s*)?(?:and|or)\s+" + _COMPARISON + _FOR + _NOTE)


def alerts_written(text: str) -> list[AlertRule]:
    """Alert rules written out in prose: "alerts on longhorn_volume_robustness == 2 for 10m
    (degraded, severity warning) and == 3 (faulted, severity critical)": one rule per
    comparison, each with its own duration (else the first's, else 5m), severity (else
    warning) and the words in parentheses as its summary."""
    out: list[AlertRule] = []
    for m in _ALERT_ON.finditer(text):
        metric = m.group("metric")
        parts = [m]
        rest = text[m.end():]
        while (more := _AND_ALSO.match(rest)) is not None and len(parts) < 10:
            parts.append(more)
            rest = rest[more.end():]
        first_duration = m.group("dur") or "5m"
        for part in parts:
            note = (part.group("note") or "").strip()
            severity = re.search(r"\bseverity\s+(info|warning|critical)\b", note)
            words = re.sub(r"\bseverity\s+\w+", "", note).strip(" ,;")
            name = camel(f"{metric.split('{', 1)[0].replace(':', ' ')} {words or part.group('op')}", 6)
            out.append(AlertRule(name=name, expr=f"{metric} {part.group('op')} {part.group('value')}",
                                 duration=part.group("dur") or first_duration,
                                 severity=severity.group(1) if severity else "warning",
                                 summary=f"{metric} {part.group('op')} {part.group('value')}"
                                         + (f": {words}" if words else "")))
    return out or alerts_by_severity(text)


_SEVERITY_ON = re.compile(
    r"\b(?i:rules?|alerts?|vmrules?|prometheusrules?)\s+on\s+`?(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)`?"
    r"(?:\s+(?:per|by)\s+(?P<by>[a-z_]+(?:(?:\s*,\s*|\s+and\s+)[a-z_]+){0,5}))?\s*[:,]?\s*")
_SEVERITY_STEP = re.compile(
    r"(?:,?\s*(?:and\s+)?)(?P<sev>info|warning|critical)\s+(?:when\s+|if\s+)?(?P<dir>above|over|below|under)\s+"
    r"(?P<value>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?:\s+(?!for\b)[a-z]+)?"
    r"(?:\s+for\s+(?P<n>\d{1,4})\s*(?P<unit>s|m|h|seconds?|minutes?|hours?)\b)?")


def alerts_by_severity(text: str) -> list[AlertRule]:
    """Alert rules written as thresholds per severity: "a rule on lag_max per group and
    topic: warning above 10,000 messages for 10 minutes, critical above 100,000": one rule
    per severity (aggregated by the labels named), each with its duration (else the
    first's, else 5m)."""
    out: list[AlertRule] = []
    for m in _SEVERITY_ON.finditer(text):
        metric, rest = m.group("metric"), text[m.end():]
        steps: list[re.Match[str]] = []
        while (step := _SEVERITY_STEP.match(rest)) is not None and len(steps) < 5:
            steps.append(step)
            rest = rest[step.end():]
        if not steps:
            continue
        labels = re.split(r"\s*,\s*|\s+and\s+", m.group("by")) if m.group("by") else []
        series = f"max by ({', '.join(labels)}) ({metric})" if labels else metric
        first = None
        for step in steps:
            duration = None
            if step.group("n"):
                duration = f"{int(step.group('n'))}{step.group('unit')[0]}"
            first = first or duration
            op = ">" if step.group("dir") in ("above", "over") else "<"
            value = step.group("value").replace(",", "")
            out.append(AlertRule(name=camel(metric.replace(":", " "), 5) + step.group("sev").capitalize(),
                                 expr=f"{series} {op} {value}", duration=duration or first or "5m",
                                 severity=step.group("sev"),
                                 summary=f"{metric} {op} {value}" + (f" per {', '.join(labels)}" if labels else "")))
    return out


_CPU = re.compile(r"\b(\d+(?:\.\d+)?)\s*(m\b|millicores?\b|cores?\b|vcpus?\b|cpus?\b)", re.I)
_MEMORY = re.compile(r"\b(\d+(?:\.\d+)?)\s*(Mi|Gi|MiB|GiB|MB|GB)\s+(?:of\s+)?(?:memory|ram)\b", re.I)


def requests_in(text: str) -> tuple[str | None, str | None]:
    """The CPU and memory a proposal asks for one workload ("1 CPU, 2Gi memory", "requesting
    100m CPU and 256Mi memory") as Kubernetes quantities; None for what it does not say."""
    cpu = memory = None
    m = _CPU.search(text)
    if m and (m.group(2).lower().startswith(("m", "core", "cpu", "vcpu"))):
        unit = m.group(2).lower()
        if unit == "m" or unit.startswith("milli"):
            cpu = f"{int(float(m.group(1)))}m"
        elif re.fullmatch(r"\d+(\.\d+)?", m.group(1)):
            cpu = m.group(1)
        if m.group(2) == "m" and not re.search(r"\bcpu\b", text[m.end():m.end() + 8], re.I):
            cpu = None  # "100m" alone is not a CPU figure
    m = _MEMORY.search(text)
    if m:
        unit = {"mb": "Mi", "mib": "Mi", "mi": "Mi", "gb": "Gi", "gib": "Gi", "gi": "Gi"}[m.group(2).lower()]
        value = m.group(1)
        memory = f"{value}{unit}" if "." not in value else f"{int(float(value) * 1024)}Mi" if unit == "Gi" else None
    return cpu, memory


def needs_cluster_rbac(text: str, platform: Platform) -> list[str]:
    """A component the proposal deploys that works only with cluster-wide RBAC (a
    controller such as the descheduler or Reloader, marked in the catalogue): the plan
    cannot be complete, since ClusterRoles are never generated."""
    from cortex_school.platform_model.mentions import mentions

    out = []
    for m in mentions(text, platform):
        entry = platform.catalogue.entries.get(m.component)
        if m.intent == "deploys" and entry is not None and entry.cluster_rbac:
            out.append(f"{NOT_PLANNED}{entry.title} needs cluster-wide RBAC (a ClusterRole and its binding), "
                       "which this system does not generate")
    return list(dict.fromkeys(out))


def command_in(text: str) -> list[str]:
    """The command a proposal writes in backticks after run/running/command ("running
    `pg_dump -Fc db`"), split like a shell would; empty: the image's own entrypoint."""
    import shlex

    m = re.search(r"\b(?:run|runs|running|command|executing)\s+`([^`\n]{1,500})`", text)
    if not m:
        return []
    try:
        return shlex.split(m.group(1))[:40]
    except ValueError:
        return []


_EDIT_VERB = re.compile(r"^(?:and |then |also |but )?(drop|remove|delete|edit|patch|annotate|change|rename|replace)\b",
                        re.I)
# "Enable consumer_lag in the cluster property", "set max_connections in the server config":
# a setting of something that already runs is an edit of it, whatever else the plan makes.
_SETTING = re.compile(r"^(?:and |then |also |first )?(?:enable|disable|turn (?:on|off)|set|raise|lower)\b.{0,80}?"
                      r"\b(?:in|of|on) (?:the |its |their )?(?:[\w.'’-]+ ){0,3}"
                      r"(?:propert(?:y|ies)|settings?|flags?|config(?:uration)?|options?|parameters?)\b", re.I)
_ADD_TO = re.compile(r"\badd (?:it|them|this|that|a [\w-]+|an [\w-]+|[\w-]+) (?:to|into) (?:the )?(?:existing )?"
                     r"(?:[\w.-]+ ){0,3}(?:of the )?(?:[\w.-]+ )?(Deployment|StatefulSet|DaemonSet|IngressRoute|Ingress|"
                     r"NetworkPolicy|Service|CronJob|ConfigMap|values|middlewares)\b", re.I)


def edits_of_existing(notes: str, platform: Platform, *, companion: bool) -> list[str]:
    """The parts of a proposal that change an object it did not create ("drop the fixed
    replicas field", "add it to the middlewares of the rag-api IngressRoute", "add a rule to
    the existing qdrant-ingress NetworkPolicy"): the system never edits those, so a plan
    without them is not the whole change."""
    out = []
    for clause in re.split(r"[.;]\s+|,\s+(?=and\b|then\b)|\s+and\s+(?=(?:drop|remove|delete|edit|patch|annotate|"
                           r"change|rename|replace|add)\b)", notes):
        clause = clause.strip()
        if not clause:
            continue
        edit = _EDIT_VERB.search(clause)
        named = resolve_targets(clause, platform)
        if (edit and (companion or named or "existing" in clause.lower())) or _ADD_TO.search(clause) \
                or _SETTING.search(clause):
            what = f" ({named[0].describe()})" if named else ""
            out.append(f"{NOT_PLANNED}the proposal also changes an object this system does not own{what}: "
                       f"{clause[:160]!r}")
    return out


_PORTS_FROM = re.compile(
    r"\b(?:TCP|UDP|ports?)\s+(?P<ports>\d{2,5}(?:\s*(?:,|and|or)\s*\d{2,5})*)\s+(?:only\s+)?from\s+"
    r"(?P<src>.{1,300}?)(?=,?\s+and\s+(?:TCP|UDP|ports?)\s+\d|[.;]|$)", re.I | re.S)


def ingress_rules_in(text: str, namespaces: set[str]) -> list[IngressRule]:
    """One ingress rule per "TCP <ports> from <sources>" the text writes ("allows TCP 6379
    only from the knowledge, ai-inference and tools namespaces, and TCP 9121 from
    observability"): the sources are namespaces the platform has, or pods by label."""
    from cortex_school.workers.plan import IngressRule

    rules: list[IngressRule] = []
    for m in _PORTS_FROM.finditer(text):
        ports = [Port(number=int(p), protocol="UDP" if m.group(0).upper().startswith("UDP") else "TCP")
                 for p in re.findall(r"\d{2,5}", m.group("ports")) if 1 <= int(p) <= 65535]
        src = m.group("src")
        peers = [Peer(pod_labels={k: v}) for k, v in re.findall(
            r"pods labell?ed `?([a-z0-9][a-z0-9./-]*[a-z0-9])\s?[=:]\s*[\"']?([A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])", src)]
        if not peers:
            peers = [Peer(namespace=w) for w in dict.fromkeys(re.findall(r"[a-z0-9][a-z0-9-]*[a-z0-9]", src))
                     if w in namespaces]
        if ports and peers:
            rules.append(IngressRule(peers=peers[:20], ports=ports[:10]))
    return rules if len(rules) >= 2 else []  # one rule: the single-rule recipe reads it
