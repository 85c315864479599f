package cluster

// Target is the revision every web node serves: a seq and an id.
type Target struct {
	Seq uint64
	ID  string
}

// targetWire is the target register's value: {"seq":N,"id":"<hex>"}.
type targetWire struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
}

// Target returns the cluster target; false when none was ever set.
func (s *State) Target() (Target, bool) {
	var w targetWire
	if _, ok := s.get(keyTarget, &w); !ok || w.ID == "" {
		return Target{}, false
	}
	return Target(w), true
}

// SetTarget makes t the cluster target.
func (s *State) SetTarget(t Target) error {
	_, err := s.set(keyTarget, targetWire(t))
	return err
}
