// intentkit playground: live and batch predictions through the server's own POST /predict.
//
// Vanilla JS on purpose: the page is a text box, bars and a table, so a framework (and its
// build step) would add weight and a toolchain without removing any real complexity.
// Everything the page shows comes from the API; user text is only ever written with
// textContent (never innerHTML), so a message cannot inject markup into the page.
"use strict";

(() => {
  const DEBOUNCE_MS = 250; // one request per pause in typing, not one per keystroke
  const TOKEN_KEY = "intentkit.playground.token"; // sessionStorage: this tab only, never a URL

  const $ = (id) => document.getElementById(id);
  const state = {
    info: null, // GET /info once it answered
    token: null, // kept in memory, mirrored in sessionStorage for reloads of this tab
    seq: 0, // live requests are numbered so a slow old answer never overwrites a newer one
    timer: null,
    rows: [], // last batch results, for the CSV
  };

  // ------------------------------------------------------------------ HTTP
  function headers(json) {
    const h = {};
    if (json) h["Content-Type"] = "application/json";
    if (state.token) h.Authorization = `Bearer ${state.token}`;
    return h;
  }

  // Error bodies are {"error", "error_type"}; show the server's own words.
  async function apiError(resp) {
    let body = null;
    try {
      body = await resp.json();
    } catch (_) {
      // not JSON (a proxy's page): fall back to the status line
    }
    const err = new Error(
      body && body.error ? `${resp.status} ${body.error_type}: ${body.error}` : `HTTP ${resp.status}`,
    );
    err.status = resp.status;
    return err;
  }

  async function getJSON(path) {
    const resp = await fetch(path, { headers: headers(false), cache: "no-store" });
    if (!resp.ok) throw await apiError(resp);
    return resp.json();
  }

  async function predict(inputs, topK) {
    const started = performance.now();
    const resp = await fetch("/predict", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify({ inputs, top_k: topK }),
    });
    if (!resp.ok) throw await apiError(resp);
    const body = await resp.json();
    return {
      body,
      roundTripMs: performance.now() - started,
      serverMs: parseFloat(resp.headers.get("x-total-time")),
    };
  }

  // ------------------------------------------------------------------ helpers
  const pct = (x) => `${(100 * x).toFixed(1)}%`;

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function show(node, on) {
    node.hidden = !on;
  }

  function setStatus(text, kind) {
    const node = $("status");
    node.textContent = text;
    node.className = `status ${kind || ""}`;
    show(node, Boolean(text));
  }

  function calibration() {
    const cal = state.info && state.info.calibration;
    return cal && cal.reject_enabled ? cal : null;
  }

  // /predict's contract: a rejected text's list starts with {label: reject_label, score:
  // top-class confidence}, followed by the k class scores, so it is one longer than k. A top
  // class that is itself the out-of-scope class is answered as is, and rejected too.
  function decode(scores, k) {
    const cal = calibration();
    const prepended = scores.length > k;
    const classes = prepended ? scores.slice(1) : scores;
    const answer = scores[0];
    let reason = null;
    if (prepended || (cal && cal.oos_label && answer.label === cal.oos_label)) {
      const top = classes[0];
      reason =
        cal && cal.threshold != null && top.score < cal.threshold
          ? `Top class ${top.label} at ${pct(top.score)} is below the rejection threshold ` +
            `${pct(cal.threshold)}.`
          : `Top class ${top.label} is the out-of-scope class.`;
    }
    return { label: answer.label, confidence: answer.score, rejected: reason !== null, reason, classes };
  }

  function topK() {
    const n = state.info ? state.info.labels.length : 1;
    const v = $("top-k").value;
    return v === "all" ? n : Math.min(parseInt(v, 10), n);
  }

  // ------------------------------------------------------------------ /info and auth
  function renderInfo(info) {
    const dl = $("model-info");
    dl.replaceChildren();
    const cal = info.calibration;
    const items = [
      // the folder and its parent: artifacts are often all called "model"
      ["model", info.model_path ? info.model_path.split("/").filter(Boolean).slice(-2).join("/") : info.model_id],
      ["base", info.model_id],
      ["labels", String(info.labels.length)],
      ["threshold", cal && cal.reject_enabled && cal.threshold != null ? pct(cal.threshold) : "off"],
      ["reject label", cal && cal.reject_enabled ? cal.reject_label || "—" : "—"],
      ["backend", `${info.backend} · ${info.device}`],
    ];
    for (const [k, v] of items) {
      const div = el("div");
      const dd = el("dd", null, v);
      dd.title = v; // long paths are cut with an ellipsis; the full value on hover
      div.append(el("dt", null, k), dd);
      dl.append(div);
    }
    $("version").textContent = ` · intentkit ${info.version}`;
  }

  function setEnabled(on) {
    for (const id of ["text", "batch-text", "batch-run"]) $(id).disabled = !on;
  }

  async function loadInfo() {
    try {
      state.info = await getJSON("/info");
    } catch (err) {
      if (err.status === 401) {
        needToken(err.message);
        return;
      }
      if (err.status === 503) {
        // still loading the model: keep asking, the page becomes usable by itself
        setStatus(`Waiting for the model: ${err.message}`, "warn");
        setTimeout(loadInfo, 1000);
        return;
      }
      setStatus(`Cannot reach the server: ${err.message}`, "bad");
      return;
    }
    renderInfo(state.info);
    setEnabled(true);
    setStatus("", "");
    if (!$("auth").hidden) $("auth-message").textContent = "Token accepted.";
    $("text").focus();
  }

  function needToken(message) {
    setEnabled(false);
    show($("auth"), true);
    const msg = $("auth-message");
    msg.textContent = message;
    msg.className = "hint bad";
    setStatus("Enter the endpoint's API key to use the playground.", "warn");
  }

  function applyToken() {
    const value = $("token").value.trim();
    state.token = value || null;
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("auth-message").className = "hint";
    $("auth-message").textContent = "Checking…";
    loadInfo();
  }

  // ------------------------------------------------------------------ live mode
  function renderLive(text, result, timing) {
    const d = decode(result, topK());
    $("answer").dataset.text = text; // which text the shown answer is for (tests wait on it)
    const label = $("answer-label");
    label.textContent = d.label;
    label.dataset.label = d.label;
    const conf = $("answer-confidence");
    conf.textContent = pct(d.confidence);
    conf.dataset.confidence = String(d.confidence);
    $("answer").classList.toggle("rejected", d.rejected);
    show($("answer-badge"), d.rejected);
    $("answer-reason").textContent = d.reason || "";
    show($("answer-reason"), d.rejected);

    const cal = calibration();
    const bars = $("bars");
    bars.replaceChildren();
    d.classes.forEach((s, i) => {
      const li = el("li", i === 0 ? (d.rejected ? "top below" : "top") : "");
      li.dataset.label = s.label;
      const track = el("div", "track");
      const fill = el("div", "fill");
      // CSSOM writes are allowed under style-src 'self' (only inline style attributes are not)
      fill.style.width = `${Math.max(0, Math.min(1, s.score)) * 100}%`;
      track.append(fill);
      if (cal && cal.threshold != null) {
        const mark = el("div", "threshold");
        mark.style.left = `${cal.threshold * 100}%`;
        mark.title = `rejection threshold ${pct(cal.threshold)}`;
        track.append(mark);
      }
      li.append(el("span", "bar-label", s.label), track, el("span", "bar-score", pct(s.score)));
      bars.append(li);
    });
    const server = Number.isFinite(timing.serverMs) ? ` · server ${timing.serverMs.toFixed(1)} ms` : "";
    $("latency").textContent = `round trip ${timing.roundTripMs.toFixed(1)} ms${server}`;
    show($("answer"), true);
  }

  function showError(id, err) {
    const node = $(id);
    node.textContent = err ? err.message : "";
    show(node, Boolean(err));
    if (err && err.status === 401) needToken(err.message);
  }

  async function runLive() {
    const text = $("text").value;
    const seq = ++state.seq;
    if (!text.trim()) {
      // the server answers 400 for an empty text; an empty box just clears the result
      show($("answer"), false);
      showError("live-error", null);
      return;
    }
    try {
      const r = await predict(text, topK());
      if (seq !== state.seq) return; // the user kept typing: a newer request is on its way
      showError("live-error", null);
      renderLive(text, r.body, r);
    } catch (err) {
      if (seq !== state.seq) return;
      show($("answer"), false);
      showError("live-error", err);
    }
  }

  function scheduleLive() {
    clearTimeout(state.timer);
    state.timer = setTimeout(runLive, DEBOUNCE_MS);
  }

  // ------------------------------------------------------------------ batch mode
  async function runBatch() {
    const lines = $("batch-text")
      .value.split(/\r?\n/)
      .map((s) => s.trim())
      .filter(Boolean);
    const tbody = $("batch-table").querySelector("tbody");
    if (!lines.length) {
      showError("batch-error", new Error("Paste at least one non-empty line."));
      return;
    }
    $("batch-run").disabled = true;
    $("batch-summary").textContent = `classifying ${lines.length} lines…`;
    try {
      // top_k 1: the answer is element 0 either way; a rejected row has the class after it
      const r = await predict(lines, 1);
      state.rows = lines.map((text, i) => ({ text, ...decode(r.body[i], 1) }));
      tbody.replaceChildren();
      state.rows.forEach((row, i) => {
        const tr = el("tr", row.rejected ? "rejected" : "");
        tr.append(
          el("td", "num", String(i + 1)),
          el("td", "text", row.text),
          labelCell(row),
          el("td", "num", pct(row.confidence)),
        );
        tbody.append(tr);
      });
      const rejected = state.rows.filter((x) => x.rejected).length;
      const server = Number.isFinite(r.serverMs) ? `, server ${r.serverMs.toFixed(1)} ms` : "";
      $("batch-summary").textContent =
        `${lines.length} lines, ${rejected} rejected · round trip ${r.roundTripMs.toFixed(1)} ms${server}`;
      showError("batch-error", null);
      show($("batch-table"), true);
      $("batch-csv").disabled = false;
    } catch (err) {
      $("batch-summary").textContent = "";
      showError("batch-error", err);
    } finally {
      $("batch-run").disabled = false;
    }
  }

  function labelCell(row) {
    const td = el("td", "label", row.label);
    // a rejected row also names the class it would have been, which is what one checks next
    if (row.rejected) td.append(el("span", "muted", ` (${row.classes[0].label})`));
    return td;
  }

  function csvCell(value) {
    let s = String(value);
    // A cell starting with = + - @ is run as a formula by spreadsheet apps (CSV injection).
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function downloadCsv() {
    const lines = [["text", "label", "confidence", "rejected", "top_class"].join(",")];
    for (const r of state.rows) {
      const row = [r.text, r.label, r.confidence.toFixed(6), r.rejected, r.classes[0].label];
      lines.push(row.map(csvCell).join(","));
    }
    // The BOM makes Excel read the file as UTF-8; built here, so no text goes back to a server.
    const blob = new Blob(["\ufeff" + lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
    const url = URL.createObjectURL(blob);
    const a = el("a");
    a.href = url;
    a.download = "intentkit-predictions.csv";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ------------------------------------------------------------------ wiring
  function selectTab(name) {
    for (const t of ["live", "batch"]) {
      $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
      show($(t), t === name);
    }
  }

  async function start() {
    $("text").addEventListener("input", scheduleLive);
    $("top-k").addEventListener("change", runLive);
    $("batch-run").addEventListener("click", runBatch);
    $("batch-csv").addEventListener("click", downloadCsv);
    $("tab-live").addEventListener("click", () => selectTab("live"));
    $("tab-batch").addEventListener("click", () => selectTab("batch"));
    $("token-apply").addEventListener("click", applyToken);
    $("token").addEventListener("keydown", (e) => {
      if (e.key === "Enter") applyToken();
    });

    // A public flag says whether to ask for a token first, so a visit never starts with a
    // 401 in the console; /info itself requires the token like every API route.
    let auth = false;
    try {
      auth = (await getJSON("/playground/config.json")).auth;
    } catch (err) {
      setStatus(`Cannot reach the server: ${err.message}`, "bad");
      return;
    }
    if (auth) {
      show($("auth"), true);
      show($("docs-link"), false); // /docs needs the token too; a link would open a 401
      state.token = sessionStorage.getItem(TOKEN_KEY);
      if (!state.token) {
        setStatus("Enter the endpoint's API key to use the playground.", "warn");
        $("token").focus();
        return;
      }
      $("token").value = state.token;
    }
    loadInfo();
  }

  start();
})();
