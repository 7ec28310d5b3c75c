// The page's state: what the views render from. Nothing here touches the DOM, so a re-render can never destroy
// anything a person is doing: a draft lives here (and in localStorage), not in a text box that a view rebuilds.

export const state = {
  tree: null, root: null, version: null, settings: null, chapters: [], reference: null,
  role: null, // this person's role on the tree (owner, editor, rater, viewer)
  latest: 0, // the newest event of the tree this page has heard of (it reloads up to it when idle)
  here: [], // who else has the tree open, and where: [{actor, node_id}]
  byAuthor: "", // show only the nodes this person made ("" everyone's)
  showDuplicates: false, // the options view shows near-duplicate options instead of folding them
  seriate: false, // the options view orders options by likeness instead of as they came
  path: [], children: [],
  selected: null, // {node, index}: the token shown in the inspector
  tokenMode: false, // keys move between tokens and pick alternatives
  lastChild: new Map(), // parent id -> child last visited ("down" goes there)
  chosen: new Set(), // nodes whose choice this page has recorded
  busy: null, // AbortController of a running generation
  generating: null, // {nodeId, live: [text…]}: the samples streaming in, shown only at their node
  inflight: 0, // user actions under way: the poller keeps out of their way
  ticket: 0, // the latest navigation; older ones stop before they render
  navigation: null, // the promise of the latest navigation (a key waits for it: it acts where the page will be)
  hoist: null, // node the outline and graph show as their root (null: the tree's root)
  view: "read", // "read" or "graph"
  draft: null, // {id, mode: "child"|"edit", nodeId, path, text, original, open}
  bits: null, // the last ledger report for the current path
  steer: { picks: {}, prompt: false, vectors: [] },
  shadeUnsteered: false, // the read view shades steered tokens by the unsteered model's probabilities // the latents panel: chosen vectors' coefficients, and all vectors
  bitsStream: null, // AbortController of the background scoring stream
  next: null, // {undo, redo}: the entries the undo and redo buttons show (and will take back)
  showArchived: false,
  shade: false, // shade model tokens by how unlikely they were
  rendered: null, // the node the read view last followed (it follows only when this changes)
  read: null, // the ids of the open tree's nodes this person has opened (unread.js); null until known
};

// Who this page acts as (GET /api/me): an account's name on a server with accounts, else the name chosen here.
export const me = { name: null, admin: false, accounts: false };

export const current = () => state.path[state.path.length - 1];
// Whether this person may change the open tree (its viewers and raters may not; without accounts everyone may).
export const canEdit = () => !state.role || state.role === "editor" || state.role === "owner";
export const onPath = (id) => state.path.some((n) => n.id === id);

// -- drafts ----------------------------------------------------------------------------------------------------
// Each draft has an id and is stored under it in localStorage (so a reload, or a crash, keeps it); a tab knows its
// own draft by id (sessionStorage), so two tabs writing at once never overwrite or delete each other's. A draft
// that says nothing new (an edit left unchanged, an empty child) is not kept.

const PREFIX = "loomwork.draft.";
const mine = (treeId) => `loomwork.mydraft.${treeId}`;

const worthKeeping = (d) => d && d.text && (d.mode === "child" || d.text !== d.original);

export function newDraft(mode, node, path) {
  return { id: Math.random().toString(36).slice(2, 10), mode, nodeId: node.id, path: path.map((n) => n.id),
    text: mode === "edit" ? node.text : "", original: mode === "edit" ? node.text : "", open: true };
}

export function setDraft(draft) {
  const old = state.draft;
  state.draft = draft;
  if (!state.tree) return;
  if (old && (!draft || old.id !== draft.id)) localStorage.removeItem(PREFIX + `${state.tree.id}.${old.id}`);
  if (worthKeeping(draft)) {
    localStorage.setItem(PREFIX + `${state.tree.id}.${draft.id}`, JSON.stringify({ ...draft, saved: Date.now() }));
    sessionStorage.setItem(mine(state.tree.id), draft.id);
  } else if (draft) {
    localStorage.removeItem(PREFIX + `${state.tree.id}.${draft.id}`);
  } else {
    sessionStorage.removeItem(mine(state.tree.id));
  }
}

function stored(treeId) {
  const out = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key.startsWith(PREFIX + treeId + ".")) continue;
    try { out.push(JSON.parse(localStorage.getItem(key))); } catch (e) { /* not ours */ }
  }
  return out.sort((a, b) => (b.saved || 0) - (a.saved || 0));
}

// This tab's draft for the tree, if it has one.
export function loadDraft(treeId) {
  const id = sessionStorage.getItem(mine(treeId));
  const found = id && stored(treeId).find((d) => d.id === id);
  return found ? { ...found, open: false } : null;
}

// Drafts of this tree that no tab of this session claims (another tab's, or one from before a browser restart).
export function otherDrafts(treeId) {
  const id = sessionStorage.getItem(mine(treeId));
  return stored(treeId).filter((d) => d.id !== id);
}

// Where the draft belongs: a child draft under its node, an edit draft at its node. Is it on the current path?
export function draftHere() {
  const d = state.draft;
  if (!d) return false;
  if (d.mode === "child") return current() && current().id === d.nodeId;
  return onPath(d.nodeId);
}

// The node each tree was last left at, to open it there again.
export const rememberNode = (treeId, nodeId) => localStorage.setItem(`loomwork.last.${treeId}`, nodeId);
export const lastNode = (treeId) => localStorage.getItem(`loomwork.last.${treeId}`);
