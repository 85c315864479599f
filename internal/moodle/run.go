package moodle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// User is the account commands in the code tree run as: the web server's
// (deploy.run_as), so that what Moodle's CLI scripts write into moodledata
// (caches, the component cache) stays writable by the web server.
type User struct {
	Name     string
	UID, GID uint32
	Groups   []uint32
	Home     string
}

// LookupUser resolves name. It fails when the user does not exist, or
// when this process could not switch to it (not root, and another user).
func LookupUser(name string) (*User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	if euid := os.Geteuid(); euid != 0 && uint32(euid) != uint32(uid) {
		return nil, fmt.Errorf("this agent runs as uid %d, not root, and cannot run commands as %s (uid %d)", euid, name, uid)
	}
	out := &User{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	gids, err := u.GroupIds()
	if err != nil {
		return nil, fmt.Errorf("groups of %s: %w", name, err)
	}
	for _, g := range gids {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			out.Groups = append(out.Groups, uint32(n))
		}
	}
	return out, nil
}

// waitDelay bounds how long Run waits, once the command has ended or been
// killed, for a process it left behind that still holds its output.
const waitDelay = 5 * time.Second

// Command is a command run in Moodle's code tree as u, with u's HOME and a
// clean environment: nothing of the agent's (no secrets, no
// NOTIFY_SOCKET) reaches it. It runs in a process group of its own, and
// when ctx ends the whole group is killed: a `sh -c` command's children
// (php, a pipeline) too, not only the shell.
func (u *User) Command(ctx context.Context, dir string, argv ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = []string{
		"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name, "SHELL=/bin/sh", "LANG=C.UTF-8",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uint32(os.Geteuid()) != u.UID || uint32(os.Getegid()) != u.GID {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	return cmd
}

// Run runs argv in dir as u and returns the end of its output (stdout and
// stderr, at most 2000 bytes) and the error of the run.
func (u *User) Run(ctx context.Context, dir string, argv ...string) (string, error) {
	cmd := u.Command(ctx, dir, argv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return lastBytes(out.String(), 2000), err
}

func lastBytes(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
