module github.com/uowkit/uowkit/outbox/natsjs

go 1.25.0

replace github.com/uowkit/uowkit => ../..

require (
	github.com/jmoiron/sqlx v1.4.0
	github.com/nats-io/nats.go v1.53.1
	github.com/stretchr/testify v1.12.1
	github.com/uowkit/uowkit v0.0.0-00010101000000-000000000000
)

require (
	github.com/klauspost/compress v1.18.5 // indirect
	github.com/lib/pq v1.12.3 // indirect
	github.com/nats-io/nkeys v0.4.15 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/crypto v0.49.0 // indirect
	golang.org/x/sys v0.42.0 // indirect
)
