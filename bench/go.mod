module github.com/uowkit/uowkit/bench

go 1.25.0

require (
	github.com/avito-tech/go-transaction-manager/drivers/sqlx/v2 v2.0.2
	github.com/avito-tech/go-transaction-manager/trm/v2 v2.0.2
	github.com/jmoiron/sqlx v1.4.0
	github.com/uowkit/uowkit v0.0.0-00010101000000-000000000000
)

require (
	github.com/avito-tech/go-transaction-manager/drivers/sql/v2 v2.0.1 // indirect
	go.uber.org/atomic v1.7.0 // indirect
	go.uber.org/multierr v1.9.0 // indirect
)

replace github.com/uowkit/uowkit => ..
