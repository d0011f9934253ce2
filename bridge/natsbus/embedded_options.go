package natsbus

// EmbeddedOptions configures an in-process nats-server.
type EmbeddedOptions struct {
	// Host is the listen address of both listeners, 127.0.0.1 when empty.
	Host string
	// Port is the NATS client port, or 0 for a free port.
	Port int
	// NoJetStream turns JetStream off. The MQTT listener needs JetStream,
	// so NoJetStream and MQTT exclude each other.
	NoJetStream bool
	// StoreDir is the JetStream directory. When empty, a temporary
	// directory is made and removed again by Shutdown.
	StoreDir string
	// MQTT turns on the MQTT 3.1.1 listener.
	MQTT bool
	// MQTTPort is the MQTT port, or 0 for a free port.
	MQTTPort int
	// ServerName is the server's name, which the MQTT listener needs. It
	// is "printbridge-embedded" when empty.
	ServerName string
}
