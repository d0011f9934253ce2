//go:build !linux

package residency

func dropStartupPages() (Dropped, error) { return Dropped{}, nil }
