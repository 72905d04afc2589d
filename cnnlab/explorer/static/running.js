// The running sum of a convolution, animated: one product after another at a chosen speed
// (a sum of 800 products need not take minutes), step by step, or straight to the end.
"use strict";

import { element, fmt } from "./state.js";

const SPEEDS = [4, 20, 100, 500]; // products added per second
let animation = null; // { terms, step, sum, bias, timer, readout, play, rate }

/** The slowest speed that adds `count` products in about 10 seconds or less. */
function defaultSpeed(count) {
  return SPEEDS.find((rate) => count / rate <= 10) ?? SPEEDS[SPEEDS.length - 1];
}

/** The controls of the running sum of a conv explanation (`size` products per channel). */
export function animationControls(data, size) {
  stopAnimation();
  const terms = [];
  (data.channels || []).forEach((channel, c) => {
    const weights = channel.kernel.flat(), inputs = channel.patch.flat();
    channel.products.flat().forEach((product, k) => {
      terms.push({ c, k, product, weight: weights[k], input: inputs[k], index: c * size + k });
    });
  });
  const readout = element("p", { className: "running", id: "running-sum", "aria-live": "off", text: `${terms.length} products to add; press play or step.` });
  const play = element("button", { type: "button", id: "anim-play", text: "▶ play", onclick: () => (animation?.timer ? pause() : start()) });
  const rate = defaultSpeed(terms.length);
  animation = { terms, step: 0, sum: 0, timer: null, readout, play, bias: data.bias, rate };
  const speed = element("select", { id: "anim-speed", onchange: () => setSpeed(Number(speed.value)) },
    ...SPEEDS.map((r) => element("option", { value: String(r), text: `${r} per second` })));
  speed.value = String(rate);
  return element("div", { className: "animation" },
    element("div", { className: "row" }, play,
      element("button", { type: "button", id: "anim-step", text: "step", onclick: () => { pause(); advance(); showEnd(); } }),
      element("button", { type: "button", id: "anim-skip", text: "skip to the end", onclick: skipToEnd }),
      element("button", { type: "button", text: "reset", onclick: () => { pause(); rewind(); } }),
      element("label", { for: "anim-speed", text: "speed" }), speed),
    readout);
}

function rewind() {
  if (!animation) return;
  animation.step = 0;
  animation.sum = 0;
  document.querySelectorAll("#kernel td.current, #kernel td.done").forEach((td) => td.classList.remove("current", "done"));
  animation.readout.textContent = `${animation.terms.length} products to add; press play or step.`;
}

/** Add the next product; false when all are added. */
function advance() {
  const a = animation;
  if (!a || a.step >= a.terms.length) return false;
  const term = a.terms[a.step];
  a.sum += term.product;
  document.querySelectorAll("#kernel td.current").forEach((td) => { td.classList.remove("current"); td.classList.add("done"); });
  const cell = document.querySelector(`#kernel td[data-term="${term.index}"]`);
  if (cell) {
    cell.classList.add("current");
    cell.closest("details").open = true;
  }
  a.step += 1;
  a.readout.textContent = `product ${a.step} of ${a.terms.length} (channel ${term.c}): ${fmt(term.input, 3)} × ${fmt(term.weight, 3)} = ${fmt(term.product, 4)}; running sum ${fmt(a.sum, 4)}`;
  return true;
}

/** At the end (only there): the total with its bias, and the player stops. */
function showEnd() {
  const a = animation;
  if (!a || a.step < a.terms.length) return;
  a.readout.textContent = `all ${a.terms.length} products added: ${fmt(a.sum, 4)} + bias ${fmt(a.bias, 4)} = ${fmt(a.sum + a.bias, 4)}`;
  pause();
}

function skipToEnd() {
  const a = animation;
  if (!a) return;
  pause();
  for (; a.step < a.terms.length; a.step++) a.sum += a.terms[a.step].product;
  document.querySelectorAll("#kernel td[data-term]").forEach((td) => { td.classList.remove("current"); td.classList.add("done"); });
  showEnd();
}

function tick() {
  const a = animation;
  if (!a) return;
  const interval = Math.max(20, 1000 / a.rate);
  const perTick = Math.max(1, Math.round((a.rate * interval) / 1000));
  for (let i = 0; i < perTick && advance(); i++);
  if (a.step >= a.terms.length) showEnd();
}

function start() {
  if (!animation) return;
  if (animation.step >= animation.terms.length) rewind();
  animation.play.textContent = "❚❚ pause";
  animation.timer = setInterval(tick, Math.max(20, 1000 / animation.rate));
}

function setSpeed(rate) {
  if (!animation) return;
  animation.rate = rate;
  if (animation.timer) { // playing: go on at the new speed
    clearInterval(animation.timer);
    animation.timer = setInterval(tick, Math.max(20, 1000 / rate));
  }
}

function pause() {
  if (!animation) return;
  clearInterval(animation.timer);
  animation.timer = null;
  animation.play.textContent = "▶ play";
}

export function stopAnimation() {
  if (animation) clearInterval(animation.timer);
  animation = null;
}
