// intentkit report pages: shared helpers (inlined; no library, no build step).
"use strict";
const DATA = JSON.parse(document.getElementById("report-data").textContent);

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;  // textContent: sentences are never HTML
  return node;
}

function fmt(v, d) { return v === null || v === undefined ? "—" : Number(v).toFixed(d === undefined ? 3 : d); }

function top3(k) { return k.map(([l, s]) => l + " " + fmt(s, 2)).join(" · "); }

// Sortable + filterable table: headers with data-sort="num|str", rows' cells with data-v.
function sortableTable(table, filterInput, countLabel) {
  const tbody = table.tBodies[0];
  const rows = Array.from(tbody.rows);
  table.querySelectorAll("th[data-sort]").forEach((th, col) => {
    th.addEventListener("click", () => {
      const idx = Array.from(th.parentNode.children).indexOf(th);
      const asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      const num = th.dataset.sort === "num";
      const key = (r) => { const v = r.cells[idx].dataset.v; return num ? Number(v) : v.toLowerCase(); };
      rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach((r) => tbody.appendChild(r));
    });
  });
  const update = () => {
    const q = filterInput ? filterInput.value.trim().toLowerCase() : "";
    let shown = 0;
    rows.forEach((r) => { const hit = !q || r.cells[0].dataset.v.toLowerCase().includes(q); r.hidden = !hit; shown += hit; });
    if (countLabel) countLabel.textContent = shown + " of " + rows.length + " shown";
  };
  if (filterInput) filterInput.addEventListener("input", update);
  update();
}

// Rows of sentences: [{t: text, y: true, p: answered, c: confidence, r: rejected, k: top-3}].
function sentenceRows(tbody, items, limit) {
  tbody.replaceChildren();
  const frag = document.createDocumentFragment();
  items.slice(0, limit || items.length).forEach((it) => {
    const tr = el("tr");
    tr.appendChild(el("td", {"class": "text"}, it.t));
    tr.appendChild(el("td", {}, it.y));
    const ans = el("td");
    ans.appendChild(el("span", {"class": "pill " + (it.r ? "rej" : "err")}, it.p));
    tr.appendChild(ans);
    tr.appendChild(el("td", {"class": "num"}, fmt(it.c)));
    tr.appendChild(el("td", {"class": "top3"}, top3(it.k)));
    frag.appendChild(tr);
  });
  tbody.appendChild(frag);
}

function searchable(input, select, items, render) {
  const update = () => {
    const q = input.value.trim().toLowerCase();
    const kind = select ? select.value : "all";
    render(items.filter((it) =>
      (!q || it.t.toLowerCase().includes(q) || it.y.toLowerCase().includes(q) || it.p.toLowerCase().includes(q)) &&
      (kind === "all" || (kind === "rejected" ? it.r : it.y !== it.p))));
  };
  input.addEventListener("input", update);
  if (select) select.addEventListener("change", update);
  update();
}
