// The network as one picture: every step of the forward pass as a box (its first map) in
// execution order, joined by SVG lines to the steps it reads (a residual add: two paths
// meeting), and before them the normalisation of the input. Hover or focus lights a step's
// inputs and readers; a press selects the step like its first map does.
"use strict";

import { $, element, fmt, onReset, state } from "./state.js";
import { colourOf, layerByName, paintMap, selectMap, vectorScale } from "./maps.js";

const COLUMN = 72; // px per step
const NODE = 60; // node width
const NODE_HEIGHT = 96;
const ROOM = 56; // room above the nodes for the lines that skip steps (when there are some)
const SVG = "http://www.w3.org/2000/svg";
const SHORT_KINDS = { add: "+ add", batchnorm: "BN", activation: "act", multiply: "× mul", concat: "concat" };

let readers = new Map(); // step -> the steps that read it
let arcRoom = ROOM; // the room above the nodes in the picture on show

/** A step's name, breakable after its dots ("layer1.0.conv1" wraps as "layer1. 0. conv1"). */
function nameParts(name) {
  return name.split(".").flatMap((part, i, all) => (i < all.length - 1 ? [`${part}.`, element("wbr")] : [part]));
}

function nodeFor(layer, column) {
  const thumb = element("canvas", { className: "thumb", width: 1, height: 1, "aria-hidden": "true" });
  const reads = (layer.reads || []).join(", ") || "nothing";
  const node = element("button", {
    type: "button", className: `node kind-${layer.kind || "other"}`, "data-step": layer.name,
    style: `left:${column * COLUMN + (COLUMN - NODE) / 2}px;top:${arcRoom}px`,
    "aria-label": `${layer.name}, ${layer.kind}, ${layer.shape.join("×")}; reads ${reads}; press to trace it; arrow keys go to the next step`,
    tabindex: column === 1 ? "0" : "-1", // one tab stop: the arrow keys walk the steps
    onkeydown: (event) => walk(event, column),
    title: `${layer.name} (${layer.op || layer.kind}) ${layer.shape.join("×")}, reads ${reads}`,
    onclick: (event) => selectMap(layer.name, 0, { focus: event.detail === 0 }),
    onmouseenter: () => light(layer.name), onmouseleave: () => light(null),
    onfocus: () => light(layer.name), onblur: () => light(null),
  }, thumb,
  element("span", { className: "node-kind", text: SHORT_KINDS[layer.kind] ?? layer.kind }),
  element("span", { className: "node-name" }, ...nameParts(layer.name)));
  paintThumb(layer, thumb);
  return node;
}

function inputNode() {
  const image = element("img", { className: "thumb", alt: "" });
  if (state.analysis.input) image.src = state.analysis.input;
  return element("div", { className: "node input-node", "data-step": "input", role: "img",
    "aria-label": "the input image", style: `left:${(COLUMN - NODE) / 2}px;top:${arcRoom}px` },
  image, element("span", { className: "node-kind", text: "input" }), element("span", { className: "node-name", text: "image" }));
}

/** A step's first map (or a vector's first values) on the colour scale in force. */
function paintThumb(layer, canvas) {
  if (layer.shape.length === 3) {
    paintMap(layer, 0, canvas);
    return;
  }
  const values = (layer.values || []).slice(0, 32);
  if (!values.length) return;
  const { low, high } = vectorScale(layer);
  canvas.width = values.length;
  canvas.height = 1;
  const context = canvas.getContext("2d");
  const image = context.createImageData(values.length, 1);
  values.forEach((v, i) => image.data.set([...colourOf(v, low, high), 255], 4 * i));
  context.putImageData(image, 0, 0);
}

function edgePath(from, to) {
  const middle = arcRoom + NODE_HEIGHT / 2;
  const x0 = from * COLUMN + COLUMN / 2, x1 = to * COLUMN + COLUMN / 2;
  if (to - from === 1) return `M ${x0 + NODE / 2} ${middle} L ${x1 - NODE / 2} ${middle}`;
  // a line that skips steps arcs above them, from the top of one box to the top of the other
  const rise = Math.min(arcRoom - 6, 14 + 5 * (to - from));
  return `M ${x0} ${arcRoom} C ${x0} ${arcRoom - rise}, ${x1} ${arcRoom - rise}, ${x1} ${arcRoom}`;
}

export function renderGraph() {
  const holder = $("graph");
  const layers = state.analysis ? state.analysis.layers : [];
  if (!layers.length) return;
  const column = new Map([["input", 0]]);
  layers.forEach((layer, i) => column.set(layer.name, i + 1));
  readers = new Map();
  const skips = layers.some((layer) => (layer.reads || []).some((r) => column.has(r) && column.get(layer.name) - column.get(r) > 1));
  arcRoom = skips ? ROOM : 8;
  const width = (layers.length + 1) * COLUMN, height = arcRoom + NODE_HEIGHT + 8;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("edges");
  for (const layer of layers) {
    for (const source of layer.reads || []) {
      if (!column.has(source)) continue;
      if (!readers.has(source)) readers.set(source, []);
      readers.get(source).push(layer.name);
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", edgePath(column.get(source), column.get(layer.name)));
      path.dataset.from = source;
      path.dataset.to = layer.name;
      if (column.get(layer.name) - column.get(source) > 1) path.classList.add("skip");
      svg.append(path);
    }
  }
  const inner = element("div", { className: "graph-inner", style: `width:${width}px;height:${height}px` }, svg, inputNode(),
    ...layers.map((layer) => nodeFor(layer, column.get(layer.name))));
  holder.replaceChildren(inner);
  renderNormalisation();
}

/** Arrow keys (and Home, End) move the focus along the steps, the one tab stop with it. */
function walk(event, column) {
  const nodes = [...document.querySelectorAll("#graph button.node")];
  const to = { ArrowRight: column, ArrowDown: column, ArrowLeft: column - 2, ArrowUp: column - 2, Home: 0, End: nodes.length - 1 }[event.key];
  if (to === undefined) return;
  event.preventDefault();
  const next = nodes[Math.max(0, Math.min(nodes.length - 1, to))];
  nodes.forEach((node) => node.setAttribute("tabindex", node === next ? "0" : "-1"));
  next.focus();
}

/** Light `name`'s inputs and readers (null: nothing lit). */
function light(name) {
  const graph = $("graph");
  graph.querySelectorAll(".node.is-current, .node.is-read, .node.is-reader").forEach((n) => n.classList.remove("is-current", "is-read", "is-reader"));
  graph.querySelectorAll("path.lit").forEach((p) => p.classList.remove("lit"));
  if (!name) return;
  const layer = layerByName(name);
  const node = (step) => graph.querySelector(`.node[data-step="${CSS.escape(step)}"]`);
  node(name)?.classList.add("is-current");
  for (const source of layer?.reads || []) node(source)?.classList.add("is-read");
  for (const reader of readers.get(name) || []) node(reader)?.classList.add("is-reader");
  graph.querySelectorAll("path").forEach((p) => {
    if (p.dataset.from === name || p.dataset.to === name) p.classList.add("lit");
  });
}

function repaintThumbs(only = null) {
  if (!state.analysis) return;
  document.querySelectorAll("#graph button.node").forEach((node) => {
    const layer = layerByName(node.dataset.step);
    if (layer && (only === null || only === layer.name)) paintThumb(layer, node.querySelector("canvas"));
  });
}

// ---------------------------------------------------------------- normalisation

/** The row before the first step: how 0..255 pixels become the numbers the model reads. */
function renderNormalisation() {
  const row = $("norm-row");
  const norm = state.analysis && state.analysis.normalisation;
  if (!norm) {
    row.hidden = true;
    return;
  }
  const same = norm.mean.every((m, c) => m === norm.mean[0] && norm.std[c] === norm.std[0]);
  const channels = same ? [`mean ${fmt(norm.mean[0], 4)}, std ${fmt(norm.std[0], 4)}${norm.mean.length > 1 ? " (every channel)" : ""}`]
    : norm.mean.map((mean, c) => `channel ${c}: mean ${fmt(mean, 4)}, std ${fmt(norm.std[c], 4)}`);
  row.replaceChildren(
    element("strong", { text: "Before the first step: " }),
    `input pixel x (0..255) → x / 255 (0..1) → (x / 255 − mean) / std, with ${channels.join("; ")}. `,
    element("span", { className: "note", text: "Trace a pixel of the first convolution and point at a patch cell to see its pixel worked out." }),
  );
  row.hidden = false;
}

/** The normalisation of one input pixel, as a line of numbers (null when there is none). */
export function normalisedPixel(channel, y, x) {
  const norm = state.analysis && state.analysis.normalisation;
  if (!norm || !state.pixels) return null;
  const plane = state.pixels[Math.min(channel, state.pixels.length - 1)];
  const raw = plane && plane[y] ? plane[y][x] : undefined;
  if (raw === undefined) return { padding: true };
  const c = Math.min(channel, norm.mean.length - 1);
  const scaled = raw / 255;
  return { raw, scaled, mean: norm.mean[c], std: norm.std[c], value: (scaled - norm.mean[c]) / norm.std[c] };
}

document.addEventListener("map-read", (event) => repaintThumbs(event.detail));
document.addEventListener("maps-repainted", () => repaintThumbs());

onReset("input", () => {
  readers = new Map();
  $("graph").replaceChildren(element("p", { className: "note", text: "The steps appear here after an analysis." }));
  $("norm-row").hidden = true;
});
