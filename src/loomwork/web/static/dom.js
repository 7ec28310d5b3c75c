// Building DOM. Text always goes in as text nodes: model and user text is never parsed as HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// "1 node", "3 nodes": counts in words, as the CLI says them
export const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function toast(message, kind = "error") {
  const box = document.getElementById("toasts");
  if ([...box.children].some((t) => t.textContent === message)) return; // said already, and still on screen
  const item = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 3000);
}

export function pct(logprob) {
  return logprob === null || logprob === undefined ? "?" : `${(100 * Math.exp(logprob)).toFixed(1)}%`;
}

export function snippet(text, width = 80) {
  const flat = text.replace(/\n/g, "⏎");
  return flat.length <= width ? flat : flat.slice(0, width - 1) + "…";
}

// "⇝ love×0.8": the steering vectors a model node was generated with (its meta.steered), or "".
export function steerLabel(node) {
  const steered = node && node.meta && node.meta.steered;
  return steered && steered.length ? "⇝ " + steered.map((s) => `${s.name}×${s.coef}`).join(" ") : "";
}

// An SVG element (the graph, the Goodhart chart): attributes set as they are, children appended.
export function svg(tag, attrs = {}, ...kids) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const kid of kids) node.append(kid);
  return node;
}
