-- Per-user cut-offs: every token of `user_id` issued at or before `not_before` (Unix seconds) is
-- dead. Written with the revocation of the user's refresh tokens in one transaction; read by
-- every instance from sync points like revoked_tokens (see store/revocations.rs), hence `txid`.
-- Append-only: an instance keeps the latest per user.
CREATE TABLE user_cutoffs (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)
);
CREATE INDEX user_cutoffs_txid ON user_cutoffs (txid);
CREATE INDEX user_cutoffs_not_before ON user_cutoffs (not_before);

-- Security event tokens already acted on, by `jti`: a replayed event changes nothing.
CREATE TABLE security_events (
    jti TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE INDEX security_events_received ON security_events (received_at);
