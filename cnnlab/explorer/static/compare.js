// "compare with": every analysis of the current input is also sent to a second run with the
// same input format; a compact panel shows both runs' top-3 predictions and first conv maps.
"use strict";

import { $, STALE, cancel, element, onReset, post, state } from "./state.js";
import { colourOf } from "./maps.js";

const KEY = "compare";
let shown = 0; // bumps on every clear, so a sprite decoded late never lands in a newer panel

function inputOf(run) {
  const input = run.input || { channels: run.in_channels, size: run.input_size };
  return { channels: input.channels, size: input.size };
}

function format(run) {
  const { channels, size } = inputOf(run);
  return `${channels}x${size}x${size}`;
}

/** Fill the selector for the main run: runs with another input format are listed, disabled. */
function fillChoices() {
  const select = $("compare-run");
  const own = state.run ? format(state.run) : "";
  select.replaceChildren(element("option", { value: "", text: "no other run" }),
    ...state.runs.filter((run) => run !== state.run).map((run) => {
      const same = format(run) === own;
      return element("option", {
        value: run.name, disabled: !same,
        text: `${run.name}${same ? "" : ` (${format(run)} input)`}`,
        title: same ? `compare with ${run.name}` : `its input is ${format(run)}, this run's is ${own}: not the same pixels`,
      });
    }));
  select.value = "";
}

function clearPanel() {
  shown += 1;
  cancel(KEY);
  const panel = $("compare");
  panel.replaceChildren();
  panel.hidden = true;
}

function firstConv(analysis) {
  const maps = analysis.layers.filter((l) => l.shape.length === 3 && l.sprite);
  return maps.find((l) => l.kind === "conv" || /conv/i.test(l.name) || /^features\.\d+$/.test(l.name)) || maps[0] || null;
}

/** The first conv layer's maps, each coloured on its own range like the overview's tiles. */
function convMaps(analysis, token) {
  const layer = firstConv(analysis);
  const holder = element("div", { className: "compare-maps" });
  if (!layer) return holder;
  const [height, width] = [layer.shape[1], layer.shape[2]];
  const count = layer.channels_shown ?? layer.count ?? 0;
  holder.append(element("span", { className: "note", text: `${layer.name}: ${count} maps` }));
  const strip = new Image();
  strip.onload = () => {
    if (token !== shown) return;
    const reader = element("canvas", { width: strip.width, height: strip.height });
    const context = reader.getContext("2d");
    context.drawImage(strip, 0, 0);
    const data = context.getImageData(0, 0, strip.width, strip.height).data;
    for (let c = 0; c < count; c++) {
      const { min, max, constant } = (layer.maps && layer.maps[c]) || { min: 0, max: 1, constant: false };
      const canvas = element("canvas", { width, height, className: "map", role: "img",
        "aria-label": `${layer.name} channel ${c}` });
      const out = canvas.getContext("2d");
      const image = out.createImageData(width, height);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const grey = data[4 * (y * strip.width + c * width + x)];
          const value = constant ? min : min + (grey / 255) * (max - min);
          image.data.set([...(constant ? [160, 160, 160] : colourOf(value, min, max)), 255], 4 * (y * width + x));
        }
      }
      out.putImageData(image, 0, 0);
      holder.append(canvas);
    }
  };
  strip.src = layer.sprite;
  return holder;
}

function column(runName, analysis, token) {
  const top = [...analysis.probabilities].sort((a, b) => b.p - a.p).slice(0, 3);
  return element("div", { className: "compare-run", "data-run": runName },
    element("h3", { text: runName }),
    element("ol", {}, ...top.map((p) => element("li", { "data-class": p.class, "data-p": String(p.p),
      text: `${p.class} ${(100 * p.p).toFixed(1)}%` }))),
    convMaps(analysis, token));
}

/** Send the current input to the chosen run too (called after every main analysis). */
export async function compareCurrent() {
  const name = $("compare-run").value;
  clearPanel();
  if (!name || !state.pixels || !state.analysis) return;
  const main = state.analysis;
  const token = shown;
  const panel = $("compare");
  panel.hidden = false;
  panel.replaceChildren(element("p", { className: "note", text: `asking ${name}…` }));
  let data;
  try {
    data = await post(KEY, `/api/runs/${encodeURIComponent(name)}/analyze`, { pixels: state.pixels, channels: 8 });
  } catch (error) {
    if (token === shown) panel.replaceChildren(element("p", { className: "note problem", text: `${name}: ${error.message}` }));
    return;
  }
  if (data === STALE || token !== shown || state.analysis !== main) return;
  panel.replaceChildren(element("div", { className: "compare-grid" },
    column(state.run.name, main, token), column(name, data, token)));
  panel.dataset.ready = "true";
}

export function setupCompare() {
  $("compare-run").onchange = () => compareCurrent();
}

onReset("input", clearPanel);
onReset("run", () => { clearPanel(); fillChoices(); });
