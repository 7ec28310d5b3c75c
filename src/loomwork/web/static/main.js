// The loom page: navigation and rendering from `state` (state.js); actions live in actions.js, views in
// reader.js, outline.js, graph.js and panels.js, keys in keys.js.
import { api, setUser, stream } from "./api.js";
import { clear, el, toast } from "./dom.js";
import { Graph } from "./graph.js";
import { actions, openTree, panelsOff, status, wire } from "./actions.js";
import { KEYS, actionFor } from "./keys.js";
import { Outline } from "./outline.js";
import { wireGrow } from "./grow.js";
import { wireLatents } from "./latents.js";
import * as ledger from "./ledger.js";
import * as panels from "./panels.js";
import { nextGeneration, renderOptions } from "./options.js";
import { renderInspector, renderRead } from "./reader.js";
import { current, draftHere, loadDraft, otherDrafts, rememberNode, setDraft, state } from "./state.js";

const $ = (id) => document.getElementById(id);
export const outline = new Outline($("outline"), (id) => { panelsOff(); guarded(() => go(id)); });
export const graph = new Graph($("graph"), (id) => guarded(() => go(id)));

export async function guarded(fn) {
  state.inflight += 1;
  try {
    return await fn();
  } catch (e) {
    toast(e.message);
    status("");
  } finally {
    state.inflight -= 1;
  }
}

// -- navigation -------------------------------------------------------------------------------------------------

// Go to a node: one round of requests (its path and children together), then one render. An older navigation
// stops before it renders, so the latest request always wins. `push`: a browser history entry (Back/Forward).
export async function go(nodeId, { push = true, select = null } = {}) {
  const ticket = ++state.ticket;
  const kids = (archived) => api("GET", `/nodes/${nodeId}/children?archived=${archived}`);
  let [path, children] = await Promise.all([api("GET", `/nodes/${nodeId}/path`), kids(state.showArchived)]);
  // inside an archived branch its children are archived too: show them, or the pane would say there are none
  if (!state.showArchived && path.some((n) => n.archived)) children = await kids(true);
  if (ticket !== state.ticket) return;
  const node = path[path.length - 1];
  if (!state.tree || state.tree.id !== node.tree_id) {
    await loadTree(node.tree_id);
    if (ticket !== state.ticket) return;
  }
  if (state.hoist && !path.some((n) => n.id === state.hoist.id)) state.hoist = null; // went outside the hoisted part
  state.path = path;
  state.children = children;
  if (path.length > 1) state.lastChild.set(path[path.length - 2].id, nodeId);
  rememberNode(node.tree_id, nodeId);
  state.selected = select;
  if (!select) state.tokenMode = false;
  const url = `#node=${nodeId}`;
  if (push && location.hash !== url) history.pushState({ node: nodeId }, "", url);
  else if (!push) history.replaceState({ node: nodeId }, "", url);
  await render(ticket);
}

async function loadTree(treeId) {
  const [info, settings] = await Promise.all([api("GET", `/trees/${treeId}`), api("GET", `/trees/${treeId}/settings`)]);
  state.tree = info.tree;
  state.version = info.version;
  state.root = info.root;
  state.chapters = info.chapters;
  state.settings = settings;
  state.reference = settings.reference;
  state.hoist = null;
  state.rendered = null;
  state.chosen.clear();
  state.draft = loadDraft(treeId);
  outline.reset();
  outline.open.clear();
  $("tree-title").textContent = info.tree.title;
  document.title = `${info.tree.title} — loomwork`;
  panels.loadGenForm(settings.generation);
  panels.renderPresets();
  return info;
}

// Re-read the tree after a change, then show `targetId` (or, if it is gone, the deepest surviving node of the
// current path: the current node may have been undone, or deleted in another tab). Drafts are untouched.
export async function reload(targetId) {
  const started = state.ticket, treeId = state.tree.id, saves = panels.savesSoFar();
  const [info, settings] = await Promise.all([api("GET", `/trees/${treeId}`), api("GET", `/trees/${treeId}/settings`)]);
  if (state.ticket !== started) return; // the person navigated meanwhile: their newer navigation wins
  refreshSettings(settings, saves);
  const draftWasHere = Boolean(state.draft && state.draft.open && draftHere());
  const typing = document.activeElement === $("editor-text");
  state.version = info.version;
  state.root = info.root;
  state.chapters = info.chapters;
  state.tree = info.tree;
  outline.reset();
  const candidates = targetId ? [targetId] : [...state.path].reverse().map((n) => n.id);
  for (const id of candidates) {
    try {
      await go(id, { push: Boolean(targetId), select: targetId ? null : state.selected });
      if (draftWasHere && !targetId && !draftHere()) rehome(typing);
      return;
    } catch (e) {
      if (e.status !== 404) throw e;
    }
  }
  await go(info.root.id, { push: false });
}

// Settings changed elsewhere (another tab, another person) reach this page with the tree's next change. The
// generation form is refilled only when its saved values changed and no one is typing in it.
function refreshSettings(settings, saves) {
  state.settings = settings;
  state.reference = settings.reference;
  panels.renderPresets();
  panels.syncGenForm(settings.generation, saves);
}

// The node the open draft was written at is gone (undone or deleted elsewhere): the draft stays open, now as a
// child of the node the page fell back to, so the text being typed is never hidden or lost.
function rehome(typing) {
  const d = state.draft;
  setDraft({ ...d, mode: "child", nodeId: current().id, path: state.path.map((n) => n.id), original: "" });
  toast("The node you were writing at is gone: your draft is kept here, as a new child.", "info");
  renderRead({ follow: true });
  if (typing) $("editor-text").focus(); // the caret stays where it was: typing goes on
}

export async function render(ticket = state.ticket) {
  if (ticket !== state.ticket) return;
  const moved = state.rendered !== current().id; // the read view follows navigation only, never a refresh
  state.rendered = current().id;
  renderRead({ follow: moved });
  const live = state.generating && state.generating.nodeId === current().id ? state.generating.live : null;
  panels.renderChildren((id) => guarded(() => go(id)), live);
  renderOptions((id) => guarded(() => go(id)));
  renderInspector(actions.branch);
  panels.renderNodePane(actions.setTags, actions.chapter);
  renderDraftButton();
  $("unhoist-btn").hidden = !state.hoist;
  $("hoist-label").textContent = state.hoist ? `hoisted at “${(state.hoist.text || "∅").slice(0, 24)}”` : "";
  if (state.view === "graph") await renderGraph(false);
  else await outline.render(state.hoist || state.root, pathFromTop(), current().id);
  showBits(ticket);
  showUndo().catch(() => {});
}

// The path from the outline's top (the hoisted node, or the root) down to the current node.
function pathFromTop() {
  const i = state.hoist ? state.path.findIndex((n) => n.id === state.hoist.id) : 0;
  return state.path.slice(Math.max(i, 0));
}

export async function renderGraph(reload) {
  const top = state.hoist || state.root;
  // drawn again when the tree changed (here or elsewhere) or when the current node is not in the drawing
  const stale = !graph.data || graph.data.root !== top.id || graph.archived !== state.showArchived || graph.version !== state.version;
  const missing = graph.data && !graph.pos.has(current().id) && graph.version === state.version && !graph.data.truncated;
  if (reload || stale || missing) {
    const data = await graph.load(top.id, state.showArchived);
    graph.archived = state.showArchived;
    graph.version = state.version;
    $("graph-note").textContent = data.truncated
      ? `showing the first ${data.nodes.length.toLocaleString()} nodes below the top, level by level: hoist (Shift+H) to see deeper parts`
      : `${data.nodes.length.toLocaleString()} nodes`;
  }
  const legend = graph.render(state.path.map((n) => n.id), current().id, $("graph-colour").value);
  graph.follow(current().id);
  clear($("graph-legend")).append(...legend);
}

// The ✎ button: this tab's draft when it is not in view, else a draft no tab of this session holds (another
// tab's, or one from before the browser closed), to take over.
export function renderDraftButton() {
  const d = state.draft, btn = $("draft-btn");
  const other = !d && state.tree ? otherDrafts(state.tree.id)[0] : null;
  btn.hidden = !(d && d.text && !(d.open && draftHere())) && !other;
  if (d) btn.textContent = `✎ draft on ${d.nodeId}`;
  else if (other) btn.textContent = `✎ a draft on ${other.nodeId} (another tab)`;
}

// -- the ledger: cached numbers at once, the rest scored in the background, cancelled when the page moves on ---

export async function showBits(ticket) {
  if (state.bitsStream) state.bitsStream.abort();
  state.bitsStream = null;
  const node = current();
  let report;
  try {
    report = await api("GET", `/nodes/${node.id}/bits?score=false`);
  } catch (e) {
    if (ticket === state.ticket) ledger.renderBits(null);
    return;
  }
  if (ticket !== state.ticket) return;
  state.bits = report;
  ledger.renderBits(report, report.path.pending > 0);
  if (!report.path.pending) return;
  const ctl = new AbortController();
  state.bitsStream = ctl;
  try {
    await stream(`/nodes/${node.id}/bits/stream`, null, (name, data) => {
      if (name === "done" && ticket === state.ticket) {
        state.bits = data.report;
        ledger.renderBits(data.report, false);
      } else if (name === "error" && ticket === state.ticket) ledger.renderBits(report, false);
    }, ctl.signal, "GET");
  } catch (e) { /* cancelled: the page moved on */ }
}

// The undo and redo buttons say what they would do, and whose it is.
export async function showUndo() {
  const next = await api("GET", `/trees/${state.tree.id}/undo`);
  state.next = next;
  for (const verb of ["undo", "redo"]) {
    const e = next[verb], btn = $(`${verb}-btn`);
    btn.disabled = !e;
    btn.title = e ? `${verb} #${e.seq} ${e.label} (${e.mine ? "yours" : `by ${e.actor}`}) — ${verb === "undo" ? "u" : "Shift+U"}` : `nothing to ${verb}`;
  }
}

// -- keys, polling, start ---------------------------------------------------------------------------------------

// Keys run one after another, in the order pressed: a fast "j j l" lands where it would have slowly. Printable
// keys typed after w or e, before the editor has opened, are text for the editor (typeahead), not commands.
const queue = [];
let running = false, typeahead = null;

async function drain() {
  if (running) return;
  running = true;
  while (queue.length) {
    const [name, arg] = queue.shift();
    await guarded(() => actions[name](arg));
    if (name === "write" || name === "edit") {
      const typed = typeahead ? typeahead.text : "";
      typeahead = null;
      if (typed && state.draft && state.draft.open && !$("editor").hidden) { // what was typed before it opened
        const ta = $("editor-text");
        ta.value += typed;
        setDraft({ ...state.draft, text: ta.value });
      }
    }
  }
  running = false;
}

function onKey(event) {
  if (event.target === $("editor-text")) {
    if (event.key === "Escape") actions.closeEditor();
    else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) guarded(actions.saveEditor);
    return;
  }
  const typing = event.target.closest("input, textarea, select, dialog");
  if (typing) { // a form field keeps its keys; Esc leaves it so the page's keys work again
    if (event.key === "Escape" && !event.target.closest("dialog") && event.target.id !== "search") { event.target.blur(); actions.escape(); }
    return;
  }
  if (typeahead && !event.ctrlKey && !event.metaKey && !event.altKey && (event.key.length === 1 || event.key === "Enter")) {
    event.preventDefault();
    typeahead.text += event.key === "Enter" ? "\n" : event.key;
    return;
  }
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    queue.push([event.shiftKey ? "redo" : "undo"]);
    return drain();
  }
  if (event.ctrlKey || event.metaKey || event.altKey || !state.tree) return;
  const found = actionFor(event, state.tokenMode);
  if (found && actions[found[0]]) {
    event.preventDefault();
    if (found[0] === "escape" && state.busy) return guarded(actions.escape); // stopping a generation waits for nothing
    if (found[0] === "write" || found[0] === "edit") typeahead = { text: "" };
    queue.push(found);
    drain();
  }
}

async function poll() {
  const idle = () => state.tree && !state.busy && !state.inflight;
  if (!idle()) return;
  try {
    const { version } = await api("GET", `/trees/${state.tree.id}/version`);
    if (version !== state.version && idle()) await reload();
  } catch (e) { /* a transient failure: the next poll tries again */ }
}

async function start() {
  const keys = $("keys");
  for (const [, label, what] of KEYS) keys.append(el("tr", {}, el("th", {}, label), el("td", {}, what)));
  document.addEventListener("keydown", onKey);
  wire();
  const config = await api("GET", "/config");
  // on a local server the page acts as the server's own user; on a shared one each browser gets a name to change
  const name = localStorage.getItem("loomwork.user") || config.user || `guest-${Math.random().toString(36).slice(2, 7)}`;
  localStorage.setItem("loomwork.user", name);
  setUser(name);
  $("user-name").value = name;
  $("user-name").addEventListener("change", (e) => {
    const v = e.target.value.trim();
    if (!v) { e.target.value = name; return; }
    localStorage.setItem("loomwork.user", v);
    setUser(v);
    toast(`You are now “${v}”`, "info");
  });
  const models = await api("GET", "/models");
  for (const m of models) {
    if (m.ref.includes("URL")) continue;
    $("gen-model").append(el("option", { value: m.ref, selected: m.ref === config.default_model, disabled: !m.installed }, m.ref));
    $("reference-model").append(el("option", { value: m.ref, disabled: !m.installed }, m.ref));
  }
  wireLatents();
  wireGrow();
  // the line of what the next `g` will use follows every change to the settings that shape it
  const refreshNext = () => { const line = document.querySelector("#options .next-gen"); if (line) line.textContent = nextGeneration(); };
  for (const pane of ["gen-form", "latents-pane"]) for (const kind of ["input", "change"]) $(pane).addEventListener(kind, refreshNext);
  document.addEventListener("steer-changed", refreshNext);
  setInterval(poll, 1000);
  window.addEventListener("popstate", () => {
    const id = new URLSearchParams(location.hash.slice(1)).get("node");
    if (id && (!state.path.length || id !== current().id)) guarded(() => go(id, { push: false }));
  });
  const hash = new URLSearchParams(location.hash.slice(1)).get("node");
  if (hash) return guarded(() => go(hash, { push: false }));
  const trees = await api("GET", "/trees");
  if (trees.length) return guarded(() => openTree(trees[0].id));
  return actions.trees();
}

guarded(start);
