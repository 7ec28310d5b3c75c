// The loom page's entry module: keys, polling and start. Navigation and rendering are page.js's, what a person
// can do actions.js's (and writing.js, search.js, grow.js, latents.js), views in reader.js, options.js,
// outline.js, graph.js, panels.js and ledger.js. Nothing imports this module.
import { api, setUser } from "./api.js";
import { el, toast } from "./dom.js";
import { actions, openTree, wire } from "./actions.js";
import { KEYS, actionFor } from "./keys.js";
import { wireGrow } from "./grow.js";
import { wireLatents } from "./latents.js";
import { nextGeneration } from "./options.js";
import { go, guarded, handlers, reload } from "./page.js";
import { current, setDraft, state } from "./state.js";

const $ = (id) => document.getElementById(id);
handlers.branch = actions.branch;
handlers.setTags = actions.setTags;
handlers.chapter = actions.chapter;

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
