// The page's navigation and rendering: going to a node, reloading after a change, rendering every view from
// `state` (state.js), the ledger counter, the undo buttons, the header's status line. It imports the views it
// renders and nothing that acts: actions (actions.js, writing.js, search.js, grow.js, latents.js) import it, and
// the entry module (main.js) hands it the few actions views call back (`handlers`). Imports run one way:
// state ← page ← actions ← main.
import { api, stream } from "./api.js";
import { clear, toast } from "./dom.js";
import { Graph } from "./graph.js";
import * as ledger from "./ledger.js";
import { renderOptions } from "./options.js";
import { Outline } from "./outline.js";
import * as panels from "./panels.js";
import { renderInspector, renderRead } from "./reader.js";
import { loadReads, markShown } from "./unread.js";
import { canEdit, current, draftHere, loadDraft, otherDrafts, rememberNode, setDraft, state } from "./state.js";

const $ = (id) => document.getElementById(id);
let statusTimer = null;

// What views call back, set by the entry module (main.js): the token inspector's branch, the node pane's tags
// and chapter; and who hears that a tree was opened or a node shown (live.js, through main.js).
export const handlers = { branch: null, setTags: null, chapter: null, treeOpened: null, nodeShown: null };

// A line in the header; transient ones clear themselves.
export function status(text, transient = false) {
  $("status").textContent = text || "";
  clearTimeout(statusTimer);
  if (transient) statusTimer = setTimeout(() => { $("status").textContent = ""; }, 4000);
}

export function panelsOff() {
  document.body.classList.remove("show-tree", "show-side");
}

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
export function go(nodeId, options = {}) {
  const going = goNow(nodeId, options);
  state.navigation = going.catch(() => {}); // keys pressed meanwhile wait for it (main.js), a click's included
  return going;
}

async function goNow(nodeId, { push = true, select = null } = {}) {
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
  // every step of the path shown is a child visited: "down" (j) and an edit with what follows (Shift+E) go along it,
  // also when the page was opened at a node, or a click or the address bar brought it there
  for (let i = 1; i < path.length; i += 1) state.lastChild.set(path[i - 1].id, path[i].id);
  rememberNode(node.tree_id, nodeId);
  markShown(node.tree_id, path);
  state.selected = select;
  if (!select) state.tokenMode = false;
  const url = `#node=${nodeId}`;
  if (push && location.hash !== url) history.pushState({ node: nodeId }, "", url);
  else if (!push) history.replaceState({ node: nodeId }, "", url);
  await render(ticket);
  if (handlers.nodeShown && ticket === state.ticket) handlers.nodeShown(nodeId);
}

// This person's role on the open tree: what the page offers (a viewer is offered no change) and says in the header.
function showRole(role) {
  state.role = role;
  document.body.classList.toggle("readonly", !canEdit());
  $("me-role").textContent = role ? `(${role})` : "";
}

async function loadTree(treeId) {
  state.read = null;
  const [info, settings] = await Promise.all([api("GET", `/trees/${treeId}`), api("GET", `/trees/${treeId}/settings`),
    loadReads(treeId).catch(() => {})]);
  state.tree = info.tree;
  state.version = info.version;
  state.latest = info.version;
  showRole(info.role);
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
  $("tree-title").title = info.tree.title; // the whole title where the header cuts it
  document.title = `${info.tree.title} — loomwork`;
  panels.loadGenForm(settings.generation);
  panels.renderPresets();
  if (handlers.treeOpened) handlers.treeOpened(info);
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
  state.latest = Math.max(state.latest, info.version);
  showRole(info.role);
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
  panels.renderPresence((id) => guarded(() => go(id)));
  renderOptions((id) => guarded(() => go(id)));
  renderInspector(handlers.branch);
  panels.renderNodePane(handlers.setTags, handlers.chapter);
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
  const words = (x) => `“${(x.text || "").replace(/\s+/g, " ").trim().slice(0, 24)}${(x.text || "").length > 24 ? "…" : ""}”`;
  if (d) btn.textContent = `✎ your draft ${words(d)}`;  // named by its words, not a node id
  else if (other) btn.textContent = `✎ a draft ${words(other)} (another tab)`;
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
  const version = state.version;
  const next = await api("GET", `/trees/${state.tree.id}/undo`);
  state.next = { ...next, version }; // what the buttons show, as of this version of the tree
  for (const verb of ["undo", "redo"]) {
    const e = next[verb], btn = $(`${verb}-btn`);
    btn.disabled = !e;
    btn.title = e ? `${verb} #${e.seq} ${e.label} (${e.mine ? "yours" : `by ${e.actor}`}) — ${verb === "undo" ? "u" : "Shift+U"}` : `nothing to ${verb}`;
  }
}

