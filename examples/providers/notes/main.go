// Command notes is a stdio MCP server that keeps a small markdown knowledge base on disk.
//
// Notes live as <slug>.md files (YAML front matter + markdown body) in the directory
// named by NOTES_DIR, which is created if missing. Tools: list_notes, search_notes,
// read_note, write_note, append_note, delete_note; resource template notes://{slug};
// prompt summarize_notes. Diagnostics go to stderr; stdout carries only the protocol.
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/mark3labs/mcp-go/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "notes:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := os.Getenv("NOTES_DIR")
	if dir == "" {
		return fmt.Errorf("starting: NOTES_DIR is not set (set it to the directory that holds the notes)")
	}
	st, err := openStore(dir)
	if err != nil {
		return fmt.Errorf("starting: %w", err)
	}
	logger := log.New(os.Stderr, "notes: ", log.LstdFlags)
	return server.ServeStdio(newServer(st), server.WithErrorLogger(logger))
}
