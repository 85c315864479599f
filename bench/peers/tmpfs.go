package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// mountData mounts a tmpfs on a new directory "data" under root for the
// tree and every agent's data, and returns it with the function that
// unmounts it. Eleven agents on one disk measure that disk (on an ext4
// that has seen many files deleted, creating an inode scans the recently
// deleted ones: most of the machine's CPU), where each VM of a real
// cluster has its own.
func mountData(root string) (dir string, unmount func() error, err error) {
	dir = filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("tmpfs dir: %w", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "mode=0755"); err != nil {
		return "", nil, fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
	}
	unmount = func() error {
		if err := syscall.Unmount(dir, 0); err != nil {
			// Still busy: detach it, the kernel frees it when unused.
			if err2 := syscall.Unmount(dir, syscall.MNT_DETACH); err2 != nil {
				return fmt.Errorf("unmount %s: %w", dir, err2)
			}
		}
		return nil
	}
	return dir, unmount, nil
}
