-- switchboard_leases holds the named, expiring claims replicas take so that
-- one of them at a time does something (refresh one OAuth grant). A row whose
-- expires has passed is free; expiry is by the database's clock, never a
-- replica's. Rows are small and few (one per grant refreshed lately): a
-- released lease is deleted, a lapsed one is overwritten by the next taker.
CREATE TABLE switchboard_leases (
    name    text COLLATE "C" PRIMARY KEY,
    holder  text NOT NULL,
    expires timestamptz NOT NULL
);
COMMENT ON TABLE switchboard_leases IS
    'Switchboard leases: which replica may do what (one OAuth refresh per grant), until when.';
