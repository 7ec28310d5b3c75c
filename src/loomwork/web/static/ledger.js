// The optimization ledger: the counter in the header, and the panel it opens (a stacked bar per node along the
// path, the table of every lever, the tree's totals). Rendered from the reports of /bits; see docs/metrics.md.
import { api } from "./api.js";
import { clear, el, snippet } from "./dom.js";
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);
// The levers come with every report, from the library's one registry (levers/__init__.py): never a copy here.
let LEVERS = [];
let DEFINED = [];
function useLevers(report) {
  if (report && report.levers) {
    LEVERS = report.levers.map((l) => l.name);
    DEFINED = report.levers;
  }
}
const f = (x) => (x === null || x === undefined ? "?" : x.toFixed(1));

export function renderBits(report, scoring) {
  useLevers(report);
  const box = $("bits");
  box.hidden = !report;
  if (!report) return;
  const p = report.path;
  const known = p.total_bits === null ? "…" : f(p.total_bits);
  const parts = LEVERS.filter((k) => p.ledger[k] !== 0).map((k) => `${p.ledger[k] === null ? (k === "writing" && scoring ? "…" : "?") : f(p.ledger[k])} ${k}`);
  // while the model generates, written text waits to be scored: say so rather than show "… writing" for minutes
  const waiting = p.total_bits === null && state.generating ? " (writing scored once the model is free)" : "";
  box.textContent = `bits ${p.incomplete.length && p.total_bits !== null ? "≥ " : ""}${known}` +
    (waiting || (parts.length ? ` = ${parts.join(" + ")}` : ""));
  box.title = `Optimization applied on this path, in bits, by lever; writing scored with ${report.model || "no model"}` +
    (p.pending ? ` (${p.pending} node${p.pending > 1 ? "s" : ""} being scored)` : "") +
    (p.incomplete.length ? `; unknown: ${p.incomplete.join(", ")}` : "") + ". Click for the ledger.";
  box.classList.toggle("scoring", Boolean(scoring && p.pending));
  if ($("ledger-dialog").open) renderLedger(report, scoring);
}

// One bar: a segment per lever, as wide as its bits on a scale shared by the whole panel.
function bar(levers, scale) {
  return el("div", { class: "ledger-bar", role: "img", "aria-label": LEVERS.map((k) => `${k} ${f(levers[k])}`).join(", ") },
    ...LEVERS.filter((k) => levers[k]).map((k) => el("span", {
      class: `lever ${k}`, style: `width:${Math.max(1, (100 * levers[k]) / scale).toFixed(2)}%`, title: `${k}: ${f(levers[k])} bits`,
    })));
}

// What a choice cell's tooltip says: a person's 1 of n with its best-of-n bound; a grader's rule and its bound.
function choiceNote(lever, choice) {
  if (!choice) return "";
  if (lever === "selection" && choice.by === "person") return `1 of ${choice.n}` +
    (choice.m > 1 ? ` (${choice.m} acceptable)` : "") + `; as best-of-n: KL ≤ ${f(choice.kl_bits)} bits`;
  if (lever === "grader" && choice.by !== "person") return `${choice.by} chose 1 of ${choice.n} (${choice.kl || "?"}` +
    `, over ${choice.scored ?? "?"} scores); at most log2 n = ${f(choice.bound_bits)} bits`;
  return "";
}

// The panel: the levers that act somewhere on this path as columns (the rest named below the table), a bar per
// node, each unknown figure a "?" whose tooltip says why; the levers' definitions folded away.
export function renderLedger(report, scoring) {
  useLevers(report);
  const box = clear($("ledger"));
  const acting = LEVERS.filter((k) => report.nodes.some((r) => r.ledger[k] !== 0) || report.path.ledger[k] !== 0);
  const idle = LEVERS.filter((k) => !acting.includes(k));
  box.append(el("p", { class: "muted" }, `Reference model: ${report.model || "none"} (a tree setting). ? = unknown: hover for why.`),
    el("details", { class: "ledger-defs" }, el("summary", {}, "What each lever counts"),
      ...DEFINED.map((l) => el("p", {}, el("strong", {}, l.name), ` (${l.what}): ${l.per_node}.`))),
    el("p", { class: "legend" }, ...acting.map((k) => el("span", {}, el("span", { class: `lever ${k}` }), ` ${k} `))));
  const totals = (r) => LEVERS.reduce((a, k) => a + (r.ledger[k] || 0), 0);
  const scale = Math.max(1e-9, ...report.nodes.map(totals));
  const cell = (r, k) => (r.ledger[k] === null ? (k === "writing" && r.pending && scoring ? "…" : "?") : f(r.ledger[k]));
  const table = el("table", { class: "ledger" }, el("tr", {}, ...["node", "", ...acting, "tokens"].map((h) => el("th", {}, h))));
  for (const r of report.nodes) {
    const node = state.path.find((n) => n.id === r.id);
    const notes = r.notes || {};
    table.append(el("tr", { title: [`${r.origin} node ${r.id}`, r.excluded, r.carried].filter(Boolean).join(": ") },
      el("td", { class: "node" }, `${r.carried ? "↷ " : ""}${snippet((node && node.text) || "∅", 28)}`), el("td", { class: "bar" }, bar(r.ledger, scale)),
      ...acting.map((k) => el("td", { class: "num", title: notes[k] || choiceNote(k, r.choice) }, cell(r, k))),
      el("td", { class: "num" }, r.model_tokens === null || r.model_tokens === undefined ? "" : String(r.model_tokens))));
  }
  const p = report.path;
  table.append(el("tr", { class: "total" }, el("td", {}, "path"), el("td", {}),
    ...acting.map((k) => el("td", { class: "num" }, f(p.ledger[k]))), el("td", { class: "num" }, String(p.model_tokens ?? ""))));
  const missingKl = report.nodes.some((r) => r.notes && r.notes.model && r.notes.model.includes("not computed"));
  // (DOM's append writes null as the text "null": only what is there goes in)
  box.append(...[el("div", { class: "ledger-scroll" }, table),
    ...excludedNotes(report.nodes),
    idle.length ? el("p", { class: "muted" }, `No pressure on this path from: ${idle.join(", ")}.`) : null,
    missingKl ? el("p", {}, el("button", { id: "ledger-model-kl", onclick: modelKl },
    "Compute the model lever"), el("span", { class: "muted" }, " (nodes another model wrote: loads it, two passes per node)")) : null,
  el("p", {}, `Path total: ${p.incomplete.length ? "≥ " : ""}${f(p.total_bits)} bits` +
    (p.incomplete.length ? ` (unknown: ${p.incomplete.join(", ")})` : "") +
    `; your choices as best-of-n policies: KL ≤ ${f(p.selection_kl_bits)} bits.`), el("div", { id: "ledger-tree", class: "muted" }, "tree totals: loading…")]
    .filter(Boolean));
  treeTotals();
}

// Nodes that count nothing, and why, one line per reason (the rows say it in their tooltips).
function excludedNotes(nodes) {
  const why = new Map();
  for (const r of nodes) if (r.excluded) why.set(r.excluded, (why.get(r.excluded) || 0) + 1);
  const carried = nodes.filter((r) => r.carried).length;
  if (carried) why.set("↷ carried by an edit: written after the text before it (their figures are that text's)", carried);
  return [...why].map(([reason, k]) => el("p", { class: "muted" }, reason.startsWith("↷")
    ? `${k} ${k === 1 ? "node" : "nodes"} ${reason}.` : `${k} ${k === 1 ? "node counts" : "nodes count"} nothing: ${reason}.`));
}

async function modelKl(e) {
  e.target.disabled = true;
  e.target.textContent = "computing…";
  try {
    const nodeId = state.path[state.path.length - 1].id;
    const report = await api("GET", `/nodes/${nodeId}/bits?model_kl=true`);
    if (state.path.length && state.path[state.path.length - 1].id === nodeId) { state.bits = report; renderBits(report, false); renderLedger(report, false); }
  } catch (err) {
    e.target.textContent = `failed: ${err.message}`;
  }
}

let asked = 0;
async function treeTotals() {
  const ticket = ++asked;
  try {
    const t = (await api("GET", `/trees/${state.tree.id}/bits?score=false`)).tree_totals;
    if (ticket !== asked || !$("ledger-tree")) return;
    clear($("ledger-tree")).append(el("strong", {}, "The whole tree: "),
      LEVERS.map((k) => `${f(t.ledger[k])} ${k}`).join(" + ") + ` = ${t.incomplete.length ? "≥ " : ""}${f(t.total_bits)} bits` +
      (t.pending ? ` (${t.pending} written nodes not scored yet)` : ""), bar(t.ledger, Math.max(1e-9, ...LEVERS.map((k) => t.ledger[k] || 0).concat([LEVERS.reduce((a, k) => a + (t.ledger[k] || 0), 0)]))));
  } catch (e) {
    if (ticket === asked && $("ledger-tree")) $("ledger-tree").textContent = `tree totals: ${e.message}`;
  }
}
