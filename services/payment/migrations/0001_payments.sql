-- Payments: exactly one per booking.
CREATE TABLE payments (
    id              UUID PRIMARY KEY,
    booking_id      UUID NOT NULL UNIQUE,
    user_id         UUID NOT NULL,
    user_email      TEXT,
    user_email_as_of TIMESTAMPTZ NOT NULL,
    amount          NUMERIC(12, 2) NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'REFUNDED')),
    payment_method  JSONB,
    transaction_id  TEXT,
    failure_reason  TEXT,
    attempts        INTEGER NOT NULL DEFAULT 1,
    booking_status  TEXT NOT NULL DEFAULT 'PENDING'
                    CHECK (booking_status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    metadata        JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX payments_user_id ON payments (user_id);
