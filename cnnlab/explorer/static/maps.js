// The feature maps: one row per layer (label, colour range, tiles), honest colours, and the
// selected map with its selected pixel (mouse or arrow keys), which explain.js then traces.
"use strict";

import { $, announce, element, fmt, onReset, reset, state } from "./state.js";

/** What a new selection asks of the panels that explain it: explain the value, show the
 * channel contributions, clear the old trace. app.js sets them (onSelection), so this module
 * imports none of those panels and no module imports itself in a circle. */
const selection = { explain: () => {}, contributions: () => {}, clear: () => {} };
export function onSelection(handlers) {
  Object.assign(selection, handlers);
}

const planes = new Map(); // layer name -> { height, width, values: [Float32Array per shown map] }
const MAX_CHANNELS = 1024;

export function layerByName(name) {
  return state.analysis ? state.analysis.layers.find((l) => l.name === name) : null;
}

function layerKind(layer) {
  if (layer.kind) return layer.kind;
  return /conv/i.test(layer.name) || /^features\.\d+$/.test(layer.name) ? "conv" : "other";
}

/** A 1x1 map holds one value: "constant" says nothing about it, and its own range is empty. */
function isSingle(layer) {
  return layer.shape.length === 3 && layer.shape[1] * layer.shape[2] === 1;
}

function mapStats(layer, channel) {
  if (layer.maps && layer.maps[channel]) {
    const stats = layer.maps[channel];
    return isSingle(layer) ? { ...stats, constant: false, single: true } : stats;
  }
  return { min: layer.min ?? 0, max: layer.max ?? 1, constant: false, unknown: true };
}

/** The colour scale of one map: its own range, or the layer's when the scale is shared (and
 * always for a 1x1 map, whose own range is one number). */
export function scaleOf(layer, channel) {
  const own = mapStats(layer, channel);
  if (state.scale === "all" && state.analysis) return { ...allRange(), own };
  if ((state.sharedScale || own.single) && layer.layer_min !== undefined) return { low: layer.layer_min, high: layer.layer_max, own };
  return { low: own.min, high: own.max, own };
}

/** The one range of every step's values (the scale "across all layers"). */
export function allRange() {
  const layers = (state.analysis?.layers || []).filter((l) => l.layer_min !== undefined);
  return { low: Math.min(...layers.map((l) => l.layer_min)), high: Math.max(...layers.map((l) => l.layer_max)) };
}

/** The colour range of a vector step's values: the layer's own, or all layers' one. */
export function vectorScale(layer) {
  return state.scale === "all" ? allRange() : { low: layer.layer_min, high: layer.layer_max };
}

const SCALE_WORDS = {
  map: "Colour scale in force: each map on its own range (compare places within a map, not across maps).",
  layer: "Colour scale in force: one per layer, the maps of a step share that step's range (compare channels).",
  all: "Colour scale in force: one for every map of every step",
};

function scaleLegend() {
  const words = SCALE_WORDS[state.scale] || SCALE_WORDS.map;
  if (state.scale !== "all" || !state.analysis) return words;
  const { low, high } = allRange();
  return `${words}, ${fmt(low, 3)} … ${fmt(high, 3)} (compare steps).`;
}

/** RGB of `value` on [low, high]: grey when no value is below 0 (black = lowest, white =
 * highest); blue-white-red as soon as one is (blue below 0, white = 0, red above), so an
 * all-negative map is blue, never grey. The legend in index.html says the same. */
export function colourOf(value, low, high) {
  if (low < 0) {
    const reach = Math.max(-low, high);
    const t = Math.max(-1, Math.min(1, value / reach));
    const [r, g, b] = t < 0 ? [33, 102, 172] : [178, 24, 43];
    const a = Math.abs(t);
    return [255 + (r - 255) * a, 255 + (g - 255) * a, 255 + (b - 255) * a];
  }
  const span = high - low;
  const v = span > 0 ? Math.round(255 * (value - low) / span) : 128;
  return [v, v, v];
}

/** The CSS gradient of the colour scale on [low, high], as colourOf paints it. */
export function gradientOf(low, high) {
  if (low < 0 && high > 0) return "linear-gradient(to right, #2166ac, #ffffff, #b2182b)";
  if (low < 0) return `linear-gradient(to right, #2166ac, rgb(${colourOf(high, low, high).map(Math.round).join(", ")}))`;
  return "linear-gradient(to right, #000000, #ffffff)";
}

/** Paint map `channel` of `layer` into `canvas` (at its own size); false until its sprite is read. */
export function paintMap(layer, channel, canvas) {
  const plane = planes.get(layer.name);
  if (!plane || !plane.values[channel]) return false;
  const { height, width } = plane;
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  const { low, high, own } = scaleOf(layer, channel);
  const values = plane.values[channel];
  for (let i = 0; i < values.length; i++) {
    const [r, g, b] = own.constant && !state.sharedScale ? [160, 160, 160] : colourOf(values[i], low, high);
    image.data.set([r, g, b, 255], 4 * i);
  }
  context.putImageData(image, 0, 0);
  return true;
}

/** The value the map holds at (y, x), rebuilt from the 8-bit sprite (exact for constants). */
export function valueAt(layer, channel, y, x) {
  const plane = planes.get(layer.name);
  if (!plane) return null;
  return plane.values[channel][y * plane.width + x];
}

function readSprite(layer, image) {
  const count = layer.channels_shown ?? layer.count;
  const [height, width] = layer.shape.length === 3 ? [layer.shape[1], layer.shape[2]] : [1, layer.shape[0]];
  const reader = element("canvas", { width: image.width, height: image.height });
  const context = reader.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  const values = [];
  for (let c = 0; c < count; c++) {
    const { min, max, constant } = mapStats(layer, c);
    const plane = new Float32Array(height * width);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const grey = data[4 * (y * image.width + c * width + x)];
        plane[y * width + x] = constant ? min : min + (grey / 255) * (max - min);
      }
    }
    values.push(plane);
  }
  planes.set(layer.name, { height, width, values });
}

function labelParts(layer) {
  if (layer.label) return layer.label.split(" · ");
  return [layer.name, layerKind(layer), layer.shape.join("×")];
}

function tileLabel(layer, channel) {
  const stats = mapStats(layer, channel);
  const range = stats.single ? `value ${fmt(stats.min, 3)}` : stats.constant ? `constant ${fmt(stats.min, 3)}` : `values ${fmt(stats.min, 3)} to ${fmt(stats.max, 3)}`;
  return `${layer.name} channel ${channel}, ${range}; press to trace its pixels`;
}

/** A tile's number: two significant digits, written out whole (0.018, 0.95, -3.2, 1234). */
export function short(value) {
  const size = Math.abs(value);
  if (value === 0) return "0";
  if (size >= 1e4 || size < 1e-3) return value.toExponential(1);
  if (size >= 100) return String(Math.round(value));
  return String(Number(value.toPrecision(2)));
}

/** The caption lines of a tile; a range may wrap after its "…", it is never cut. */
function tileCaption(layer, channel) {
  const stats = mapStats(layer, channel);
  if (stats.unknown) return [[`${channel}`]];
  if (stats.single) return [[`${channel}`], [`= ${short(stats.min)}`]];
  if (stats.constant) return [[`${channel}: constant`], [`= ${short(stats.min)}`]];
  return [[`${channel}`], [`${short(stats.min)}…`, element("wbr"), short(stats.max)]];
}

function mapTile(layer, channel) {
  const canvas = element("canvas", { className: "map", width: 1, height: 1, "aria-hidden": "true" });
  const stats = mapStats(layer, channel);
  const tile = element("button", {
    type: "button", className: "tile", "data-channel": String(channel), "aria-label": tileLabel(layer, channel),
    "aria-pressed": "false", title: tileLabel(layer, channel),
    onclick: (event) => selectMap(layer.name, channel, { focus: event.detail === 0 }),
  }, canvas, ...tileCaption(layer, channel).map((parts) => element("span", { className: "range" }, ...parts)));
  if (stats.constant) tile.classList.add("constant");
  return tile;
}

function outputTile(layer, position) {
  // a vector's value: its index (a softmax's rows come sorted by probability), the class name
  // for a softmax, the value itself, coloured on the layer's one scale
  const index = layer.indices ? layer.indices[position] : position;
  const value = layer.values ? layer.values[position] : undefined;
  const name = state.run && layer.kind === "softmax" && state.run.classes[index] !== undefined ? `${index}: ${state.run.classes[index]}` : `${index}`;
  const shown = value === undefined ? "" : layer.kind === "softmax" ? ` ${fmt(100 * value, 3)}%` : ` = ${fmt(value, 3)}`;
  const swatch = value === undefined ? null : element("span", {
    className: "swatch", "aria-hidden": "true",
    style: `background:${cssColour(colourOf(value, vectorScale(layer).low, vectorScale(layer).high))}`,
  });
  return element("button", {
    type: "button", className: "tile output", "data-channel": String(index), "aria-pressed": "false",
    "aria-label": `${layer.name} output ${name}${shown}; press to explain it`,
    onclick: () => selectMap(layer.name, index, { focus: false }),
  }, ...(swatch ? [swatch] : []), element("span", { className: "value-label", text: name + shown }));
}

function cssColour([r, g, b]) {
  return `rgb(${r},${g},${b})`;
}

function layerRow(layer) {
  const [name, kind, shape] = labelParts(layer);
  const total = layer.channels_total ?? layer.shape[0];
  const shown = layer.channels_shown ?? layer.count ?? (layer.shape.length === 1 ? Math.min(16, total) : 0);
  const range = layer.layer_min !== undefined ? element("span", { className: "layer-range" },
    element("span", { className: "legend-bar small", style: `background:${gradientOf(layer.layer_min, layer.layer_max)}`, "aria-hidden": "true" }),
    ` ${fmt(layer.layer_min, 2)} … ${fmt(layer.layer_max, 2)}`) : null;
  const more = shown < total ? element("button", {
    type: "button", className: "show-all", text: `${shown} of ${total} — show all`,
    onclick: () => {
      state.channels = Math.min(MAX_CHANNELS, Math.max(...state.analysis.layers.map((l) => l.channels_total ?? 0)));
      document.dispatchEvent(new CustomEvent("reanalyze"));
    },
  }) : (total > 1 ? element("span", { className: "note", text: `all ${total} shown` }) : null);
  const tiles = element("div", { className: "tiles" });
  const row = element("div", { className: "layer", "data-layer": layer.name, "data-kind": layerKind(layer) },
    element("div", { className: "name" }, element("strong", { text: name }), element("span", { text: kind }),
      element("span", { text: shape }), range, more),
    tiles);
  if (layer.shape.length === 3 && layer.sprite) {
    const strip = new Image();
    strip.onload = () => {
      if (layerByName(layer.name) !== layer) return; // a newer analysis replaced this one
      readSprite(layer, strip);
      for (let channel = 0; channel < shown; channel++) {
        const tile = mapTile(layer, channel);
        paintMap(layer, channel, tile.querySelector("canvas"));
        tiles.append(tile);
      }
      document.dispatchEvent(new CustomEvent("map-read", { detail: layer.name })); // graph.js paints its thumbnail
    };
    strip.src = layer.sprite;
  } else if (layer.shape.length === 1) {
    for (let index = 0; index < Math.min(shown || 16, total); index++) tiles.append(outputTile(layer, index));
  }
  return row;
}

export function renderOverview() {
  reset("selection");
  planes.clear();
  const overview = $("overview");
  overview.replaceChildren(...state.analysis.layers.map(layerRow));
  $("scale-legend").textContent = scaleLegend();
}

export function repaint() {
  if (!state.analysis) return;
  for (const layer of state.analysis.layers) {
    const row = document.querySelector(`#overview .layer[data-layer="${CSS.escape(layer.name)}"]`);
    if (!row) continue;
    row.querySelectorAll(".tile canvas").forEach((canvas) => paintMap(layer, Number(canvas.parentElement.dataset.channel), canvas));
    row.querySelectorAll(".tile .swatch").forEach((swatch, position) => {
      const { low, high } = vectorScale(layer);
      if (layer.values && layer.values[position] !== undefined) swatch.style.background = cssColour(colourOf(layer.values[position], low, high));
    });
  }
  $("scale-legend").textContent = scaleLegend();
  document.dispatchEvent(new CustomEvent("maps-repainted"));
  if (state.selected) drawSelectedMap();
}

// ---------------------------------------------------------------- the selected map and pixel

export function selectMap(layerName, channel, { focus = false, at = null } = {}) {
  const layer = layerByName(layerName);
  if (!layer) return;
  const [height, width] = layer.shape.length === 3 ? [layer.shape[1], layer.shape[2]] : [1, 1];
  const [y, x] = at ? [at.y, at.x] : [Math.floor(height / 2), Math.floor(width / 2)];
  state.selected = { layer: layerName, channel, y, x };
  state.explanation = null; // the previous map's numbers are never drawn on this one
  document.querySelectorAll("#overview .tile[aria-pressed='true']").forEach((t) => t.setAttribute("aria-pressed", "false"));
  const tile = document.querySelector(`#overview .layer[data-layer="${CSS.escape(layerName)}"] .tile[data-channel="${CSS.escape(String(channel))}"]`);
  if (tile) tile.setAttribute("aria-pressed", "true");
  buildSelectedMap(layer);
  $("kernel-panel").scrollIntoView({ block: "start", behavior: "instant" });
  if (focus) document.querySelector("#kernel-map .mapbox")?.focus();
  selection.explain();
  selection.contributions();
}

export function movePixel(dy, dx) {
  const selected = state.selected;
  const layer = selected && layerByName(selected.layer);
  if (!layer || layer.shape.length !== 3) return;
  const y = Math.max(0, Math.min(layer.shape[1] - 1, selected.y + dy));
  const x = Math.max(0, Math.min(layer.shape[2] - 1, selected.x + dx));
  if (y === selected.y && x === selected.x) return;
  pickPixel(y, x);
}

/** A new pixel of the selected map: the old pixel's exact value and windows go first, so
 * nothing stale is drawn while its explanation loads. */
function pickPixel(y, x) {
  state.selected = { ...state.selected, y, x };
  state.explanation = null;
  selection.clear();
  drawSelectedMap();
  selection.explain();
}

/** Slide on like the kernel does: the next column, at a row's end the next row's first. */
function slide() {
  const selected = state.selected;
  const layer = selected && layerByName(selected.layer);
  if (!layer || layer.shape.length !== 3) return;
  const [height, width] = [layer.shape[1], layer.shape[2]];
  if (selected.x + 1 < width) pickPixel(selected.y, selected.x + 1);
  else if (selected.y + 1 < height) pickPixel(selected.y + 1, 0);
  else announce("The window is at the last position of this map.");
}

/** Back from the trace to the traced map's tile (on a phone the trace is far below it). */
function backToTile() {
  const selected = state.selected;
  if (!selected) return;
  const row = document.querySelector(`#overview .layer[data-layer="${CSS.escape(selected.layer)}"]`);
  const tile = row && row.querySelector(`.tile[data-channel="${selected.channel}"]`);
  if (!tile) return;
  tile.scrollIntoView({ block: "center", behavior: "instant" });
  tile.focus({ preventScroll: true });
}

const KEYS = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

/** The cell under the pointer becomes the selected pixel (a hover only when it changes). */
function pointAt(event, hover) {
  const selected = state.selected;
  const layer = selected && layerByName(selected.layer);
  const big = document.querySelector("#kernel-map .mapbox img");
  if (!layer || !big || layer.shape.length !== 3) return;
  const rect = big.getBoundingClientRect();
  const x = Math.floor((event.clientX - rect.left) * layer.shape[2] / rect.width);
  const y = Math.floor((event.clientY - rect.top) * layer.shape[1] / rect.height);
  if (x < 0 || y < 0 || x >= layer.shape[2] || y >= layer.shape[1]) return;
  if (hover && y === selected.y && x === selected.x) return;
  pickPixel(y, x);
}

function buildSelectedMap(layer) {
  const holder = $("kernel-map");
  $("trace-hint").hidden = true;
  const [name, kind, shape] = labelParts(layer);
  const { channel } = state.selected;
  const back = element("button", { type: "button", id: "back-to-maps", className: "back-to-maps", text: "↑ back to the maps",
    "aria-label": `back to ${layer.name} ${layer.shape.length === 3 ? "channel" : "output"} ${channel} among the maps`, onclick: backToTile });
  if (layer.shape.length !== 3) {
    holder.replaceChildren(element("p", { className: "map-title", text: `${name} · ${kind} · ${shape}, output ${channel}` }), back);
    return;
  }
  const big = element("img", { className: "big", alt: "" });
  const marks = element("canvas", { className: "marks", width: 560, height: 560, "aria-hidden": "true" });
  const box = element("div", {
    className: "mapbox", tabindex: "0", role: "group",
    onclick: (event) => pointAt(event, false),
    onmousemove: (event) => pointAt(event, true), // hovering a cell moves the window too
    onkeydown: (event) => {
      const step = KEYS[event.key];
      if (!step) return;
      event.preventDefault();
      movePixel(...step);
    },
  }, big, marks);
  // the slide button lives here, not in the explanation that every move redraws: focus stays on it
  const slider = element("button", { type: "button", id: "anim-slide", text: "slide the window →",
    "aria-label": "slide the window one column to the right (at the end of a row, to the next row)", onclick: slide });
  holder.replaceChildren(
    element("div", { className: "row map-head" },
      element("p", { className: "map-title", text: `${name} · ${kind} · ${shape}, channel ${channel}` }), back),
    box,
    element("div", { className: "colourbar" }),
    element("p", { className: "pixel-label", id: "pixel-label" }),
    element("div", { className: "row" }, slider),
  );
  drawSelectedMap();
}

export function drawSelectedMap() {
  const selected = state.selected;
  const layer = selected && layerByName(selected.layer);
  const box = document.querySelector("#kernel-map .mapbox");
  if (!layer || !box) return;
  const source = element("canvas");
  if (!paintMap(layer, selected.channel, source)) return;
  const big = box.querySelector("img");
  big.src = source.toDataURL();
  const marks = box.querySelector("canvas.marks");
  const [height, width] = [layer.shape[1], layer.shape[2]];
  const context = marks.getContext("2d");
  context.clearRect(0, 0, marks.width, marks.height);
  const cw = marks.width / width, ch = marks.height / height;
  context.lineWidth = 3;
  context.strokeStyle = "#ff9800";
  context.strokeRect(selected.x * cw + 1.5, selected.y * ch + 1.5, cw - 3, ch - 3);
  context.strokeStyle = "#000";
  context.lineWidth = 1;
  context.strokeRect(selected.x * cw - 0.5, selected.y * ch - 0.5, cw + 1, ch + 1);
  const value = valueAt(layer, selected.channel, selected.y, selected.x);
  const { low, high, own } = scaleOf(layer, selected.channel);
  const bar = document.querySelector("#kernel-map .colourbar");
  if (!bar) return;
  bar.replaceChildren(
    element("span", { text: fmt(low, 3) }),
    element("span", { className: "legend-bar", style: `background:${own.constant && !state.sharedScale ? "#a0a0a0" : gradientOf(low, high)}`,
      role: "img", "aria-label": `colour scale ${fmt(low, 3)} to ${fmt(high, 3)}` }),
    element("span", { text: fmt(high, 3) }),
    ...(own.constant ? [element("strong", { text: ` constant = ${fmt(own.min, 4)}` })] : []),
  );
  const where = `row ${selected.y}, column ${selected.x}`;
  const exact = state.explanation && state.explanation.value !== undefined ? ` = ${fmt(state.explanation.value, 4)}` : "";
  const shown = exact || (value === null ? "" : ` ≈ ${fmt(value, 4)}`);
  $("pixel-label").textContent = `selected (${where})${shown}; arrow keys move it`;
  box.setAttribute("aria-label", `${layer.name} channel ${selected.channel}; selected pixel at ${where}; arrow keys move it`);
}

document.querySelectorAll("input[name='colour-scale']").forEach((radio) => radio.addEventListener("change", () => {
  if (!radio.checked) return;
  state.scale = radio.value; // "map", "layer" or "all"
  state.sharedScale = state.scale !== "map";
  repaint();
  announce(scaleLegend());
}));

onReset("selection", () => {
  $("kernel-map").replaceChildren();
  $("trace-hint").hidden = false;
  document.querySelectorAll("#overview .tile[aria-pressed='true']").forEach((t) => t.setAttribute("aria-pressed", "false"));
  selection.clear();
});
onReset("input", () => {
  planes.clear();
  $("overview").replaceChildren(element("p", { className: "note", text: "The maps of every layer appear here after an analysis." }));
});
