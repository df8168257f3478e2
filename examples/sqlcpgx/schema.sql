-- The bank's schema: accounts holding a balance, and the transfers between
-- them. The tests and the examples apply this file to a fresh database.

CREATE TABLE accounts (
    id      bigserial PRIMARY KEY,
    owner   text      NOT NULL UNIQUE,
    balance bigint    NOT NULL CHECK (balance >= 0)
);

COMMENT ON TABLE accounts IS 'Account is a row of accounts: an owner and a balance in cents that never goes below zero.';

CREATE TABLE transfers (
    id      bigserial PRIMARY KEY,
    from_id bigint    NOT NULL REFERENCES accounts (id),
    to_id   bigint    NOT NULL REFERENCES accounts (id),
    amount  bigint    NOT NULL CHECK (amount > 0)
);

COMMENT ON TABLE transfers IS 'Transfer is a row of transfers: amount cents moved from one account to another.';
