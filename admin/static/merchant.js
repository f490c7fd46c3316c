/* parcelhook merchant page (/m/<slug>). Vanilla JS, no build step.
 *
 * Polls /api/merchants/<slug>/overview every 10 s (recent orders with their shipments and
 * exceptions, the notifications sent) and runs the shared template editor
 * (template_editor.js). Requests go through api.js (the X-Parcelhook-CSRF header from
 * <meta name="csrf-token">); a 401 (signed out, or the key was revoked) goes to the sign-in form.
 */
(function () {
  "use strict";

  const SLUG = document.body.dataset.merchant;
  const LOGIN = "/m/" + encodeURIComponent(SLUG) + "/login";
  const $ = (sel) => document.querySelector(sel);

  async function api(path, options) { // api.js; signed out or revoked: the sign-in form
    const r = await window.ParcelhookApi.request(path, options);
    if (r.status === 401 || (r.redirected && r.url.includes("/login"))) {
      window.location = LOGIN;
    }
    return r;
  }

  function confirmDialog(title, text, okLabel) {
    return Promise.resolve(window.confirm(title + "\n\n" + text + "\n\n(" + okLabel + ")"));
  }

  function td(text, className) {
    const cell = document.createElement("td");
    cell.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (className) cell.className = className;
    return cell;
  }

  function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }

  function fill(tbody, rows, cols, emptyText) {
    if (rows.length) { tbody.replaceChildren(...rows); return; }
    const tr = document.createElement("tr");
    tr.className = "empty";
    const cell = td(emptyText);
    cell.colSpan = cols;
    tr.append(cell);
    tbody.replaceChildren(tr);
  }

  function orderRows(order) {
    const shipments = order.shipments.length ? order.shipments : [null];
    return shipments.map((s, i) => {
      const tr = document.createElement("tr");
      tr.dataset.order = order.ref;
      tr.append(
        td(i === 0 ? order.ref : ""), td(i === 0 ? order.status : ""), td(i === 0 ? order.exception : ""),
        td(s && s.carrier), td(s && s.tracking_number),
        td(s && (s.status + (s.exception ? " · " + s.exception.class.replace(/_/g, " ") : "")), s && s.exception ? "hot shipment-status" : "shipment-status"),
        td(s && when(s.last_scan_at)));
      return tr;
    });
  }

  function notificationRow(n) {
    const tr = document.createElement("tr");
    tr.dataset.notification = String(n.id);
    tr.append(td(when(n.sent_at || n.created_at)), td(n.kind), td(n.channel), td(n.to), td(n.status),
      td(n.error_code || n.error));
    return tr;
  }

  async function refresh() {
    const r = await api("/api/merchants/" + encodeURIComponent(SLUG) + "/overview");
    if (!r.ok) { $("#updated").textContent = "not loaded (" + r.status + ")"; return; }
    fill($("#orders-table tbody"), r.body.orders.flatMap(orderRows), 7, "No orders yet.");
    fill($("#notifications-table tbody"), r.body.notifications.map(notificationRow), 6, "No notifications yet.");
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#logout").addEventListener("click", async () => {
      await api("/m/" + encodeURIComponent(SLUG) + "/logout", { method: "POST" });
      window.location = LOGIN;
    });
    refresh();
    setInterval(refresh, 10000);
    window.ParcelhookTemplateEditor.start({ api: api, confirm: confirmDialog });
  });
})();
