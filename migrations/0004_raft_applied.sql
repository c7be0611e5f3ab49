-- The replicated state machine's progress: the last Raft log entry applied to this store and the
-- membership in force there (openraft's applied state, serialized by the replication layer). Written in
-- the same transaction as the writes it covers, so a restart resumes applying exactly after them.
CREATE TABLE raft_applied (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    state BLOB NOT NULL
);
