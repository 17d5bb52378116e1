-- Bookings: the user is referenced by id only (their database is not ours).
CREATE TABLE bookings (
    id                   UUID PRIMARY KEY,
    user_id              UUID NOT NULL,
    user_email           TEXT NOT NULL,
    event_name           VARCHAR(255) NOT NULL,
    ticket_count         INTEGER NOT NULL CHECK (ticket_count BETWEEN 1 AND 100),
    total_amount         NUMERIC(12, 2) NOT NULL CHECK (total_amount > 0),
    currency             CHAR(3) NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    cancellation_reason  TEXT,
    payment_id           UUID,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL
);

-- Newest-first listing, per user and overall, with (created_at, id) as the cursor.
CREATE INDEX bookings_user_newest ON bookings (user_id, created_at DESC, id DESC);
CREATE INDEX bookings_newest ON bookings (created_at DESC, id DESC);

-- The local replica of users, fed by UserRegistered and UserEmailChanged.
-- email_as_of: when the email was true, so an older change never overwrites a newer one.
CREATE TABLE known_users (
    user_id      UUID PRIMARY KEY,
    email        TEXT NOT NULL,
    email_as_of  TIMESTAMPTZ NOT NULL,
    full_name    TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every payment outcome received, and what the booking did about it (audit trail of the saga).
CREATE TABLE payment_outcomes (
    event_id     UUID PRIMARY KEY,
    booking_id   UUID NOT NULL,
    payment_id   UUID NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('SUCCEEDED', 'FAILED')),
    reaction     TEXT NOT NULL CHECK (reaction IN ('CONFIRMED', 'CANCELLED', 'REFUND_REQUESTED', 'RECORDED')),
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payment_outcomes_booking ON payment_outcomes (booking_id);
