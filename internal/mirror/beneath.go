package mirror

import (
	"errors"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Publishing opens source files beneath a descriptor of the source root,
// never through a path string: whoever may write the code tree (a web user
// installing plugins) could otherwise swap a directory for a symlink
// between the scan and the read, and have files from outside the tree
// published to every web node. openat2 with RESOLVE_BENEATH and
// RESOLVE_NO_SYMLINKS refuses any symlink on the way; where the kernel or a
// seccomp filter lacks openat2, each directory is opened in turn with
// O_NOFOLLOW, which refuses them as surely.

// noOpenat2 is set once openat2 turns out to be unavailable.
var noOpenat2 atomic.Bool

// errPathChanged reports a path of the tree that crosses a symlink, or a
// file where a directory was, when opened: the tree changed since it was
// scanned.
var errPathChanged = errors.New("a directory on the way is now a symlink or a file (the tree changed while it was read)")

// openBeneath opens rel, a clean relative path, beneath the directory open
// as root, with flags (O_NOFOLLOW is added), following no symlink.
func openBeneath(root int, rel string, flags int) (int, error) {
	flags |= unix.O_NOFOLLOW | unix.O_CLOEXEC
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
		fd, err := openat2Retry(root, rel, &how)
		switch {
		case err == nil:
			return fd, nil
		case err == unix.ENOSYS || err == unix.EPERM && flags&unix.O_NOATIME == 0:
			// No openat2 (kernel before 5.6, or a seccomp filter).
			noOpenat2.Store(true)
		case err == unix.ELOOP || err == unix.EXDEV:
			return -1, errPathChanged
		default:
			return -1, err
		}
	}
	return openWalk(root, rel, flags)
}

func openat2Retry(root int, rel string, how *unix.OpenHow) (int, error) {
	for {
		fd, err := unix.Openat2(root, rel, how)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openWalk opens rel beneath root one directory at a time, each with
// O_NOFOLLOW.
func openWalk(root int, rel string, flags int) (int, error) {
	dir := root
	defer func() {
		if dir != root {
			unix.Close(dir)
		}
	}()
	for {
		name, rest, more := strings.Cut(rel, "/")
		if name == "" || name == "." || name == ".." {
			return -1, errPathChanged
		}
		if !more {
			return walkErr(openatRetry(dir, name, flags))
		}
		next, err := openatRetry(dir, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return walkErr(next, err)
		}
		if dir != root {
			unix.Close(dir)
		}
		dir, rel = next, rest
	}
}

// walkErr turns the errno of a symlink met by O_NOFOLLOW (ELOOP; ENOTDIR
// where a directory is expected) into errPathChanged.
func walkErr(fd int, err error) (int, error) {
	if err == unix.ELOOP || err == unix.ENOTDIR {
		return -1, errPathChanged
	}
	return fd, err
}

func openatRetry(dir int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
