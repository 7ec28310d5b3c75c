// What a person can do on the page. Each action changes the server (through the API) or `state`, then asks for a
// render; none builds DOM except the small pickers it opens.
import { api, stream } from "./api.js";
import { clear, el, snippet, toast } from "./dom.js";
import { go, graph, guarded, outline, panelsOff, reload, render, renderGraph, showBits, status } from "./page.js";
import * as ledger from "./ledger.js";
import * as panels from "./panels.js";
import { alternatives, caretOffset, ensureVisible, pathTokens, renderInspector, renderRead } from "./reader.js";
import { renderOptions } from "./options.js";
import { closeSearch, wireSearch } from "./search.js";
import { canEdit, current, lastNode, setDraft, state } from "./state.js";
import { adoptDraft, closeEditor, discardDraft, goToDraft, openEditor, saveEditor } from "./writing.js";

const $ = (id) => document.getElementById(id);

// A tree opens where this browser last left it, else at the imported file's open node, else at the root.
export async function openTree(treeId) {
  const info = await api("GET", `/trees/${treeId}`);
  const last = lastNode(treeId);
  if (last) {
    try { return await go(last); } catch (e) { if (e.status !== 404) throw e; }
  }
  await go(info.selected || info.root.id);
}

// A change through the API, then one navigation: to target(result) when given, else back to where we were.
async function mutate(fn, target) {
  const result = await fn();
  await reload(target ? target(result) : undefined);
  return result;
}

// Continuing from a model node that was one of several samples records that choice (selection bits), once. A
// token taken from the alternatives is not a choice among siblings: its bits are its probability.
async function recordChoice(node) {
  if (node.origin !== "model" || (node.meta && node.meta.alternative_of) || state.chosen.has(node.id) || !canEdit()) return;
  if (state.path.length < 2) return;
  state.chosen.add(node.id);
  await api("POST", `/nodes/${node.id}/choose`, {});
}

// A one-line question in a dialog of the page (not window.prompt); resolves to the text, or null.
function ask(title, initial = "", list = null) {
  return new Promise((resolve) => {
    const dialog = $("picker-dialog"), input = $("picker-input"), box = clear($("picker-list"));
    $("picker-title").textContent = title;
    input.value = initial;
    let items = [], active = 0;
    const draw = () => {
      clear(box);
      items = list ? list.filter((it) => it.label.toLowerCase().includes(input.value.toLowerCase())) : [];
      active = Math.min(active, Math.max(items.length - 1, 0));
      items.forEach((it, i) => box.append(el("li", { class: i === active ? "active" : "", onclick: () => finish(it.value) }, it.label)));
    };
    const finish = (value) => { dialog.close(); cleanup(); resolve(value); };
    const onKey = (e) => {
      if (e.key === "Enter") { e.preventDefault(); finish(list ? (items[active] || {}).value ?? null : input.value); }
      else if (list && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
        e.preventDefault();
        active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % Math.max(items.length, 1);
        draw();
      }
    };
    const onClose = () => { cleanup(); resolve(null); };
    const cleanup = () => { input.removeEventListener("keydown", onKey); input.removeEventListener("input", draw); dialog.removeEventListener("close", onClose); };
    input.addEventListener("keydown", onKey);
    input.addEventListener("input", draw);
    dialog.addEventListener("close", onClose);
    draw();
    dialog.showModal();
    input.focus();
  });
}

async function generate(nodeId = current().id) {
  if (state.busy) return;
  if (nodeId === current().id) await recordChoice(current());
  const { model, params, models } = panels.genParams();
  const live = Array.from({ length: (params.n || 4) * (models ? models.length : 1) }, () => "");
  const ctl = new AbortController();
  state.busy = ctl;
  const n = live.length, what = `${n} ${n === 1 ? "sample" : "samples"} from ${models ? models.join(", ") : model || "the default model"}`;
  state.generating = { nodeId, live, status: `${what}: starting… (Esc cancels)` };
  $("cancel-btn").hidden = false;
  let tokens = 0;
  // the samples stream in where one reads: the options after the path, brought into view once
  const showLive = (scroll) => {
    if (current().id !== nodeId) return; // shown only at the node they grow from
    panels.renderChildren(() => {}, live);
    renderOptions(() => {});
    if (scroll) ensureVisible($("options"));
  };
  showLive(true);
  try {
    await stream(`/nodes/${nodeId}/expand`, models ? { models, params } : { model, params }, (name, data) => {
      if (name === "status") { state.generating.status = `${what}: ${data.message}`; status(data.message); showLive(false); }
      else if (name === "token") {
        live[data.index] += data.text;
        tokens += 1;
        state.generating.status = `${what}: ${tokens} tokens so far (Esc cancels)`;
        status(`generating… ${tokens} tokens`);
        showLive(tokens === 1);
      } else if (name === "error") throw new Error(data.message);
      else if (name === "done") {
        status("");
        toast(`${data.children.length} new ${data.children.length === 1 ? "child" : "children"}`, "info");
      }
    }, ctl.signal);
  } catch (e) {
    if (e.name === "AbortError") status("cancelled: nothing was kept", true);
    else { toast(e.message); status(""); }
  } finally {
    state.busy = null;
    state.generating = null;
    $("cancel-btn").hidden = true;
    await guarded(reload);
  }
}

function branch(node, index, text, thenGenerate) {
  return guarded(async () => {
    const created = await api("POST", `/nodes/${node.id}/branch`, { token_index: index, alternative: text });
    state.selected = null;
    state.tokenMode = false;
    await reload(created.id);
    if (thenGenerate) await generate(created.id);
  });
}

// Undo or redo the entry the server says is next, naming it: if it is someone else's, ask first. `expect` makes
// the server refuse (409) when another tab or person undid it meanwhile, instead of taking back the next one.
// The entry is the one the button shows (state.next), so a press takes back exactly what it said it would.
async function undoRedo(verb) {
  // what the button shows, unless the tree changed since it was read (a second u right after the first)
  const shown = state.next && state.next.version === state.version ? state.next : null;
  const entry = (shown || await api("GET", `/trees/${state.tree.id}/undo`))[verb];
  if (!entry) return toast(`Nothing to ${verb}.`, "info");
  const force = !entry.mine;
  if (force && !confirm(`${verb === "undo" ? "Undo" : "Redo"} ${entry.actor}'s operation “${entry.label}”? It is not yours.`)) return;
  const r = await mutate(() => api("POST", `/trees/${state.tree.id}/${verb}`, { expect: entry.seq, force }));
  if (r) toast(`${verb === "undo" ? "Undid" : "Redid"} ${r.label}${r.mine ? "" : ` (${r.actor}'s)`}`, "info");
}

// -- tokens from the keyboard -----------------------------------------------------------------------------------

function moveToken(step) {
  const all = pathTokens();
  if (!all.length) return toast("No model tokens on this path.", "info");
  const at = state.selected ? all.findIndex((t) => t.node === state.selected.node && t.index === state.selected.index) : -1;
  const next = at < 0 ? (step > 0 ? all.findIndex((t) => t.node === current().id) : all.length - 1) : at + step;
  state.selected = all[Math.max(0, Math.min(all.length - 1, next < 0 ? all.length - 1 : next))];
  state.tokenMode = true;
  renderRead();
  renderInspector(branch);
  ensureVisible($("reader").querySelector(".tok.selected"));
}

async function step(to) {
  const r = await api("GET", `/nodes/${current().id}/step?to=${to}&archived=${state.showArchived}`).catch((e) => {
    if (e.status === 404) { toast(e.message, "info"); return null; }
    throw e;
  });
  if (r) await go(r.id);
}

export const actions = {
  parent: () => state.path.length > 1 && go(state.path[state.path.length - 2].id),
  child: () => {
    const remembered = state.lastChild.get(current().id);
    const target = state.children.find((c) => c.id === remembered) || state.children[0];
    return target && go(target.id);
  },
  prevSibling: () => sibling(-1),
  nextSibling: () => sibling(1),
  nth: (i) => (state.children[i] ? go(state.children[i].id)
    : toast(state.children.length ? `No option ${i + 1} here: there ${state.children.length === 1 ? "is 1" : `are ${state.children.length}`}.`
      : "No options here yet: g generates, w writes one.", "info")),
  pickChild: async () => {
    const id = await ask(`Go to a child (${state.children.length})`, "", state.children.map((c, i) => ({
      value: c.id, label: `${i + 1}. ${snippet(c.text || "∅", 90)}` })));
    if (id) await go(id);
  },
  nextInOrder: () => step("next"),
  prevInOrder: () => step("prev"),
  nextBookmark: () => step("next-bookmark"),
  prevBookmark: () => step("prev-bookmark"),
  root: () => go(state.root.id),
  goToId: async () => {
    const ref = await ask("Go to a node or tree id (or a unique prefix of 4+ characters)");
    if (ref && ref.trim()) await go((await api("GET", `/resolve?ref=${encodeURIComponent(ref.trim())}`)).node_id);
  },
  scrollDown: () => { $("reader").scrollBy({ top: $("reader").clientHeight * 0.85 }); },
  scrollUp: () => { $("reader").scrollBy({ top: -$("reader").clientHeight * 0.85 }); },
  generate: () => { guarded(() => generate()); }, // runs beside the key queue: keys keep working while it streams
  escape: () => {
    if (state.busy) return state.busy.abort();
    if (state.tokenMode || state.selected) { state.tokenMode = false; state.selected = null; renderRead(); renderInspector(branch); return; }
    if (!$("search-results").hidden) return closeSearch();
    if (document.body.classList.contains("show-tree") || document.body.classList.contains("show-side")) return panelsOff();
    if (state.view === "graph") return actions.graph();
  },
  write: () => openEditor("child"),
  edit: () => openEditor("edit"),
  editCarry: () => openEditor("edit", true),
  split: () => {
    const at = caretOffset();
    if (at && at.node === current().id && at.offset > 0) {
      return mutate(() => api("POST", `/nodes/${at.node}/split`, { offset: at.offset }), (r) => r.head.id);
    }
    if (state.selected && state.selected.index > 0) {
      return mutate(() => api("POST", `/nodes/${state.selected.node}/split`, {
        offset: state.path.find((n) => n.id === state.selected.node).tokens.slice(0, state.selected.index).reduce((s, t) => s + t.text.length, 0),
      }), (r) => r.head.id);
    }
    toast("Click into the current node's text, or select a token with < >, where it should split.", "info");
  },
  merge: () => mutate(() => api("POST", `/nodes/${current().id}/merge`), (n) => n.id),
  bookmark: () => mutate(() => api("POST", `/nodes/${current().id}/bookmark`, { on: !current().bookmarked })),
  archive: () => {
    const node = current();
    if (state.path.length < 2) return toast("The root cannot be archived.", "info");
    return mutate(() => api("POST", `/nodes/${node.id}/archive`, { on: !node.archived }), () => state.path[state.path.length - 2].id);
  },
  tag: () => { narrowPanel("show-side"); $("tag-input").focus(); $("node-pane").scrollIntoView({ block: "nearest" }); },
  setTags: (body) => guarded(() => mutate(() => api("POST", `/nodes/${current().id}/tags`, body))),
  chapter: async () => {
    const now = (current().meta && current().meta.chapter) || "";
    const title = await ask("Chapter title for this node (empty: not a chapter start)", now);
    if (title === null || title.trim() === now) return;
    await mutate(() => api("POST", `/nodes/${current().id}/chapter`, { title: title.trim() || null }));
  },
  choose: async () => {
    state.chosen.delete(current().id);
    await recordChoice(current());
    toast("Choice recorded", "info");
    showBits(state.ticket);
  },
  undo: () => undoRedo("undo"),
  redo: () => undoRedo("redo"),
  search: () => { $("search").focus(); $("search").select(); },
  prevToken: () => moveToken(-1),
  nextToken: () => moveToken(1),
  pickAlternative: (i) => {
    const node = state.selected && state.path.find((n) => n.id === state.selected.node);
    const tok = node && node.tokens[state.selected.index];
    const alts = tok ? alternatives(tok) : [];
    if (!alts[i]) return toast(`No alternative ${i + 1} here.`, "info");
    return branch(node, state.selected.index, alts[i][0], false);
  },
  shade: () => { state.shade = !state.shade; $("reader").classList.toggle("shaded", state.shade); },
  archived: async () => { state.showArchived = !state.showArchived; $("show-archived").checked = state.showArchived; outline.reset(); await render(); },
  hoist: async () => {
    state.hoist = state.hoist ? null : current();
    await render();
  },
  collapseOthers: async () => { outline.collapse(false); await render(); },
  collapseAll: async () => { outline.collapse(true); await render(); },
  graph: async () => {
    state.view = state.view === "graph" ? "read" : "graph";
    document.body.classList.toggle("graph-view", state.view === "graph");
    $("graph-pane").hidden = state.view !== "graph";
    $("view-btn").textContent = state.view === "graph" ? "Read" : "Graph";
    await render();
  },
  trees: async () => {
    await panels.renderTreesDialog((treeId) => guarded(() => openTree(treeId)), (nodeId) => guarded(() => go(nodeId)));
    $("trees-dialog").showModal();
  },
  next: () => panels.showNext(),
  massTree: () => panels.showMassTree(),
  help: () => {
    const dialog = $("help-dialog");
    dialog.showModal();
    dialog.scrollTop = 0; // the focused Close button is at the bottom: the first keys come first
  },
  branch, closeEditor, saveEditor,
};

// Narrow windows show one panel at a time over the read view.
function narrowPanel(name) {
  const other = name === "show-tree" ? "show-side" : "show-tree";
  document.body.classList.remove(other);
  document.body.classList.toggle(name);
}

async function sibling(stepBy) {
  if (state.path.length < 2) return;
  const sibs = await api("GET", `/nodes/${state.path[state.path.length - 2].id}/children?archived=${state.showArchived}`);
  const i = sibs.findIndex((s) => s.id === current().id);
  const next = sibs[i + stepBy];
  if (next) await go(next.id);
}

// The page's controls, wired once at start.
export function wire() {
  const on = (id, event, fn) => $(id).addEventListener(event, fn);
  on("gen-form", "submit", (e) => { e.preventDefault(); guarded(() => generate()); });
  on("cancel-btn", "click", () => actions.escape());
  on("undo-btn", "click", () => guarded(actions.undo));
  on("redo-btn", "click", () => guarded(actions.redo));
  on("help-btn", "click", actions.help);
  on("view-btn", "click", () => guarded(actions.graph));
  on("graph-close", "click", () => guarded(actions.graph));
  on("graph-fit", "click", () => graph.fit());
  on("graph-colour", "change", () => guarded(() => renderGraph(false)));
  on("next-btn", "click", () => guarded(panels.showNext));
  on("mass-btn", "click", () => guarded(panels.showMassTree));
  on("trees-btn", "click", () => guarded(actions.trees));
  on("bits", "click", () => { if (state.bits) { ledger.renderLedger(state.bits, Boolean(state.bitsStream)); $("ledger-dialog").showModal(); } });
  wireSearch();
  on("editor-save", "click", () => guarded(saveEditor));
  on("editor-cancel", "click", closeEditor);
  on("editor-discard", "click", discardDraft);
  on("editor-text", "input", (e) => setDraft({ ...state.draft, text: e.target.value }));
  on("draft-btn", "click", () => guarded(() => (state.draft ? goToDraft() : adoptDraft())));
  on("unhoist-btn", "click", () => guarded(actions.hoist));
  on("collapse-btn", "click", () => guarded(actions.collapseOthers));
  on("show-archived", "change", () => guarded(actions.archived));
  on("outline", "outline-changed", () => guarded(render));
  on("tag-form", "submit", (e) => {
    e.preventDefault();
    const tag = $("tag-input").value.trim();
    if (!tag) return;
    $("tag-input").value = "";
    $("tag-input").blur(); // the keys work again at once
    actions.setTags({ add: [tag] });
  });
  on("gen-preset", "change", (e) => {
    const p = state.settings.presets[e.target.value];
    if (p) { panels.fillGenForm(p); panels.saveGeneration(); }
    e.target.blur();
  });
  on("gen-form", "change", (e) => { if (e.target.id !== "gen-preset") panels.saveGeneration(); });
  on("gen-model", "change", (e) => e.target.blur());
  on("preset-save", "click", () => guarded(async () => {
    const name = await ask("Name of the preset");
    const { model, params } = panels.genParams();
    if (name && name.trim()) await panels.saveSettings({ presets: { ...state.settings.presets, [name.trim()]: { model, params } } });
  }));
  on("preset-delete", "click", () => guarded(async () => {
    const name = $("gen-preset").value;
    if (!name) return;
    const presets = { ...state.settings.presets };
    delete presets[name];
    await panels.saveSettings({ presets });
  }));
  on("settings-save", "click", () => guarded(async () => {
    await panels.saveSettings({ memory: $("memory-input").value, reference_model: $("reference-model").value || null });
    toast("Settings saved", "info");
    await render();
  }));
  on("new-tree-form", "submit", (e) => {
    e.preventDefault();
    const prompt = new FormData(e.target).get("prompt");
    guarded(async () => {
      const made = await api("POST", "/trees", { prompt });
      $("trees-dialog").close();
      e.target.reset();
      await go(made.root.id);
    });
  });
  for (const btn of document.querySelectorAll("dialog .close")) btn.addEventListener("click", () => btn.closest("dialog").close());
  on("reader", "click", (e) => {
    const seg = e.target.closest(".seg");
    if (!seg || !window.getSelection().isCollapsed) return; // selecting text to copy is not a navigation
    const tok = e.target.closest(".tok");
    const select = tok ? { node: seg.dataset.node, index: Number(tok.dataset.tok) } : null;
    if (seg.dataset.node !== current().id) return guarded(() => go(seg.dataset.node, { select })); // click a segment: go there
    if (select) { state.selected = select; renderRead(); renderInspector(branch); }
  });
  on("panel-tree-btn", "click", () => narrowPanel("show-tree"));
  on("panel-side-btn", "click", () => narrowPanel("show-side"));
}
