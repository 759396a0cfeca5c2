// The pipeline page's live numbers: polls /api/pipeline (same origin, the session cookie)
// every few seconds and updates the page in place with textContent only (nothing from the
// server is parsed as HTML). No inline script: the page's CSP allows only 'self'.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) { return; }
  var api = live.getAttribute("data-api") || "/api/pipeline";
  var every = 3000;

  function text(el, value) { if (el && el.textContent !== String(value)) { el.textContent = String(value); } }

  function label(cell, q) {
    var span = document.createElement("span");
    if (q.starved) { span.className = "starved-label"; span.textContent = "NO CONSUMER"; }
    else if (q.consumers) { span.className = "ok-label"; span.textContent = "consumed"; }
    else { span.className = "muted"; span.textContent = "idle"; }
    cell.replaceChildren(span);
  }

  function render(d) {
    text(document.getElementById("as-of"), d.as_of);
    Object.keys(d.funnel).forEach(function (status) {
      text(document.querySelector('[data-funnel="' + CSS.escape(status) + '"]'), d.funnel[status]);
    });
    d.queues.forEach(function (q) {
      var row = document.querySelector('tr[data-queue="' + CSS.escape(q.name) + '"]');
      if (!row) { return; }
      row.className = q.starved ? "starved" : "";
      text(row.querySelector('[data-field="depth"]'), q.depth);
      text(row.querySelector('[data-field="consumers"]'), q.consumers);
      label(row.querySelector('[data-field="state"]'), q);
    });
    var summary = document.getElementById("starved-summary");
    summary.className = d.starved.length ? "starved-label" : "ok-label";
    text(summary, d.starved.length ? "Work waiting with no consumer: " + d.starved.join(", ")
                                   : "Every queue with work has a consumer.");
    text(document.getElementById("workers"), d.workers.length ? d.workers.join(", ") : "none");
    text(document.getElementById("workers-error"), d.workers_error || "");
    d.flags.forEach(function (f) {
      var row = document.querySelector('tr[data-flag="' + CSS.escape(f.name) + '"]');
      if (!row) { return; }
      var cell = row.querySelector('[data-field="value"]');
      text(cell, f.value ? "true" : "false");
      cell.className = f.value ? "flag-on" : "";
    });
    text(document.getElementById("dead-letters"), d.dead_letters);
    live.classList.remove("stale");
  }

  function poll() {
    fetch(api, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(render)
      .catch(function () { live.classList.add("stale"); })
      .finally(function () { window.setTimeout(poll, every); });
  }
  window.setTimeout(poll, every);
}());
