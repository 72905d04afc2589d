// The practitioner's panels: how the run trained (/report), the course's presets, the
// arithmetic playground and the gradient of the loss with respect to one kernel.
"use strict";

import { $, STALE, cancel, element, fmt, note, onReset, post, request, runPath, state } from "./state.js";

// ---------------------------------------------------------------- report

function curveChart(curves, keys, title) {
  const canvas = element("canvas", { width: 320, height: 180, role: "img",
    "aria-label": `${title} per epoch: ${keys.map((k) => `${k} from ${fmt(curves[0][k], 3)} to ${fmt(curves[curves.length - 1][k], 3)}`).join("; ")}` });
  const c = canvas.getContext("2d");
  const values = curves.flatMap((row) => keys.map((k) => row[k])).filter((v) => typeof v === "number");
  const low = Math.min(...values), high = Math.max(...values);
  const pad = 28, w = canvas.width - pad - 8, h = canvas.height - pad - 8;
  c.fillStyle = "#fff";
  c.fillRect(0, 0, canvas.width, canvas.height);
  c.strokeStyle = "#999";
  c.strokeRect(pad, 8, w, h);
  c.fillStyle = "#333";
  c.font = "11px system-ui, sans-serif";
  c.fillText(fmt(high, 3), 2, 16);
  c.fillText(fmt(low, 3), 2, 8 + h);
  c.fillText(`${title} by epoch`, pad + 4, canvas.height - 6);
  const colours = ["#0d47a1", "#b23c00"];
  keys.forEach((key, i) => {
    c.strokeStyle = colours[i];
    c.lineWidth = 2;
    c.beginPath();
    curves.forEach((row, j) => {
      const x = pad + (curves.length === 1 ? w / 2 : (j / (curves.length - 1)) * w);
      const y = 8 + h - (high > low ? (row[key] - low) / (high - low) : 0.5) * h;
      if (j === 0) c.moveTo(x, y); else c.lineTo(x, y);
      c.fillStyle = colours[i];
      c.fillRect(x - 2, y - 2, 4, 4);
    });
    c.stroke();
  });
  const legend = element("p", { className: "note" }, ...keys.map((k, i) => element("span", { className: "key", style: `color:${colours[i]}`, text: `■ ${k}  ` })));
  return element("figure", {}, canvas, legend);
}

function luminance(rgb) { // WCAG relative luminance: black text above 0.179, white below
  const [r, g, b] = rgb.map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function confusionTable(report) {
  const matrix = report.confusion;
  const high = Math.max(1, ...matrix.flat());
  return element("table", { className: "confusion" },
    element("caption", { text: "confusion matrix (rows: true class, columns: predicted)" }),
    element("tr", {}, element("td", { text: "" }), ...report.classes.map((c) => element("th", { scope: "col", text: String(c) }))),
    ...matrix.map((row, i) => element("tr", {}, element("th", { scope: "row", text: String(report.classes[i]) }),
      ...row.map((count, j) => {
        const alpha = 0.08 + 0.8 * (count / high);
        const rgb = (i === j ? [21, 101, 192] : [198, 40, 40]).map((v) => Math.round(255 + (v - 255) * alpha));
        return element("td", { text: String(count), className: i === j ? "diagonal" : "",
          style: `background: rgb(${rgb.join(", ")}); color: ${luminance(rgb) > 0.179 ? "#000" : "#fff"}` });
      }))));
}

export async function loadReport() {
  const holder = $("report");
  if (state.run && state.run.has_history === false) { // nothing to ask: the server would refuse
    cancel("report");
    holder.replaceChildren(element("p", { className: "note", id: "report-note",
      text: `${state.run.name} has no training history (it was not trained by cnnlab): no curves, confusion matrix or mistakes to show.` }));
    return;
  }
  holder.replaceChildren(element("p", { className: "note", text: "loading…" }));
  let report;
  try {
    report = await request("report", runPath("report"));
  } catch (error) {
    const text = error.status === 404 ? "This server has no training report yet." : error.message;
    holder.replaceChildren(element("p", { className: "note", id: "report-note", text }));
    return;
  }
  if (report === STALE) return;
  const curves = report.curves || [];
  const parts = [];
  if (curves.length) {
    parts.push(element("div", { className: "charts" },
      curveChart(curves, ["train_loss", "test_loss"], "loss"), curveChart(curves, ["train_acc", "test_acc"], "accuracy")));
  }
  const perClass = report.per_class_accuracy || [];
  parts.push(element("div", { className: "charts" },
    report.confusion ? element("div", { className: "scroll", tabindex: "0", role: "region", "aria-label": "confusion matrix" }, confusionTable(report)) : null,
    element("ul", { className: "per-class", "aria-label": "accuracy per class" }, ...perClass.map((acc, i) => element("li", {},
      element("span", { className: "class-name", text: String(report.classes[i]) }),
      element("span", { className: "bar", style: `width:${Math.round(100 * acc)}px`, "aria-hidden": "true" }),
      ` ${(100 * acc).toFixed(1)}%`)))));
  const mistakes = report.mistakes || [];
  if (mistakes.length) {
    parts.push(element("h3", { text: "most confident mistakes" }), element("div", { className: "mistakes" },
      ...mistakes.map((m) => {
        const [truth, guess] = [m.true_class ?? m.true, m.predicted_class ?? m.predicted];
        return element("figure", {},
          element("img", { src: m.image, alt: `test image ${m.index}: a ${truth} taken for ${guess}` }),
          element("figcaption", { text: `#${m.index}: ${truth} → ${guess} (${(100 * m.confidence).toFixed(0)}%)` }));
      })));
  }
  holder.replaceChildren(...parts);
}

onReset("run", () => $("report").replaceChildren());

// ---------------------------------------------------------------- gradient

export function gradientButton(kind = "conv") {
  const holder = element("div", { id: "gradient" });
  const what = kind === "linear" ? "this output's weights" : "this kernel";
  const button = element("button", { type: "button", text: `gradient: from the loss back to ${what}`, onclick: () => showGradient(holder) });
  return element("div", { className: "gradient" }, button, holder);
}

async function showGradient(holder) {
  const selected = state.selected;
  const camClass = $("cam-class").value;
  holder.replaceChildren(element("p", { className: "note", text: "computing…" }));
  let data;
  try {
    data = await post("gradient", runPath("gradient"), { pixels: state.pixels, layer: selected.layer, channel: selected.channel,
      class_index: camClass === "" ? null : Number(camClass) });
  } catch (error) {
    holder.replaceChildren(element("p", { className: "problem", text: `gradient: ${error.message}` }));
    return;
  }
  if (data === STALE) return;
  const cls = state.run.classes[data.class_index] ?? data.class_index;
  if (data.kind === "linear") {
    const rows = data.top.map((t) => [t.index, t.input, t.grad]);
    const table = element("table", { className: "grid gradient-grid" },
      element("caption", { text: `largest dL/dW[${data.channel}, k] = dL/dz x input k` }),
      element("tr", {}, ...["input k", "input value", "dL/dW"].map((h) => element("th", { text: h, scope: "col" }))),
      ...rows.map((row) => element("tr", {}, ...row.map((v, i) => element("td", { text: i === 0 ? String(v) : fmt(v, 4) })))));
    holder.replaceChildren(element("div", {},
      element("p", { text: `loss ${fmt(data.loss, 4)} (class ${cls}); dL/dz = dL/d(bias) = ${fmt(data.upstream, 5)}` }),
      element("p", { className: "explain-text", text: data.text }), table));
    return;
  }
  holder.replaceChildren(element("div", {},
    element("p", { text: `loss ${fmt(data.loss, 4)} (cross-entropy against class ${cls}); dL/d(bias) = ${fmt(data.bias_grad, 5)}` }),
    data.text ? element("p", { className: "explain-text", text: data.text }) : null,
    data.upstream ? element("details", {}, element("summary", { text: "the upstream gradient map dL/d(output) of this channel" }),
      element("div", { className: "grids" }, gradGrid(data.upstream, "dL/d(output)"))) : null,
    element("div", { className: "grids" }, ...data.channels.map((c) => gradGrid(c.grad, `dL/dW, input channel ${c.index}`)))));
}

function gradGrid(values, caption) {
  const table = element("table", { className: "grid gradient-grid" }, element("caption", { text: caption }));
  for (const row of values) table.append(element("tr", {}, ...row.map((v) => element("td", { text: fmt(v, 4) }))));
  return table;
}

// ---------------------------------------------------------------- presets

/** A preset's number: whole numbers with thousands separators, others to 4 digits. */
function number(v) {
  return Number.isInteger(v) ? v.toLocaleString("en-US") : fmt(Number(v.toPrecision(4)), 4);
}

function show(value) {
  const text = (v) => (typeof v === "number" ? number(v) : String(v));
  if (Array.isArray(value) && Array.isArray(value[0])) {
    const table = element("table", { className: "grid" });
    for (const row of value) table.append(element("tr", {}, ...row.map((v) => element("td", { text: text(v) }))));
    return table;
  }
  if (value && typeof value === "object" && !Array.isArray(value)) {
    return element("dl", {}, ...Object.entries(value).flatMap(([k, v]) => [element("dt", { text: k }), element("dd", {}, show(v))]));
  }
  return element("span", { text: Array.isArray(value) ? value.map(text).join(", ") : text(value) });
}

const PRESET_FIELDS = { n: "pg-n", kernel: "pg-k", stride: "pg-s", padding: "pg-p", dilation: "pg-d", in_channels: "pg-cin", out_channels: "pg-cout" };

/** The playground's numbers of a preset that is one sliding window (a conv, a correlation, a
 * pooling), or null; a matrix (an image, a kernel's weights) never goes into a number field. */
function playgroundOf(preset) {
  const inputs = preset.inputs || {};
  const side = (m) => (Array.isArray(m) ? m.length : undefined);
  const one = { dilation: 1, in_channels: 1, out_channels: 1 };
  let fields = null;
  if (preset.kind === "arithmetic") fields = { ...inputs };
  else if (preset.kind === "correlate") fields = { ...one, n: side(inputs.image), kernel: side(inputs.kernel), stride: inputs.stride ?? 1, padding: inputs.padding ?? 0 };
  else if (preset.kind === "pool") fields = { ...one, n: side(inputs.input), kernel: inputs.window, stride: inputs.stride ?? inputs.window, padding: 0 };
  if (!fields) return null;
  const numbers = Object.entries(fields).filter(([key, v]) => PRESET_FIELDS[key] && Number.isInteger(v));
  return numbers.length ? Object.fromEntries(numbers) : null;
}

function openPreset(preset) {
  const inputs = preset.inputs || {};
  const fields = playgroundOf(preset);
  if (fields) for (const [key, v] of Object.entries(fields)) $(PRESET_FIELDS[key]).value = String(v);
  $("preset-view").replaceChildren(element("div", { className: "preset", id: "preset-open", "data-key": preset.key },
    element("h3", { text: preset.title }),
    element("pre", { className: "preset-text", tabindex: "0", text: preset.text || "" }),
    preset.kind === "arithmetic" ? null : element("div", { className: "grids" }, show(inputs)),
    element("p", {}, element("strong", { text: "answer: " }), show(preset.answer)),
    fields ? null : element("p", { className: "note", id: "preset-no-playground",
      text: "This example is not one sliding window: the playground below keeps your numbers (change one to animate it)." })));
  if (fields) playground();
  else stopPlayground(); // the previous preset's animation must not pass for this one's
  $("preset-open").scrollIntoView({ block: "nearest" });
}

async function loadPresets() {
  let presets;
  try {
    presets = await request("presets", "/api/presets");
  } catch (error) {
    $("presets").replaceChildren(element("span", { className: "note", text: error.status === 404 ? "The course's worked examples need a newer server." : error.message }));
    return;
  }
  if (presets === STALE) return;
  $("presets").replaceChildren(element("span", { className: "note", text: "the course's examples:" }),
    ...presets.map((p) => element("button", { type: "button", className: "preset-button", "data-key": p.key, text: p.title, onclick: () => openPreset(p) })));
}

// ---------------------------------------------------------------- playground

const FIELDS = [["pg-n", "n", "input n"], ["pg-k", "kernel", "kernel"], ["pg-s", "stride", "stride"], ["pg-p", "padding", "padding"],
  ["pg-d", "dilation", "dilation"], ["pg-cin", "in_channels", "in channels"], ["pg-cout", "out_channels", "out channels"]];
let pgTimer = null;

function readFields() {
  const values = {};
  for (const [id, key, label] of FIELDS) {
    const field = $(id);
    const text = field.value.trim();
    const number = Number(text);
    const low = Number(field.min), high = Number(field.max);
    const bad = text === "" || !Number.isInteger(number) || number < low || number > high;
    field.setAttribute("aria-invalid", bad ? "true" : "false");
    if (bad) return { problem: `${label}: enter a whole number from ${low} to ${high}${text === "" ? "" : ` (got ${text})`}` };
    values[key] = number;
  }
  return { values };
}

/** Stop and hide the sliding kernel until a field changes. */
function stopPlayground() {
  cancel("arithmetic");
  if (pgTimer) clearInterval(pgTimer);
  pgTimer = null;
  const pg = $("pg-canvas");
  pg.getContext("2d").clearRect(0, 0, pg.width, pg.height);
  pg.hidden = true;
}

async function playground() {
  const { values, problem } = readFields();
  if (pgTimer) clearInterval(pgTimer);
  pgTimer = null;
  const pg = $("pg-canvas");
  pg.hidden = false;
  if (problem) {
    note("pg-formula", problem, true);
    $("pg-counts").textContent = "";
    pg.getContext("2d").clearRect(0, 0, pg.width, pg.height);
    return;
  }
  let data;
  try {
    data = await request("arithmetic", `/api/arithmetic?${new URLSearchParams(values)}`);
  } catch (error) {
    note("pg-formula", error.message, true);
    return;
  }
  if (data === STALE) return;
  $("pg-counts").textContent = `parameters ${data.params_formula}; multiply-adds ${data.macs_formula}`;
  note("pg-formula", data.valid ? `output = ${data.formula}` : data.problem, !data.valid);
  animateKernel(pg, values, data.out);
}

function animateKernel(pg, { n, kernel: k, stride: s, padding: p, dilation: d }, out) {
  const context = pg.getContext("2d");
  const padded = n + 2 * p;
  const cell = Math.max(2, Math.floor(pg.width / Math.max(padded, 1)));
  let step = 0;
  const draw = () => {
    context.clearRect(0, 0, pg.width, pg.height);
    for (let i = 0; i < padded; i++) {
      for (let j = 0; j < padded; j++) {
        const inside = i >= p && i < p + n && j >= p && j < p + n;
        context.fillStyle = inside ? "#cfd8dc" : "#fff3e0";
        context.fillRect(j * cell, i * cell, cell - 1, cell - 1);
      }
    }
    if (out > 0) {
      const oy = Math.floor(step / out) % out, ox = step % out;
      context.fillStyle = "rgba(229, 57, 53, 0.55)";
      for (let a = 0; a < k; a++) for (let b = 0; b < k; b++) context.fillRect((ox * s + b * d) * cell, (oy * s + a * d) * cell, cell - 1, cell - 1);
      step = (step + 1) % (out * out);
    }
  };
  draw();
  pgTimer = setInterval(draw, 400);
}

export function setupPlayground() {
  FIELDS.forEach(([id]) => $(id).addEventListener("input", playground));
  playground();
  loadPresets();
}
