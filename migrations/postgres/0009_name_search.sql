-- Support search by name that scales (issue 10, point 8): a GIN trigram
-- index (pg_trgm) on the normalised name serves `LIKE '%…%'` for any
-- substring of 3 or more characters, instead of a sequential scan of every
-- worker (BENCHMARKS.md, "Support search").
--
-- The name is normalised by `pedulicovid_name_key`: accents removed
-- (unaccent), then lower-cased; the search applies the same function to the
-- query, so both sides are folded alike by construction.
--
-- pg_trgm and unaccent ship with PostgreSQL (the contrib package) and are
-- "trusted" since PostgreSQL 13: a role with CREATE on this database may
-- create them; otherwise a superuser must, once, and the error says so.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE EXTENSION IF NOT EXISTS unaccent;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'migration 0009 (name search) needs the PostgreSQL extensions pg_trgm and unaccent, and this role may not create them: as a superuser, in this database, run CREATE EXTENSION pg_trgm; CREATE EXTENSION unaccent; (or GRANT CREATE ON DATABASE to this role), then pedulicovid migrate again'
            USING ERRCODE = 'insufficient_privilege';
    WHEN undefined_file THEN
        RAISE EXCEPTION 'migration 0009 (name search) needs the PostgreSQL extensions pg_trgm and unaccent, which are not installed on the server: install the PostgreSQL contrib package (Debian/Ubuntu: postgresql-contrib), then run pedulicovid migrate again'
            USING ERRCODE = 'undefined_file';
END
$$;

-- unaccent() is only STABLE (its dictionary could change), so an index
-- cannot use it directly; this wrapper names the dictionary explicitly and
-- is IMMUTABLE, the usual way to index it. Schema-qualified with the
-- extension's own schema, so it resolves whatever the caller's search_path
-- (autovacuum and restores run with an empty one).
DO $$
DECLARE
    ext_schema text := (SELECT n.nspname FROM pg_extension e
                        JOIN pg_namespace n ON n.oid = e.extnamespace
                        WHERE e.extname = 'unaccent');
BEGIN
    EXECUTE format(
        'CREATE FUNCTION pedulicovid_name_key(name text) RETURNS text
             LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
             AS $f$ SELECT lower(%I.unaccent(%L::regdictionary, name)) $f$',
        ext_schema, ext_schema || '.unaccent');
END
$$;

CREATE INDEX health_workers_name_trgm ON health_workers
    USING gin (pedulicovid_name_key(full_name) gin_trgm_ops);
