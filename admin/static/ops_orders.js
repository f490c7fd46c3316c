/* parcelhook ops dashboard: the order view. Shows an order's shipments
 * (GET /api/merchants/<m>/orders/<ref>) and refreshes one from Shippo
 * (POST /api/merchants/<m>/shipments/refresh: the Track Shippo answers is processed like
 * a track_updated webhook; a status already seen has no second effect).
 * Requests go through api.js (the X-Parcelhook-CSRF header from <meta name="csrf-token">).
 */
(function () {
  "use strict";

  const $ = (sel) => document.querySelector(sel);

  const api = window.ParcelhookApi.request; // api.js

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    return td;
  }

  function say(text) { $("#order-status").textContent = text; }

  function row(merchant, shipment) {
    const tr = document.createElement("tr");
    tr.dataset.shipment = String(shipment.id);
    tr.append(
      cell(shipment.carrier), cell(shipment.tracking_number),
      cell(shipment.status), cell(shipment.last_scan_at)
    );
    tr.children[2].className = "shipment-status";
    const td = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "shippo-refresh";
    button.textContent = "Refresh from Shippo";
    button.disabled = !shipment.carrier || !shipment.tracking_number;
    button.addEventListener("click", () => refresh(merchant, shipment, tr, button));
    td.append(button);
    tr.append(td);
    return tr;
  }

  async function refresh(merchant, shipment, tr, button) {
    button.disabled = true;
    say("asking Shippo…");
    try {
      const r = await api("/api/merchants/" + encodeURIComponent(merchant) + "/shipments/refresh", {
        method: "POST",
        json: { carrier: shipment.carrier, tracking_number: shipment.tracking_number },
      });
      if (r.ok) {
        tr.replaceWith(row(merchant, r.body.shipment));
        say("refreshed " + shipment.tracking_number + ": " + r.body.shipment.status);
      } else {
        say((r.body && r.body.message) || "refresh failed (" + r.status + ")");
        button.disabled = false;
      }
    } catch (e) {
      say("refresh failed: " + e.message);
      button.disabled = false;
    }
  }

  async function show(event) {
    event.preventDefault();
    const merchant = $("#order-merchant").value;
    const ref = $("#order-ref").value;
    const tbody = $("#order-shipments tbody");
    tbody.replaceChildren();
    if (!merchant || !ref) return;
    say("loading…");
    const r = await api("/api/merchants/" + encodeURIComponent(merchant) + "/orders/" + encodeURIComponent(ref));
    if (!r.ok) { say((r.body && r.body.message) || "not found"); return; }
    say("order " + r.body.ref + ": " + r.body.status);
    for (const shipment of r.body.shipments) tbody.append(row(merchant, shipment));
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = $("#order-form");
    if (form) form.addEventListener("submit", show);
  });
})();
