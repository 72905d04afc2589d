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
  if (schema.type === "array") return `array of ${typeOf(spec, schema.items || {})}`;
  const limits = [];
  if (schema.minimum !== undefined) limits.push(`>= ${schema.minimum}`);
  if (schema.maximum !== undefined) limits.push(`<= ${schema.maximum}`);
  return (schema.type || schema.title || "any") + (limits.length ? ` (${limits.join(", ")})` : "");
}

function example(spec, schema) {
  schema = resolve(spec, schema);
  const out = {};
  for (const [name, property] of Object.entries(schema.properties || {})) {
    const type = resolve(spec, property).type;
    out[name] = type === "array" ? [] : type === "integer" ? 0 : type === "string" ? "" : null;
  }
  return out;
}

function table(rows, head) {
  const body = rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, String(cell)))));
  return el("table", {}, el("tr", {}, ...head.map((h) => el("th", {}, h))), ...body);
}

function operation(spec, path, method, op) {
  const box = el("section", { class: "operation", "data-path": path, "data-method": method });
  box.append(el("h2", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), path));
  if (op.summary) box.append(el("p", {}, op.summary));
  if (op.description) box.append(el("p", { class: "note" }, op.description));
  const inputs = {};
  const params = op.parameters || [];
  if (params.length) {
    box.append(el("h3", {}, "parameters"));
    box.append(table(params.map((p) => [p.name, p.in, typeOf(spec, p.schema), p.required ? "required" : "optional"]),
                     ["name", "in", "type", ""]));
    const row = el("div", { class: "row" });
    for (const p of params) {
      inputs[p.name] = el("input", { type: "text", placeholder: p.name, "data-in": p.in });
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
       resolve(spec, s).description || ""]), ["field", "type", "", ""]));
    body = el("textarea", {}, JSON.stringify(example(spec, schema)));
    box.append(body);
  } else if (content["multipart/form-data"]) {
    box.append(el("h3", {}, "file upload (multipart/form-data, field \"file\")"));
    body = el("input", { type: "file" });
    box.append(body);
  }
  box.append(el("h3", {}, "answers"));
  box.append(table(Object.entries(op.responses || {}).map(([code, r]) => [code, r.description || ""]),
                   ["status", ""]));
  const send = el("button", {}, "try it");
  const shown = el("pre", { class: "answer" });
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
    shown.textContent = `${response.status} ${response.statusText}\n${text.slice(0, 4000)}` +
      (text.length > 4000 ? `\n... (${text.length} characters)` : "");
  };
  box.append(el("div", { class: "row" }, send), shown);
  return box;
}

async function main() {
  const spec = await (await fetch("/openapi.json")).json();
  document.getElementById("docs-description").textContent =
    `${spec.info.title} ${spec.info.version}: ${spec.info.description || ""}`;
  const list = document.getElementById("operations");
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) list.append(operation(spec, path, method, op));
  }
  list.dataset.count = list.children.length;
}

main().catch((error) => {
  document.getElementById("docs-description").textContent = `cannot show the API: ${error}`;
});
