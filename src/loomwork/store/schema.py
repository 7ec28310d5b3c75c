"""The current schema, as SQLAlchemy Core tables. Only store/ speaks SQL.

Migrations (store/migrations.py) build this shape step by step; a test checks that a migrated database matches
these tables, so this file and the migrations cannot drift apart silently.
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA_VERSION = 10
ID = String(40)
Json = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()

meta = Table(
    "loomwork_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

trees = Table(
    "trees",
    metadata,
    Column("id", ID, primary_key=True),
    Column("root_id", ID, nullable=False),
    Column("title", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False, server_default="0"),  # grows with every change (v2)
    Column("meta", Json),  # v3: what an import kept of the source file's tree-level data
)

generations = Table(
    "generations",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tree_id", ID, ForeignKey("trees.id"), nullable=False, index=True),
    Column("node_id", ID, nullable=False),
    Column("backend", String(64), nullable=False),
    Column("model", Text, nullable=False),
    Column("params", Json, nullable=False),
    Column("seed", BigInteger),
    Column("duration_s", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    # seq gives siblings a stable creation order; id is what users see and type.
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", ID, nullable=False, unique=True),
    Column("tree_id", ID, ForeignKey("trees.id"), nullable=False, index=True),
    Column("parent_id", ID, ForeignKey("nodes.id")),
    Column("text", Text, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("tokens", Json),
    Column("generation_id", ID, ForeignKey("generations.id")),
    Column("sample_index", Integer),
    Column("source_id", ID),
    Column("bookmarked", Boolean, nullable=False),
    Column("archived", Boolean, nullable=False),
    Column("meta", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("author", String(64)),  # v9: the account or person whose operation made the row (NULL before v9)
    Index("ix_nodes_parent_seq", "parent_id", "seq"),
    sqlite_autoincrement=True,  # v5: a deleted node's seq is never reused, so undo can put the row back as it was
)

node_tags = Table(
    "node_tags",
    metadata,
    Column("node_id", ID, ForeignKey("nodes.id"), primary_key=True),
    Column("tag", String(200), primary_key=True),
    Index("ix_node_tags_tag", "tag"),
)

# v2: the operation log behind undo/redo (store/journal.py)
oplog = Table(
    "oplog",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("tree_id", ID, ForeignKey("trees.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("label", Text, nullable=False),
    Column("before", Json, nullable=False),
    Column("after", Json, nullable=False),
    Column("undone", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64)),  # v5: who did it (journal.current_actor); NULL for entries logged before v5
    Index("ix_oplog_tree_seq", "tree_id", "seq"),
    sqlite_autoincrement=True,  # v5: an entry's seq names it for undo (expect=…): never reused
)

# v3: curation records for the optimization accounting (curation.py)
choices = Table(
    "choices",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tree_id", ID, ForeignKey("trees.id"), nullable=False),
    Column("parent_id", ID, nullable=False),
    Column("chosen_id", ID, nullable=False),
    Column("candidates", Json, nullable=False),  # the sibling ids the user chose among, as shown
    Column("acceptable", Json),  # the ids marked acceptable before choosing, if any
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("grader", String(200)),  # the grader that made this choice (best-of-n, autoloom); NULL: a person
    Column("pressure", Json),  # v8: a grader's choice: the KL of its selection and what it was computed from
    Column("actor", String(64)),  # v9: who made the choice, or ran the grader that did
    Index("ix_choices_chosen", "chosen_id"),
    Index("ix_choices_tree", "tree_id"),
)

scores = Table(
    "scores",
    metadata,
    Column("node_id", ID, primary_key=True),
    Column("model", Text, primary_key=True),
    Column("text_hash", String(64), primary_key=True),  # of the full path text: a changed context rescores
    Column("logprobs", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# v4: process supervision (supervision/)
ratings = Table(
    "ratings",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tree_id", ID, nullable=False),
    Column("node_id", ID, nullable=False),
    Column("rater", String(200), nullable=False),
    Column("question", Text, nullable=False),
    Column("label", Integer, nullable=False),  # -1 bad, 0 neutral, +1 good (as in PRM800K)
    Column("note", Text),
    Column("flagged", Boolean, nullable=False),  # the rater was unsure
    Column("critique_id", ID),  # the critique shown beside the step, if one was
    Column("queue_id", ID),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_ratings_node", "node_id"),
    Index("ix_ratings_queue", "queue_id"),
    Index("ix_ratings_tree", "tree_id"),
)

outcomes = Table(
    "outcomes",
    metadata,
    Column("id", ID, primary_key=True),
    Column("tree_id", ID, nullable=False),
    Column("node_id", ID, nullable=False),
    Column("rater", String(200), nullable=False),
    Column("label", String(64), nullable=False),  # e.g. correct / incorrect
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_outcomes_node", "node_id"),
)

queues = Table(
    "queues",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("filter", Json, nullable=False),
    Column("questions", Json, nullable=False),
    Column("blinded", Boolean, nullable=False),
    Column("critiques", String(8), nullable=False),  # off | on | half
    Column("critic", Text),  # model ref of the critic
    Column("seed", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64)),  # v9
    Column("overlap", Integer),  # v9: each step goes to this many of the queue's raters (NULL: to every rater)
)

critiques = Table(
    "critiques",
    metadata,
    Column("id", ID, primary_key=True),
    Column("node_id", ID, nullable=False),
    Column("model", Text, nullable=False),
    Column("template", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(64)),  # v9: who asked for it
    Index("ix_critiques_node", "node_id"),
)

steering_vectors = Table(
    "steering_vectors",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("model", Text, nullable=False),  # the model ref it was made with ("hf:gemma-3-270m")
    Column("layer", Integer, nullable=False),  # the decoder block whose output it is added to
    Column("method", String(16), nullable=False),  # actadd | mean | pca
    Column("pairs", Json, nullable=False),  # [{"plus", "minus"}]
    Column("norm", Float, nullable=False),
    Column("vector", Json, nullable=False),  # the floats, one per hidden dimension
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64)),  # v9
)

graders = Table(
    "graders",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # judge | callable | person
    Column("config", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64)),  # v9
)

grader_scores = Table(
    "grader_scores",
    metadata,
    Column("grader_id", ID, primary_key=True),
    Column("node_id", ID, primary_key=True),
    Column("context_key", String(64), primary_key=True),  # what the grader read: a hash of context and text
    Column("score", Float),  # None when the grader failed on this node (error says why)
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_grader_scores_node", "node_id"),
)

# v9: teams (docs/teams.md). A token is stored only as its SHA-256 (a random 256-bit token needs no slow hash).
accounts = Table(
    "accounts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("admin", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

tree_roles = Table(
    "tree_roles",
    metadata,
    Column("tree_id", ID, ForeignKey("trees.id"), primary_key=True),
    Column("account", String(64), primary_key=True),  # an account's name, or "*" for every account
    Column("role", String(16), nullable=False),  # owner | editor | rater | viewer
)

queue_roles = Table(
    "queue_roles",
    metadata,
    Column("queue_id", ID, ForeignKey("queues.id"), primary_key=True),
    Column("account", String(64), primary_key=True),
    Column("role", String(16), nullable=False),  # rater | reviewer
)

# what happened to a tree, in order: seq is the tree's version after the change (one per change, no gaps)
events = Table(
    "events",
    metadata,
    Column("tree_id", ID, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("actor", String(64)),
    Column("data", Json, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# a reviewer's final label for a step the queue's raters disagreed on (exports use it over the raters' labels)
adjudications = Table(
    "adjudications",
    metadata,
    Column("id", ID, primary_key=True),
    Column("queue_id", ID, ForeignKey("queues.id"), nullable=False),
    Column("tree_id", ID, nullable=False),
    Column("node_id", ID, nullable=False),
    Column("question", Text, nullable=False),
    Column("label", Integer, nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("note", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_adjudications_tree", "tree_id"),
)

# who has a tree open, and where (the page says so every few seconds; older than presence.TTL_S is gone)
presence = Table(
    "presence",
    metadata,
    Column("tree_id", ID, primary_key=True),
    Column("actor", String(64), primary_key=True),
    Column("client", String(40), primary_key=True),  # one browser tab
    Column("node_id", ID),
    Column("seen_at", DateTime(timezone=True), nullable=False),
)

# who has read which node (the page's unread markers; a file's read flags on import): one row per reader and node
node_reads = Table(
    "node_reads",
    metadata,
    Column("tree_id", ID, ForeignKey("trees.id"), primary_key=True),
    Column("reader", String(200), primary_key=True),
    Column("node_id", ID, primary_key=True),
    Column("read_at", DateTime(timezone=True), nullable=False),
)
