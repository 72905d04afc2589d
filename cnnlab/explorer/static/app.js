// cnnlab explorer: a small framework-free page over the JSON API. Every panel is drawn from
// `state` (state.js); this module holds the run choice, the inputs, the prediction and Grad-CAM.
"use strict";

import {
  $, STALE, announce, element, fmt, inputTicket, note, onReset, post, request, reset, runPath, showImage, state, stillWanted,
} from "./state.js";
import { onSelection, renderOverview } from "./maps.js";
import { clearTrace, explainSelected } from "./explain.js";
import { showContributions } from "./contrib.js";
import { renderGraph } from "./graph.js";
import { loadReport, setupPlayground } from "./practice.js";
import { compareCurrent, setupCompare } from "./compare.js";
import { setupBackprop } from "./backprop.js";

onSelection({ explain: explainSelected, contributions: showContributions, clear: clearTrace });

// ---------------------------------------------------------------- runs

function inputShape(run) {
  const input = run.input || { channels: run.in_channels, size: run.input_size };
  return { channels: input.channels, size: input.size };
}

async function loadRuns() {
  let runs;
  try {
    runs = await request("runs", "/api/runs");
  } catch (error) {
    announce(`The runs could not be loaded: ${error.message}`);
    note("input-note", error.message, true);
    return;
  }
  if (runs === STALE) return;
  state.runs = runs;
  const select = $("run");
  select.replaceChildren(...runs.map((run) => element("option", {
    value: run.name,
    text: run.label || `${run.name} (${run.model}, ${run.dataset || "no data set"})`,
  })));
  select.onchange = () => selectRun(select.value);
  if (runs.length) selectRun(runs[0].name);
  else announce("This server shows no runs.");
}

function selectRun(name) {
  state.run = state.runs.find((r) => r.name === name);
  reset("run");
  const run = state.run;
  const { channels, size } = inputShape(run);
  const trained = run.epoch !== undefined && run.epoch !== null ? `, epoch ${run.epoch}` : "";
  $("run-info").textContent = `${channels}x${size}x${size} input, ${run.classes.length} classes${trained}`;
  $("cam-class").replaceChildren(
    element("option", { value: "", text: "predicted" }),
    ...run.classes.map((c, i) => element("option", { value: String(i), text: `${i}: ${c}` })),
  );
  const noSamples = run.has_samples === false;
  $("sample-index").disabled = noSamples;
  $("load-sample").disabled = noSamples;
  note("input-note", noSamples ? "This model has no test set: draw or upload an input." : "");
  announce(`Run ${run.name}: draw, load a test image or upload a picture.`);
  loadSummary();
  loadReport();
}

async function loadSummary() {
  const table = $("summary");
  table.replaceChildren();
  let data;
  try {
    data = await request("summary", runPath("summary"));
  } catch (error) {
    table.replaceChildren(element("caption", { className: "problem", text: error.message }));
    return;
  }
  if (data === STALE) return;
  const head = ["layer", "type", "output", "output size", "params", "mult-adds", "RF"];
  table.append(element("tr", {}, ...head.map((h) => element("th", { scope: "col", text: h }))));
  for (const row of data.layers) {
    const params = row.params ? `${row.params.toLocaleString()}${row.params_formula ? " = " + row.params_formula.split(" = ")[0] : ""}` : "-";
    const cells = [row.name, row.kind, (row.output_shape || ["?"]).join("x"), row.formula || "", params,
      row.macs ? row.macs.toLocaleString() : "-", row.receptive_field ? row.receptive_field.join("x") : "all"];
    table.append(element("tr", {}, ...cells.map((text) => element("td", { text }))));
  }
  table.append(element("tr", {}, element("td", {
    colspan: "7", text: `parameters ${data.total_params.toLocaleString()}, multiply-adds ${data.macs.toLocaleString()} per image`,
  })));
}

// ---------------------------------------------------------------- drawing

const canvas = $("draw");
const ctx = canvas.getContext("2d");
let drawing = false;

function clearCanvas() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
}

function stroke(event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width);
  const y = (event.clientY - rect.top) * (canvas.height / rect.height);
  ctx.fillStyle = "#fff";
  ctx.beginPath();
  ctx.arc(x, y, 14, 0, 2 * Math.PI);
  ctx.fill();
}

canvas.addEventListener("pointerdown", (e) => { drawing = true; stroke(e); });
canvas.addEventListener("pointermove", (e) => { if (drawing) stroke(e); });
window.addEventListener("pointerup", () => {
  if (!drawing) return;
  drawing = false;
  useInput(pixelsFromCanvas(), "your drawing");
});
$("clear").onclick = () => {
  clearCanvas();
  reset("input");
  state.pixels = null;
  note("input-note", "");
  announce("Cleared: draw again, load a test image or upload a picture.");
};

function showOnCanvas(source) {
  const image = new Image();
  image.onload = () => {
    if (state.analysis?.input !== source) return; // a newer input came meanwhile
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
  };
  image.src = source;
}

function pixelsFromCanvas() {
  // shrink the drawing to the model's input size, like MNIST's centred digits
  const { channels, size } = inputShape(state.run);
  const small = element("canvas", { width: size, height: size });
  const sctx = small.getContext("2d");
  sctx.drawImage(canvas, 0, 0, size, size);
  const data = sctx.getImageData(0, 0, size, size).data;
  const pixels = [];
  for (let c = 0; c < channels; c++) {
    const plane = [];
    for (let y = 0; y < size; y++) {
      const row = [];
      for (let x = 0; x < size; x++) row.push(data[(y * size + x) * 4 + (channels === 1 ? 0 : c % 3)]);
      plane.push(row);
    }
    pixels.push(plane);
  }
  return pixels;
}

/** A new input: everything computed from the previous one is cleared, then analyzed. */
function useInput(pixels, label, message = "") {
  reset("input");
  state.pixels = pixels;
  state.inputLabel = label;
  note("input-note", message || `input: ${label}`);
  analyze();
}

// ---------------------------------------------------------------- other inputs

$("load-sample").onclick = async () => {
  const field = $("sample-index");
  const text = field.value.trim();
  const index = Number(text);
  if (text === "" || !Number.isInteger(index) || index < 0) {
    note("input-note", `test image: enter a whole number 0 or more (got "${text}")`, true);
    announce("The test image number is not a whole number.");
    return;
  }
  const ticket = inputTicket(); // a run switch or clear meanwhile makes the answer unwanted
  let data;
  try {
    data = await request("input", runPath(`sample/${index}`));
  } catch (error) {
    if (!stillWanted(ticket)) return;
    note("input-note", `test image ${index}: ${error.message}`, true);
    announce(`Test image ${index} could not be loaded.`);
    return;
  }
  if (data === STALE || !stillWanted(ticket)) return;
  clearCanvas();
  useInput(data.pixels, `test image ${index}`, `test image ${index}, true class: ${data.class}`);
};

$("sample-index").addEventListener("keydown", (event) => { // Enter loads, like the button
  if (event.key !== "Enter") return;
  event.preventDefault();
  $("load-sample").click();
});

$("upload").onchange = async () => {
  const input = $("upload");
  const file = input.files[0];
  input.value = ""; // choosing the same file again is a new change
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  form.append("fit", $("squash").checked ? "squash" : "crop");
  const ticket = inputTicket();
  let data;
  try {
    data = await request("input", runPath("upload"), { method: "POST", body: form });
  } catch (error) {
    if (stillWanted(ticket)) note("input-note", `${file.name}: ${error.message}`, true);
    return;
  }
  if (data === STALE || !stillWanted(ticket)) return;
  clearCanvas();
  useInput(data.pixels, file.name, `${file.name}: ${data.notes.length ? data.notes.join("; ") : "used as is"}`);
};

$("analyze").onclick = () => {
  if (!state.pixels) {
    useInput(pixelsFromCanvas(), "your drawing");
    return;
  }
  analyze();
};
$("cam-class").onchange = () => showCam();
$("cam-colormap").onchange = () => { state.camColormap = $("cam-colormap").value; showCam(); };

// ---------------------------------------------------------------- results

async function analyze() {
  if (!state.pixels || !state.run) return;
  note("input-note", $("input-note").textContent); // an earlier error look goes
  let data;
  try {
    data = await post("analyze", runPath("analyze"), { pixels: state.pixels, channels: state.channels });
  } catch (error) {
    note("input-note", `analysis failed: ${error.message}`, true);
    announce(`The analysis failed: ${error.message}`);
    return;
  }
  if (data === STALE) return;
  state.analysis = data;
  showImage($("input-preview"), data.input);
  if (state.inputLabel !== "your drawing") showOnCanvas(data.input); // draw on it to edit it
  const probabilities = data.probabilities;
  const predicted = data.predicted ?? data.prediction?.index ?? 0;
  const best = probabilities[predicted];
  $("prediction").textContent = `${best.class} (${(100 * best.p).toFixed(1)}%)`;
  $("prediction").classList.remove("empty");
  $("prediction").dataset.predicted = best.class;
  $("probabilities").replaceChildren(...[...probabilities].sort((a, b) => b.p - a.p).slice(0, 5).map((p) =>
    element("li", {}, `${p.class} ${(100 * p.p).toFixed(1)}%`,
      element("span", { className: "bar", style: `width:${Math.round(120 * p.p)}px`, "aria-hidden": "true" }))));
  announce(`Prediction for ${state.inputLabel}: ${best.class}, ${(100 * best.p).toFixed(1)}%.`);
  renderOverview();
  renderGraph();
  compareCurrent();
  showCam();
}

async function showCam() {
  if (!state.pixels || !state.analysis) return;
  const value = $("cam-class").value;
  let data;
  try {
    data = await post("cam", runPath("cam"),
      { pixels: state.pixels, class_index: value === "" ? null : Number(value), colormap: state.camColormap });
  } catch (error) {
    showImage($("cam-overlay"), null);
    $("cam-legend").hidden = true;
    note("cam-note", `Grad-CAM: ${error.message}`, true);
    return;
  }
  if (data === STALE) return;
  showImage($("cam-overlay"), data.overlay);
  drawLegend(data.legend || { colormap: "jet", low: 0, high: 1 });
  note("cam-note", `class ${data.class} (p = ${(100 * data.probability).toFixed(1)}%), layer ${data.layer}`);
}

const COLORMAPS = {
  viridis: ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"],
  jet: ["#00007f", "#0000ff", "#00ffff", "#7fff7f", "#ffff00", "#ff0000", "#7f0000"],
};

function drawLegend(legend) {
  const stops = COLORMAPS[legend.colormap] || COLORMAPS.viridis;
  const holder = $("cam-legend");
  holder.replaceChildren(
    element("span", { text: `${fmt(legend.low, 2)} (least)` }),
    element("span", { className: "legend-bar", style: `background: linear-gradient(to right, ${stops.join(", ")})`,
      role: "img", "aria-label": `${legend.colormap} colour scale from ${fmt(legend.low, 2)} to ${fmt(legend.high, 2)}` }),
    element("span", { text: `${fmt(legend.high, 2)} (most important)` }),
  );
  holder.hidden = false;
}

// ---------------------------------------------------------------- panels that depend on the input

onReset("input", () => {
  showImage($("input-preview"), null);
  showImage($("cam-overlay"), null);
  $("cam-legend").hidden = true;
  note("cam-note", "");
  $("prediction").textContent = "no input yet";
  $("prediction").classList.add("empty");
  delete $("prediction").dataset.predicted;
  $("probabilities").replaceChildren();
});
onReset("run", () => {
  clearCanvas();
  note("input-note", "");
});

document.addEventListener("reanalyze", () => analyze());

clearCanvas();
setupPlayground();
setupCompare();
setupBackprop();
loadRuns();
