// A convolution's output map taken apart (/contributions): each input channel's map (that
// channel correlated with its kernel slice), "+ bias", their sum and the output map, all on
// ONE colour scale, so the sum and the output can be compared by eye.
"use strict";

import { $, STALE, element, fmt, onReset, post, runPath, state } from "./state.js";
import { colourOf, gradientOf, layerByName } from "./maps.js";

const LIMIT = 8; // input channels shown, the largest contributions first
let shown = null; // "layer/channel" of the contributions on show

function load(src) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = reject;
    image.src = src;
  });
}

/** Recolour a grey PNG (0..255 = low..high) with the page's colours on [low, high]; one canvas
 * per `count` tiles side by side. */
function recolour(image, count, low, high) {
  const reader = element("canvas", { width: image.width, height: image.height });
  const context = reader.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  const width = image.width / count, height = image.height;
  const canvases = [];
  for (let k = 0; k < count; k++) {
    const canvas = element("canvas", { className: "contrib-map", width, height, "aria-hidden": "true" });
    const out = canvas.getContext("2d").createImageData(width, height);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const grey = data[4 * (y * image.width + k * width + x)];
        out.data.set([...colourOf(low + (grey / 255) * (high - low), low, high), 255], 4 * (y * width + x));
      }
    }
    canvas.getContext("2d").putImageData(out, 0, 0);
    canvases.push(canvas);
  }
  return canvases;
}

function figure(canvas, caption, extra = {}) {
  return element("figure", { className: "contrib", ...extra }, canvas, element("figcaption", { text: caption }));
}

/** Show the contributions of the selected convolution map (only when it changed). */
export async function showContributions() {
  const selected = state.selected;
  const layer = selected && layerByName(selected.layer);
  const holder = $("contrib-view");
  if (!layer || layer.kind !== "conv" || layer.shape.length !== 3 || !state.pixels) {
    shown = null;
    holder.replaceChildren();
    return;
  }
  const key = `${selected.layer}/${selected.channel}`;
  if (key === shown) return;
  shown = key;
  holder.replaceChildren(element("p", { className: "note", text: "taking the map apart…" }));
  let data;
  try {
    data = await post("contributions", runPath("contributions"),
      { pixels: state.pixels, layer: selected.layer, channel: selected.channel, limit: LIMIT });
  } catch (error) {
    holder.replaceChildren(element("p", { className: "problem", id: "contrib-problem", text: `contributions: ${error.message}` }));
    return;
  }
  if (data === STALE || shown !== key) return;
  let sprite, sum, output;
  try {
    [sprite, sum, output] = await Promise.all([load(data.sprite), load(data.sum), load(data.output)]);
  } catch {
    holder.replaceChildren(element("p", { className: "problem", id: "contrib-problem", text: "contributions: the maps could not be read" }));
    return;
  }
  if (shown !== key) return;
  const { min: low, max: high } = data;
  const maps = recolour(sprite, data.inputs.length, low, high);
  const [sumMap] = recolour(sum, 1, low, high);
  const [outMap] = recolour(output, 1, low, high);
  const more = data.count > data.inputs.length ? ` + the other ${data.count - data.inputs.length} channels` : "";
  holder.replaceChildren(
    element("h3", { text: `${selected.layer} channel ${selected.channel}, taken apart` }),
    element("p", { className: "note intro", text: `The output map is a sum: each input channel filtered by its own kernel slice, plus the bias. Look for the few input channels whose maps resemble the output: they do most of the work (largest ${data.inputs.length} of ${data.count} shown).` }),
    element("div", { className: "contrib-row", id: "contrib-maps" },
      ...maps.map((canvas, k) => figure(canvas, `in ${data.inputs[k]}`, { "data-input": String(data.inputs[k]) })),
      more ? element("span", { className: "op", text: `…${more}` }) : null,
      element("span", { className: "op", id: "contrib-bias", text: `+ bias ${fmt(data.bias, 4)}` }),
      element("span", { className: "op", text: "=" }),
      figure(sumMap, "sum", { id: "contrib-sum" }),
      element("span", { className: "op", text: "vs" }),
      figure(outMap, "output", { id: "contrib-output" })),
    element("div", { className: "colourbar", id: "contrib-legend" },
      element("span", { text: fmt(low, 3) }),
      element("span", { className: "legend-bar", style: `background:${gradientOf(low, high)}`, role: "img", "aria-label": `one colour scale ${fmt(low, 3)} to ${fmt(high, 3)}` }),
      element("span", { text: fmt(high, 3) }),
      element("span", { text: ` one scale for every map here: ${fmt(low, 3)} … ${fmt(high, 3)}` })),
    element("p", { className: "note", id: "contrib-check", text: `The sum of all ${data.count} channel maps + bias equals the output map: the largest difference is ${fmt(data.max_difference, 3)}.` }),
  );
}

onReset("selection", () => {
  shown = null;
  $("contrib-view").replaceChildren();
});
