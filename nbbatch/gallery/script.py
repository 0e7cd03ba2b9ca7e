"""The page's one inline script. Its SHA-256 is the only script the page's CSP allows.

It reads the records from the `<script type="application/json" id="data">` block and builds
every card with createElement and textContent - never innerHTML - so a prompt is always
text. Cards are built on demand, a chunk at a time as the grid nears the bottom of the
screen, so 10,000 images open and filter at once; filtering works on the records, not on
the DOM. The larger view is a modal <dialog> (focus is trapped and Esc closes it natively).
"""

SCRIPT = r"""
"use strict";
(() => {
  const records = JSON.parse(document.getElementById("data").textContent);
  const byId = (id) => document.getElementById(id);
  const grid = byId("grid"), more = byId("more"), shown = byId("shown"), empty = byId("empty");
  const search = byId("search"), provider = byId("provider"), viewer = byId("viewer");
  const media = byId("viewer-media"), info = byId("viewer-info"), position = byId("position");
  const prev = byId("prev"), next = byId("next"), full = byId("open-full");
  const statusButtons = Array.from(document.querySelectorAll("[data-status]"));
  const CHUNK = 120;
  const haystacks = records.map((r) => (r.id + "\n" + (r.pr || "")).toLowerCase());
  const cards = new Array(records.length);
  let matches = [], rendered = 0, status = "", current = -1, scheduled = false;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  const money = (usd) => "$" + usd.toFixed(usd > 0 && usd < 0.01 ? 4 : 3);
  const title = (r) => (r.of > 1 ? `${r.id} #${r.ix} of ${r.of}` : r.id);
  const placeholderText = (r) =>
    r.st === "done" ? "no preview" : r.st === "failed" ? r.ek || "failed" : "pending";

  function facts(r) {
    const parts = [];
    if (r.pv) parts.push(r.pv);
    if (r.md) parts.push(r.md);
    if (r.usd !== undefined) parts.push(money(r.usd));
    parts.push(r.at === 1 ? "1 attempt" : `${r.at} attempts`);
    return parts.join(" · ");
  }

  // What went wrong or what it waits for: [label, text], or null for nothing to say.
  function problem(r) {
    if (r.st === "failed") return [r.ek || "failed", r.em || ""];
    if (r.st !== "pending") return r.np ? ["no preview", r.np] : null;
    if (r.job) return ["in batch job", r.job + (r.jst ? ` (${r.jst})` : "")];
    if (r.ek || r.em) return [`last error${r.ek ? " (" + r.ek + ")" : ""}`, r.em || ""];
    return null;
  }

  function describe(r, into) {
    const head = el("p", "head");
    head.append(el("span", "id", title(r)), el("span", "badge " + r.st, r.st));
    into.append(head);
    if (r.pr) into.append(el("p", "prompt", r.pr));
    into.append(el("p", "facts", facts(r)));
    const trouble = problem(r);
    if (trouble) {
      const line = el("p", "problem");
      line.append(el("strong", null, trouble[0] + ": "), trouble[1]);
      into.append(line);
    }
  }

  function card(k) {
    if (cards[k]) return cards[k];
    const r = records[k];
    const item = el("li", "card " + r.st);
    item.dataset.k = String(k);
    const opener = el(r.href ? "a" : "button", "thumb");
    if (r.href) opener.href = r.href;
    else opener.type = "button";
    opener.setAttribute("aria-label", `${title(r)} (${r.st}): open the larger view`);
    if (r.th) {
      const img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.alt = "";
      img.src = r.th;
      opener.append(img);
    } else {
      opener.append(el("span", "placeholder", placeholderText(r)));
    }
    const body = el("div", "body");
    describe(r, body);
    if (r.pr) body.querySelector(".prompt").title = r.pr;
    item.append(opener, body);
    return (cards[k] = item);
  }

  function renderMore() {
    const end = Math.min(rendered + CHUNK, matches.length);
    if (end <= rendered) return;
    const fragment = document.createDocumentFragment();
    for (; rendered < end; rendered++) fragment.append(card(matches[rendered]));
    grid.append(fragment);
    // Observing again reports at once whether the end is still near the screen.
    observer.unobserve(more);
    observer.observe(more);
  }
  const observer = new IntersectionObserver(
    (seen) => { if (seen.some((e) => e.isIntersecting)) renderMore(); },
    { rootMargin: "0px 0px 1500px 0px" });

  function keep(r, k, terms, wanted) {
    if (status && r.st !== status) return false;
    if (wanted === "-" ? r.pv : wanted && r.pv !== wanted.slice(1)) return false;
    return terms.every((t) => haystacks[k].includes(t));
  }

  function apply() {
    scheduled = false;
    const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const wanted = provider.value;
    matches = [];
    for (let k = 0; k < records.length; k++) {
      if (keep(records[k], k, terms, wanted)) matches.push(k);
    }
    grid.replaceChildren();
    rendered = 0;
    renderMore();
    const total = records.length.toLocaleString("en");
    shown.textContent = matches.length === records.length
      ? `${total} shown` : `${matches.length.toLocaleString("en")} of ${total} shown`;
    empty.hidden = matches.length > 0;
  }
  function schedule() {
    if (!scheduled) { scheduled = true; requestAnimationFrame(apply); }
  }

  function show() {
    const r = records[matches[current]];
    media.className = "viewer-media " + r.st;
    if (r.href && r.st === "done") {
      const img = el("img");
      img.alt = r.pr || r.id;
      img.src = r.href;
      media.replaceChildren(img);
      full.href = r.href;
      full.hidden = false;
    } else {
      media.replaceChildren(el("span", "placeholder", placeholderText(r)));
      full.removeAttribute("href");
      full.hidden = true;
    }
    info.replaceChildren();
    describe(r, info);
    position.textContent = `${current + 1} / ${matches.length}`;
    prev.disabled = current <= 0;
    next.disabled = current >= matches.length - 1;
  }
  function open(at) {
    if (at < 0 || at >= matches.length) return;
    current = at;
    show();
    if (!viewer.open) viewer.showModal();
  }
  function step(by) {
    const to = current + by;
    if (to >= 0 && to < matches.length) { current = to; show(); }
  }
  viewer.addEventListener("close", () => {
    // Back to the card of the image last shown, building cards up to it if needed.
    while (rendered <= current && rendered < matches.length) renderMore();
    const shownCard = cards[matches[current]];
    if (shownCard) {
      shownCard.scrollIntoView({ block: "nearest" });
      shownCard.querySelector(".thumb").focus();
    }
    media.replaceChildren();
  });
  viewer.addEventListener("click", (e) => { if (e.target === viewer) viewer.close(); });
  prev.addEventListener("click", () => step(-1));
  next.addEventListener("click", () => step(1));
  byId("close").addEventListener("click", () => viewer.close());

  grid.addEventListener("click", (e) => {
    const opener = e.target.closest(".thumb");
    // A modified click on a thumbnail is the browser's: open the file in a new tab, etc.
    if (!opener || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    open(matches.indexOf(Number(opener.closest(".card").dataset.k)));
  });

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (viewer.open) {
      const moves = { ArrowRight: 1, j: 1, ArrowLeft: -1, k: -1 };
      if (e.key in moves) { e.preventDefault(); step(moves[e.key]); }
      else if (e.key === "Home") { e.preventDefault(); open(0); }
      else if (e.key === "End") { e.preventDefault(); open(matches.length - 1); }
      return;
    }
    const typing = e.target instanceof Element && e.target.closest("input, select, textarea");
    if (e.key === "/" && !typing) {
      e.preventDefault();
      search.focus();
      search.select();
    } else if (e.key === "Escape" && e.target === search && search.value) {
      search.value = "";
      apply();
    }
  });

  for (const button of statusButtons) {
    button.addEventListener("click", () => {
      status = button.dataset.status;
      for (const b of statusButtons) b.setAttribute("aria-pressed", String(b === button));
      apply();
    });
  }
  provider.addEventListener("change", apply);
  search.addEventListener("input", schedule);

  apply();
  document.documentElement.dataset.ready = "1";
})();
"""
