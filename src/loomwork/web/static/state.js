// The page's state: what the views render from. Nothing here touches the DOM, so a re-render can never destroy
// anything a person is doing: a draft lives here (and in localStorage), not in a text box that a view rebuilds.

export const state = {
  tree: null, root: null, version: null, settings: null, chapters: [], reference: null,
  path: [], children: [],
  selected: null, // {node, index}: the token shown in the inspector
  tokenMode: false, // keys move between tokens and pick alternatives
  lastChild: new Map(), // parent id -> child last visited ("down" goes there)
  chosen: new Set(), // nodes whose choice this page has recorded
  busy: null, // AbortController of a running generation
  inflight: 0, // user actions under way: the poller keeps out of their way
  ticket: 0, // the latest navigation; older ones stop before they render
  hoist: null, // node the outline and graph show as their root (null: the tree's root)
  view: "read", // "read" or "graph"
  draft: null, // {mode: "child"|"edit", nodeId, text, start, end, open}
  bits: null, // the last ledger report for the current path
  bitsStream: null, // AbortController of the background scoring stream
  showArchived: false,
  shade: false, // shade model tokens by how unlikely they were
};

export const current = () => state.path[state.path.length - 1];
export const onPath = (id) => state.path.some((n) => n.id === id);

// -- drafts: one per tree, kept in localStorage until saved or discarded (a reload keeps it too) -------------

const draftKey = (treeId) => `loomwork.draft.${treeId}`;

export function setDraft(draft) {
  state.draft = draft;
  if (!state.tree) return;
  if (draft && draft.text) localStorage.setItem(draftKey(state.tree.id), JSON.stringify(draft));
  else if (!draft) localStorage.removeItem(draftKey(state.tree.id));
}

export function loadDraft(treeId) {
  try {
    const raw = localStorage.getItem(draftKey(treeId));
    return raw ? { ...JSON.parse(raw), open: false } : null;
  } catch (e) {
    return null;
  }
}

// Where the draft belongs: a child draft under its node, an edit draft at its node. Is it on the current path?
export function draftHere() {
  const d = state.draft;
  if (!d) return false;
  if (d.mode === "child") return current() && current().id === d.nodeId;
  return onPath(d.nodeId);
}
