package dbtest_test

import (
	"testing"

	"github.com/nodeagent/nodeagent/internal/dump/dbtest"
)

// TestServers checks that both servers start, load the fixture and answer.
func TestServers(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *dbtest.Server{"postgres": dbtest.Postgres, "mariadb": dbtest.MariaDB} {
		t.Run(name, func(t *testing.T) {
			s := start(t)
			s.CreateUser(t, "moodle", "secret")
			s.CreateDB(t, "moodle", "moodle")
			s.LoadMoodle(t, "moodle", "moodle", 100)
			fp := s.Fingerprint(t, "moodle")
			t.Log(fp)
			if fp != s.Fingerprint(t, "moodle") {
				t.Error("fingerprint changes between two reads")
			}
		})
	}
}
