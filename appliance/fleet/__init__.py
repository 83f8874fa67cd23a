"""Fleet over MQTT: health, events, commands, remote config, durable outbox."""
