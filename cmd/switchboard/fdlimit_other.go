//go:build !unix

package main

// defaultMaxConns is server.max_conns when it is 0; without an open-file
// limit to derive it from, there is no total cap.
func defaultMaxConns() int { return 0 }
