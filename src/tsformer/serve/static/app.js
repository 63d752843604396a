// tsformer demo page: plain DOM + inline SVG, no dependencies (the page must work offline).
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989"];

let model = null;    // GET /v1/model
let sample = null;   // GET /v1/sample, or null when the model ships none
let shown = { series: [], predictions: [], truth: [], explanations: [] };
let showing = -1;    // the index in `shown` on screen

async function api(path, options) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) {
    throw new Error(body && body.detail ? body.detail : `HTTP ${res.status} ${res.statusText}`);
  }
  return body;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function fmt(x, digits = 4) {
  return typeof x === "number" ? Number(x.toPrecision(digits)).toString() : String(x);
}

// ------------------------------------------------------------------ model card

function renderCard() {
  const m = model;
  const test = m.metrics && m.metrics.test ? m.metrics.test : null;
  const data = m.data || {};
  const rows = [
    ["model", `${m.preset}` + (m.arch ? ` (${m.arch})` : "")],
    ["trained on", data.name ? `${data.name}` + (data.source ? ` (${data.source})` : "") : "unknown"],
    ["input", `${m.input.n_channels} channel(s) × ${m.input.n_timepoints} points`],
    ["classes", m.classes.map(String).join(", ")],
    ["test accuracy", test && typeof test.accuracy === "number" ? fmt(test.accuracy) : "not recorded"],
    ["parameters", m.n_parameters ? Number(m.n_parameters).toLocaleString("en") : "n/a"],
    ["normalisation", m.normalization || "none"],
  ];
  const dl = $("card-summary");
  dl.replaceChildren();
  for (const [k, v] of rows) { dl.append(el("dt", {}, k), el("dd", {}, v)); }
  $("model-title").textContent = m.card && m.card.title ? m.card.title.replace(/^tsformer\s*/, "") : m.name;
  if (m.card && m.card.markdown) {
    $("card-text").textContent = m.card.markdown;
    $("card-details").hidden = false;
  }
  const c = m.input.n_channels;
  $("paste-help").textContent = c === 1
    ? `${m.input.n_timepoints} values per series; one series per line (or one value per line for a single series).`
    : `${m.input.n_timepoints} values per channel; one channel per line, ${c} consecutive lines per series.`;
}

function renderSample() {
  if (!sample) { $("no-sample").hidden = false; return; }
  const sel = $("example-select");
  sel.replaceChildren();
  sample.labels.forEach((label, i) => {
    sel.append(el("option", { value: String(i) }, `example ${i + 1} (true class ${label})`));
  });
  $("example-controls").hidden = false;
  sel.addEventListener("change", () => run(predictExample));
  plot(sample.series[0]);
}

// ------------------------------------------------------------------ parsing user input

function token(t) {
  const v = Number(t);
  return t !== "" && Number.isFinite(v) ? v : t;  // non-numbers go to the server, which names them
}

// Text -> series, each a list of channels.  Mirrors the server's CSV rules for plotting.
function parseSeries(text, { csv = false } = {}) {
  const c = model.input.n_channels;
  const t = model.input.n_timepoints;
  let rows = text.split(/\r?\n/).filter((l) => l.trim() !== "")
    .map((l) => l.trim().split(/[\s,;]+/).filter((x) => x !== "").map(token));
  if (rows.length && rows[0].every((x) => typeof x === "string")) rows = rows.slice(1); // header
  if (csv) {
    rows = rows.map((r) => (r.length === c * t + 1 ? r.slice(1) : r));  // a label column
    return rows.map((r) => Array.from({ length: c }, (_, k) => r.slice(k * t, (k + 1) * t)));
  }
  if (c === 1) {
    if (rows.length > 1 && rows.every((r) => r.length === 1)) return [[rows.map((r) => r[0])]];
    return rows.map((r) => [r]);
  }
  const series = [];
  for (let i = 0; i < rows.length; i += c) series.push(rows.slice(i, i + c));
  return series;
}

// ------------------------------------------------------------------ drawing

// The series, and behind it (after /v1/explain) its attribution summed over channels as a
// band: red where a step raises the predicted class's probability, blue where it lowers it.
function plot(series, attribution) {
  const box = $("plot");
  box.replaceChildren();
  delete box.dataset.explained;
  if (!series || !series.length) return;
  const W = 720, H = 220, L = 48, R = 8, T = 8, B = 22;
  const nums = series.flat().filter((v) => typeof v === "number");
  if (!nums.length) return;
  let lo = Math.min(...nums), hi = Math.max(...nums);
  if (lo === hi) { lo -= 1; hi += 1; }
  const n = Math.max(...series.map((ch) => ch.length), 2);
  const x = (i) => L + (i / (n - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `plot of ${series.length} channel(s), ${n} points`);
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
  };
  if (attribution) {
    const band = document.createElementNS(SVG_NS, "g");
    band.setAttribute("class", "attribution");
    const peak = Math.max(...attribution.map(Math.abs)) || 1;
    const half = (W - L - R) / (n - 1) / 2;
    attribution.forEach((a, i) => {
      const r = document.createElementNS(SVG_NS, "rect");
      const x0 = Math.max(L, x(i) - half), x1 = Math.min(W - R, x(i) + half);
      for (const [k, v] of Object.entries({ x: x0.toFixed(1), y: T, width: (x1 - x0).toFixed(2),
        height: H - T - B, fill: a >= 0 ? "#d1242f" : "#1f6feb",
        "fill-opacity": (0.6 * Math.abs(a) / peak).toFixed(3) })) r.setAttribute(k, v);
      band.append(r);
    });
    svg.append(band);
    box.dataset.explained = "true";
  }
  add("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  add("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  add("text", { x: L - 4, y: T + 9, "text-anchor": "end" }, fmt(hi, 3));
  add("text", { x: L - 4, y: H - B, "text-anchor": "end" }, fmt(lo, 3));
  add("text", { x: L, y: H - 6 }, "0");
  add("text", { x: W - R, y: H - 6, "text-anchor": "end" }, String(n - 1));
  series.forEach((ch, k) => {
    const pts = [];
    ch.forEach((v, i) => { if (typeof v === "number") pts.push(`${x(i).toFixed(1)},${y(v).toFixed(1)}`); });
    add("polyline", { points: pts.join(" "), fill: "none", stroke: COLORS[k % COLORS.length],
      "stroke-width": 1.3, "stroke-linejoin": "round" });
  });
  box.append(svg);
}

function bars(pred) {
  const box = $("bars");
  box.replaceChildren();
  for (const cls of model.classes) {
    const p = pred.probabilities[String(cls)];
    const row = el("div", { class: "bar-row" + (String(cls) === String(pred.label) ? " best" : "") });
    row.dataset.class = String(cls);
    const track = el("div", { class: "bar-track" });
    const bar = el("div", { class: "bar" });
    bar.style.width = `${(100 * p).toFixed(1)}%`;  // CSSOM, allowed by the page's CSP
    track.append(bar);
    row.append(el("span", { class: "bar-label" }, String(cls)), track,
      el("span", { class: "bar-value" }, `${(100 * p).toFixed(1)}%`));
    box.append(row);
  }
}

function showInstance(i) {
  const pred = shown.predictions[i];
  showing = i;
  plot(shown.series[i], shown.explanations[i] && shown.explanations[i].band);
  explainShown(i);
  $("predicted-label").textContent = String(pred.label);
  const truth = shown.truth[i];
  $("true-label-wrap").hidden = truth === undefined;
  if (truth !== undefined) $("true-label").textContent = String(truth);
  bars(pred);
  $("result").hidden = false;
  $("result").dataset.state = "done";
}

function showResults(series, predictions, truth = []) {
  shown = { series, predictions, truth, explanations: [] };
  const sel = $("instance-select");
  sel.replaceChildren();
  predictions.forEach((p, i) => sel.append(el("option", { value: String(i) }, `#${i + 1}: ${p.label}`)));
  $("instance-controls").hidden = predictions.length < 2;
  $("status").textContent = `${predictions.length} series classified.`;
  showInstance(0);
}

// ------------------------------------------------------------------ explanations

function explainNote(text) {
  $("explain-note").textContent = text;
  $("explain-note").hidden = !text;
}

function describe(e) {
  const d = e.deletion && e.deletion[0];
  const faith = d ? ` Deleting its top ${Math.round(100 * d.fraction)}% of steps lowers that probability by ${fmt(d.top_drop, 2)} (random steps: ${fmt(d.random_drop, 2)}).` : "";
  return `Background: ${e.method.replace("_", " ")} — red steps raise the probability of class ${e.target}, blue ones lower it.${faith}`;
}

// Ask /v1/explain for the series on screen (once per series) and draw its band; a failure
// only leaves a note, the prediction stands.
async function explainShown(i) {
  const cached = shown.explanations[i];
  if (cached) { explainNote(cached.note); return; }
  const mine = shown;
  explainNote("explaining…");
  try {
    const res = await api("/v1/explain", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ instances: asInstances([mine.series[i]]) }),
    });
    const e = res.explanations[0];
    const band = e.attributions[0].map((_, t) => e.attributions.reduce((s, ch) => s + ch[t], 0));
    mine.explanations[i] = { band, note: describe({ ...e, method: res.method, deletion: res.deletion }) };
  } catch (err) {
    mine.explanations[i] = { band: null, note: `No explanation: ${err.message}` };
  }
  if (shown === mine && showing === i) {
    plot(mine.series[i], mine.explanations[i].band);
    explainNote(mine.explanations[i].note);
  }
}

// ------------------------------------------------------------------ actions

async function run(action) {
  const buttons = document.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  $("error").hidden = true;
  $("result").dataset.state = "busy";
  $("status").textContent = "predicting…";
  try {
    await action();
  } catch (e) {
    $("error").textContent = e.message;
    $("error").hidden = false;
    $("status").textContent = "The server refused the input.";
    $("result").dataset.state = "error";
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

function postJson(instances) {
  return api("/v1/predict", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ instances }),
  });
}

function asInstances(series) {
  return series.map((chs) => (model.input.n_channels === 1 && chs.length === 1 ? chs[0] : chs));
}

async function predictExample() {
  const i = Number($("example-select").value);
  const res = await postJson([sample.series[i]]);
  showResults([sample.series[i]], res.predictions, [sample.labels[i]]);
}

async function predictPaste() {
  const text = $("paste-input").value;
  if (!text.trim()) throw new Error("Paste some values first.");
  const series = parseSeries(text);
  const res = await postJson(asInstances(series));
  showResults(series, res.predictions);
}

async function predictCsv() {
  const file = $("csv-file").files[0];
  if (!file) throw new Error("Choose a CSV file first.");
  const form = new FormData();
  form.append("file", file);
  const res = await api("/v1/predict", { method: "POST", body: form });
  showResults(parseSeries(await file.text(), { csv: true }), res.predictions);
}

async function init() {
  $("predict-example").addEventListener("click", () => run(predictExample));
  $("predict-paste").addEventListener("click", () => run(predictPaste));
  $("predict-csv").addEventListener("click", () => run(predictCsv));
  $("instance-select").addEventListener("change", (e) => showInstance(Number(e.target.value)));
  try {
    model = await api("/v1/model");
  } catch (e) {
    $("error").textContent = `Cannot reach the server: ${e.message}`;
    $("error").hidden = false;
    return;
  }
  renderCard();
  if (model.sample && model.sample.available) {
    try { sample = await api("/v1/sample"); } catch (_) { sample = null; }
  }
  renderSample();
  if (sample) {
    // a first prediction on load, so the page shows what it does before any click
    await run(predictExample);
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", init);
