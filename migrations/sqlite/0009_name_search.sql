-- Support search by name that scales (issue 10, point 8): an FTS5 table with
-- the trigram tokenizer over the workers' names answers any substring of 3
-- or more characters from its index, instead of a scan of every worker
-- (BENCHMARKS.md, "Support search"). `case_sensitive 0 remove_diacritics 1`
-- folds case and accents on both the names and the query.
--
-- External content: the names are not stored twice; the table indexes
-- `health_workers.full_name` by rowid (= `health_workers.id`), and the
-- triggers below keep it in step with every insert, update and delete, in
-- the same transaction as the change.
CREATE VIRTUAL TABLE health_workers_name USING fts5(
    full_name,
    content = 'health_workers',
    content_rowid = 'id',
    tokenize = 'trigram case_sensitive 0 remove_diacritics 1'
);

CREATE TRIGGER health_workers_name_insert AFTER INSERT ON health_workers BEGIN
    INSERT INTO health_workers_name (rowid, full_name) VALUES (new.id, new.full_name);
END;

CREATE TRIGGER health_workers_name_delete AFTER DELETE ON health_workers BEGIN
    INSERT INTO health_workers_name (health_workers_name, rowid, full_name)
        VALUES ('delete', old.id, old.full_name);
END;

CREATE TRIGGER health_workers_name_update AFTER UPDATE OF full_name ON health_workers BEGIN
    INSERT INTO health_workers_name (health_workers_name, rowid, full_name)
        VALUES ('delete', old.id, old.full_name);
    INSERT INTO health_workers_name (rowid, full_name) VALUES (new.id, new.full_name);
END;

-- Workers imported before this migration.
INSERT INTO health_workers_name (health_workers_name) VALUES ('rebuild');
