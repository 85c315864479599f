package cluster

// Target is the revision every web node serves: a seq and an id.
type Target struct {
	Seq uint64
	ID  string
	// SetBy is the node that wrote it, filled when read.
	SetBy string
}

// targetWire is the target register's value: {"seq":N,"id":"<hex>"}.
type targetWire struct {
	Seq uint64 `json:"seq"`
	ID  string `json:"id"`
}

// Target returns the cluster target; false when none was ever set.
func (s *State) Target() (Target, bool) {
	var w targetWire
	reg, ok := s.get(keyTarget, &w)
	if !ok || w.ID == "" {
		return Target{}, false
	}
	return Target{Seq: w.Seq, ID: w.ID, SetBy: reg.Node}, true
}

// SetTarget makes t the cluster target.
func (s *State) SetTarget(t Target) error {
	_, err := s.set(keyTarget, targetWire{Seq: t.Seq, ID: t.ID})
	return err
}
