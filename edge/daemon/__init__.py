"""The device: the hourly tally, the local SQLite log, the MQTT uplink, and the daemon that runs them."""
