// compare.html: per-class table, the two disagreement lists with one search box.
sortableTable(document.getElementById("class-table"), document.getElementById("class-filter"),
  document.getElementById("class-count"));

(function disagreements() {
  const input = document.getElementById("dis-filter"), count = document.getElementById("dis-count");
  const fill = (tbody, items, other, conf) => {
    tbody.replaceChildren();
    if (!items.length) {
      const tr = el("tr", {"class": "none"}); tr.appendChild(el("td", {"colspan": "4", "class": "muted"}, "none"));
      tbody.appendChild(tr);
    }
    items.forEach((it) => {
      const tr = el("tr");
      tr.appendChild(el("td", {"class": "text"}, it.t));
      tr.appendChild(el("td", {}, it.y));
      const td = el("td"); td.appendChild(el("span", {"class": "pill err"}, it[other])); tr.appendChild(td);
      tr.appendChild(el("td", {"class": "num"}, fmt(it[conf])));
      tbody.appendChild(tr);
    });
  };
  const update = () => {
    const q = input.value.trim().toLowerCase();
    const hit = (it) => !q || [it.t, it.y, it.a, it.b].some((s) => s.toLowerCase().includes(q));
    const a = DATA.a_right_b_wrong.filter(hit), b = DATA.b_right_a_wrong.filter(hit);
    fill(document.querySelector("#a-right tbody"), a, "b", "cb");
    fill(document.querySelector("#b-right tbody"), b, "a", "ca");
    count.textContent = (a.length + b.length) + " of " +
      (DATA.a_right_b_wrong.length + DATA.b_right_a_wrong.length) + " sentences";
  };
  input.addEventListener("input", update);
  update();
})();
