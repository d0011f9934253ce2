package mqtt

import "testing"

func TestTopicMatchesFilters(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"printbridge/p1/event/+", "printbridge/p1/event/ZChange", true},
		{"printbridge/+/event/+", "printbridge/p2/event/PrintDone", true},
		{"printbridge/+/event/+", "printbridge/p2/state", false},
		{"printbridge/+/event/+", "printbridge/p2/event/a/b", false},
		{"printbridge/#", "printbridge/p1/state", true},
		{"printbridge/#", "printbridge", true},
		{"printbridge/p1/state", "printbridge/p1/state", true},
		{"printbridge/p1/state", "printbridge/p1", false},
		{"#", "$SYS/broker/uptime", false},
		{"+/broker/uptime", "$SYS/broker/uptime", false},
	}
	for _, c := range cases {
		if got := topicMatches(c.filter, c.topic); got != c.want {
			t.Errorf("topicMatches(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestRouteOfStripsShare(t *testing.T) {
	cases := map[string]string{
		"$share/workers/printbridge/+/event/+": "printbridge/+/event/+",
		"printbridge/+/event/+":                "printbridge/+/event/+",
	}
	for filter, want := range cases {
		if got := routeOf(filter); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", filter, got, want)
		}
	}
}
