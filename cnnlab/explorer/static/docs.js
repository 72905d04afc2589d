// The explorer's API reference, rendered from /openapi.json on this server: every endpoint
// with its parameters, body and answers, and a form to try it. Nothing comes from other sites.
"use strict";

const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
};

function resolve(spec, schema) {
  const seen = new Set();
  while (schema && schema.$ref && !seen.has(schema.$ref)) {
    seen.add(schema.$ref);
    schema = schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => node && node[key], spec);
  }
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(spec, s)).join(" | ");
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if (schema.type === "array") return `array of ${typeOf(spec, schema.items || {})}`;
  const limits = [];
  if (schema.minimum !== undefined) limits.push(`>= ${schema.minimum}`);
  if (schema.maximum !== undefined) limits.push(`<= ${schema.maximum}`);
  return (schema.type || schema.title || "any") + (limits.length ? ` (${limits.join(", ")})` : "");
}

// What a try-it form starts with: a request its endpoint accepts on this server's first run
// (one with test images if any): the run's name, test image 0, a black image of the run's
// input shape, its first convolution, and every other field's default (or its minimum).
async function sampleValues() {
  const runs = await (await fetch("/api/runs")).json();
  const run = runs.find((r) => r.has_samples) || runs[0];
  if (!run) return {};
  const { channels, size } = run.input;
  let layer = "";
  try {
    const table = await (await fetch(`/api/runs/${encodeURIComponent(run.name)}/summary`)).json();
    const conv = table.layers.find((l) => /^Conv2d/.test(l.kind)) || table.layers[0];
    layer = conv ? conv.name : "";
  } catch (error) { /* the form then starts with an empty layer name */ }
  const row = Array(size).fill(0);
  return { name: run.name, index: 0, layer, pixels: Array.from({ length: channels }, () => Array(size).fill(row)) };
}

function valueFor(spec, name, schema, values) {
  schema = resolve(spec, schema);
  if (schema.default !== undefined) return schema.default;
  if (name in values) return values[name];
  if (schema.type === "integer" || schema.type === "number") return schema.minimum ?? 0;
  if (schema.type === "array") return [];
  return schema.type === "string" ? "" : null;
}

function example(spec, schema, values) {
  schema = resolve(spec, schema);
  const out = {};
  for (const [name, property] of Object.entries(schema.properties || {})) {
    out[name] = valueFor(spec, name, property, values);
  }
  return out;
}

// Text with ``code`` (or `code`) spans, as nodes: the spans in <code>, the rest as text.
function prose(text) {
  const parts = String(text).split(/``(.+?)``|`([^`]+)`/);
  return parts.map((part, i) => (i % 3 === 0 ? part || "" : part === undefined ? "" : el("code", {}, part)));
}

function table(rows, head) {
  const body = rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, ...prose(cell)))));
  const heads = el("tr", {}, ...head.map((h) => el("th", { scope: "col" }, h)));
  return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, heads), el("tbody", {}, ...body)));
}

let uid = 0;

function operation(spec, path, method, op, values) {
  const box = el("section", { class: "operation", "data-path": path, "data-method": method });
  const title = `${method.toUpperCase()} ${path}`;
  box.append(el("h2", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), path));
  if (op.summary) box.append(el("p", {}, ...prose(op.summary)));
  if (op.description) box.append(el("p", { class: "note" }, ...prose(op.description)));
  const inputs = {};
  const params = op.parameters || [];
  if (params.length) {
    box.append(el("h3", {}, "parameters"));
    box.append(table(params.map((p) => [p.name, p.in, typeOf(spec, p.schema), p.required ? "required" : "optional"]),
                     ["name", "in", "type", "required"]));
    const row = el("div", { class: "row" });
    for (const p of params) {
      inputs[p.name] = el("input", { type: "text", placeholder: p.name, "data-in": p.in });
      if (p.in === "path" && p.name in values) inputs[p.name].value = String(values[p.name]);
      row.append(el("label", {}, `${p.name} `, inputs[p.name]));
    }
    box.append(row);
  }
  const content = (op.requestBody && op.requestBody.content) || {};
  let body = null;
  if (content["application/json"]) {
    const schema = resolve(spec, content["application/json"].schema);
    box.append(el("h3", {}, "JSON body"));
    box.append(table(Object.entries(schema.properties || {}).map(([name, s]) =>
      [name, typeOf(spec, s), (schema.required || []).includes(name) ? "required" : "optional",
       resolve(spec, s).description || ""]), ["field", "type", "required", "description"]));
    const id = `body-${++uid}`;
    body = el("textarea", { id, spellcheck: "false" }, JSON.stringify(example(spec, schema, values)));
    box.append(el("label", { for: id, class: "field" }, `request body of ${title} (JSON)`), body);
  } else if (content["multipart/form-data"]) {
    box.append(el("h3", {}, "file upload (multipart/form-data, field \"file\")"));
    const id = `file-${++uid}`;
    body = el("input", { type: "file", id, accept: "image/*" });
    box.append(el("label", { for: id, class: "field" }, `picture to send to ${title}`), body);
  }
  box.append(el("h3", {}, "answers"));
  box.append(table(Object.entries(op.responses || {}).map(([code, r]) => [code, r.description || ""]),
                   ["status", "description"]));
  const send = el("button", { type: "button", "aria-label": `try ${title}` }, "try it");
  const shown = el("pre", { class: "answer", "aria-live": "polite" });
  send.onclick = async () => {
    let url = path;
    const query = new URLSearchParams();
    for (const [name, input] of Object.entries(inputs)) {
      if (input.dataset.in === "path") url = url.replace(`{${name}}`, encodeURIComponent(input.value));
      else if (input.value !== "") query.set(name, input.value);
    }
    if ([...query].length) url += `?${query}`;
    const options = { method: method.toUpperCase() };
    if (body && body.type === "file") {
      const form = new FormData();
      if (body.files[0]) form.append("file", body.files[0]);
      options.body = form;
    } else if (body) {
      options.headers = { "Content-Type": "application/json" };
      options.body = body.value;
    }
    shown.textContent = "...";
    const response = await fetch(url, options);
    const text = await response.text();
    shown.dataset.status = response.status;
    shown.textContent = `${response.status} ${response.statusText}\n${text.slice(0, 4000)}` +
      (text.length > 4000 ? `\n... (${text.length} characters)` : "");
  };
  box.append(el("div", { class: "row" }, send), shown);
  return box;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("docs-description").replaceChildren(
    ...prose(`${spec.info.title} ${spec.info.version}: ${spec.info.description || ""}`));
  const values = await sampleValues().catch(() => ({}));
  const list = document.getElementById("operations");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) list.append(operation(spec, path, method, op, values));
  }
  list.dataset.count = list.children.length;
}

main().catch((error) => {
  document.getElementById("docs-description").textContent = `cannot show the API: ${error}`;
});
