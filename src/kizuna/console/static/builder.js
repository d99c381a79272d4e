// The campaign condition builder: a visual editor of the condition language's JSON tree.
// Groups combine conditions with AND / OR (or their negations) and nest; conditions compare a
// field with a value. Nodes are moved by drag and drop (plain HTML5, no framework). The tree is
// kept as JSON in the hidden #condition-json field, which the server validates and stores.
"use strict";
(() => {
  const SETS = new Set(["str_set", "int_set"]);
  const INTS = new Set(["int", "int_set"]);
  let data, labels, fieldsByName, root, hidden, host, nextId = 1, dragging = null;

  // --- model <-> JSON -----------------------------------------------------------------------
  function group(mode, negate, children) { return { id: nextId++, kind: "group", mode, negate, children }; }
  function comparison(field, op, value, days) {
    return { id: nextId++, kind: "cmp", field, op, value: value ?? "", days: days ?? "" };
  }
  function fromJson(tree) {
    if (tree && tree.not) {
      const inner = fromJson(tree.not);
      return inner.kind === "group" && !inner.negate
        ? Object.assign(inner, { negate: true })
        : group("all", true, [inner]);
    }
    if (tree && (tree.all || tree.any)) {
      const mode = tree.all ? "all" : "any";
      return group(mode, false, (tree[mode] || []).map(fromJson));
    }
    if (tree && tree.field) {
      let value = tree.value;
      if (Array.isArray(value)) value = value.join(", ");
      return comparison(tree.field, tree.op, value === undefined ? "" : String(value), tree.days);
    }
    return group("all", false, []);
  }
  function cast(type, text) {
    const raw = String(text).trim();
    if (INTS.has(type)) return /^-?\d+$/.test(raw) ? parseInt(raw, 10) : raw;
    if (type === "bool") return raw === "true";
    if (type === "scalar") {
      if (/^-?\d+$/.test(raw)) return parseInt(raw, 10);
      if (raw === "true" || raw === "false") return raw === "true";
    }
    return raw;
  }
  function toJson(node) {
    if (node.kind === "group") {
      const inner = { [node.mode]: node.children.map(toJson) };
      return node.negate ? { not: inner } : inner;
    }
    const spec = fieldsByName[node.field] || { type: "str" };
    const out = { field: node.field, op: node.op };
    const parts = String(node.value).split(/[,、]/).map((s) => s.trim()).filter(Boolean);
    if (node.op === "exists") {
      // no value: "is there at all"
    } else if (node.op === "in" || node.op === "not_in") {
      out.value = parts.map((p) => cast(spec.type, p));
    } else if (node.op === "between") {
      out.value = parts.slice(0, 2).map((p) => cast(spec.type, p));
    } else {
      out.value = cast(SETS.has(spec.type) ? (spec.type === "int_set" ? "int" : "str") : spec.type, node.value);
    }
    if (node.days !== "" && node.days !== null && spec.window !== "none") out.days = parseInt(node.days, 10);
    return out;
  }
  function save() { hidden.value = JSON.stringify(toJson(root)); }

  // --- finding nodes ----------------------------------------------------------------------------
  function parentOf(target, node = root) {
    if (node.kind !== "group") return null;
    for (const child of node.children) {
      if (child === target) return node;
      const found = parentOf(target, child);
      if (found) return found;
    }
    return null;
  }
  function byId(id, node = root) {
    if (node.id === id) return node;
    if (node.kind !== "group") return null;
    for (const child of node.children) { const found = byId(id, child); if (found) return found; }
    return null;
  }
  function contains(ancestor, node) { return ancestor === node || (ancestor.kind === "group" && ancestor.children.some((c) => contains(c, node))); }

  // --- rendering ----------------------------------------------------------------------------------
  function el(tag, attrs = {}, children = []) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== false && v !== null && v !== undefined) e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) e.append(c);
    return e;
  }
  function opsFor(field) {
    const spec = fieldsByName[field];
    return spec ? data.catalogue.ops[spec.type] : ["eq"];
  }
  function handle(node) {
    return el("span", { class: "drag", title: labels.drag, "aria-label": labels.drag, text: "⠿", draggable: data.editable ? "true" : false,
      ondragstart: (ev) => { dragging = node; ev.dataTransfer.effectAllowed = "move"; ev.dataTransfer.setData("text/plain", String(node.id)); ev.stopPropagation(); },
      ondragend: () => { dragging = null; document.querySelectorAll(".drop-target").forEach((n) => n.classList.remove("drop-target")); } });
  }
  function renderComparison(node) {
    const spec = fieldsByName[node.field];
    const fieldSelect = el("select", { class: "field", "aria-label": "field", onchange: (ev) => {
      node.field = ev.target.value; if (!opsFor(node.field).includes(node.op)) node.op = opsFor(node.field)[0]; render(); } },
      data.catalogue.fields.map((f) => el("option", { value: f.name, selected: f.name === node.field, text: labels.field_labels[f.name] || f.name })));
    const opSelect = el("select", { class: "op", "aria-label": "operator", onchange: (ev) => { node.op = ev.target.value; render(); } },
      opsFor(node.field).map((op) => el("option", { value: op, selected: op === node.op, text: labels.op_labels[op] || op })));
    const parts = [handle(node), fieldSelect, opSelect];
    if (node.op !== "exists") {
      if (spec && spec.type === "bool") {
        parts.push(el("select", { class: "value", "aria-label": "value", onchange: (ev) => { node.value = ev.target.value; save(); } },
          [el("option", { value: "true", selected: node.value === "true", text: labels.true }), el("option", { value: "false", selected: node.value === "false", text: labels.false })]));
        if (node.value === "") node.value = "true";
      } else {
        parts.push(el("input", { class: "value", "aria-label": "value", value: node.value,
          placeholder: node.op === "between" ? "1000, 5000" : (node.op === "in" || node.op === "not_in") ? "a, b, c" : "",
          oninput: (ev) => { node.value = ev.target.value; save(); } }));
      }
    }
    if (spec && spec.window !== "none") {
      parts.push(el("label", { class: "days" }, [labels.days, el("input", { class: "days-input", inputmode: "numeric", value: node.days, size: "4",
        oninput: (ev) => { node.days = ev.target.value; save(); } })]));
    }
    parts.push(el("button", { type: "button", class: "small remove", text: labels.remove, onclick: () => { remove(node); } }));
    return el("div", { class: "cmp", "data-node-id": node.id }, parts);
  }
  function renderGroup(node, depth) {
    const modes = [["all", false, labels.all], ["any", false, labels.any], ["all", true, labels.not_all], ["any", true, labels.not_any]];
    const modeSelect = el("select", { class: "mode", "aria-label": "group", onchange: (ev) => {
      const [mode, negate] = ev.target.value.split(":"); node.mode = mode; node.negate = negate === "not"; render(); } },
      modes.map(([mode, negate, text]) => el("option", { value: `${mode}:${negate ? "not" : ""}`, selected: node.mode === mode && node.negate === negate, text })));
    const head = [modeSelect,
      el("button", { type: "button", class: "small add-condition", text: labels.add_condition, onclick: () => {
        const first = data.catalogue.fields[0].name; node.children.push(comparison(first, opsFor(first)[0], "")); render(); } }),
      el("button", { type: "button", class: "small add-group", text: labels.add_group, onclick: () => { node.children.push(group("any", false, [])); render(); } })];
    if (node !== root) { head.unshift(handle(node)); head.push(el("button", { type: "button", class: "small remove", text: labels.remove, onclick: () => remove(node) })); }
    const list = el("div", { class: "children" },
      node.children.length ? node.children.map((c) => renderNode(c, depth + 1)) : [el("p", { class: "muted empty", text: labels.empty })]);
    list.addEventListener("dragover", (ev) => {
      if (!dragging || contains(dragging, node)) return;
      ev.preventDefault(); ev.stopPropagation(); list.classList.add("drop-target");
    });
    list.addEventListener("dragleave", () => list.classList.remove("drop-target"));
    list.addEventListener("drop", (ev) => {
      if (!dragging || contains(dragging, node)) return;
      ev.preventDefault(); ev.stopPropagation();
      // Insert before the child under the pointer, else at the end.
      const over = [...list.children].find((c) => c.dataset.nodeId && ev.clientY < c.getBoundingClientRect().top + c.getBoundingClientRect().height / 2);
      const moved = dragging; const from = parentOf(moved);
      from.children.splice(from.children.indexOf(moved), 1);
      const before = over ? byId(parseInt(over.dataset.nodeId, 10)) : null;
      const index = before && node.children.includes(before) ? node.children.indexOf(before) : node.children.length;
      node.children.splice(index, 0, moved); dragging = null; render();
    });
    return el("div", { class: `group depth-${depth % 3}${node.negate ? " negated" : ""}`, "data-node-id": node.id }, [el("div", { class: "group-head" }, head), list]);
  }
  function renderNode(node, depth) { return node.kind === "group" ? renderGroup(node, depth) : renderComparison(node); }
  function remove(node) { const parent = parentOf(node); if (parent) { parent.children.splice(parent.children.indexOf(node), 1); render(); } }
  function render() {
    host.replaceChildren(renderNode(root, 0));
    if (!data.editable) host.querySelectorAll("select, input, button").forEach((e) => { e.disabled = true; });
    save();
  }

  document.addEventListener("DOMContentLoaded", () => {
    host = document.getElementById("builder");
    hidden = document.getElementById("condition-json");
    const source = document.getElementById("builder-data");
    if (!host || !hidden || !source) return;
    data = JSON.parse(source.textContent);
    labels = data.labels;
    fieldsByName = Object.fromEntries(data.catalogue.fields.map((f) => [f.name, f]));
    let tree;
    try { tree = JSON.parse(hidden.value || "{}"); } catch (e) { tree = { all: [] }; }
    root = fromJson(tree);
    if (root.kind !== "group") root = group("all", false, [root]);
    render();
  });
})();
