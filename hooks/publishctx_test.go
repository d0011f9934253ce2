package hooks

import (
	"context"
	"errors"
	"testing"
	"time"
)

type contextKey struct{}

func TestLazyTimeoutContextEndsAtDeadline(t *testing.T) {
	parent := context.WithValue(context.Background(), contextKey{}, "value")
	ctx := newLazyTimeoutContext(parent, time.Millisecond)
	defer ctx.stop()
	if d, ok := ctx.Deadline(); !ok || d.IsZero() {
		t.Errorf("Deadline = %v, %v, want a deadline", d, ok)
	}
	if got := ctx.Value(contextKey{}); got != "value" {
		t.Errorf("Value = %v, want the parent's value", got)
	}
	<-ctx.Done()
	if err := ctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err after the deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestLazyTimeoutContextStopBeforeUse(t *testing.T) {
	ctx := newLazyTimeoutContext(context.Background(), time.Hour)
	ctx.stop()
	select {
	case <-ctx.Done():
	default:
		t.Fatal("Done is not closed after stop")
	}
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after stop = %v, want context.Canceled", err)
	}
}

func TestLazyTimeoutContextStopAfterUse(t *testing.T) {
	ctx := newLazyTimeoutContext(context.Background(), time.Hour)
	if err := ctx.Err(); err != nil {
		t.Fatalf("Err before the deadline = %v, want nil", err)
	}
	done := ctx.Done()
	ctx.stop()
	<-done
	if err := ctx.Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("Err after stop = %v, want context.Canceled", err)
	}
}
