// The review grid: one key (or click) per output. The cursor card takes the key; after a decision the
// cursor moves to the next card still to decide. Decisions go to POST /batches/{id}/review.
"use strict";
(function () {
  const grid = document.getElementById("grid");
  if (!grid) return;
  const batch = grid.dataset.batch;
  const note = document.getElementById("note");
  const cards = () => [...grid.querySelectorAll(".card")];
  let cursor = 0;

  function focus(i) {
    const all = cards();
    if (!all.length) return;
    cursor = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((c, n) => c.classList.toggle("cursor", n === cursor));
    all[cursor].scrollIntoView({ block: "nearest" });
  }

  function nextOpen(from) {
    const all = cards();
    for (let n = from + 1; n < all.length; n++) {
      if (all[n].dataset.review === "pending" || all[n].dataset.review === "none") return n;
    }
    return Math.min(from + 1, all.length - 1);
  }

  function paint(card, state) {
    card.dataset.review = state;
    const label = card.querySelector("[data-state]");
    label.textContent = state;
    label.className = "state review-" + state;
    card.querySelector(".pick").checked = false;
    card.classList.remove("selected");
  }

  function bump(counts) {
    document.querySelectorAll("[data-count]").forEach((e) => {
      e.textContent = (counts[e.dataset.count] || 0) + " " + e.dataset.count;
    });
  }

  async function decide(decision, targets) {
    const text = note.value.trim();
    if (decision === "redo" && !text) {
      window.hitline.toast("type what the new take should change in the note box first (n)", true);
      note.focus();
      return false;
    }
    const ids = targets.map((c) => Number(c.dataset.output));
    const state = { approve: "approved", reject: "rejected", redo: "redo" }[decision];
    targets.forEach((c) => paint(c, state));  // at once: the next key may come before the answer
    try {
      const r = await window.hitline.api("POST", "/batches/" + encodeURIComponent(batch) + "/review",
        { decision, output_ids: ids, note: text || null });
      if (ids.length > 1 || r.skipped) window.hitline.toast(r.message);
      const page = await window.hitline.api("GET", "/batches/" + encodeURIComponent(batch) + "/outputs?limit=1");
      bump(page.counts);
    } catch (e) {
      window.hitline.toast(e.message, true);
      targets.forEach((c) => paint(c, "pending"));
    }
    return true;
  }

  async function one(decision, i) {
    const card = cards()[i];
    if (card && await decide(decision, [card]) !== false) focus(nextOpen(i));
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target === note) {
      if (ev.key === "Enter" || ev.key === "Escape") { note.blur(); ev.preventDefault(); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const keys = { a: "approve", r: "reject", d: "redo" };
    if (keys[ev.key]) { ev.preventDefault(); one(keys[ev.key], cursor); }
    else if (ev.key === "j" || ev.key === "ArrowRight") focus(cursor + 1);
    else if (ev.key === "k" || ev.key === "ArrowLeft") focus(cursor - 1);
    else if (ev.key === "x") {
      const c = cards()[cursor], box = c.querySelector(".pick");
      box.checked = !box.checked;
      c.classList.toggle("selected", box.checked);
      focus(cursor + 1);
    } else if (ev.key === "n") { ev.preventDefault(); note.focus(); }
  });

  grid.addEventListener("click", (ev) => {
    const card = ev.target.closest(".card");
    if (!card) return;
    const i = cards().indexOf(card);
    const btn = ev.target.closest("button[data-do]");
    if (btn) { one(btn.dataset.do, i); return; }
    if (ev.target.classList.contains("pick")) { card.classList.toggle("selected", ev.target.checked); return; }
    focus(i);
  });

  document.querySelectorAll("[data-bulk]").forEach((b) => b.addEventListener("click", () => {
    const picked = cards().filter((c) => c.querySelector(".pick").checked);
    if (!picked.length) { window.hitline.toast("select outputs first (x, or the checkboxes)", true); return; }
    decide(b.dataset.bulk, picked);
  }));
  document.getElementById("select-all").addEventListener("click", () => {
    cards().forEach((c) => { c.querySelector(".pick").checked = true; c.classList.add("selected"); });
  });
  focus(0);
})();
