/* parcelhook admin pages: how they call the API. `ParcelhookApi.request(path, options)` hands
 * `options` to fetch with the X-Parcelhook-CSRF header from <meta name="csrf-token">,
 * Accept: application/json and the session cookie; `options.json` becomes a JSON body. It
 * resolves to { status, ok, body (the parsed JSON, or null), redirected, url }: each page decides
 * what a signed-out answer means (ops.js, merchant.js). Loaded before the pages' own scripts.
 */
(function () {
  "use strict";

  const CSRF = document.querySelector('meta[name="csrf-token"]').content;

  async function request(path, options) {
    const opts = Object.assign({ method: "GET", headers: {} }, options || {});
    opts.headers = Object.assign({ "X-Parcelhook-CSRF": CSRF, Accept: "application/json" }, opts.headers);
    if (opts.json !== undefined) {
      opts.body = JSON.stringify(opts.json);
      opts.headers["Content-Type"] = "application/json";
      delete opts.json;
    }
    opts.credentials = "same-origin";
    const response = await fetch(path, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { status: response.status, ok: response.ok, body: body, redirected: response.redirected, url: response.url };
  }

  window.ParcelhookApi = { request: request };
})();
