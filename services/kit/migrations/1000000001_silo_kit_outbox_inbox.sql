-- silo-kit's tables: the transactional outbox, the consumer inbox and dead letters.
-- Versions of kit migrations start at 1000000001 so they never collide with a service's own.

CREATE TABLE outbox (
    seq            bigserial PRIMARY KEY,
    event_id       uuid        NOT NULL UNIQUE,
    stream         text        NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    correlation_id text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,
    claimed_until  timestamptz,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text
);

-- The relay scans only what is still to publish, in insertion order.
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
-- Retention cleanup deletes by publication time.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay at commit time: NOTIFY is transactional, so the relay never
-- sees a record that is not committed yet. One notification per statement.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('silo_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

CREATE TABLE inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX inbox_processed_at ON inbox (processed_at);

CREATE TABLE dead_letters (
    id             bigserial PRIMARY KEY,
    consumer       text        NOT NULL,
    event_id       uuid,
    subject        text        NOT NULL,
    payload        bytea       NOT NULL,
    error          text        NOT NULL,
    deliveries     bigint      NOT NULL,
    dead_at        timestamptz NOT NULL DEFAULT now()
);
