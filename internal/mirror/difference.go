package mirror

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Kinds of Difference between a release tree and its manifest.
const (
	KindMissing  = "missing"  // an entry of the manifest is not there
	KindExtra    = "extra"    // an entry is there that the manifest lacks
	KindType     = "type"     // another type (a symlink where a directory was, …)
	KindMode     = "mode"     // other permission bits (e.g. writable by others)
	KindOwner    = "owner"    // another owner than the agent
	KindTampered = "tampered" // other content or symlink target
)

// Kinds lists every kind of Difference, in the order reports use.
var Kinds = []string{KindTampered, KindMissing, KindExtra, KindType, KindMode, KindOwner}

// Difference is one way a release tree differs from its manifest.
type Difference struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

func (d Difference) String() string {
	if d.Detail == "" {
		return d.Kind + " " + d.Path
	}
	return d.Kind + " " + d.Path + " (" + d.Detail + ")"
}

// countKinds counts differences by kind; every kind is present.
func countKinds(diffs []Difference) map[string]int {
	n := make(map[string]int, len(Kinds))
	for _, k := range Kinds {
		n[k] = 0
	}
	for _, d := range diffs {
		n[d.Kind]++
	}
	return n
}

// releaseDirMode is the mode of a release directory: the manifest's
// without write for group and others (Moodle makes its directories 02777;
// a writable directory would let the web server plant or replace files).
func releaseDirMode(mode uint32) os.FileMode { return FileMode(mode &^ 0o022) }

// releaseRootMode is the mode of a release directory itself.
const releaseRootMode = 0o755

// releaseBits returns the mode bits an entry of the manifest has in a
// release.
func releaseBits(e *Entry) uint32 {
	switch e.Type {
	case TypeFile:
		return ModeBits(releaseFileMode(e.Mode))
	case TypeDir:
		return ModeBits(releaseDirMode(e.Mode))
	}
	return 0
}

// typeOf returns the manifest type of a st_mode ("" for other files).
func typeOf(mode uint32) Type {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return TypeFile
	case unix.S_IFDIR:
		return TypeDir
	case unix.S_IFLNK:
		return TypeSymlink
	}
	return ""
}

// typeName names the type of a st_mode for a Difference.
func typeName(mode uint32) string {
	if t := typeOf(mode); t != "" {
		return string(t)
	}
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "device"
	}
	return fmt.Sprintf("mode %o", mode)
}

func formatNs(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339) }

// bgCtx is for the short parallel loops that nothing cancels.
var bgCtx = context.Background()
