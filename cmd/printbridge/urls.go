package main

import (
	"fmt"
	"net/url"
	"strings"
)

// validateBrokerURLs rejects broker URLs that no retry can fix, so a typo
// fails at start instead of being retried forever.
func validateBrokerURLs(o busOptions) error {
	check := func(flag, raw string, schemes ...string) error {
		if raw == "" {
			return nil
		}
		for _, one := range strings.Split(raw, ",") {
			u, err := url.Parse(strings.TrimSpace(one))
			if err != nil || u.Host == "" {
				return fmt.Errorf("--%s: invalid URL %q: write it as %s://host:port", flag, redactURL(one), schemes[0])
			}
			ok := false
			for _, s := range schemes {
				if u.Scheme == s {
					ok = true
				}
			}
			if !ok {
				return fmt.Errorf("--%s: unsupported scheme %q in %q: use %s", flag, u.Scheme, redactURL(one), strings.Join(schemes, ", "))
			}
		}
		return nil
	}
	if err := check("mqtt", o.mqttURL, "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss"); err != nil {
		return err
	}
	return check("nats", o.natsURL, "nats", "tls", "ws", "wss")
}

// redactURL hides a password in a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.User == nil {
		if i := strings.Index(raw, "@"); i >= 0 {
			return "***" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}
