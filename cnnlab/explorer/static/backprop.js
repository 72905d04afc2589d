// The backprop panel: (a) the course's small example network through the forward and the
// backward pass (GET /api/backprop, the numbers of `cnnlab backprop`), each step's matrices
// labelled with the course's symbols and torch autograd's agreement; (b) one SGD step of the run
// on the current image (POST /api/runs/NAME/backprop), a row per layer from the output down.
// Numbers of an older input, run, class or rate are never shown: every change clears them, and
// an answer that arrives after one is dropped (STALE, the input ticket).
"use strict";

import {
  $, STALE, announce, cancel, element, fmt, inputTicket, onReset, post, request, runPath, state, stillWanted,
} from "./state.js";

const SIGMA = { sigmoid: "sigmoid", tanh: "tanh", relu: "ReLU" };
const OPTIONS = ["size", "activation", "pool", "cost", "target", "seed"];
let walked = false; // an option change walks again once the walk has been asked for

// ---------------------------------------------------------------- small matrices

/** A vector or matrix as a labelled table (a vector is one row). */
function matrix(values, caption, id = null) {
  const rows = Array.isArray(values[0]) ? values : [values];
  return element("table", { className: "grid bp-matrix", id },
    element("caption", { text: caption }),
    ...rows.map((row) => element("tr", {}, ...row.map((v) => element("td", { text: fmt(v, 4) })))));
}

/** One step of the walk: its heading, what it computes and its matrices side by side. */
function step(title, text, ...parts) {
  return element("div", { className: "bp-step" },
    element("h4", { text: title }),
    text ? element("p", { className: "explain-text", text }) : null,
    element("div", { className: "grids bp-grids", tabindex: "0", role: "region", "aria-label": `${title}: numbers` },
      ...parts.filter(Boolean)));
}

function renderWalk(data) {
  const net = data.network, v = data.values;
  const sig = SIGMA[net.activation] || net.activation;
  const k = net.filter.length, side = v.a_pool.length;
  const squared = net.cost === "squared";
  const steps = [
    step("step 0: the forward pass", `(eq. 4) z_mn^l = Σ_a Σ_b w_ab^l a_(m+a)(n+b)^(l−1) + b^l with bias b^l = ${fmt(net.bias, 4)}; (eq. 6) a^l = ${sig}(z^l); 2x2 ${net.pool} pooling; (eq. 7) flatten q = o'P + p' (P = ${side}); (eq. 5) z_r^L = Σ_q w_rq ã_q + b_r.`,
      matrix(net.input, "input a^(l−1)"), matrix(net.filter, `filter w^l (${k}x${k})`), matrix(v.z_l, "z^l"),
      matrix(v.a_l, `a^l = ${sig}(z^l)`), matrix(v.a_pool, `pooled a^(l+1) (${net.pool})`), matrix(v.a_flat, "flattened ã"),
      matrix(net.output_weights, "output weights w_rq"), matrix(net.output_biases, "output biases b_r"), matrix(v.z_L, "z^L")),
    squared
      ? step("the cost", `a^L = ${sig}(z^L); target y is class ${net.target}; C = ½ Σ_r (a_r^L − y_r)² = ${fmt(v.C, 6)}`,
        matrix(v.a_L, "a^L"), matrix(v.y, "y"))
      : step("the cost", `a^L = softmax(z^L); C = −log a_y^L (y = class ${net.target}) = ${fmt(v.C, 6)}`, matrix(v.a_L, "a^L = softmax(z^L)")),
    squared
      ? step("step 1 (CBP1): the output's delta", "δ_r^L = ∂C/∂a_r^L · σ'(z_r^L), with ∂C/∂a_r^L = a_r^L − y_r",
        matrix(v.dC_da_L, "∂C/∂a^L"), matrix(v.sigma_prime_L, "σ'(z^L)"), matrix(v.delta_L, "δ^L", "bp-delta-L"))
      : step("step 1: the output's delta", "softmax and cross-entropy together: δ_r^L = ∂C/∂z_r^L = a_r^L − y_r",
        matrix(v.delta_L, "δ^L", "bp-delta-L")),
    step("step 2 (BP3, BP4): the output layer's gradients", "∂C/∂b_r = δ_r; ∂C/∂w_rq = ã_q δ_r",
      matrix(v.dC_db_L, "∂C/∂b^L"), matrix(v.dC_dw_L, "∂C/∂w^L")),
    step("step 3: back through flatten and pooling",
      `(BP2 without an activation) ∂C/∂ã_q = Σ_r w_rq δ_r, read back as the ${side}x${side} map; ` +
      (net.pool === "mean"
        ? "the mean's derivative is ¼ for each input of its window: every delta is spread evenly over its 2x2 window (up-sampling)."
        : "the max's derivative is 1 for the window's largest input and 0 for the others: each delta goes to its winner (1 = winner)."),
      matrix(v.dC_da_pool, "∂C/∂a^(l+1)"), net.pool === "max" ? matrix(v.pool_share, "winners") : null,
      matrix(v.dC_da_l, "∂C/∂a^l (up-sampled)")),
    step("step 4 (BP2): the convolution's delta", "δ_mn^l = ∂C/∂a_mn^l · σ'(z_mn^l)",
      matrix(v.sigma_prime_l, "σ'(z^l)"), matrix(v.delta_l, "δ^l")),
    step("step 5 (BP3, BP4): the convolution's gradients",
      `the bias is shared: ∂C/∂b^l = Σ_mn δ_mn^l = ${fmt(v.dC_db_l, 6)}; the filter is shared: ∂C/∂w_ab^l = Σ_mn δ_mn^l a_(m+a)(n+b)^(l−1), the input correlated with the delta map; ∂C/∂a^(l−1): the delta map padded by ${k - 1} and correlated with the filter rotated by 180° (a full convolution).`,
      matrix(v.dC_dw_l, "∂C/∂w^l", "bp-dw"), matrix(net.filter, "filter w^l"), matrix(v.kernel_rot180, "w^l rotated 180°", "bp-rot180"),
      matrix(v.dC_da_input, "∂C/∂a^(l−1)")),
  ];
  const diffs = Object.entries(data.autograd_max_difference || {});
  const worst = Math.max(...diffs.map(([, d]) => d ?? Infinity));
  const agrees = worst < 1e-9;
  const check = element("p", { id: "bp-check", className: agrees ? "bp-ok" : "problem" },
    element("strong", { text: agrees ? "torch autograd agrees: " : "torch autograd differs: " }),
    `same numbers in float64, largest difference per gradient: ${diffs.map(([name, d]) => `${name} ${d === null ? "?" : d.toExponential(1)}`).join(", ")}`);
  $("bp-walk").replaceChildren(...steps, check);
  announce(`Backprop walk: cost ${fmt(v.C, 6)}; autograd ${agrees ? "agrees" : "differs"}.`);
}

function walkOptions() {
  return Object.fromEntries(OPTIONS.map((key) => [key, $(`bp-${key}`).value]));
}

async function showWalk() {
  walked = true;
  const holder = $("bp-walk");
  holder.replaceChildren(element("p", { className: "note", text: "computing…" })); // no numbers of the old options
  let data;
  try {
    data = await request("backprop-walk", `/api/backprop?${new URLSearchParams(walkOptions())}`);
  } catch (error) {
    holder.replaceChildren(element("p", { className: "problem", id: "bp-walk-problem", text: `backprop walk: ${error.message}` }));
    return;
  }
  if (data === STALE) return;
  renderWalk(data);
}

// ---------------------------------------------------------------- one SGD step of the run

function clearStep(text = "") {
  cancel("backprop-step");
  $("bp-step").replaceChildren(...(text ? [element("p", { className: "note", text })] : []));
}

function layerRows(row) {
  const number = (v, text) => (v === null || v === undefined ? "–" : text(v));
  const cells = [row.shape.length ? row.shape.join("x") : "–", number(row.delta_norm, (v) => fmt(v, 4)),
    number(row.check, (v) => v.toExponential(1)), number(row.update_norm, (v) => fmt(v, 4)),
    number(row.relative_update, (v) => v.toExponential(1))];
  const rows = [
    element("tr", { className: "bp-layer", "data-layer": row.name },
      element("th", { scope: "row" }, row.name, element("span", { className: "bp-kind", text: row.kind })),
      ...cells.map((text) => element("td", { text }))),
    element("tr", { className: "bp-rule" }, element("td", { colspan: "6" }, element("div", {}, element("span", { className: "note", text: "rule: " }), row.text,
      row.weight_norm === null || row.weight_norm === undefined ? "" : `; |W| = ${fmt(row.weight_norm, 4)}`))),
  ];
  if (row.example && row.example.filter) {
    rows.push(element("tr", { className: "bp-filters" }, element("td", { colspan: "6" },
      element("div", { className: "grids" },
        matrix(row.example.filter, `filter ${row.example.channel}, input channel 0`),
        matrix(row.example.rotated, "rotated by 180°")))));
  }
  return rows;
}

/** A number the server could not give (a step that overflowed) shows as "?". */
const known = (v, text) => (v === null || v === undefined ? "?" : text(v));
const percent = (p) => known(p, (v) => `${(100 * v).toFixed(2)}%`);

function renderStep(data) {
  const classes = data.classes || state.run.classes;
  const name = (k) => classes[k] ?? String(k);
  const checks = data.layers.map((row) => row.check).filter((c) => typeof c === "number");
  const head = ["layer", "output", "|δ|", "rule − autograd", "update lr |∂L/∂W|", "update / |W|"];
  const table = element("table", { className: "grid bp-layers", id: "bp-layers" },
    element("tr", {}, ...head.map((text) => element("th", { scope: "col", text }))),
    ...data.layers.flatMap(layerRows));
  $("bp-step").replaceChildren(
    element("p", { id: "bp-loss", className: "bp-loss" },
      `loss −log p(${name(data.target)}): ${fmt(data.loss_before, 4)} → ${known(data.loss_after, (v) => fmt(v, 4))}; `,
      `p(${name(data.target)}) ${percent(data.p_before)} → ${percent(data.p_after)} `,
      `after W ← W − ${fmt(data.lr, 6)} ∂L/∂W (on a copy; the served model is unchanged)`),
    element("p", { className: "note" },
      `class ${data.target} (${name(data.target)}), predicted ${name(data.predicted)}; forward in eval mode. `,
      checks.length ? `Largest rule-vs-autograd gap: ${Math.max(...checks).toExponential(1)}.` : "",
      ...(data.notes || []).map((n) => ` Note: ${n}.`)),
    element("p", { className: "note", text: `The backward pass, from the output down to the image: ${data.layers.length} layer calls.` }),
    element("div", { className: "scroll bp-scroll", tabindex: "0", role: "region", "aria-label": "the backward pass, layer by layer (scrolls sideways)" }, table));
  announce(`SGD step on ${state.inputLabel}: loss ${fmt(data.loss_before, 4)} to ${fmt(data.loss_after, 4)}.`);
}

async function showStep() {
  if (!state.run) return;
  if (!state.pixels) {
    clearStep("No input yet: draw, load a test image or upload a picture first.");
    return;
  }
  const lrText = $("bp-lr").value.trim();
  const lr = lrText === "" ? null : Number(lrText);
  if (lr !== null && !(Number.isFinite(lr) && lr > 0)) {
    $("bp-lr").setAttribute("aria-invalid", "true");
    $("bp-step").replaceChildren(element("p", { className: "problem", text: `learning rate: enter a number above 0 (got "${lrText}")` }));
    return;
  }
  $("bp-lr").setAttribute("aria-invalid", "false");
  const classText = $("bp-class").value;
  const ticket = inputTicket(); // a new input or run meanwhile makes the answer unwanted
  $("bp-step").replaceChildren(element("p", { className: "note", text: `computing one SGD step on ${state.inputLabel}…` }));
  let data;
  try {
    data = await post("backprop-step", runPath("backprop"),
      { pixels: state.pixels, class_index: classText === "" ? null : Number(classText), lr });
  } catch (error) {
    if (!stillWanted(ticket)) return;
    $("bp-step").replaceChildren(element("p", { className: "problem", id: "bp-step-problem", text: `SGD step: ${error.message}` }));
    return;
  }
  if (data === STALE || !stillWanted(ticket)) return;
  renderStep(data);
}

// ---------------------------------------------------------------- set-up

onReset("input", () => clearStep());
onReset("run", () => {
  const run = state.run;
  $("bp-class").replaceChildren(element("option", { value: "", text: "predicted" }),
    ...(run ? run.classes.map((c, i) => element("option", { value: String(i), text: `${i}: ${c}` })) : []));
  clearStep();
});

export function setupBackprop() {
  $("bp-walk-button").onclick = showWalk;
  for (const key of OPTIONS) $(`bp-${key}`).onchange = () => { if (walked) showWalk(); };
  $("bp-step-button").onclick = showStep;
  $("bp-class").onchange = () => clearStep();
  $("bp-lr").oninput = () => clearStep();
}
