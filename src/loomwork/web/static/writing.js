// Writing on the page: one draft per tab, kept in `state` and localStorage (state.js) until saved or discarded;
// the editor is a fixed element the read view shows in place (reader.js).
import { api } from "./api.js";
import { toast } from "./dom.js";
import { go, reload, renderDraftButton } from "./page.js";
import { renderRead } from "./reader.js";
import { current, newDraft, otherDrafts, setDraft, state } from "./state.js";

const $ = (id) => document.getElementById(id);

// One draft per tab. Asking to write while a draft is elsewhere goes back to that draft (discard it there to
// start another), so no text is ever dropped for a new one.
// ``carry``: an edit that takes what follows with it (the path below the node, as last visited: Shift+E).
export function openEditor(mode, carry = false) {
  const node = current(), d = state.draft;
  if (d && d.text && !(d.mode === mode && d.nodeId === node.id)) {
    toast("You have a draft: here it is (save or discard it to start another).", "info");
    return goToDraft();
  }
  if (mode === "edit" && !node.parent_id) return toast("The root is the tree's prompt: edit it by starting a new tree.", "info");
  const draft = d && d.text ? { ...d, open: true } : newDraft(mode, node, state.path);
  if (mode === "edit") draft.carry = carry ? following(node.id) : [];
  setDraft(draft);
  showEditor();
}

// The path that followed a node when it was last read: each node's last visited child, down to the end.
function following(nodeId) {
  const out = [];
  for (let id = state.lastChild.get(nodeId); id && !out.includes(id); id = state.lastChild.get(id)) out.push(id);
  return out;
}

function showEditor() {
  renderRead({ follow: true });
  renderDraftButton();
  const ta = $("editor-text");
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
}

// Back to this tab's draft, at its exact node. If that node is gone (undone, deleted in another tab), the draft
// moves to the deepest node of its path that survives, as a child there: its text is never dropped.
export async function goToDraft() {
  let d = state.draft;
  if (!d) return;
  if (current().id !== d.nodeId) {
    try {
      await go(d.nodeId);
    } catch (e) {
      if (e.status !== 404) throw e;
      const alive = await survivor(d.path.slice(0, -1));
      d = { ...d, mode: "child", nodeId: alive, path: d.path.slice(0, d.path.indexOf(alive) + 1), original: "" };
      await go(alive);
      toast("The node of your draft is gone: the draft is here now, as a new child.", "info");
    }
  }
  setDraft({ ...d, open: true });
  showEditor();
}

// The deepest of these node ids that still exists (else the root).
async function survivor(ids) {
  for (const id of [...ids].reverse()) {
    try { await api("GET", `/nodes/${id}`); return id; } catch (e) { if (e.status !== 404) throw e; }
  }
  return state.root.id;
}

// Another tab's draft (or one from before the browser was closed): this tab takes it over.
export async function adoptDraft() {
  const [other] = otherDrafts(state.tree.id);
  if (!other) return;
  state.draft = null;
  setDraft({ ...other, open: false });
  await goToDraft();
}

export function closeEditor() {
  if (state.draft) setDraft({ ...state.draft, open: false });
  $("editor-text").blur();
  $("reader").focus();
  renderRead();
  renderDraftButton();
}

export async function saveEditor() {
  const d = state.draft;
  const text = $("editor-text").value;
  if (!text) return toast("Nothing to save yet.", "info");
  if (d.mode === "edit" && text === d.original) return toast("The text is unchanged: nothing to save.", "info");
  const made = d.mode === "edit" ? await api("POST", `/nodes/${d.nodeId}/edit`, { text, carry: d.carry || [] })
    : await api("POST", `/nodes/${d.nodeId}/children`, { text });
  setDraft(null);
  $("editor-text").value = "";
  $("reader").focus();
  // an edit with what follows reads on through it: to the copy of the deepest node it carried
  await reload(made.carried && made.carried.length ? made.carried[made.carried.length - 1] : made.id);
  if (made.carried && made.carried.length) toast(`Edited, with the ${made.carried.length} nodes after it carried below the edit (the original branch stays).`, "info");
}

export function discardDraft() {
  if (state.draft && state.draft.text && state.draft.text !== state.draft.original && !confirm("Discard this draft for good?")) return;
  setDraft(null);
  $("editor-text").value = "";
  $("reader").focus();
  renderRead();
  renderDraftButton();
}
