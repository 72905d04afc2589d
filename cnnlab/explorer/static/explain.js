// One traced number: the explanation of the selected pixel (/explain, by layer kind), its
// kernel window on the previous layer's map, its receptive field on the input, every input
// channel with its subtotal, and an animation of the running sum.
"use strict";

import { $, STALE, announce, cancel, element, fmt, post, runPath, state } from "./state.js";
import { drawSelectedMap, layerByName, paintMap } from "./maps.js";
import { gradientButton } from "./practice.js";
import { animationControls, stopAnimation as stopRunningSum } from "./running.js";
import { linearTerms, linkGrids, softmaxBars } from "./numbers.js";

let traceChannel = 0; // which input channel the previous-layer view shows (conv)

export function clearTrace() {
  stopAnimation();
  $("trace-views").replaceChildren();
  $("kernel").replaceChildren();
}

function sumOf(values) {
  return values.flat(Infinity).reduce((a, b) => a + b, 0);
}

/** The /kernel answer of an older server in the shape of a conv /explain answer. */
function fromKernel(k, selected) {
  return {
    kind: "conv", layer: selected.layer, value: k.output, sum: k.sum, bias: k.bias, text: k.formula,
    channels: k.patch.map((patch, index) => ({ index, patch, kernel: k.kernel[index], products: k.products[index], subtotal: sumOf(k.products[index]) })),
    window: null, receptive_field: null, fallback: true,
  };
}

export async function explainSelected() {
  const selected = state.selected;
  if (!selected || !state.pixels) return;
  stopAnimation();
  state.explanation = null; // no number or window of the previous pixel while this one loads
  $("trace-views").replaceChildren();
  $("kernel").replaceChildren(element("p", { className: "note", id: "explain-loading", text: "computing…" }));
  const body = { pixels: state.pixels, layer: selected.layer, channel: selected.channel, y: selected.y, x: selected.x };
  const layer = layerByName(selected.layer);
  let data;
  try {
    data = await post("explain", runPath("explain"), body);
  } catch (error) {
    if ((error.status === 404 || error.status === 405) && layer && (layer.kind || "conv") === "conv") {
      try {
        const old = await post("explain", runPath("kernel"), body);
        data = old === STALE ? STALE : fromKernel(old, selected);
      } catch (second) {
        return showProblem(selected, second.message);
      }
    } else {
      return showProblem(selected, error.message);
    }
  }
  if (data === STALE) return;
  state.explanation = data;
  traceChannel = data.channels && data.channels.length ? Math.min(traceChannel, data.channels.length - 1) : 0;
  renderExplanation(data);
}

function where(selected, layer) {
  const oneD = layer && layer.shape.length === 1;
  return oneD ? `${selected.layer} output ${selected.channel}` : `${selected.layer} channel ${selected.channel} at (row ${selected.y}, column ${selected.x})`;
}

function showProblem(selected, message) {
  const layer = layerByName(selected.layer);
  $("trace-views").replaceChildren();
  $("kernel").replaceChildren(element("p", { className: "problem", id: "explain-problem", text: `${where(selected, layer)}: ${message}` }));
  announce(`No explanation: ${message}`);
}

// ---------------------------------------------------------------- number grids

function grid(values, { caption, highlight = null, termBase = null, padded = null } = {}) {
  const rows = Array.isArray(values[0]) ? values : [values];
  const table = element("table", { className: "grid" });
  if (caption) table.append(element("caption", { text: caption }));
  rows.forEach((row, i) => {
    table.append(element("tr", {}, ...row.map((v, j) => {
      const pad = padded && padded[i] && padded[i][j];
      const cell = element("td", { text: pad ? (v === null ? "pad −∞" : `pad ${fmt(v, 3)}`) : fmt(v, 3) });
      if (pad) cell.className = "padded";
      if (highlight && highlight[0] === i && highlight[1] === j) cell.className = "winner";
      if (termBase !== null) cell.dataset.term = String(termBase + i * row.length + j);
      return cell;
    })));
  });
  return table;
}

// ---------------------------------------------------------------- the trace on the maps

function pictureOf(layerName, channel, rect, colour) {
  const canvas = element("canvas", { className: "trace", width: 224, height: 224 });
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  const finish = (width, height) => {
    if (!rect) return;
    const cw = canvas.width / width, ch = canvas.height / height;
    context.lineWidth = 3;
    context.strokeStyle = colour;
    context.strokeRect(rect.x0 * cw + 1.5, rect.y0 * ch + 1.5, (rect.x1 - rect.x0) * cw - 3, (rect.y1 - rect.y0) * ch - 3);
  };
  if (layerName === "input") {
    const image = new Image();
    image.onload = () => {
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      finish(image.width, image.height);
    };
    image.src = state.analysis.input;
    return canvas;
  }
  const layer = layerByName(layerName);
  const small = element("canvas");
  if (!layer || !paintMap(layer, channel, small)) return null;
  context.drawImage(small, 0, 0, canvas.width, canvas.height);
  finish(small.width, small.height);
  return canvas;
}

function drawTrace(data) {
  const views = [];
  const selected = state.selected;
  if (data.window) {
    const prev = data.window.layer;
    const channel = data.kind === "conv" ? traceChannel : selected.channel;
    const picture = pictureOf(prev, channel, data.window, "#ff9800");
    const name = prev === "input" ? "the input" : `${prev}, channel ${channel}`;
    views.push(picture
      ? element("figure", {}, picture, element("figcaption", { text: `window on ${name}: rows ${data.window.y0}–${data.window.y1 - 1}, columns ${data.window.x0}–${data.window.x1 - 1}` }))
      : element("p", { className: "note", text: `${name} is not among the maps shown; use "show all" on its layer to see the window.` }));
  }
  if (state.analysis && state.analysis.input && data.kind !== "softmax") {
    const rf = data.receptive_field;
    const caption = !rf ? "receptive field: not given by this server"
      : rf.unknown ? `receptive field: unknown — ${rf.unknown}`
      : `receptive field on the input: rows ${rf.y0}–${rf.y1 - 1}, columns ${rf.x0}–${rf.x1 - 1}${rf.whole ? " (the whole input image)" : ` (${rf.y1 - rf.y0}×${rf.x1 - rf.x0} pixels)`}`;
    views.push(element("figure", {}, pictureOf("input", 0, rf && !rf.unknown ? rf : null, "#e91e63"), element("figcaption", { text: caption })));
  }
  $("trace-views").replaceChildren(...views);
}

// ---------------------------------------------------------------- by layer kind

function explainConv(data, parts) {
  const channels = data.channels || [];
  const size = channels.length ? channels[0].products.flat().length : 0;
  const count = channels.length * size;
  parts.head = `sum of ${count} products + bias ${fmt(data.bias, 4)} = ${fmt(data.sum, 4)}`;
  const details = [];
  channels.forEach((channel, i) => {
    const base = i * size;
    const grids = element("div", { className: "grids" },
      grid(channel.patch, { caption: "input patch" }),
      element("span", { className: "op", text: "×" }),
      grid(channel.kernel, { caption: "kernel weights" }),
      element("span", { className: "op", text: "=" }),
      grid(channel.products, { caption: "products", termBase: base }));
    const box = element("details", { className: "channel", "data-index": String(channel.index) },
      element("summary", { text: `input channel ${channel.index}: ${size} products, subtotal ${fmt(channel.subtotal, 4)}` }),
      grids, linkGrids(grids, channel, data)); // one cell lit in all three grids
    box.open = channels.length <= 4 || i < 2;
    box.querySelector("summary").addEventListener("click", () => {
      if (!box.open && traceChannel !== i) { // the user opens it: show its window
        traceChannel = i;
        drawTrace(data);
      }
    });
    details.push(box);
  });
  const many = channels.length > 4;
  const subtotals = channels.map((c) => fmt(c.subtotal, 4)).join(" + ");
  parts.body.push(
    element("p", { className: "note", text: `${channels.length} input channel${channels.length === 1 ? "" : "s"}${data.stride ? `, stride ${[].concat(data.stride).join("×")}` : ""}${data.padding !== undefined ? `, padding ${[].concat(data.padding).join("×")}` : ""}. Open a channel to see its window on the previous layer.` }),
    many ? element("div", { className: "row" },
      element("button", { type: "button", text: "open all channels", onclick: () => details.forEach((d) => { d.open = true; }) }),
      element("button", { type: "button", text: "close all", onclick: () => details.forEach((d) => { d.open = false; }) })) : null,
    ...details,
    element("p", { className: "total", text: `subtotals ${subtotals} + bias ${fmt(data.bias, 4)} = ${fmt(data.sum, 4)}` }),
    animationControls(data, size),
  );
}

function explainKind(data, parts) {
  const kind = data.kind;
  if (kind === "conv") return explainConv(data, parts);
  if (kind === "relu" || kind === "activation") {
    parts.head = `${data.function || "ReLU"} at x = ${fmt(data.before, 4)} gives ${fmt(data.after, 4)}`;
    parts.body.push(element("p", { text: `before the activation ${fmt(data.before, 4)}, after ${fmt(data.after, 4)}${kind === "relu" ? (data.before < 0 ? ": a negative value becomes 0" : ": a value ≥ 0 passes unchanged") : ""}.` }));
  } else if (kind === "pool") {
    const op = data.op || "max";
    const result = op === "avg" ? `mean ${fmt(data.mean ?? data.value, 4)}` : `${op} ${fmt(data.value, 4)}`;
    parts.head = `${op} pooling over the window: ${result}`;
    const patch = Array.isArray(data.patch?.[0]?.[0]) ? data.patch[0] : data.patch;
    if (patch) parts.body.push(grid(patch, { caption: data.winner ? `window; the winner is at row ${data.winner[0]}, column ${data.winner[1]} of it` : "window", highlight: data.winner, padded: data.padded }));
  } else if (kind === "batchnorm") {
    parts.head = `${fmt(data.gamma, 4)} × (${fmt(data.x, 4)} − ${fmt(data.mean, 4)}) / √(${fmt(data.var, 4)} + ${fmt(data.eps, 6)}) + ${fmt(data.beta, 4)} = ${fmt(data.y, 4)}`;
    parts.body.push(element("p", { className: "note", text: "batch norm: subtract the running mean of this channel, divide by its running standard deviation, then scale by γ and shift by β (learned)." }));
  } else if (kind === "linear") {
    parts.head = `sum of ${data.count} products + bias ${fmt(data.bias, 4)} = ${fmt(data.sum, 4)}`;
    parts.body.push(linearTerms(data, state.selected.layer)); // each term from a flattened map links to its pixel
  } else if (kind === "flatten" || kind === "reshape" || kind === "concat") {
    const s = data.source || {};
    const where = s.y !== undefined ? `channel ${s.channel}, row ${s.y}, column ${s.x}` : `index ${s.index ?? s.channel}`;
    parts.head = `copied from ${where} of ${s.step ?? "the previous step"}`;
  } else if (kind === "add" || kind === "multiply") {
    const sign = kind === "add" ? " + " : " × ";
    const terms = (data.terms || []).map((t) => `${t.source} ${fmt(t.value, 4)}`);
    parts.head = `${terms.concat((data.constants || []).map((c) => fmt(c, 4))).join(sign)} = ${fmt(data.computed, 4)}`;
    parts.body.push(element("p", { className: "note", text: kind === "add" && terms.length === 2
      ? "a residual add: the block's branch plus the values it skipped over (the identity), position by position; the gradient flows back through both unchanged."
      : "the step combines its inputs position by position." }));
  } else if (kind === "dropout" || kind === "identity" || kind === "fit" || kind === "lrn") {
    parts.head = data.text ? data.text.split(": ").slice(1).join(": ").replace(/ The step gave .*$/, "") : "";
  } else if (kind === "softmax") {
    parts.head = `exp(logit) / sum of exps (${fmt(data.sum_exp, 4)})`;
    parts.body.push(softmaxBars(data));
    const classes = state.run ? state.run.classes : [];
    const table = element("table", { className: "grid wide" },
      element("tr", {}, ...["class", "logit", "exp(logit)", "probability"].map((h) => element("th", { scope: "col", text: h }))),
      ...data.logits.map((logit, i) => {
        const row = element("tr", {}, ...[classes[i] ?? i, fmt(logit, 4), fmt(data.exps[i], 4), fmt(data.probabilities[i], 4)].map((v) => element("td", { text: String(v) })));
        if (i === state.selected.channel) row.className = "winner";
        return row;
      }));
    parts.body.push(table);
  } else {
    parts.head = data.text || "";
  }
  return undefined;
}

function renderExplanation(data) {
  const selected = state.selected;
  const layer = layerByName(selected.layer);
  const parts = { head: "", body: [] };
  explainKind(data, parts);
  const value = data.value ?? data.sum ?? data.after ?? data.y;
  const head = element("p", { id: "kernel-sum", text: `${where(selected, layer)}: ${parts.head}; the map holds ${fmt(value, 4)}` });
  const text = data.text && data.kind !== "other" ? element("p", { className: "explain-text", text: data.text }) : null;
  const fallback = data.fallback ? element("p", { className: "note", text: "This server explains convolutions only (no /explain): the window and receptive field are not shown." }) : null;
  $("kernel").replaceChildren(...[head, text, ...parts.body, fallback, data.kind === "conv" || data.kind === "linear" ? gradientButton(data.kind) : null].filter(Boolean));
  drawTrace(data);
  drawSelectedMap();
  announce(`${where(selected, layer)} = ${fmt(value, 4)}: ${parts.head}.`);
}

function stopAnimation() {
  stopRunningSum();
  cancel("gradient");
}
