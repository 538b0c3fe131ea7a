// hitline dashboard: live numbers and buttons over the JSON API (same origin, cookie + CSRF header).
// Plain JS, no build step. Text from the server is inserted with textContent, never as HTML.
"use strict";
(function () {
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";

  function toast(text, bad) {
    const t = document.getElementById("toast");
    t.textContent = text;
    t.className = bad ? "show bad" : "show";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = ""; }, 5000);
  }

  async function api(method, url, body) {
    const opts = { method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const r = await fetch(url, opts);
    if (r.status === 401) { window.location = "/ui/login"; throw new Error("logged out"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error((data.error && data.error.message) || ("HTTP " + r.status));
    return data;
  }

  window.hitline = { api: (...a) => api(...a), toast: (...a) => toast(...a) };  // for review.js

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function money(b) {
    return "$" + b.spent_usd.toFixed(3) + (b.budget_usd === null ? "" : " of $" + b.budget_usd.toFixed(2));
  }

  function paint(b) {
    const p = b.progress, t = p.total || 1;
    document.querySelectorAll('[data-bar="' + b.id + '"]').forEach((bar) => {
      const [done, failed, other] = bar.children;
      done.style.width = (100 * p.done / t) + "%";
      failed.style.width = (100 * p.failed / t) + "%";
      other.style.width = (100 * (p.finished - p.done - p.failed) / t) + "%";
      bar.title = p.finished + " of " + p.total + " SKUs finished";
    });
    document.querySelectorAll('[data-counts="' + b.id + '"]').forEach((e) => {
      e.textContent = p.done + " done, " + p.failed + " failed, " + (p.total - p.finished) + " to go of " + p.total;
    });
    document.querySelectorAll('[data-status="' + b.id + '"]').forEach((e) => { e.textContent = b.status; });
    document.querySelectorAll('[data-cost="' + b.id + '"]').forEach((e) => { e.textContent = money(b); });
  }

  function paintFailures(b) {
    const box = document.getElementById("failures");
    if (!box) return;
    box.replaceChildren();
    if (!b.failures.length) { box.appendChild(el("p", { class: "none" }, "No failed job.")); return; }
    const retryable = b.failures.filter((f) => f.retryable).reduce((n, f) => n + f.count, 0);
    if (retryable) {
      const all = el("button", { type: "button", "data-action": "retry-all", "data-batch": b.id },
        "Retry all failed (" + retryable + " jobs)");
      box.appendChild(el("p")).appendChild(all);
    }
    const table = el("table", { class: "failures" });
    const head = table.appendChild(el("thead")).appendChild(el("tr"));
    ["jobs", "stage", "reason", ""].forEach((h) => head.appendChild(el("th", {}, h)));
    const body = table.appendChild(el("tbody"));
    for (const f of b.failures) {
      const tr = body.appendChild(el("tr", { "data-reason-group": f.reason }));
      tr.appendChild(el("td", {}, f.count + " " + (f.kind === "sku" ? "SKU" : "catalog") + (f.count > 1 ? "s" : "")));
      tr.appendChild(el("td", {}, f.stage));
      tr.appendChild(el("td", { class: "reason", title: f.example }, f.reason));
      const cell = tr.appendChild(el("td"));
      if (f.retryable) {
        const btn = el("button", { type: "button", "data-action": "retry-reason", "data-batch": b.id,
          "data-stage": f.stage }, "retry these");
        btn.dataset.reason = f.reason;
        cell.appendChild(btn);
      } else {
        cell.appendChild(el("span", { class: "hint" }, "fix the CSV row and resubmit"));
      }
    }
    box.appendChild(table);
  }

  const following = new Set();  // batches whose page is polling now

  async function pollBatch(id) {
    if (following.has(id)) return;
    following.add(id);
    try { await followBatch(id); } finally { following.delete(id); }
  }

  async function followBatch(id) {
    let last = "";
    for (;;) {
      try {
        const b = await api("GET", "/batches/" + encodeURIComponent(id));
        paint(b);
        const key = JSON.stringify(b.failures);
        if (key !== last) { paintFailures(b); last = key; }
        if (b.status === "finished" || b.status === "cancelled") return;  // nothing moves any more
        await sleep(2000);
      } catch (e) { await sleep(5000); }
      while (document.hidden) await sleep(1000);  // a tab nobody looks at asks nothing
    }
  }

  // the list page: only the batches on screen that still run are asked for, each on its own; when none
  // runs the page stops asking (a reload shows new batches)
  async function pollBatches() {
    const running = () => Array.from(document.querySelectorAll("[data-status]"))
      .filter((c) => c.textContent === "running" || c.textContent === "cancelling")
      .map((c) => c.dataset.status);
    for (let ids = running(); ids.length; ids = running()) {
      await sleep(3000);
      if (document.hidden) continue;
      for (const id of ids) {
        try { paint(await api("GET", "/batches/" + encodeURIComponent(id))); } catch (e) { /* keep the last */ }
      }
    }
  }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  document.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("button[data-action], #logout");
    if (!btn) return;
    if (btn.id === "logout") {
      const f = el("form", { method: "post", action: "/ui/logout" });
      document.body.appendChild(f);
      f.submit();
      return;
    }
    const batch = btn.dataset.batch, action = btn.dataset.action;
    const url = "/batches/" + encodeURIComponent(batch);
    btn.disabled = true;
    try {
      let r;
      if (action === "retry-all") r = await api("POST", url + "/retry", {});
      else if (action === "retry-reason") r = await api("POST", url + "/retry", { reason_group: btn.dataset.reason, stage: btn.dataset.stage });
      else if (action === "retry-job") r = await api("POST", url + "/retry", { job_ids: [Number(btn.dataset.job)] });
      else if (action === "cancel") {
        if (!confirm("Cancel batch " + batch + "? Running jobs finish their current stage.")) { btn.disabled = false; return; }
        r = await api("POST", url + "/cancel");
      } else if (action === "resume") r = await api("POST", url + "/resume");
      else if (action === "redeliver") r = await api("POST", "/webhooks/redeliver?batch_id=" + encodeURIComponent(batch));
      toast(r.message);
      // an action can set a finished batch going again: follow it while it runs
      if (document.querySelector("[data-batch-id]") && action !== "redeliver") pollBatch(batch);
    } catch (e) {
      toast(e.message, true);
    }
    btn.disabled = false;
  });

  const batchBox = document.querySelector('[data-poll="batch"]');
  if (batchBox) {
    const data = document.getElementById("batch-data");
    if (data) paintFailures(JSON.parse(data.textContent));
    pollBatch(batchBox.dataset.batchId);
  }
  if (document.querySelector('[data-poll="batches"]')) pollBatches();
})();
