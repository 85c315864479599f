// Package moodle holds what nodeagent knows about Moodle itself: the
// climaintenance.html file in dataroot that makes Moodle answer 503 and
// stop its cron (as admin/cli/maintenance.php --enable), the
// $CFG->db* lines of config.php a database move rewrites, and the files
// that pin a code tree to one site (mirror.pinned).
//
// It reads and writes only the files it is pointed at; it knows nothing of
// gossip, the mirror or HTTP.
package moodle
