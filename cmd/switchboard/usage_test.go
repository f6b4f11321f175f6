package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, in string
		want     time.Time
		bad      bool
	}{
		{"empty is unbounded", "", time.Time{}, false},
		{"days", "7d", now.Add(-7 * 24 * time.Hour), false},
		{"duration", "90m", now.Add(-90 * time.Minute), false},
		{"date", "2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), false},
		{"rfc3339", "2026-03-01T10:30:00+02:00", time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC), false},
		{"garbage", "last tuesday", time.Time{}, true},
		{"negative", "-5m", time.Time{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseWhen(tc.in, now)
			if (err != nil) != tc.bad || !got.Equal(tc.want) {
				t.Errorf("parseWhen(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.bad)
			}
		})
	}
}

func TestUsageCmdRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"two formats", []string{"--json", "--csv", "x.log"}, "pick one of --json and --csv"},
		{"unknown grouping", []string{"--by", "team", "x.log"}, `unknown grouping "team"`},
		{"bad time", []string{"--since", "soon", "x.log"}, "--since"},
		{"empty period", []string{"--since", "2026-03-02", "--until", "2026-03-01", "x.log"}, "--since must be before --until"},
		{"missing log", []string{t.TempDir() + "/none.log"}, "none.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := newRootCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs(append([]string{"usage"}, tc.args...))
			err := cmd.Execute()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
