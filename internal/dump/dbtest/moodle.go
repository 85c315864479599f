package dbtest

import (
	"fmt"
	"strings"
	"testing"
)

// pgMoodle is a small Moodle-like schema: tables with indexes and a foreign
// key, a sequence, a view, a trigger function, and awkward text.
const pgMoodle = `
CREATE SEQUENCE mdl_user_id_seq;
CREATE TABLE mdl_user (
  id bigint PRIMARY KEY DEFAULT nextval('mdl_user_id_seq'),
  username varchar(100) NOT NULL UNIQUE,
  email varchar(100) NOT NULL DEFAULT '',
  firstname varchar(100) NOT NULL DEFAULT '',
  deleted smallint NOT NULL DEFAULT 0,
  timecreated bigint NOT NULL DEFAULT 0);
CREATE INDEX mdl_user_email_ix ON mdl_user (email);
CREATE TABLE mdl_course (
  id bigserial PRIMARY KEY,
  shortname varchar(255) NOT NULL,
  summary text,
  timemodified bigint NOT NULL DEFAULT 0);
CREATE INDEX mdl_course_shortname_ix ON mdl_course (shortname);
CREATE TABLE mdl_config (id bigserial PRIMARY KEY, name varchar(255) NOT NULL UNIQUE, value text NOT NULL);
CREATE TABLE mdl_user_enrolments (
  id bigserial PRIMARY KEY,
  userid bigint NOT NULL REFERENCES mdl_user (id),
  courseid bigint NOT NULL REFERENCES mdl_course (id));
CREATE FUNCTION mdl_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.timemodified := NEW.timemodified + 1; RETURN NEW; END $$;
CREATE TRIGGER mdl_course_touch BEFORE UPDATE ON mdl_course FOR EACH ROW EXECUTE FUNCTION mdl_touch();
CREATE VIEW mdl_active_users AS SELECT id, username FROM mdl_user WHERE deleted = 0;
INSERT INTO mdl_user (username, email, firstname, deleted, timecreated)
  SELECT 'user' || g, 'u' || g || '@example.com', CASE g % 3 WHEN 0 THEN 'Zoë' WHEN 1 THEN 'O''Brien' ELSE E'back\\slash\nnewline' END, (g % 7 = 0)::int, 1700000000 + g
  FROM generate_series(1, %d) g;
INSERT INTO mdl_course (shortname, summary) SELECT 'C' || g, repeat('Résumé ' || g, 5) FROM generate_series(1, 50) g;
UPDATE mdl_course SET shortname = shortname || '-x' WHERE id <= 10;
INSERT INTO mdl_config (name, value) VALUES ('version', '2024100700'), ('wwwroot', 'https://moodle.example.com'), ('tab', E'a\tb');
INSERT INTO mdl_user_enrolments (userid, courseid) SELECT u.id, 1 + u.id % 50 FROM mdl_user u;
`

const myMoodle = `
CREATE SEQUENCE mdl_user_id_seq;
CREATE TABLE mdl_user (
  id bigint PRIMARY KEY DEFAULT (NEXT VALUE FOR mdl_user_id_seq),
  username varchar(100) NOT NULL UNIQUE,
  email varchar(100) NOT NULL DEFAULT '',
  firstname varchar(100) NOT NULL DEFAULT '',
  deleted smallint NOT NULL DEFAULT 0,
  timecreated bigint NOT NULL DEFAULT 0,
  KEY mdl_user_email_ix (email)) ENGINE=InnoDB;
CREATE TABLE mdl_course (
  id bigint AUTO_INCREMENT PRIMARY KEY,
  shortname varchar(255) NOT NULL,
  summary longtext,
  timemodified bigint NOT NULL DEFAULT 0,
  KEY mdl_course_shortname_ix (shortname)) ENGINE=InnoDB;
CREATE TABLE mdl_config (id bigint AUTO_INCREMENT PRIMARY KEY, name varchar(255) NOT NULL UNIQUE, value longtext NOT NULL) ENGINE=InnoDB;
CREATE TABLE mdl_user_enrolments (
  id bigint AUTO_INCREMENT PRIMARY KEY,
  userid bigint NOT NULL, courseid bigint NOT NULL,
  FOREIGN KEY (userid) REFERENCES mdl_user (id)) ENGINE=InnoDB;
CREATE TRIGGER mdl_course_touch BEFORE UPDATE ON mdl_course FOR EACH ROW SET NEW.timemodified = OLD.timemodified + 1;
CREATE FUNCTION mdl_fullname(f varchar(100), u varchar(100)) RETURNS varchar(201) DETERMINISTIC RETURN CONCAT(f, ' ', u);
CREATE VIEW mdl_active_users AS SELECT id, username FROM mdl_user WHERE deleted = 0;
INSERT INTO mdl_user (username, email, firstname, deleted, timecreated)
  SELECT CONCAT('user', seq), CONCAT('u', seq, '@example.com'), ELT(1 + seq % 3, 'Zoë', 'O''Brien', 'back\\slash\nnewline'), seq % 7 = 0, 1700000000 + seq
  FROM seq_1_to_%d;
INSERT INTO mdl_course (shortname, summary) SELECT CONCAT('C', seq), REPEAT(CONCAT('Résumé ', seq), 5) FROM seq_1_to_50;
UPDATE mdl_course SET shortname = CONCAT(shortname, '-x') WHERE id <= 10;
INSERT INTO mdl_config (name, value) VALUES ('version', '2024100700'), ('wwwroot', 'https://moodle.example.com'), ('tab', 'a\tb');
INSERT INTO mdl_user_enrolments (userid, courseid) SELECT id, 1 + id % 50 FROM mdl_user;
`

var moodleTables = []struct{ name, columns string }{
	{"mdl_user", "id, username, email, firstname, deleted, timecreated"},
	{"mdl_course", "id, shortname, summary, timemodified"},
	{"mdl_config", "id, name, value"},
	{"mdl_user_enrolments", "id, userid, courseid"},
}

// LoadMoodle creates the Moodle-like schema in db, owned by owner, with
// users rows in mdl_user.
func (s *Server) LoadMoodle(tb testing.TB, db, owner string, users int) {
	tb.Helper()
	schema := pgMoodle
	if s.Driver == "mysql" {
		schema = myMoodle
	}
	s.SQL(tb, db, s.as(owner)+strings.Replace(schema, "%d", fmt.Sprint(users), 1))
}

// as makes the rest of a PostgreSQL script run as role owner, so that it
// owns what the script creates (MySQL grants do not depend on the creator).
func (s *Server) as(owner string) string {
	if s.Driver == "postgres" {
		return "SET ROLE " + owner + ";\n"
	}
	return ""
}

// Fingerprint describes db's content as text: per table the row count and an
// MD5 of the rows in id order, the view's row count, the sequence, the
// trigger (in a transaction rolled back) and the function; it changes
// nothing. Equal fingerprints mean equal content.
func (s *Server) Fingerprint(tb testing.TB, db string) string {
	tb.Helper()
	var q []string
	for _, t := range moodleTables {
		if s.Driver == "postgres" {
			q = append(q, fmt.Sprintf("SELECT '%s', count(*), md5(string_agg(t::text, '|' ORDER BY id)) FROM %[1]s t;", t.name))
		} else {
			q = append(q, fmt.Sprintf("SELECT '%s', COUNT(*), MD5(GROUP_CONCAT(MD5(JSON_ARRAY(%s)) ORDER BY id SEPARATOR '|')) FROM %[1]s;", t.name, t.columns))
		}
	}
	q = append(q, "SELECT 'view', count(*) FROM mdl_active_users;")
	if s.Driver == "postgres" {
		q = append(q, "SELECT 'seq', last_value, is_called FROM mdl_user_id_seq;",
			"SELECT 'trigger', count(*) FROM information_schema.triggers WHERE trigger_name = 'mdl_course_touch';",
			"BEGIN; UPDATE mdl_course SET shortname = shortname WHERE id = 1; SELECT 'touched', timemodified FROM mdl_course WHERE id = 1; ROLLBACK;")
	} else {
		q = append(q, "SELECT 'seq', next_not_cached_value FROM mdl_user_id_seq;",
			"SELECT 'trigger', COUNT(*) FROM information_schema.triggers WHERE trigger_name = 'mdl_course_touch';",
			"BEGIN; UPDATE mdl_course SET shortname = shortname WHERE id = 1; SELECT 'touched', timemodified FROM mdl_course WHERE id = 1; ROLLBACK;",
			"SELECT 'function', mdl_fullname('a', 'b');")
	}
	if s.Driver == "mysql" {
		q = append([]string{"SET SESSION group_concat_max_len = 1073741824;"}, q...)
	}
	return s.SQL(tb, db, strings.Join(q, "\n"))
}

// Fill adds, owned by owner, a table mdl_logstore_standard_log of about mb megabytes of
// poorly compressible rows, so that a dump takes a while.
func (s *Server) Fill(tb testing.TB, db, owner string, mb int) {
	tb.Helper()
	rows := mb << 10 * 4 // rows of ~256 bytes
	if s.Driver == "postgres" {
		s.SQL(tb, db, s.as(owner)+fmt.Sprintf(`CREATE TABLE mdl_logstore_standard_log (id bigserial PRIMARY KEY, other text);
INSERT INTO mdl_logstore_standard_log (other) SELECT md5(g::text) || md5((g*3)::text) || md5((g*7)::text) || md5((g*11)::text) || md5((g*13)::text) || md5((g*17)::text) || md5((g*19)::text) || md5((g*23)::text) FROM generate_series(1, %d) g;`, rows))
		return
	}
	s.SQL(tb, db, fmt.Sprintf(`CREATE TABLE mdl_logstore_standard_log (id bigint AUTO_INCREMENT PRIMARY KEY, other longtext) ENGINE=InnoDB;
INSERT INTO mdl_logstore_standard_log (other) SELECT CONCAT(MD5(seq), MD5(seq*3), MD5(seq*7), MD5(seq*11), MD5(seq*13), MD5(seq*17), MD5(seq*19), MD5(seq*23)) FROM seq_1_to_%d;`, rows))
}
