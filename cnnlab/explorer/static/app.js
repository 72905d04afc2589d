// cnnlab explorer: a small framework-free front end over the JSON API.
"use strict";

const state = { run: null, runs: [], pixels: null, selected: null };
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(data.detail || response.statusText);
  return data;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function note(id, text, isError = false) {
  $(id).textContent = text;
  $(id).className = isError ? "note problem" : "note";
}

// ---------------------------------------------------------------- runs
async function loadRuns() {
  state.runs = await api("/api/runs");
  const select = $("run");
  select.innerHTML = "";
  for (const run of state.runs) {
    const option = document.createElement("option");
    option.value = run.name;
    option.textContent = `${run.name} (${run.model}, ${run.dataset})`;
    select.appendChild(option);
  }
  select.onchange = () => selectRun(select.value);
  if (state.runs.length) await selectRun(state.runs[0].name);
}

async function selectRun(name) {
  state.run = state.runs.find((r) => r.name === name);
  const r = state.run;
  $("run-info").textContent = `${r.in_channels}x${r.input_size}x${r.input_size} input, ${r.classes.length} classes, epoch ${r.epoch}`;
  const camClass = $("cam-class");
  camClass.innerHTML = '<option value="">predicted</option>';
  r.classes.forEach((c, i) => {
    const option = document.createElement("option");
    option.value = i;
    option.textContent = `${i}: ${c}`;
    camClass.appendChild(option);
  });
  clearCanvas();
  state.pixels = null;
  $("overview").innerHTML = "";
  $("kernel").innerHTML = "";
  $("kernel-map").innerHTML = "";
  $("probabilities").innerHTML = "";
  $("prediction").textContent = "";
  $("cam-overlay").removeAttribute("src");
  await loadSummary();
}

async function loadSummary() {
  const data = await api(`/api/runs/${encodeURIComponent(state.run.name)}/summary`);
  const table = $("summary");
  table.innerHTML = "<tr><th>layer</th><th>type</th><th>output</th><th>output size</th><th>params</th><th>mult-adds</th><th>RF</th></tr>";
  for (const row of data.layers) {
    const tr = document.createElement("tr");
    const cells = [row.name, row.kind, (row.output_shape || ["?"]).join("x"), row.formula,
      row.params ? `${row.params.toLocaleString()}${row.params_formula ? " = " + row.params_formula.split(" = ")[0] : ""}` : "-",
      row.macs ? row.macs.toLocaleString() : "-",
      row.receptive_field ? row.receptive_field.join("x") : "all"];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    table.appendChild(tr);
  }
  const total = document.createElement("tr");
  total.innerHTML = `<td colspan="7">parameters ${data.total_params.toLocaleString()}, multiply-adds ${data.macs.toLocaleString()} per image</td>`;
  table.appendChild(total);
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
  if (drawing) { drawing = false; pixelsFromCanvas(); analyze(); }
});
$("clear").onclick = () => { clearCanvas(); state.pixels = null; };

function pixelsFromCanvas() {
  // shrink the drawing to the model's input size, like MNIST's centred digits
  const size = state.run.input_size;
  const small = document.createElement("canvas");
  small.width = size;
  small.height = size;
  const sctx = small.getContext("2d");
  sctx.drawImage(canvas, 0, 0, size, size);
  const data = sctx.getImageData(0, 0, size, size).data;
  const channels = state.run.in_channels;
  const pixels = [];
  for (let c = 0; c < channels; c++) {
    const plane = [];
    for (let y = 0; y < size; y++) {
      const row = [];
      for (let x = 0; x < size; x++) row.push(data[(y * size + x) * 4 + (channels === 1 ? 0 : c)]);
      plane.push(row);
    }
    pixels.push(plane);
  }
  state.pixels = pixels;
}

// ---------------------------------------------------------------- other inputs
$("load-sample").onclick = async () => {
  try {
    const data = await api(`/api/runs/${encodeURIComponent(state.run.name)}/sample/${$("sample-index").value}`);
    state.pixels = data.pixels;
    note("input-note", `test image ${$("sample-index").value}, true class: ${data.class}`);
    await analyze();
  } catch (error) { note("input-note", error.message, true); }
};

$("upload").onchange = async () => {
  const file = $("upload").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  try {
    const data = await api(`/api/runs/${encodeURIComponent(state.run.name)}/upload`, { method: "POST", body: form });
    state.pixels = data.pixels;
    note("input-note", data.notes.length ? data.notes.join("; ") : "used as is");
    await analyze();
  } catch (error) { note("input-note", error.message, true); }
};

$("analyze").onclick = () => { if (!state.pixels) pixelsFromCanvas(); analyze(); };
$("cam-class").onchange = () => showCam();

// ---------------------------------------------------------------- results
async function analyze() {
  if (!state.pixels) return;
  let data;
  try {
    data = await post(`/api/runs/${encodeURIComponent(state.run.name)}/analyze`, { pixels: state.pixels });
  } catch (error) { note("input-note", error.message, true); return; }
  $("input-preview").src = data.input;
  const best = data.probabilities[data.predicted];
  $("prediction").textContent = `${best.class} (${(100 * best.p).toFixed(1)}%)`;
  $("prediction").dataset.predicted = best.class;
  const list = $("probabilities");
  list.innerHTML = "";
  for (const p of [...data.probabilities].sort((a, b) => b.p - a.p).slice(0, 5)) {
    const li = document.createElement("li");
    li.innerHTML = `${p.class} ${(100 * p.p).toFixed(1)}%<span class="bar" style="width:${Math.round(120 * p.p)}px"></span>`;
    list.appendChild(li);
  }
  const overview = $("overview");
  overview.innerHTML = "";
  for (const layer of data.layers) {
    const column = document.createElement("div");
    column.className = "layer";
    column.dataset.layer = layer.name;
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = `${layer.name} ${layer.shape.join("x")}`;
    column.appendChild(name);
    const strip = new Image();
    strip.onload = () => {
      const [h, w] = [layer.shape[1], layer.shape[2]];
      for (let channel = 0; channel < layer.count; channel++) {
        const tile = document.createElement("canvas");
        tile.width = w;
        tile.height = h;
        tile.className = "map";
        tile.title = `${layer.name} channel ${channel}`;
        tile.getContext("2d").drawImage(strip, channel * w, 0, w, h, 0, 0, w, h);
        tile.onclick = () => selectMap(layer, channel, tile);
        column.appendChild(tile);
      }
    };
    strip.src = layer.sprite;
    overview.appendChild(column);
  }
  await showCam();
}

async function showCam() {
  if (!state.pixels) return;
  const value = $("cam-class").value;
  try {
    const data = await post(`/api/runs/${encodeURIComponent(state.run.name)}/cam`,
      { pixels: state.pixels, class_index: value === "" ? null : Number(value) });
    $("cam-overlay").src = data.overlay;
    note("cam-note", `class ${data.class} (p = ${(100 * data.probability).toFixed(1)}%), layer ${data.layer}`);
  } catch (error) { note("cam-note", error.message, true); }
}

function selectMap(layer, channel, img) {
  document.querySelectorAll(".layer .selected").forEach((el) => el.classList.remove("selected"));
  img.classList.add("selected");
  state.selected = { layer, channel };
  const holder = $("kernel-map");
  holder.innerHTML = "";
  const big = document.createElement("img");
  big.src = img.toDataURL();
  big.title = "click a pixel";
  big.onclick = (event) => {
    const rect = big.getBoundingClientRect();
    const x = Math.floor((event.clientX - rect.left) / rect.width * layer.shape[2]);
    const y = Math.floor((event.clientY - rect.top) / rect.height * layer.shape[1]);
    showKernel(layer.name, channel, y, x);
  };
  holder.appendChild(big);
  const hint = document.createElement("p");
  hint.className = "note";
  hint.textContent = `${layer.name}, channel ${channel}: click a pixel`;
  holder.appendChild(hint);
}

function grid(title, values) {
  // values: C x k x k; show the first 3 input channels
  const wrap = document.createElement("div");
  const heading = document.createElement("div");
  heading.textContent = title;
  wrap.appendChild(heading);
  values.slice(0, 3).forEach((plane, c) => {
    const table = document.createElement("table");
    table.className = "grid";
    table.title = `input channel ${c}`;
    for (const row of plane) {
      const tr = document.createElement("tr");
      for (const v of row) {
        const td = document.createElement("td");
        td.textContent = v.toFixed(3);
        tr.appendChild(td);
      }
      table.appendChild(tr);
    }
    wrap.appendChild(table);
  });
  if (values.length > 3) {
    const more = document.createElement("span");
    more.className = "note";
    more.textContent = ` ... and ${values.length - 3} more input channels`;
    wrap.appendChild(more);
  }
  return wrap;
}

async function showKernel(layer, channel, y, x) {
  const panel = $("kernel");
  panel.innerHTML = "";
  try {
    const data = await post(`/api/runs/${encodeURIComponent(state.run.name)}/kernel`,
      { pixels: state.pixels, layer, channel, y, x });
    const head = document.createElement("p");
    head.id = "kernel-sum";
    head.textContent = `${layer} channel ${channel} at (${y}, ${x}): ${data.formula}; the map holds ${data.output.toFixed(4)}`;
    panel.appendChild(head);
    panel.appendChild(grid("input patch under the kernel", data.patch));
    panel.appendChild(grid("kernel weights", data.kernel));
    panel.appendChild(grid("element-wise products", data.products));
  } catch (error) {
    panel.textContent = error.message;
    panel.className = "problem";
  }
}

// ---------------------------------------------------------------- playground
const pg = $("pg-canvas");
const pctx = pg.getContext("2d");
let pgTimer = null;

async function playground() {
  const v = (id) => Number($(id).value);
  const n = v("pg-n"), k = v("pg-k"), s = v("pg-s"), p = v("pg-p"), d = v("pg-d");
  const cin = v("pg-cin"), cout = v("pg-cout");
  let data;
  try {
    data = await api(`/api/arithmetic?n=${n}&kernel=${k}&stride=${s}&padding=${p}&dilation=${d}&in_channels=${cin}&out_channels=${cout}`);
  } catch (error) { $("pg-formula").textContent = error.message; return; }
  $("pg-counts").textContent = `parameters ${data.params_formula}; multiply-adds ${data.macs_formula}`;
  $("pg-formula").textContent = data.valid ? `output = ${data.formula}` : data.problem;
  $("pg-formula").className = data.valid ? "" : "problem";
  if (pgTimer) clearInterval(pgTimer);
  const padded = n + 2 * p;
  const cell = Math.max(2, Math.floor(pg.width / Math.max(padded, 1)));
  const out = data.out;
  let step = 0;
  const draw = () => {
    pctx.clearRect(0, 0, pg.width, pg.height);
    for (let i = 0; i < padded; i++) {
      for (let j = 0; j < padded; j++) {
        const inside = i >= p && i < p + n && j >= p && j < p + n;
        pctx.fillStyle = inside ? "#cfd8dc" : "#fff3e0";
        pctx.fillRect(j * cell, i * cell, cell - 1, cell - 1);
      }
    }
    if (out > 0) {
      const oy = Math.floor(step / out) % out, ox = step % out;
      pctx.fillStyle = "rgba(229, 57, 53, 0.55)";
      for (let a = 0; a < k; a++) {
        for (let b = 0; b < k; b++) {
          pctx.fillRect((ox * s + b * d) * cell, (oy * s + a * d) * cell, cell - 1, cell - 1);
        }
      }
      step = (step + 1) % (out * out);
    }
  };
  draw();
  pgTimer = setInterval(draw, 400);
}
["pg-n", "pg-k", "pg-s", "pg-p", "pg-d", "pg-cin", "pg-cout"].forEach((id) => $(id).addEventListener("input", playground));

clearCanvas();
loadRuns().catch((error) => note("input-note", error.message, true));
playground();
