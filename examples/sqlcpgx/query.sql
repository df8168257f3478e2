-- name: CreateAccount :one
-- CreateAccount inserts an account and returns it with its new id.
INSERT INTO accounts (owner, balance) VALUES ($1, $2)
RETURNING *;

-- name: GetAccount :one
-- GetAccount returns the account with the given id.
SELECT * FROM accounts WHERE id = $1;

-- name: ListAccounts :many
-- ListAccounts returns every account, by id.
SELECT * FROM accounts ORDER BY id;

-- name: CreditAll :many
-- CreditAll adds amount to every account's balance and returns the accounts
-- as updated, in no particular order.
UPDATE accounts SET balance = balance + @amount::bigint
RETURNING *;

-- name: AddToBalance :execrows
-- AddToBalance adds amount (negative to debit) to the balance of account id
-- unless that would take it below zero, and reports how many rows changed:
-- 0 when the account does not exist or lacks the funds.
UPDATE accounts SET balance = balance + @amount::bigint
WHERE id = @id AND balance + @amount::bigint >= 0;

-- name: ChargeFee :execrows
-- ChargeFee takes fee from every account whose balance covers it, and
-- reports how many accounts paid.
UPDATE accounts SET balance = balance - @fee::bigint
WHERE balance >= @fee::bigint;

-- name: CreateTransfer :exec
-- CreateTransfer records a transfer of amount from one account to another.
INSERT INTO transfers (from_id, to_id, amount) VALUES ($1, $2, $3);

-- name: ListTransfers :many
-- ListTransfers returns every transfer, by id.
SELECT * FROM transfers ORDER BY id;

-- name: ImportAccounts :copyfrom
-- ImportAccounts inserts accounts with PostgreSQL's COPY protocol, in one
-- round trip whatever their number.
INSERT INTO accounts (owner, balance) VALUES ($1, $2);

-- name: Pay :batchexec
-- Pay records a transfer of amount from one account to another and credits
-- the payee, in one statement; queued in a batch, all the payments go to the
-- server in one round trip. A payee that does not exist fails the statement
-- (the transfer's foreign key). The payer is debited separately.
WITH t AS (
    INSERT INTO transfers (from_id, to_id, amount) VALUES (@from_id, @to_id, @amount)
    RETURNING to_id, amount
)
UPDATE accounts SET balance = balance + t.amount FROM t WHERE accounts.id = t.to_id;
