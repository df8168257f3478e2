// Package service holds the use cases. It declares the repositories it needs
// and runs every command as one unit of work through uow.Transactor; it never
// sees a driver, SQL or HTTP.
package service
