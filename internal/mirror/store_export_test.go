package mirror

import "time"

// Hooks for the black-box tests of the store.

// SetRacyMargin changes how recent a file's ctime may be for the identity
// cache to trust it (2 s by default), so tests can publish files they
// have just written and still exercise the cache.
func SetRacyMargin(s *Store, d time.Duration) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.racyMargin = d
}

// SetReadHook makes publishes call hook(path) between opening a source
// file and reading it.
func SetReadHook(s *Store, hook func(path string)) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.testHookRead = hook
}

// DecodeCanonical is the fast path of DecodeManifest.
func DecodeCanonical(data []byte) (*Manifest, bool) {
	m, _, ok := decodeCanonical(data)
	return m, ok
}

// EntryOffsets returns where each entry's line starts in data, as the
// fast path of DecodeManifest finds them; nil if it refuses data.
func EntryOffsets(data []byte) []int {
	_, enc, ok := decodeCanonical(data)
	if !ok {
		return nil
	}
	return enc.off
}

// EncodeFrom returns a function that encodes a manifest by splicing the
// lines of the entries it shares with base from base's encoding, and
// returns where each entry starts.
func EncodeFrom(base *Manifest) func(m *Manifest) ([]byte, []int) {
	be := encodeManifest(base)
	return func(m *Manifest) ([]byte, []int) {
		enc := encodeFrom(base, be, m)
		return enc.data, enc.off
	}
}

// LastScan says how the last publish found the source: "full: <reason>"
// or "changes: <n paths>".
func LastScan(s *Store) string {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	return s.src.last
}

// PauseWatcher stops the store's watcher from reading events until the
// returned function is called, so that the kernel's queue can overflow.
func PauseWatcher(s *Store) (resume func()) {
	s.pubMu.Lock()
	w := s.src.watch
	s.pubMu.Unlock()
	w.mu.Lock()
	return w.mu.Unlock
}

// SetOpenHook makes publishes call hook(rel) before opening a source file.
func SetOpenHook(s *Store, hook func(rel string)) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.testHookOpen = hook
}

// UseOpenat2 switches between openat2 and the descriptor walk its absence
// falls back to; it returns a func restoring the previous choice.
func UseOpenat2(use bool) (restore func()) {
	prev := noOpenat2.Load()
	noOpenat2.Store(!use)
	return func() { noOpenat2.Store(prev) }
}
