// The page's one state object, the API client and the panel resets every module shares.
//
// Every request goes through `request(key, ...)`: a newer request with the same key aborts the
// older one, and an answer that arrives after a newer request started is dropped (it resolves
// to `STALE`), so a slow answer can never overwrite a newer one.
"use strict";

export const state = {
  runs: [],
  run: null, // the selected entry of /api/runs
  pixels: null, // C x H x W numbers 0..255 of the current input
  inputLabel: "", // where the input came from ("drawing", "test image 3 (class 7)", ...)
  analysis: null, // the /analyze answer for `pixels`
  channels: 16, // maps per layer asked of /analyze
  sharedScale: false, // true unless every map has its own colour scale (scale "map")
  scale: "map", // colour scale of the maps: "map" (own range), "layer" or "all" (one for every step)
  selected: null, // { layer, channel, y, x } of the traced pixel
  explanation: null, // the /explain answer for `selected`
  camColormap: "viridis",
  inputGeneration: 0, // bumps whenever the input is cleared or replaced (reset "input" or "run")
};

export const STALE = Symbol("stale");
export const $ = (id) => document.getElementById(id);

const sequence = new Map(); // key -> { number, controller }

/** A readable sentence from any error answer: FastAPI's 422 lists become "field: message". */
export function readable(detail, status, statusText) {
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((p) => {
        const where = (p.loc || []).filter((part) => part !== "body" && part !== "path" && part !== "query");
        return `${where.join(".") || "request"}: ${p.msg || "is not valid"}`;
      })
      .join("; ");
  }
  if (status === 404) return "the server does not offer this yet (404)";
  return `the server answered ${status} ${statusText || ""}`.trim();
}

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** fetch `path` as the newest request of `key`; resolves to the JSON answer or to STALE. */
export async function request(key, path, options = {}) {
  const previous = sequence.get(key);
  if (previous) previous.controller.abort();
  const ticket = { number: (previous ? previous.number : 0) + 1, controller: new AbortController() };
  sequence.set(key, ticket);
  const current = () => sequence.get(key) === ticket;
  let response;
  try {
    response = await fetch(path, { ...options, signal: ticket.controller.signal });
  } catch (error) {
    if (!current() || error.name === "AbortError") return STALE;
    throw new ApiError("the server cannot be reached; is `cnnlab serve` still running?", 0);
  }
  const data = await response.json().catch(() => null);
  if (!current()) return STALE;
  if (!response.ok) throw new ApiError(readable(data && data.detail, response.status, response.statusText), response.status);
  return data;
}

/** Forget (and abort) whatever `key` is waiting for. */
export function cancel(key) {
  const previous = sequence.get(key);
  if (previous) previous.controller.abort();
  sequence.set(key, { number: (previous ? previous.number : 0) + 1, controller: new AbortController() });
}

/** Who asked for an input (a test image, an upload): its run and the input generation then. */
export function inputTicket() {
  return { run: state.run, generation: state.inputGeneration };
}

/** True while nothing (a run switch, clear, a newer input) has replaced what `ticket` asked for. */
export function stillWanted(ticket) {
  return ticket.run === state.run && ticket.generation === state.inputGeneration;
}

export function post(key, path, body) {
  return request(key, path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

export function runPath(suffix) {
  return `/api/runs/${encodeURIComponent(state.run.name)}/${suffix}`;
}

/** Set a note's text; the error look is set or cleared every time (never left red). */
export function note(id, text, isError = false) {
  const element = $(id);
  element.textContent = text;
  element.classList.toggle("problem", Boolean(isError));
}

/** Announce a result to screen readers (the page's one aria-live region). */
export function announce(text) {
  $("status").textContent = text;
}

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

export function fmt(value, digits = 4) {
  if (typeof value !== "number" || !Number.isFinite(value)) return String(value);
  if (value !== 0 && (Math.abs(value) >= 1e5 || Math.abs(value) < 1e-3)) return value.toExponential(2);
  return Number(value.toFixed(digits)).toString();
}

/** Show an <img> only once it has a picture (no broken-image icon before). */
export function showImage(img, src) {
  if (src) {
    img.src = src;
    img.hidden = false;
  } else {
    img.removeAttribute("src");
    img.hidden = true;
  }
}

// ------------------------------------------------------------------ dependent panels

const resets = []; // functions that clear one panel, in the order they were registered

export function onReset(level, clear) {
  resets.push({ level, clear });
}

/** Clear the panels that depend on what changed: "run" > "input" > "selection". */
export function reset(level) {
  const depth = { selection: 0, input: 1, run: 2 }[level];
  if (depth >= 0) {
    state.selected = null;
    state.explanation = null;
    cancel("explain");
  }
  if (depth >= 1) {
    state.analysis = null;
    state.inputGeneration += 1;
    cancel("input"); // a test image or upload still on its way belongs to the old input
    cancel("analyze");
    cancel("cam");
  }
  if (depth >= 2) {
    state.pixels = null;
    state.inputLabel = "";
    state.channels = 16;
  }
  for (const r of resets) if ({ selection: 0, input: 1, run: 2 }[r.level] <= depth) r.clear();
}
