-- The transaction that recorded each revocation (PostgreSQL 13+). Ids are assigned at insert but
-- rows become visible at commit, so a cursor on ids can skip a row that commits late; the
-- revocation sync instead re-reads every row whose transaction was not yet finished at its
-- previous read (`pg_snapshot_xmin`), which is exact. A column default, so rows written by an
-- instance that does not know the column yet carry it as well.
ALTER TABLE revoked_tokens ADD COLUMN txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX revoked_tokens_txid ON revoked_tokens (txid);
