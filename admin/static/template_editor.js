/* parcelhook template editor: one merchant's template of a message, channel and locale, with a
 * live preview on sample data (the template API, docs/api.md, Templates). Used by the ops
 * dashboard (/ops: a merchant select) and the merchant page (/m/<slug>: its one merchant);
 * each page passes its own `api` (which adds the X-Parcelhook-CSRF header) and `confirm`.
 * The page provides the #tpl-* elements (admin/pages/ops_dashboard.html, merchant.html).
 */
(function () {
  "use strict";

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  let api = null;
  let confirmDialog = null;

  function el(tag, attrs) {
    const node = document.createElement(tag);
    if (attrs && attrs.text !== undefined) node.textContent = attrs.text;
    return node;
  }

  // Responses can arrive out of order: a late answer must never overwrite a newer selection.
  // `load` numbers the selections (an older one's template is aborted, and ignored if it still
  // arrives); `seq` numbers the previews (a new selection or keystroke makes every preview in
  // flight stale).
  const tpl = { timer: null, seq: 0, load: 0, loading: null };

  function tplPath(suffix) {
    const m = $("#tpl-merchant").value, k = $("#tpl-kind").value, c = $("#tpl-channel").value;
    const loc = $("#tpl-locale").value.trim() || "en";
    return "/api/merchants/" + encodeURIComponent(m) + "/templates/" + k + "/" + c + (suffix || "") + "?locale=" + encodeURIComponent(loc);
  }

  function tplBody() {
    const body = { text: $("#tpl-text").value };
    if ($("#tpl-channel").value === "email") {
      body.subject = $("#tpl-subject").value;
      body.html = $("#tpl-html").value || null;
    }
    return body;
  }

  function showErrors(body) {
    const list = $("#tpl-errors");
    const errors = (body && body.errors) || [];
    const items = errors.length
      ? errors.map((e) => el("li", { text: e.field + (e.line ? " line " + e.line : "") + ": " + e.message }))
      : Object.entries((body && body.fields) || {}).map(([f, msg]) => el("li", { text: f + ": " + msg }));
    if (!items.length && body && body.message) items.push(el("li", { text: body.message }));
    list.replaceChildren(...items);
  }

  function channelChanged() {
    const emailOnly = ($("#tpl-kind").dataset.emailOnly || "").split(",");
    const channel = $("#tpl-channel");
    const smsOption = $$("option", channel).find((o) => o.value === "sms");
    if (smsOption) smsOption.disabled = emailOnly.includes($("#tpl-kind").value);
    if (channel.selectedOptions[0] && channel.selectedOptions[0].disabled) channel.value = "email";
    $("#templates").classList.toggle("sms", channel.value === "sms");
  }

  async function loadTemplate() {
    if (!$("#tpl-merchant").value) return;
    channelChanged();
    const mine = ++tpl.load;
    tpl.seq++; // previews of the previous selection are stale now
    clearTimeout(tpl.timer);
    if (tpl.loading) tpl.loading.abort();
    const controller = new AbortController();
    tpl.loading = controller;
    $("#tpl-status").textContent = "";
    $("#tpl-errors").replaceChildren();
    $("#tpl-preview-state").textContent = "loading…";
    let r;
    try {
      r = await api(tplPath(), { signal: controller.signal });
    } catch (e) {
      if (controller.signal.aborted) return; // a newer selection took over
      throw e;
    }
    if (mine !== tpl.load) return; // answered after a newer selection: not ours to show
    tpl.loading = null;
    if (!r.ok) { showErrors(r.body); return; }
    $("#tpl-subject").value = r.body.subject || "";
    $("#tpl-text").value = r.body.text || "";
    $("#tpl-html").value = r.body.html || "";
    $("#tpl-source").textContent = r.body.source === "merchant" ? "customized (" + r.body.locale + ")" : "built-in default (" + r.body.locale + ")";
    preview();
  }

  async function preview() {
    const seq = ++tpl.seq;
    $("#tpl-preview-state").textContent = "rendering…";
    const r = await api(tplPath("/preview"), { method: "POST", json: tplBody() });
    if (seq !== tpl.seq) return; // a newer keystroke's or selection's preview is on its way
    if (r.ok) {
      $("#tpl-errors").replaceChildren();
      $("#pv-subject").textContent = r.body.subject || "";
      $("#pv-text").textContent = r.body.text;
      $("#pv-html").srcdoc = r.body.html || "<p style='font-family:sans-serif;color:#667085'>(no HTML part: the text is sent)</p>";
      $("#pv-segments").textContent = r.body.segments ? r.body.segments + " SMS segment(s), " + r.body.encoding : "";
      $("#tpl-preview-state").textContent = "sample data, " + r.body.locale;
    } else {
      showErrors(r.body);
      $("#tpl-preview-state").textContent = "not rendered: fix the errors";
    }
  }

  function schedulePreview() {
    clearTimeout(tpl.timer);
    $("#tpl-status").textContent = "unsaved changes";
    $("#tpl-status").className = "";
    tpl.timer = setTimeout(preview, 350);
  }

  async function saveTemplate() {
    const r = await api(tplPath(), { method: "PUT", json: tplBody() });
    const status = $("#tpl-status");
    if (r.ok) {
      status.textContent = "Saved " + new Date().toLocaleTimeString() + ": live for new messages.";
      status.className = "ok";
      $("#tpl-errors").replaceChildren();
      $("#tpl-source").textContent = "customized (" + r.body.locale + ")";
    } else {
      status.textContent = r.status === 422 ? "Not saved: the template has errors." : "Not saved (" + r.status + ").";
      status.className = "bad";
      showErrors(r.body);
    }
  }

  async function resetTemplate() {
    const ok = await confirmDialog("Reset to the built-in default?", "The merchant's customized " + $("#tpl-kind").value + " " +
      $("#tpl-channel").value + " template is deleted; customers get the default again.", "Reset", true);
    if (!ok) return;
    const r = await api(tplPath(), { method: "DELETE" });
    if (r.ok) loadTemplate(); else showErrors(r.body);
  }

  function start(options) {
    api = options.api;
    confirmDialog = options.confirm;
    for (const id of ["#tpl-merchant", "#tpl-kind", "#tpl-channel"]) $(id).addEventListener("change", loadTemplate);
    $("#tpl-locale").addEventListener("change", loadTemplate);
    for (const id of ["#tpl-subject", "#tpl-text", "#tpl-html"]) $(id).addEventListener("input", schedulePreview);
    $("#tpl-save").addEventListener("click", saveTemplate);
    $("#tpl-reset").addEventListener("click", resetTemplate);
    if (!$("#tpl-merchant").value) $$("#templates button, #templates textarea, #templates input").forEach((n) => { n.disabled = true; });
    $("#tpl-kind").value = "delivered";
    loadTemplate();
  }

  window.ParcelhookTemplateEditor = { start: start };
})();
