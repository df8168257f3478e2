// Package domain holds the teams-and-players model and its rules. It knows
// nothing about databases, HTTP or transactions.
package domain
