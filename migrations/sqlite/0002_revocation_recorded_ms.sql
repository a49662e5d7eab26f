-- When the store itself recorded each revocation, in milliseconds of the store's own clock: the
-- revocation sync re-reads a window of it every tick, so a row whose id was assigned before
-- another's but committed after it (PostgreSQL assigns ids at insert, shows rows at commit) is
-- still read. Rows from before this column exist are read by the start-up load.
ALTER TABLE revoked_tokens ADD COLUMN recorded_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX revoked_tokens_recorded ON revoked_tokens (recorded_ms);
