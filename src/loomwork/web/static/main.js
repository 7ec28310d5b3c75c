// The loom page's entry module: keys, polling and start. Navigation and rendering are page.js's, what a person
// can do actions.js's (and writing.js, search.js, grow.js, latents.js), views in reader.js, options.js,
// outline.js, graph.js, panels.js and ledger.js. Nothing imports this module.
import { api, setUser } from "./api.js";
import * as live from "./live.js";
import { renderSharing, wireSharing } from "./sharing.js";
import { el, toast } from "./dom.js";
import { actions, openTree, wire } from "./actions.js";
import { KEYS, actionFor } from "./keys.js";
import { wireGrow } from "./grow.js";
import { wireLatents } from "./latents.js";
import { nextGeneration } from "./options.js";
import { go, guarded, handlers, reload, render, status } from "./page.js";
import * as panels from "./panels.js";
import { renderPresence } from "./panels.js";
import { canEdit, current, me, setDraft, state } from "./state.js";

const $ = (id) => document.getElementById(id);
handlers.branch = (...args) => (canEdit() ? actions.branch(...args) : refuse());
handlers.setTags = actions.setTags;
handlers.chapter = actions.chapter;

// -- keys, live changes, start ----------------------------------------------------------------------------------

// What a viewer or rater of the tree may not do (the server refuses it too; the page does not offer it).
const WRITES = new Set(["generate", "write", "edit", "editCarry", "split", "merge", "bookmark", "archive", "tag",
  "chapter", "choose", "undo", "redo"]);
function refuse() {
  toast(`You are ${state.role === "rater" ? "a rater" : "a viewer"} of this tree: its owner can make you an editor.`, "info");
}

const AT_ONCE = new Set(["help", "escape", "search", "scrollDown", "scrollUp", "trees"]);

// Keys run one after another, in the order pressed: a fast "j j l" lands where it would have slowly. Printable
// keys typed after w or e, before the editor has opened, are text for the editor (typeahead), not commands.
const queue = [];
let running = false, typeahead = null;

async function drain() {
  if (running) return;
  running = true;
  while (queue.length) {
    const [name, arg] = queue.shift();
    // a click's navigation still under way: the key acts where it lands, as it looks (keys that do not depend on
    // where the page is act at once)
    if (!AT_ONCE.has(name)) await state.navigation;
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
    if (!canEdit()) return refuse();
    queue.push([event.shiftKey ? "redo" : "undo"]);
    return drain();
  }
  if (event.ctrlKey || event.metaKey || event.altKey || !state.tree) return;
  const found = actionFor(event, state.tokenMode);
  if (found && actions[found[0]]) {
    event.preventDefault();
    if (WRITES.has(found[0]) && !canEdit()) return refuse();
    if (found[0] === "escape" && state.busy) return guarded(actions.escape); // stopping a generation waits for nothing
    if (found[0] === "write" || found[0] === "edit") typeahead = { text: "" };
    queue.push(found);
    drain();
  }
}

// Someone changed the tree (or this page did: its own change arrives too). The page catches up when it is idle,
// so a change never lands in the middle of what the person is doing; no request until something happened.
const idle = () => state.tree && !state.busy && !state.inflight;
async function catchUp() {
  if (state.latest > state.version && idle()) await guarded(() => reload());
}
const WHAT = { rating: "rated a step", outcome: "labelled an outcome", choice: "chose a node" };
const following = {
  change(e) {
    // this page's own settings save (after each g): the page shows it already, and a reload would only redraw
    // the read view under the person's caret
    if (e.kind === "settings" && e.actor === me.name && e.seq === state.version + 1 && panels.ownSave()) state.version = e.seq;
    state.latest = Math.max(state.latest, e.seq);
    if (e.actor && e.actor !== me.name && e.kind !== "settings") { // settings follow each g: not news
      const what = WHAT[e.kind] || (e.kind === "undo" ? `undid ${e.data.label}` : e.kind === "redo" ? `redid ${e.data.label}` : e.data.label || e.kind);
      status(`${e.actor}: ${what}`, true);
    }
    catchUp();
  },
  presence(here) { state.here = here; if (state.path.length) renderPresence((id) => guarded(() => go(id))); },
  deleted() { toast("This tree was deleted (by someone else, or in another tab).", "info"); actions.trees(); },
  reset(version) { state.latest = version; guarded(() => reload()); },
};
handlers.treeOpened = (info) => live.follow(info.tree.id, info.version, following);
handlers.nodeShown = (id) => live.here(id);

async function start() {
  const keys = $("keys");
  for (const [, label, what] of KEYS) keys.append(el("tr", {}, el("th", {}, label), el("td", {}, what)));
  document.addEventListener("keydown", onKey);
  wire();
  const config = await api("GET", "/config");
  wireSharing();
  $("trees-btn").addEventListener("click", () => renderSharing(config.accounts).catch(() => {}));
  $("author-filter").addEventListener("change", (e) => { state.byAuthor = e.target.value; guarded(() => render()); });
  Object.assign(me, { name: config.user, admin: Boolean(config.admin), accounts: config.accounts });
  if (config.accounts) { // an account is who it is: no name to choose, a way to sign out
    document.querySelector("label.user").hidden = true;
    $("me").hidden = false;
    $("me-name").textContent = config.user;
  }
  // on a local server the page acts as the server's own user; on a shared one each browser gets a name to change
  const name = config.accounts ? config.user
    : localStorage.getItem("loomwork.user") || config.user || `guest-${Math.random().toString(36).slice(2, 7)}`;
  me.name = name;
  if (!config.accounts) localStorage.setItem("loomwork.user", name);
  setUser(name);
  $("user-name").value = name;
  $("user-name").addEventListener("change", (e) => {
    const v = e.target.value.trim();
    if (!v) { e.target.value = name; return; }
    localStorage.setItem("loomwork.user", v);
    setUser(v);
    me.name = v;
    toast(`You are now “${v}”`, "info");
  });
  const models = await api("GET", "/models");
  for (const m of models) {
    if (m.ref.includes("URL")) continue;
    $("gen-model").append(el("option", { value: m.ref, selected: m.ref === config.default_model, disabled: !m.installed }, m.ref));
    $("reference-model").append(el("option", { value: m.ref, disabled: !m.installed }, m.ref));
    if (m.installed) $("gen-models").append(el("label", { class: "toggle" }, el("input", { type: "checkbox", value: m.ref }), ` ${m.ref}`));
  }
  wireLatents();
  wireGrow();
  // the line of what the next `g` will use follows every change to the settings that shape it
  const refreshNext = () => { const line = document.querySelector("#options .next-gen"); if (line) line.textContent = nextGeneration(); };
  for (const pane of ["gen-form", "latents-pane"]) for (const kind of ["input", "change"]) $(pane).addEventListener(kind, refreshNext);
  document.addEventListener("steer-changed", refreshNext);
  setInterval(catchUp, 250); // a change heard while busy is caught up as soon as the page is idle (no request)
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
