// What explain.js adds to an explanation beyond its tables: in a convolution's grids, the
// input patch cell, its kernel weight and their product lit together (mouse or arrow keys),
// with the normalisation of that input pixel when the convolution reads the image; a
// softmax's probabilities as bars; a linear step's terms linked to the map pixel behind them.
"use strict";

import { element, fmt, onReset, state } from "./state.js";
import { layerByName, selectMap } from "./maps.js";
import { normalisedPixel } from "./graph.js";

const MAX_CHANNELS = 1024; // the most maps /analyze shows per step
const KEYS = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };

/** Make one input channel's three grids (patch × kernel = products) light one cell together. */
export function linkGrids(grids, channel, data) {
  const tables = [...grids.querySelectorAll("table.grid")];
  const rows = channel.patch.length, columns = channel.patch[0].length;
  const offset = inputOffset(data);
  const line = offset ? element("p", { className: "norm-pixel note" }) : null;
  let lit = null;
  const lightCell = (i, j) => {
    lit = [i, j];
    grids.querySelectorAll("td.lit").forEach((td) => td.classList.remove("lit"));
    tables.forEach((table) => table.rows[i]?.cells[j]?.classList.add("lit"));
    const p = channel.patch[i][j], w = channel.kernel[i][j], product = channel.products[i][j];
    grids.setAttribute("aria-label", `input channel ${channel.index}, row ${i}, column ${j} of the window: ${fmt(p, 4)} × ${fmt(w, 4)} = ${fmt(product, 4)}; arrow keys move`);
    if (line) showPixel(line, channel, data, i, j, offset);
  };
  grids.tabIndex = 0;
  grids.setAttribute("role", "group");
  grids.addEventListener("mouseover", (event) => {
    const td = event.target.closest("td");
    if (td && grids.contains(td)) lightCell(td.parentElement.rowIndex, td.cellIndex);
  });
  grids.addEventListener("focus", () => { if (!lit) lightCell(Math.floor(rows / 2), Math.floor(columns / 2)); });
  grids.addEventListener("keydown", (event) => {
    const step = KEYS[event.key];
    if (!step) return;
    event.preventDefault();
    const [i, j] = lit || [0, 0];
    lightCell(Math.max(0, Math.min(rows - 1, i + step[0])), Math.max(0, Math.min(columns - 1, j + step[1])));
  });
  lightCell(Math.floor(rows / 2), Math.floor(columns / 2));
  return line;
}

/** Where the window's rows and columns lie on the input image: [0, 0] when the convolution
 * reads the image, the padding when it reads a "fit" step that zero-pads it (LeNet's 28 -> 32;
 * a resize, such as 8 -> 32, is not followed); null when it reads anything else. */
function inputOffset(data) {
  const w = data.window;
  if (!w || !state.analysis?.normalisation || !state.pixels) return null;
  if (w.layer === "input") return [0, 0];
  const fit = layerByName(w.layer);
  if (!fit || fit.kind !== "fit" || (fit.reads || [])[0] !== "input" || fit.shape.length !== 3) return null;
  const dy = fit.shape[1] - state.pixels[0].length, dx = fit.shape[2] - state.pixels[0][0].length;
  if (dy !== dx || dy < 0 || dy > 4 || dy % 2) return null;
  return [dy / 2, dx / 2];
}

/** The input pixel behind patch cell (i, j): 0..255 → x / 255 → (x / 255 − mean) / std. */
function showPixel(line, channel, data, i, j, offset) {
  const w = data.window;
  const [dy, dx] = data.dilation ? [].concat(data.dilation) : [1, 1];
  const y = w.y0 + i * dy - offset[0], x = w.x0 + j * (dx ?? dy) - offset[1];
  const fitted = offset[0] || offset[1] ? `${w.layer} row ${y + offset[0]}, column ${x + offset[1]} is ` : "";
  const where = `${fitted}input channel ${channel.index}, row ${y}, column ${x}`;
  const pixel = normalisedPixel(channel.index, y, x);
  Object.assign(line.dataset, { channel: channel.index, y, x });
  if (!pixel || pixel.padding) {
    line.textContent = `${where}, outside the image: padding, the patch holds ${fmt(channel.patch[i][j], 4)}.`;
    delete line.dataset.raw;
    return;
  }
  line.dataset.raw = pixel.raw;
  line.dataset.value = pixel.value;
  line.textContent = `${where}: pixel ${pixel.raw} → ${pixel.raw} / 255 = ${fmt(pixel.scaled, 4)} → (${fmt(pixel.scaled, 4)} − ${fmt(pixel.mean, 4)}) / ${fmt(pixel.std, 4)} = ${fmt(pixel.value, 4)}, the patch number ${fmt(channel.patch[i][j], 4)}.`;
}

/** A softmax's probabilities as bars, the prediction first (the 10 largest at most). */
export function softmaxBars(data) {
  const classes = state.run ? state.run.classes : [];
  const order = (data.ranked || data.probabilities.map((_, i) => i).sort((a, b) => data.probabilities[b] - data.probabilities[a])).slice(0, 10);
  const top = data.probabilities[order[0]] || 1;
  return element("figure", { className: "softmax-figure" },
    element("figcaption", { text: `The ${order.length} most likely classes, the prediction first: a longer bar is a larger probability; the bars always add up to 100% over all ${data.probabilities.length} classes.` }),
    element("ol", { id: "softmax-bars", className: "softmax-bars" }, ...order.map((index, rank) => {
      const p = data.probabilities[index];
      return element("li", { "data-class": String(index), "data-p": String(p), className: rank === 0 ? "top" : "" },
        element("span", { className: "bar-name", text: `${classes[index] ?? index}` }),
        element("span", { className: "bar-track", "aria-hidden": "true" },
          element("span", { className: "bar-fill", style: `width:${Math.max(1, Math.round(100 * p / top))}%` })),
        element("span", { className: "bar-value", text: `${fmt(100 * p, 3)}%` }));
    })));
}

/** Where input `index` of a linear step comes from, when it reads a flattened map. */
export function flatSource(step, index) {
  const layer = layerByName(step);
  const flatten = layer && layer.reads && layerByName(layer.reads[0]);
  if (!flatten || flatten.kind !== "flatten") return null;
  const map = layerByName((flatten.reads || [])[0]);
  if (!map || map.shape.length !== 3) return null;
  const [, height, width] = map.shape;
  const channel = Math.floor(index / (height * width));
  const rest = index % (height * width);
  return { step: map.name, channel, y: Math.floor(rest / width), x: rest % width };
}

let pending = null; // a term's source waiting for an analysis that shows its channel

/** Select the map pixel a term comes from; a channel beyond the maps shown is asked for first. */
function traceSource(source, focus) {
  const map = layerByName(source.step);
  const shown = map.channels_shown ?? map.count ?? 0;
  if (source.channel < shown || map.budget_cut || state.channels >= MAX_CHANNELS) {
    selectMap(source.step, source.channel, { focus, at: { y: source.y, x: source.x } });
    return;
  }
  pending = { ...source, focus };
  state.channels = Math.min(MAX_CHANNELS, Math.max(state.channels, source.channel + 1));
  document.dispatchEvent(new CustomEvent("reanalyze"));
}

document.addEventListener("map-read", (event) => { // the new analysis has read the map's maps
  if (!pending || event.detail !== pending.step) return;
  const { step, channel, y, x, focus } = pending;
  pending = null;
  selectMap(step, channel, { focus, at: { y, x } });
});

/** A linear step's top terms, each from a flattened map with a link to its map pixel. */
export function linearTerms(data, step) {
  const linked = data.top_terms.some((t) => flatSource(step, t.index));
  const head = ["input index", "weight", "input", "product", ...(linked ? ["comes from"] : [])];
  return element("table", { className: "grid wide", id: "linear-terms" },
    element("caption", { text: `the ${data.top_terms.length} largest of ${data.count} products (by size)${linked ? "; press a source to trace that map pixel" : ""}` }),
    element("tr", {}, ...head.map((h) => element("th", { scope: "col", text: h }))),
    ...data.top_terms.map((t) => {
      const source = flatSource(step, t.index);
      const cells = [t.index, fmt(t.weight, 4), fmt(t.input, 4), fmt(t.product, 4)].map((v) => element("td", { text: String(v) }));
      if (linked) {
        cells.push(element("td", {}, source ? element("button", {
          type: "button", className: "term-link", "data-index": String(t.index),
          text: `${source.step} ch ${source.channel} (${source.y}, ${source.x})`,
          "aria-label": `trace input ${t.index}: ${source.step} channel ${source.channel}, row ${source.y}, column ${source.x}`,
          onclick: (event) => traceSource(source, event.detail === 0),
        }) : "-"));
      }
      return element("tr", {}, ...cells);
    }));
}

onReset("input", () => { pending = null; }); // a new input: the term's source is not wanted
