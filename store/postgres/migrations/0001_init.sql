-- Switchboard's state, shared by every replica.
--
-- switchboard_kv holds opaque values by bucket and key. The gateway encodes
-- them; vault values arrive encrypted with the gateway's master key, so this
-- database never sees a plaintext secret.
CREATE TABLE switchboard_kv (
    bucket  text COLLATE "C" NOT NULL CHECK (bucket <> ''),
    key     bytea NOT NULL CHECK (octet_length(key) > 0),
    value   bytea NOT NULL,
    updated timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key)
);
COMMENT ON TABLE switchboard_kv IS
    'Switchboard state: opaque values by bucket and key (vault values are ciphertext).';

-- switchboard_changes records every committed write, in commit order (writers
-- take an advisory lock before they insert here, so seq order is commit
-- order). Replicas read it after each NOTIFY on channel switchboard_changes,
-- and every few seconds in case a notification was missed. Old rows are
-- pruned; switchboard_meta.changes_pruned_through tells a replica that fell
-- further behind than that to reload everything.
CREATE TABLE switchboard_changes (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    writer text NOT NULL,
    bucket text COLLATE "C" NOT NULL,
    key    bytea NOT NULL,
    prefix boolean NOT NULL DEFAULT false,
    at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX switchboard_changes_at ON switchboard_changes (at);

CREATE TABLE switchboard_meta (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);
INSERT INTO switchboard_meta (name, value) VALUES ('changes_pruned_through', 0);
