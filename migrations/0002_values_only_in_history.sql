-- Values are kept once, in `history`: `objects` keeps each live key's revisions and reads join the
-- history row at mod_revision (which compaction never removes). Halves the bytes written per change.
CREATE TABLE objects_slim (
    key TEXT PRIMARY KEY,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO objects_slim (key, create_revision, mod_revision) SELECT key, create_revision, mod_revision FROM objects;
DROP TABLE objects;
ALTER TABLE objects_slim RENAME TO objects;
