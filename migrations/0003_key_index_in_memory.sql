-- Keys are resolved in an in-memory index rebuilt from `history` at start (as etcd keeps its key index in
-- memory), so a write only appends its row to `history`: no page at a random place in `objects` or in a
-- (key, revision) index per write. Values, revisions and tombstones all stay in `history`.
DROP INDEX history_by_key;
DROP TABLE objects;
