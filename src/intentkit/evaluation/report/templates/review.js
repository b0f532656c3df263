// intentkit review page: keyboard-driven labelling; every decision is POSTed at once.
"use strict";
(() => {
  const $ = (s) => document.querySelector(s);
  let data = null, cur = 0, mode = null;
  const rows = () => document.querySelectorAll("#queue-table tbody tr");
  const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));

  async function post(path, body) {
    const r = await fetch(path, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body)});
    const out = await r.json();
    if (!r.ok) throw new Error(out.error || r.statusText);
    return out;
  }
  function status(text) { $("#status").textContent = text; }
  function counts() {
    const done = data.items.filter((x) => x.decided).length;
    status(`${done} of ${data.items.length} texts labelled` + (data.no_text ? ` · ${data.no_text} captured without text` : ""));
  }
  function renderRow(tr, item) {
    tr.classList.toggle("done", !!item.decided);
    tr.querySelector("td.decided").textContent = item.decided || "";
  }
  function draw() {
    $("#label-list").innerHTML = data.labels.map((l) => `<option value="${esc(l)}">`).join("");
    $("#cluster-table tbody").innerHTML = data.clusters.map((c) =>
      `<tr data-cluster="${c.id}"><td>${c.id}</td><td class="num">${c.size}</td><td>${esc(c.name)}</td><td>${c.examples.map(esc).join("<br>")}</td></tr>`).join("");
    $("#queue-table tbody").innerHTML = data.items.map((x, i) =>
      `<tr data-id="${x.id}"><td>${i + 1}</td><td>${esc(x.text)}${x.in_training ? ' <span class="tag">in training data</span>' : ""}${x.count > 1 ? ` <span class="muted">×${x.count}</span>` : ""}</td>` +
      `<td>${esc(x.answer)}</td><td class="num">${x.confidence.toFixed(3)}</td>` +
      `<td class="muted">${x.top.map((t) => esc(t.label) + " " + t.score.toFixed(2)).join(", ")}</td>` +
      `<td>${x.cluster === null ? "" : esc(data.clusters[x.cluster].name)}</td><td class="decided"></td></tr>`).join("");
    rows().forEach((tr, i) => { renderRow(tr, data.items[i]); tr.addEventListener("click", () => move(i - cur)); });
    cur = Math.max(0, data.items.findIndex((x) => !x.decided));  // resume at the first open text
    move(0); counts();
  }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    all[cur]?.classList.remove("cur");
    cur = Math.min(all.length - 1, Math.max(0, cur + step));
    all[cur].classList.add("cur");
    all[cur].scrollIntoView({block: "nearest"});
  }
  async function decide(label, action) {
    const item = data.items[cur];
    try {
      await post("/api/label", {id: item.id, label, action});
      item.decided = label; renderRow(rows()[cur], item); counts(); move(1);
    } catch (e) { status("not saved: " + e.message); }
  }
  async function labelCluster(label) {
    const item = data.items[cur];
    try {
      const out = await post("/api/cluster", {cluster: item.cluster, label});
      for (const id of out.ids) {
        const i = data.items.findIndex((x) => x.id === id);
        data.items[i].decided = label; renderRow(rows()[i], data.items[i]);
      }
      if (!data.labels.includes(label)) { data.labels.push(label); $("#label-list").innerHTML += `<option value="${esc(label)}">`; }
      counts(); move(1);
    } catch (e) { status("not saved: " + e.message); }
  }
  function openEditor(kind) {
    const item = data.items[cur];
    if (kind === "new" && item.cluster === null) { status("this text is in no cluster: use r to relabel it"); return; }
    mode = kind;
    $("#editor-what").textContent = kind === "new" ? `new label for cluster ${item.cluster} (${data.clusters[item.cluster].size} texts):` : "label:";
    $("#editor").classList.add("open");
    const input = $("#label-input");
    input.value = kind === "new" ? data.clusters[item.cluster].name : "";
    input.focus(); input.select();
  }
  function closeEditor() { mode = null; $("#editor").classList.remove("open"); $("#label-input").blur(); }
  $("#label-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { ev.preventDefault(); closeEditor(); return; }
    if (ev.key !== "Enter") return;
    ev.preventDefault();
    const label = ev.target.value.trim(), kind = mode;
    if (!label) return;
    closeEditor();
    if (kind === "new") labelCluster(label); else decide(label, data.labels.includes(label) ? "relabel" : "new");
  });
  document.addEventListener("keydown", (ev) => {
    if (mode || !data || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const item = data.items[cur];
    const keys = {
      j: () => move(1), ArrowDown: () => move(1), k: () => move(-1), ArrowUp: () => move(-1), s: () => move(1),
      a: () => decide(item.answer, item.answer === data.reject_label ? "out_of_scope" : "accept"),
      o: () => decide(data.reject_label, "out_of_scope"),
      r: () => openEditor("relabel"), n: () => openEditor("new"),
    };
    if (keys[ev.key] && item) { ev.preventDefault(); keys[ev.key](); }
  });
  fetch("/api/queue").then((r) => r.json()).then((d) => { data = d; draw(); document.body.dataset.ready = "1"; });
})();
