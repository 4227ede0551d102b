//go:build !linux

package testbroker

import "errors"

type synDropper struct {
	addr string
}

func dropSYNs(int) (*synDropper, error) {
	return nil, errors.New("testbroker: a black hole needs Linux (a full accept queue drops SYNs)")
}

func (s *synDropper) Close() error { return nil }
