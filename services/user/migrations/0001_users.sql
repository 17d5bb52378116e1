-- user-service's own tables. The outbox comes from silo-kit's migrations.

CREATE TABLE users (
    id            uuid        PRIMARY KEY,
    username      text        NOT NULL,
    email         text        NOT NULL,
    full_name     text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Uniqueness ignores case: "Alice" and "alice" are the same account.
CREATE UNIQUE INDEX users_username_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE roles (
    id   smallint PRIMARY KEY,
    name text     NOT NULL UNIQUE
);

INSERT INTO roles (id, name) VALUES (1, 'user'), (2, 'admin');

CREATE TABLE user_roles (
    user_id uuid     NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id smallint NOT NULL REFERENCES roles (id),
    PRIMARY KEY (user_id, role_id)
);

-- Ed25519 token signing keys (PKCS#8 DER). The newest is used for signing;
-- all are published in the JWKS so tokens of a rotated key verify until expiry.
CREATE TABLE signing_keys (
    kid         text        PRIMARY KEY,
    private_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
