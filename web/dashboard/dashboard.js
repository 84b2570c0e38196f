// The performance dashboard: reads the JSON that `webinfer bench --export` (or --serve) writes
// (default data/results.json, or ?data=URL) and draws it with uPlot (vendored, never a CDN).
//
// Data: {records: [run records, see engine/webinfer/bench/record.py], metrics: {name: {unit,
// higher_is_better, label}}, regressions: [judgments, see analysis.py], ratios: {run id: {metric:
// value / baseline}}, baseline, targets, noise}. Regressions are judged in Python (one rule for
// the docs, the CLI's --check and this page); this page only shows them.
//
// window.dashboard reports what was drawn (tests read it): {ready, error, charts: [{id, series,
// points}], flagged, recommendations}.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = (window.dashboard = { ready: false, error: null, charts: [], flagged: 0, recommendations: 0 });
  const PALETTE = ["#0a66d8", "#d8430a", "#1b9e4b", "#8e44ad", "#c49a00", "#00897b", "#e91e63", "#5d4037",
    "#607d8b", "#3f51b5"];
  const TIME_CHARTS = [
    { id: "decode_tps", title: "decode tokens/s" },
    { id: "prefill_tps", title: "prefill tokens/s" },
    { id: "ttft_s", title: "time to first token (s)" },
    { id: "load_s", title: "load time, network / first (s)" },
    { id: "load_cached_s", title: "load time, cached (s)" },
    { id: "memory", title: "memory (MB): peak RSS, or WASM heap, or GPU buffers" },
  ];
  const MEMORY = ["gpu_buffer_mb", "wasm_heap_mb", "peak_rss_mb"];
  const CLICK_RADIUS_PX = 24;
  const MAX_X_LABELS = 10;
  let DATA = null;
  let plots = [];
  let COLORS = new Map();  // target -> colour, the same in every chart
  const colorOf = (t) => COLORS.get(t) || "#888";

  function text(el, s) { el.textContent = s; return el; }
  function el(tag, props = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  const fmt = (v) => (v == null || !isFinite(v) ? "–" : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toPrecision(3));
  const machineOf = (r) => (r.machine && r.machine.id) || "?";
  const machineLabel = (r) => `${(r.machine && r.machine.cpu) || "?"} x${(r.machine && r.machine.cpus) || "?"} (${machineOf(r)})`;
  const where = (r) => r.browser || r.runtime || "?";
  const commitOf = (r) => ((r.commit && r.commit.short) || "?") + (r.commit && r.commit.dirty ? "+" : "");

  function fail(msg) {
    state.error = msg;
    const box = $("error");
    box.hidden = false;
    box.textContent = msg;
  }

  // ------------------------------------------------------------------ selection

  // As analysis.suite_of: runs are compared within one suite (protocol) only.
  const suiteOf = (r) => (r.protocol && r.protocol.suite) || ((r.protocol && r.protocol.decode_tokens) >= 64 ? "full" : "other");

  function filtered({ anyModel = false } = {}) {
    const model = anyModel ? "" : $("f-model").value, machine = $("f-machine").value, suite = $("f-suite").value;
    return DATA.records.filter((r) => (!model || r.model === model) && (!machine || machineOf(r) === machine) &&
      (!suite || suiteOf(r) === suite));
  }

  function metricValue(r, name) {
    if (name === "memory") {
      for (const m of MEMORY) if (r.metrics[m]) return $("f-ratio").checked ? ratioOf(r, m) : r.metrics[m].median;
      return null;
    }
    const m = r.metrics[name];
    if (!m) return null;
    return $("f-ratio").checked ? ratioOf(r, name) : m.median;
  }

  function ratioOf(r, name) {
    const x = DATA.ratios[r.id];
    return x && x[name] != null ? x[name] : null;
  }

  function showRecord(r, why) {
    text($("record-hint"), `${why || "record"}: ${r.target} at ${commitOf(r)}, ${r.time} (${r.status})`);
    text($("record"), JSON.stringify(r, null, 1));
    $("record").dataset.id = r.id;
  }

  // ------------------------------------------------------------------ charts over time

  function flaggedSet() {
    const s = new Set();
    for (const j of DATA.regressions) if (j.flagged) s.add(j.run_id + "|" + j.metric);
    return s;
  }

  // x: one position per run (invocation), in time order, labelled with its commit; every target of a
  // run sits at the same x, so a column of points is one run and a line is one target across commits.
  function runsAxis(records) {
    const first = new Map();
    for (const r of records) {
      const t = first.get(r.suite_id);
      if (!t || r.time < t.time) first.set(r.suite_id, r);
    }
    const runs = [...first.values()].sort((a, b) => (a.time < b.time ? -1 : 1));
    return { index: new Map(runs.map((r, i) => [r.suite_id, i])),
      labels: runs.map((r) => `${commitOf(r)}\n${r.time.slice(5, 16).replace("T", " ")}`) };
  }

  function timeChart(spec, records, width) {
    const ok = records.filter((r) => r.status === "ok" && metricValue(r, spec.id) != null);
    const targets = [...new Set(ok.map((r) => r.target))].sort();
    const axis = runsAxis(ok);
    const times = axis.labels.map((_, i) => i);
    const ys = targets.map(() => times.map(() => null));
    const recs = targets.map(() => times.map(() => null));
    for (const r of ok) {
      const si = targets.indexOf(r.target), xi = axis.index.get(r.suite_id);
      ys[si][xi] = metricValue(r, spec.id);
      recs[si][xi] = r;
    }
    const box = el("div", { class: "chart", id: "chart-" + spec.id });
    $("charts-time").append(box);
    width = Math.max(300, Math.floor(box.getBoundingClientRect().width) - 12);
    const points = ys.reduce((n, s) => n + s.filter((v) => v != null).length, 0);
    state.charts.push({ id: spec.id, series: targets.length, points });
    if (!points) {
      box.append(el("div", { class: "empty", text: `${spec.title}: no data for this selection` }));
      return;
    }
    const flagged = flaggedSet();
    const metricNames = spec.id === "memory" ? MEMORY : [spec.id];
    const isFlagged = (r) => r && metricNames.some((m) => flagged.has(r.id + "|" + m));
    const unit = $("f-ratio").checked ? "x baseline" : "";
    const u = new uPlot({
      title: spec.title + (unit ? ` (${unit})` : ""), width, height: 260,
      scales: { x: { time: false, range: [-0.5, times.length - 0.5] } },
      series: [{ label: "run", value: (u, v) => (v == null ? "–" : (axis.labels[v] || "").replace("\n", " ")) },
        ...targets.map((t) => ({ label: t, stroke: colorOf(t), width: 2,
        spanGaps: true, points: { show: true, size: 7, fill: colorOf(t) } }))],
      axes: [{ splits: () => times.filter((i) => i % Math.ceil(times.length / MAX_X_LABELS) === 0),
        values: (u, splits) => splits.map((i) => axis.labels[i] ?? ""), size: 50 },
        { size: 60 }],
      legend: { live: true },
      hooks: { draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#e00";
        ctx.lineWidth = 3 * devicePixelRatio;
        recs.forEach((row, si) => row.forEach((r, xi) => {
          if (!isFlagged(r) || ys[si][xi] == null) return;
          const x = u.valToPos(times[xi], "x", true), y = u.valToPos(ys[si][xi], "y", true);
          ctx.beginPath();
          ctx.arc(x, y, 9 * devicePixelRatio, 0, 2 * Math.PI);
          ctx.stroke();
        }));
        ctx.restore();
      }] },
    }, [times, ...ys], box);
    // Click: the nearest drawn point (targets of one run are minutes apart, so nearest in x alone is not enough).
    u.over.addEventListener("click", () => {
      const cx = u.cursor.left, cy = u.cursor.top;
      if (cx == null || cx < 0) return;
      let best = null, bestD = CLICK_RADIUS_PX ** 2;
      ys.forEach((row, si) => {
        if (!u.series[si + 1].show) return;
        row.forEach((v, xi) => {
          if (v == null) return;
          const d = (u.valToPos(times[xi], "x") - cx) ** 2 + (u.valToPos(v, "y") - cy) ** 2;
          if (d < bestD) { bestD = d; best = recs[si][xi]; }
        });
      });
      if (best) showRecord(best, spec.title);
    });
    u._webinfer = { spec, recs, times, ys };
    plots.push(u);
  }

  // ------------------------------------------------------------------ chart across targets

  function acrossChart(records, width) {
    const box = $("chart-across");
    box.textContent = "";
    const name = $("f-metric").value;
    // the latest suite (invocation) with an ok run, so the bars come from one run on one machine
    const all = records.filter((r) => r.status === "ok");
    const harness = all.filter((r) => r.protocol && r.protocol.suite);  // not lines imported from other scripts
    const ok = harness.length ? harness : all;
    if (!ok.length) { box.append(el("div", { class: "empty", text: "no data" })); return; }
    const last = ok.reduce((a, b) => (a.time > b.time ? a : b)).suite_id;
    const rows = ok.filter((r) => r.suite_id === last && metricValue(r, name) != null);
    state.charts.push({ id: "across", series: 1, points: rows.length });
    if (!rows.length) { box.append(el("div", { class: "empty", text: `no ${name} in the latest run` })); return; }
    const xs = rows.map((_, i) => i), ys = rows.map((r) => metricValue(r, name));
    const meta = DATA.metrics[name] || { label: "memory", unit: "MB" };
    const u = new uPlot({
      title: `${meta.label} (${$("f-ratio").checked ? "x baseline" : meta.unit}) — run of ${rows[0].time.slice(0, 16)} at ${commitOf(rows[0])}`,
      width, height: 280,
      scales: { x: { time: false, range: [-0.6, rows.length - 0.4] } },
      series: [{}, { label: meta.label, fill: "#0a66d855", stroke: "#0a66d8", width: 1,
        paths: uPlot.paths.bars({ size: [0.6, 90] }), points: { show: false } }],
      axes: [{ splits: () => xs, values: (u, splits) => splits.map((i) => (rows[i] ? rows[i].target : "")), size: 40 },
        { size: 60 }],
      legend: { show: false },
    }, [xs, ys], box);
    u.over.addEventListener("click", () => { const i = u.cursor.idx; if (i != null && rows[i]) showRecord(rows[i], "bar"); });
    plots.push(u);
  }

  // ------------------------------------------------------------------ tables

  function regressionsTable(records) {
    const ids = new Set(records.map((r) => r.id));
    const byId = new Map(DATA.records.map((r) => [r.id, r]));
    const flagged = DATA.regressions.filter((j) => j.flagged && ids.has(j.run_id)).sort((a, b) => (a.time < b.time ? 1 : -1));
    // worse, but with too little history or explained by the same run's baseline: shown greyed, with the reason
    const watch = DATA.regressions.filter((j) => j.worse && !j.flagged && ids.has(j.run_id)).sort((a, b) => (a.time < b.time ? 1 : -1));
    state.flagged = flagged.length;
    const tb = $("regressions").tBodies[0];
    tb.textContent = "";
    const n = DATA.noise || {};
    text($("regression-rule"), `Flagged: worse than the median of the last ${n.window} runs of the same target by more ` +
      `than ${n.factor}x the measured noise (at least ${Math.round((n.min_relative || 0) * 100)} %), with at least ` +
      `${n.min_history} earlier runs, and worse as a ratio to the same run's baseline too. ${flagged.length} flagged; ` +
      `${watch.length} other changes (grey) are worse but not called regressions (hover for why).`);
    if (!flagged.length && !watch.length) {
      tb.append(el("tr", {}, el("td", { colspan: 7, text: "none: every metric is within its noise" })));
      return;
    }
    for (const j of [...flagged, ...watch]) {
      const m = DATA.metrics[j.metric];
      tb.append(el("tr", { class: j.flagged ? "flagged" : "watch", title: j.reason || "", "data-run": j.run_id, "data-metric": j.metric,
        onclick: () => showRecord(byId.get(j.run_id), `regression in ${j.metric}`) },
      el("td", { text: j.series }), el("td", { text: m ? m.label : j.metric }), el("td", { text: fmt(j.value) }),
      el("td", { text: fmt(j.baseline) }), el("td", { text: "±" + fmt(j.noise) }),
      el("td", { text: (j.change >= 0 ? "+" : "") + (100 * j.change).toFixed(1) + " %" }), el("td", { text: j.commit || "?" })));
    }
  }

  function memoryOf(r) {
    for (const m of MEMORY) if (r.metrics[m]) return r.metrics[m].median;
    return null;
  }

  function recommendationsTable(records) {
    const budget = +$("f-budget").value, name = $("f-rec-metric").value;
    const latest = new Map();
    for (const r of records.filter((r) => r.status === "ok" && r.engine === "webinfer" && r.metrics[name])
      .sort((a, b) => (a.time < b.time ? -1 : 1))) {
      latest.set([r.target, r.model, r.profile, r.quant, machineOf(r)].join("|"), r);
    }
    const best = new Map();
    for (const r of latest.values()) {
      const mem = memoryOf(r);
      if (mem != null && mem > budget) continue;
      const k = (r.model_title || r.model) + "|" + machineOf(r);  // every quantization of one model
      if (!best.has(k) || r.metrics[name].median > best.get(k).metrics[name].median) best.set(k, r);
    }
    const tb = $("recommendations").tBodies[0];
    tb.textContent = "";
    state.recommendations = best.size;
    if (!best.size) { tb.append(el("tr", {}, el("td", { colspan: 6, text: `nothing measured fits ${budget} MB` }))); return; }
    for (const r of best.values()) {
      const mem = memoryOf(r);
      tb.append(el("tr", { onclick: () => showRecord(r, "recommendation") }, el("td", { text: r.model_title || r.model }),
        el("td", { text: r.target + (r.profile ? ` [${r.profile}]` : "") }), el("td", { text: r.backend }),
        el("td", { text: r.quant || "?" }), el("td", { text: fmt(r.metrics[name].median) + " tok/s" }),
        el("td", { text: mem == null ? "–" : fmt(mem) + " MB" })));
    }
  }

  function compatTables(records) {
    const latest = new Map();
    for (const r of [...records].sort((a, b) => (a.time < b.time ? -1 : 1))) latest.set(r.target + "|" + where(r), r);
    const places = [...new Set([...latest.values()].map(where))].sort();
    const targets = [...new Set([...latest.values()].map((r) => r.target))];
    const t = $("compat");
    t.textContent = "";
    t.append(el("thead", {}, el("tr", {}, el("th", { text: "target" }), ...places.map((p) => el("th", { text: p })))));
    const body = el("tbody");
    for (const tg of targets) {
      body.append(el("tr", {}, el("td", { text: tg }), ...places.map((p) => {
        const r = latest.get(tg + "|" + p);
        if (!r) return el("td", { text: "" });
        return el("td", { class: r.status, title: r.error || `${r.status} at ${commitOf(r)}`, text: r.status,
          onclick: () => showRecord(r, "compatibility") });
      })));
    }
    t.append(body);
    // What each place offers, from the capability reports (page probe in the browser, detect() in CPython).
    const caps = new Map();
    for (const r of latest.values()) {
      const c = r.capability || {}, page = c.page, det = c.detected;
      if (page && !caps.has(where(r))) {
        const ad = (page.webgpu || {}).adapter;
        caps.set(where(r), { "WebGPU adapter": ad ? `${ad.vendor || ""} ${ad.architecture || ""}${ad.isFallbackAdapter ? " (fallback)" : ""}` : (page.webgpu && page.webgpu.api ? "none" : "no API"),
          "shader-f16": ad ? ad.features.includes("shader-f16") : false, subgroups: ad ? ad.features.includes("subgroups") : false,
          "timestamp-query": ad ? ad.features.includes("timestamp-query") : false, "WASM SIMD": page.wasm.simd,
          JSPI: page.wasm.jspi, memory64: page.wasm.memory64, "cross-origin isolated": page.crossOriginIsolated,
          cores: page.hardwareConcurrency });
      } else if (det && !caps.has(where(r))) {
        const ad = det.adapter || {};
        caps.set(where(r), { "WebGPU adapter": det.webgpu ? `${ad.vendor || ""} ${ad.architecture || ad.device || ""}` : "none",
          "shader-f16": (det.features || []).includes("shader-f16"), subgroups: (det.features || []).some((f) => f.startsWith("subgroup")),
          "timestamp-query": (det.features || []).includes("timestamp-query"), "WASM SIMD": null, JSPI: null, memory64: null,
          "cross-origin isolated": null, cores: (r.machine || {}).cpus });
      }
    }
    const f = $("features");
    f.textContent = "";
    const cols = [...caps.keys()].sort();
    if (!cols.length) return;
    const rowsNames = Object.keys(caps.get(cols[0]));
    f.append(el("thead", {}, el("tr", {}, el("th", { text: "feature" }), ...cols.map((c) => el("th", { text: c })))));
    const fb = el("tbody");
    for (const name of rowsNames) {
      fb.append(el("tr", {}, el("td", { text: name }), ...cols.map((c) => {
        const v = caps.get(c)[name];
        if (v === true) return el("td", { class: "yes", text: "yes" });
        if (v === false) return el("td", { class: "no", text: "no" });
        return el("td", { text: v == null ? "–" : String(v) });
      })));
    }
    f.append(fb);
  }

  // ------------------------------------------------------------------ wiring

  function render() {
    for (const p of plots) p.destroy();
    plots = [];
    state.charts = [];
    $("charts-time").textContent = "";
    const records = filtered();
    for (const spec of TIME_CHARTS) timeChart(spec, records, 400);
    acrossChart(records, Math.max(400, Math.floor($("chart-across").getBoundingClientRect().width) - 12));
    regressionsTable(records);
    recommendationsTable(filtered({ anyModel: true }));  // every model and quantization
    compatTables(records);
  }

  function fillSelect(sel, values, labels, keep) {
    sel.textContent = "";
    for (const v of values) sel.append(el("option", { value: v, text: labels ? labels(v) : v }));
    if (keep && values.includes(keep)) sel.value = keep;
  }

  async function main() {
    const url = new URLSearchParams(location.search).get("data") || "data/results.json";
    try {
      const res = await fetch(url, { cache: "no-store" });
      if (!res.ok) throw new Error(`HTTP ${res.status} for ${url}: run \`webinfer bench --serve\` (it exports the data)`);
      DATA = await res.json();
    } catch (e) {
      fail(`could not read the results: ${e.message}`);
      return;
    }
    if (typeof uPlot === "undefined") { fail("vendor/uPlot.iife.min.js is missing: run `webinfer bench --serve` (it vendors uPlot)"); return; }
    const recs = DATA.records;
    COLORS = new Map([...new Set(recs.map((r) => r.target))].sort().map((t, i) => [t, PALETTE[i % PALETTE.length]]));
    const commits = new Set(recs.map((r) => r.commit && r.commit.short));
    text($("meta"), `${recs.length} records, ${commits.size} commits, ${new Set(recs.map((r) => r.suite_id)).size} runs; ` +
      `baseline ${DATA.baseline}; exported ${DATA.generated}`);
    // Default selection: the model and machine of the latest ok record.
    const lastOk = recs.filter((r) => r.status === "ok").sort((a, b) => (a.time < b.time ? 1 : -1))[0] || recs[0] || {};
    fillSelect($("f-model"), [...new Set(recs.map((r) => r.model))].sort(), null, lastOk.model);
    const machines = new Map(recs.map((r) => [machineOf(r), machineLabel(r)]));
    fillSelect($("f-machine"), [...machines.keys()], (v) => machines.get(v), lastOk.machine && lastOk.machine.id);
    fillSelect($("f-suite"), [...new Set(recs.map(suiteOf))].sort(), null, suiteOf(lastOk));
    fillSelect($("f-metric"), [...Object.keys(DATA.metrics), "memory"], (v) => (DATA.metrics[v] ? DATA.metrics[v].label : v), "decode_tps");
    for (const id of ["f-model", "f-machine", "f-suite", "f-ratio", "f-metric", "f-budget", "f-rec-metric"]) {
      $(id).addEventListener("change", render);
    }
    $("f-budget").addEventListener("input", () => recommendationsTable(filtered({ anyModel: true })));
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(render, 200); });
    render();
    state.ready = true;
  }

  state.showRecord = (id) => { const r = DATA.records.find((x) => x.id === id); if (r) showRecord(r, "record"); return !!r; };
  state.render = () => render();
  state.plots = () => plots;
  main().catch((e) => fail(String(e && e.stack || e)));
})();
