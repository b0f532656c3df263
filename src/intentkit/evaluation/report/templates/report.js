// report.html: per-class table, confusion matrix hover/click, the errors list.
sortableTable(document.getElementById("class-table"), document.getElementById("class-filter"),
  document.getElementById("class-count"));

(function confusion() {
  const tip = document.getElementById("tip");
  const counts = new Map(DATA.cm.map(([i, j, n]) => [i + "," + j, n]));
  const rowTotal = DATA.cm_rows;
  const pick = document.getElementById("cm-pick");
  const title = document.getElementById("cm-pick-title");
  const cellOf = (svg, ev) => {
    const pt = svg.createSVGPoint(); pt.x = ev.clientX; pt.y = ev.clientY;
    const p = pt.matrixTransform(svg.getScreenCTM().inverse());
    const idx = svg.dataset.idx.split(",").map(Number), size = Number(svg.dataset.cell);
    const r = Math.floor((p.y - Number(svg.dataset.y0)) / size), c = Math.floor((p.x - Number(svg.dataset.x0)) / size);
    if (r < 0 || c < 0 || r >= idx.length || c >= idx.length) return null;
    return {i: idx[r], j: idx[c], r: r, c: c, size: size};
  };
  document.querySelectorAll("svg.cm").forEach((svg) => {
    svg.addEventListener("mousemove", (ev) => {
      const cell = cellOf(svg, ev);
      if (!cell) { tip.style.display = "none"; return; }
      const n = counts.get(cell.i + "," + cell.j) || 0, tot = rowTotal[cell.i] || 0;
      tip.textContent = "true " + DATA.classes[cell.i] + " → answered " + DATA.classes[cell.j] + ": " + n +
        " of " + tot + " rows" + (tot ? " (" + (100 * n / tot).toFixed(1) + "%)" : "");
      tip.style.display = "block"; tip.style.left = ev.clientX + 14 + "px"; tip.style.top = ev.clientY + 12 + "px";
    });
    svg.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    svg.addEventListener("click", (ev) => {
      const cell = cellOf(svg, ev);
      if (!cell) return;
      const sel = svg.querySelector(".cm-sel"), x0 = Number(svg.dataset.x0), y0 = Number(svg.dataset.y0);
      sel.setAttribute("x", x0 + cell.c * cell.size); sel.setAttribute("y", y0 + cell.r * cell.size);
      sel.setAttribute("width", cell.size); sel.setAttribute("height", cell.size);
      const t = DATA.classes[cell.i], p = DATA.classes[cell.j];
      const items = DATA.rows.filter((it) => it.y === t && it.p === p);
      const n = counts.get(cell.i + "," + cell.j) || 0;
      title.textContent = t === p
        ? t + " answered " + p + ": " + n + " right answers (" + items.length + " of them rejected out-of-scope rows)"
        : "true " + t + ", answered " + p + ": " + items.length + " sentence" + (items.length === 1 ? "" : "s");
      pick.dataset.pair = t + "\u2192" + p;
      sentenceRows(pick.tBodies[0], items.slice().sort((a, b) => b.c - a.c));
    });
  });
  const toggle = document.getElementById("cm-toggle");
  if (toggle) toggle.addEventListener("click", () => {
    const all = document.getElementById("cm-all"), top = document.getElementById("cm-top");
    const showAll = all.style.display === "none";
    all.style.display = showAll ? "" : "none"; top.style.display = showAll ? "none" : "";
    toggle.textContent = showAll ? toggle.dataset.top : toggle.dataset.all;
    toggle.classList.toggle("on", showAll);
  });
})();

(function errors() {
  const tbody = document.querySelector("#err-table tbody"), count = document.getElementById("err-count");
  const items = DATA.rows.filter((it) => it.r || it.y !== it.p);
  searchable(document.getElementById("err-filter"), document.getElementById("err-kind"), items, (shown) => {
    sentenceRows(tbody, shown, 2000);  // more rows than anyone reads; the search narrows them
    count.textContent = shown.length + " of " + items.length + " rows" + (shown.length > 2000 ? " (first 2000 listed)" : "");
  });
})();
