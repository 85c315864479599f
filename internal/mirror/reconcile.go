package mirror

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// A recycled release is not trusted as it is: before it is turned into the
// new one, it is inspected against its own manifest and identities, and
// whatever was planted in it, changed type, or is no longer the file the
// agent placed is removed (and placed anew if the new manifest has it).
// So a reused release holds exactly its manifest.

// recycledPlan is what the inspection of a recycled tree found.
type recycledPlan struct {
	remove  []finding       // entries to take out of the tree
	gone    map[string]bool // paths (of old) to place anew
	fixDirs map[string]bool // directories whose owner or mode must be set again
}

// inspectRecycled inspects the recycled tree at dir (the release of old,
// with identities oldIDs).
func (r *Releases) inspectRecycled(ctx context.Context, dir string, old *Manifest, oldIDs identities) (*recycledPlan, error) {
	findings, err := inspectTree(ctx, dir, old, oldIDs, fsWorkers)
	if err != nil {
		return nil, err
	}
	p := &recycledPlan{gone: map[string]bool{}, fixDirs: map[string]bool{}}
	for _, f := range findings {
		if f.entry == rootEntry {
			continue // setDirModes sets it
		}
		dirEntry := f.entry >= 0 && old.Entries[f.entry].Type == TypeDir
		switch {
		case dirEntry && (f.Kind == KindMode || f.Kind == KindOwner):
			p.fixDirs[f.Path] = true
			continue
		case f.Kind == KindMissing:
		default:
			p.remove = append(p.remove, f)
		}
		if f.entry >= 0 {
			p.markGone(old, f.entry)
		}
	}
	if len(findings) > 0 {
		r.log.Warn("recycled release differed from its manifest; repairing it", "differences", len(findings),
			"first", findings[0].String())
	}
	return p, nil
}

// markGone marks entry i of old and everything under it as gone.
func (p *recycledPlan) markGone(old *Manifest, i int) {
	e := &old.Entries[i]
	p.gone[e.Path] = true
	if e.Type != TypeDir {
		return
	}
	prefix := e.Path + "/"
	for j := i + 1; j < len(old.Entries) && strings.HasPrefix(old.Entries[j].Path, prefix); j++ {
		p.gone[old.Entries[j].Path] = true
	}
}

// apply takes the planned entries out of the tree at dir (into q) and
// gives the directories to fix the agent as owner (setDirModes sets their
// modes).
func (p *recycledPlan) apply(q *quarantine, dir string) error {
	for _, f := range p.remove {
		if err := q.takeOut(dir, f.Path); err != nil {
			return err
		}
	}
	for d := range p.fixDirs {
		if err := os.Lchown(entryPathRel(dir, d), int(agentUID), os.Getegid()); err != nil {
			return fmt.Errorf("repair %s: %w", d, err)
		}
	}
	return nil
}

func entryPathRel(dir, rel string) string { return entryPath(dir, &Entry{Path: rel}) }
