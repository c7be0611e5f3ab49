-- Current state: one row per live key. The value is the object's JSON without metadata.resourceVersion,
-- which is derived from mod_revision when read.
CREATE TABLE objects (
    key TEXT PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Every change, by revision: the source of watches and of reads at older revisions until compacted.
-- event: 0 = created, 1 = updated, 2 = deleted (value is then the last value before the delete).
CREATE TABLE history (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    event INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX history_by_key ON history (key, revision);

-- Counters: the current revision and the compacted revision.
CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO counters (name, value) VALUES ('revision', 0), ('compacted', 0);
