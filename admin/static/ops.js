/* parcelhook ops dashboard. Vanilla JS, no build step.
 *
 * Polls: /api/ops/queues every 2 s (numbers + a client-side history sparkline),
 * /api/ops/webhooks and /api/ops/summary every 5 s, /api/ops/dead-letters every 10 s
 * (and at once when a dead count changes). Requests go through api.js (the
 * X-Parcelhook-CSRF header from <meta name="csrf-token">).
 */
(function () {
  "use strict";

  const HISTORY = 150; // points kept per queue: 5 min at one point every 2 s
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const history = {};
  let lastDead = null;

  // ------------------------------------------------------------------ helpers
  async function api(path, options) { // api.js; signed out, it goes to the sign-in form
    const r = await window.ParcelhookApi.request(path, options);
    if (r.redirected && r.url.includes("/ops/login")) {
      window.location = "/ops/login";
      throw new Error("signed out");
    }
    if (r.status === 401) { window.location = "/ops/login"; }
    return r;
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("data-")) node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of [].concat(children || [])) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    const ago = (Date.now() - d.getTime()) / 1000;
    const clock = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return ago < 86400 ? clock + " (" + age(Math.max(ago, 0)) + " ago)" : d.toLocaleString();
  }

  function outcomeClass(outcome) {
    if (["queued", "sent", "delivered", "processed"].includes(outcome)) return "outcome ok";
    if (["duplicate", "ignored", "deferred", "suppressed", "queued_retry"].includes(outcome)) return "outcome";
    if (["unavailable", "stale_signature"].includes(outcome)) return "outcome meh";
    return "outcome bad";
  }

  function fillBody(tbody, rows, cols, emptyText) {
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", { class: "empty" }, el("td", { colSpan: cols, text: emptyText }))]));
  }

  // ------------------------------------------------------------------ queues + workers
  function sparkline(svg, points) {
    const w = 160, h = 28, pad = 2;
    const max = Math.max(1, ...points);
    const step = (w - 2 * pad) / (HISTORY - 1);
    const offset = HISTORY - points.length;
    const coords = points.map((v, i) => {
      const x = pad + (offset + i) * step;
      const y = h - pad - (v / max) * (h - 2 * pad);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    const ns = "http://www.w3.org/2000/svg";
    const base = document.createElementNS(ns, "line");
    base.setAttribute("x1", pad); base.setAttribute("x2", w - pad);
    base.setAttribute("y1", h - pad); base.setAttribute("y2", h - pad);
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", coords.join(" "));
    const title = document.createElementNS(ns, "title");
    title.textContent = "ready: now " + points[points.length - 1] + ", peak " + max + " (last " + Math.round(points.length * 2 / 60 * 10) / 10 + " min)";
    svg.replaceChildren(base, line, title);
  }

  async function refreshQueues() {
    let r;
    try { r = await api("/api/ops/queues"); } catch (e) { $("#updated").textContent = "offline: " + e.message; return; }
    if (!r.ok) { $("#updated").textContent = "broker unavailable (" + r.status + ")"; return; }
    let deadTotal = 0;
    for (const q of r.body.queues) {
      const row = $('tr[data-queue="' + q.name + '"]');
      if (!row) continue;
      deadTotal += q.dead;
      for (const cell of $$("td[data-field]", row)) {
        const f = cell.dataset.field;
        const v = q[f];
        cell.textContent = f === "oldest_age_s" ? age(v) : (v === null ? "n/a" : v);
        cell.classList.toggle("hot", (f === "dead" && v > 0) || (f === "oldest_age_s" && v > 300));
        cell.classList.toggle("warm", f === "ready" && v > 0);
      }
      const h = (history[q.name] = history[q.name] || []);
      h.push(q.ready);
      if (h.length > HISTORY) h.shift();
      sparkline($("svg", row), h);
    }
    const workers = r.body.workers;
    const count = $("#worker-count");
    count.textContent = workers.length + (workers.length === 1 ? " process" : " processes");
    count.classList.toggle("bad", workers.length === 0);
    $("#worker-list").replaceChildren(...workers.map((w) =>
      el("li", {}, [el("code", { text: w.id.slice(0, 8) }), " seen " + age(w.last_seen_s) + " ago"])));
    if (!workers.length) $("#worker-list").replaceChildren(el("li", { text: "No live worker: nothing is being processed." }));
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (lastDead !== null && deadTotal !== lastDead) refreshDeadLetters();
    lastDead = deadTotal;
  }

  // ------------------------------------------------------------------ dead letters
  const selected = new Set(); // "queue/id"

  async function refreshDeadLetters() {
    const r = await api("/api/ops/dead-letters?limit=200");
    if (!r.ok) return;
    const items = r.body.dead_letters;
    const present = new Set(items.map((d) => d.queue + "/" + d.id));
    for (const k of Array.from(selected)) if (!present.has(k)) selected.delete(k);
    const total = Object.values(r.body.counts).reduce((a, b) => a + b, 0);
    $("#dlq-total").textContent = total ? total + " in total" + (total > items.length ? ", newest " + items.length + " shown" : "") : "";
    const rows = items.map((d) => {
      const key = d.queue + "/" + d.id;
      const box = el("input", { type: "checkbox", checked: selected.has(key), "data-key": key, title: "select" });
      box.addEventListener("change", () => { box.checked ? selected.add(key) : selected.delete(key); updateDlqButtons(); });
      const what = d.event_id ? d.event_id : (d.notification_id !== null ? "notification #" + d.notification_id : "–");
      return el("tr", { "data-key": key }, [
        el("td", {}, box), el("td", { text: d.queue }), el("td", {}, el("code", { text: d.actor || "?" })),
        el("td", { text: d.merchant || "–" }), el("td", {}, el("code", { text: what })),
        el("td", { text: d.attempts }), el("td", { class: "mono", text: d.last_error || "–" }),
        el("td", { text: when(d.dead_lettered_at) }),
      ]);
    });
    fillBody($("#dlq-table tbody"), rows, 8, "No dead letters. Good.");
    updateDlqButtons();
  }

  function updateDlqButtons() {
    const n = selected.size;
    $("#dlq-requeue").disabled = $("#dlq-purge").disabled = n === 0;
    $("#dlq-requeue").textContent = n ? "Requeue " + n + " selected" : "Requeue selected";
    $("#dlq-purge").textContent = n ? "Purge " + n + " selected" : "Purge selected";
    const boxes = $$("#dlq-table tbody input[type=checkbox]");
    $("#dlq-all").checked = boxes.length > 0 && boxes.every((b) => b.checked);
  }

  function confirmDialog(title, text, okLabel, danger) {
    return new Promise((resolve) => {
      const dialog = $("#confirm-dialog");
      $("#confirm-title").textContent = title;
      $("#confirm-text").textContent = text;
      const ok = $("#confirm-ok");
      ok.textContent = okLabel;
      ok.className = danger ? "danger solid" : "primary";
      const done = (value) => { dialog.close(); ok.onclick = cancel.onclick = null; resolve(value); };
      const cancel = $("#confirm-cancel");
      ok.onclick = () => done(true);
      cancel.onclick = () => done(false);
      dialog.oncancel = () => done(false);
      dialog.showModal();
      cancel.focus();
    });
  }

  async function bulk(action) {
    const byQueue = {};
    for (const key of selected) {
      const [queue, ...rest] = key.split("/");
      (byQueue[queue] = byQueue[queue] || []).push(rest.join("/"));
    }
    const n = selected.size;
    const queues = Object.keys(byQueue).join(", ");
    const ok = await confirmDialog(
      action === "requeue" ? "Requeue " + n + " message" + (n > 1 ? "s" : "") + "?" : "Purge " + n + " message" + (n > 1 ? "s" : "") + "?",
      action === "requeue"
        ? "They go back to the end of the " + queues + " queue with a fresh retry budget. Already-processed work is not repeated."
        : "They are deleted for good and will never be processed. This cannot be undone.",
      action === "requeue" ? "Requeue" : "Purge for good", action === "purge");
    if (!ok) return;
    let done = 0; const problems = [];
    for (const [queue, ids] of Object.entries(byQueue)) {
      const r = await api("/api/ops/dead-letters/" + action, { method: "POST", json: { queue: queue, ids: ids } });
      if (r.ok) done += r.body.requeued !== undefined ? r.body.requeued : r.body.purged;
      else problems.push(queue + ": " + ((r.body && (r.body.message || JSON.stringify(r.body.fields))) || r.status));
    }
    selected.clear();
    $("#dlq-result").textContent = (action === "requeue" ? "Requeued " : "Purged ") + done + "." + (problems.length ? " Problems: " + problems.join("; ") : "");
    refreshDeadLetters();
    refreshQueues();
  }

  // ------------------------------------------------------------------ webhooks
  async function refreshWebhooks() {
    const outcome = $("#wh-outcome").value;
    const r = await api("/api/ops/webhooks?limit=60" + (outcome ? "&outcome=" + encodeURIComponent(outcome) : ""));
    if (!r.ok) return;
    const rows = r.body.deliveries.map((d) => el("tr", {}, [
      el("td", { text: when(d.received_at) }), el("td", { text: d.merchant }), el("td", { text: d.event }),
      el("td", {}, el("span", { class: outcomeClass(d.outcome), text: d.outcome + " · " + d.status_code })),
      el("td", { class: "mono", text: d.reason || "" }),
    ]));
    fillBody($("#wh-table tbody"), rows, 5, "No webhook deliveries yet.");
  }

  // ------------------------------------------------------------------ summary: alerts, exceptions, notifications, outbox
  function renderAlerts(health) {
    const box = $("#alerts");
    const items = health.alerts.map((a) => el("div", { class: "alert " + a.severity, "data-key": a.key }, [
      el("b", { text: a.severity === "critical" ? "Critical: " : "Warning: " }), a.message, " ",
      el("small", { text: a.since ? "since " + when(a.since) : "(live)" }),
    ]));
    if (health.error) items.push(el("div", { class: "alert warning", text: health.error }));
    const stale = !health.last_check || (Date.now() - new Date(health.last_check).getTime()) > 180000;
    if (stale) {
      items.push(el("div", { class: "alert warning" }, [
        el("b", { text: "Alert checks are not running: " }),
        health.last_check ? "the last one was " + when(health.last_check) + "." : "none has run yet.",
        " They are run by the scheduler (and workers); until then only live rules are shown."]));
    }
    box.hidden = items.length === 0;
    box.replaceChildren(...items);
  }

  function renderExceptions(list) {
    const box = $("#exc-list");
    if (!list.length) { box.replaceChildren(el("p", { class: "muted", text: "No open exceptions." })); return; }
    box.replaceChildren(...list.map((m) => el("div", { class: "exc-merchant", "data-merchant": m.merchant }, [
      el("b", { text: m.merchant }), " ", el("span", { class: "muted", text: m.total + " shipment" + (m.total > 1 ? "s" : "") }),
      el("div", { class: "chips" }, m.classes.map((c) => el("span", {
        class: "chip", title: c.oldest_scan ? "oldest last scan " + when(c.oldest_scan) : "",
        text: c.class.replace(/_/g, " ") + " × " + c.count }))),
    ])));
  }

  function renderNotifications(list) {
    const statuses = ["queued", "deferred", "sent", "delivered", "failed", "suppressed"];
    const byChannel = {};
    for (const r of list) (byChannel[r.channel] = byChannel[r.channel] || {})[r.status] = r.count;
    const rows = Object.keys(byChannel).sort().map((ch) => el("tr", {}, [el("th", { scope: "row", text: ch })].concat(
      statuses.map((s) => el("td", { class: s === "failed" && byChannel[ch][s] ? "hot" : "", text: byChannel[ch][s] || 0 })))));
    fillBody($("#notif-table tbody"), rows, 7, "No notifications in the last 24 h.");
  }

  function renderOutbox(messages, mail) {
    const box = $("#outbox-list");
    if (!messages.length) box.replaceChildren(el("p", { class: "muted", text: "The outbox is empty." }));
    else box.replaceChildren(...messages.map((m) => el("article", { class: "msg" }, [
      el("header", {}, [el("b", { text: (m.merchant || "?") + " · " + m.kind + " · " + m.channel }),
        el("span", { class: outcomeClass(m.status), text: m.status })]),
      el("div", { class: "muted", text: "to " + m.to + " · " + when(m.created_at) }),
      m.subject ? el("div", {}, [el("b", { text: "Subject: " }), m.subject]) : null,
      m.removed ? el("p", { class: "muted", text: "Content " + m.removed + "." })
        : m.html ? el("iframe", { sandbox: "", srcdoc: m.html, title: "HTML of outbox message " + m.id })
        : el("pre", { text: m.text }),
    ])));
    const mailBox = $("#ops-mail-list");
    $("#ops-mail summary").textContent = "Ops alert mail (" + mail.length + ")";
    mailBox.replaceChildren(...(mail.length ? mail.map((x) => el("div", { class: "msg" }, [
      el("b", { text: x.subject }), el("div", { class: "muted", text: "to " + x.to + " · " + when(x.at) + " · " + x.via + (x.error ? " · " + x.error : "") }),
    ])) : [el("p", { class: "muted", text: "No alert mail yet. Mail goes to PARCELHOOK_OPS_ALERT_EMAIL when set (kept here when no SMTP is configured)." })]));
  }

  async function refreshSummary() {
    const r = await api("/api/ops/summary");
    if (!r.ok) return;
    renderAlerts(r.body.health);
    renderExceptions(r.body.exceptions);
    renderNotifications(r.body.notifications_24h);
    renderOutbox(r.body.outbox, r.body.health.mail);
  }

  // ------------------------------------------------------------------ start
  function every(ms, fn) { fn(); setInterval(fn, ms); }

  document.addEventListener("DOMContentLoaded", () => {
    const dialog = el("dialog", { id: "confirm-dialog" }, [
      el("h3", { id: "confirm-title" }), el("p", { id: "confirm-text" }),
      el("div", { class: "toolbar" }, [el("button", { type: "button", id: "confirm-cancel", text: "Cancel" }),
        el("button", { type: "button", id: "confirm-ok", text: "OK" })]),
    ]);
    document.body.append(dialog);

    $("#dlq-requeue").addEventListener("click", () => bulk("requeue"));
    $("#dlq-purge").addEventListener("click", () => bulk("purge"));
    $("#dlq-all").addEventListener("change", (e) => {
      for (const b of $$("#dlq-table tbody input[type=checkbox]")) {
        b.checked = e.target.checked;
        b.checked ? selected.add(b.dataset.key) : selected.delete(b.dataset.key);
      }
      updateDlqButtons();
    });
    $("#wh-outcome").addEventListener("change", refreshWebhooks);
    $("#logout").addEventListener("click", async () => {
      await api("/ops/logout", { method: "POST" });
      window.location = "/ops/login";
    });


    every(2000, refreshQueues);
    every(5000, refreshWebhooks);
    every(10000, refreshDeadLetters);
    every(5000, refreshSummary);
    window.ParcelhookTemplateEditor.start({ api: api, confirm: confirmDialog }); // template_editor.js
  });
})();
