package handoff

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The environment that passes sockets to a new process.
const (
	// systemd's (sd_listen_fds(3)): LISTEN_FDS sockets from fd 3 on, named
	// by LISTEN_FDNAMES (":"-separated), meant for the process LISTEN_PID.
	envFDs   = "LISTEN_FDS"
	envNames = "LISTEN_FDNAMES"
	envPID   = "LISTEN_PID"
	// The agent's own, for a re-exec in place: "name=fd,name=fd", meant
	// for the process NODEAGENT_LISTEN_PID (the same process after
	// execve).
	envOwn    = "NODEAGENT_LISTEN_FDS"
	envOwnPID = "NODEAGENT_LISTEN_PID"

	firstListenFD = 3
)

// inherit takes the sockets passed to this process, by name, and removes
// the variables from the environment so that the commands the agent runs
// never see them. Variables meant for another process are ignored (their
// fds are not ours to touch).
func inherit() (map[string][]*os.File, error) {
	pid := strconv.Itoa(os.Getpid())
	files := map[string][]*os.File{}
	defer func() {
		for _, k := range []string{envFDs, envNames, envPID, envOwn, envOwnPID} {
			os.Unsetenv(k)
		}
	}()
	if os.Getenv(envPID) == pid {
		if err := inheritSystemd(files); err != nil {
			return nil, err
		}
	}
	if os.Getenv(envOwnPID) == pid {
		if err := inheritOwn(files); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func inheritSystemd(files map[string][]*os.File) error {
	n, err := strconv.Atoi(os.Getenv(envFDs))
	if err != nil || n < 0 {
		return fmt.Errorf("%s=%q: not a count", envFDs, os.Getenv(envFDs))
	}
	names := strings.Split(os.Getenv(envNames), ":")
	for i := range n {
		name := "unknown" // systemd's name for an unnamed fd
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		fd := firstListenFD + i
		syscall.CloseOnExec(fd)
		files[name] = append(files[name], os.NewFile(uintptr(fd), name))
	}
	return nil
}

func inheritOwn(files map[string][]*os.File) error {
	for item := range strings.SplitSeq(os.Getenv(envOwn), ",") {
		if item == "" {
			continue
		}
		name, num, ok := strings.Cut(item, "=")
		fd, err := strconv.Atoi(num)
		if !ok || err != nil || fd < firstListenFD {
			return fmt.Errorf("%s: bad entry %q", envOwn, item)
		}
		syscall.CloseOnExec(fd)
		files[name] = append(files[name], os.NewFile(uintptr(fd), name))
	}
	return nil
}
