package natsbus

import "time"

// SetJetStreamCheckEvery sets how often buses created afterwards check
// their JetStream stream, bucket and consumers, until the test ends.
func SetJetStreamCheckEvery(t interface{ Cleanup(func()) }, d time.Duration) {
	saved := jetStreamCheckEvery
	jetStreamCheckEvery = d
	t.Cleanup(func() { jetStreamCheckEvery = saved })
}

// StatusNamesSubject is statusNamesSubject for the external tests.
var StatusNamesSubject = statusNamesSubject
