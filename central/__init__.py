"""The central log: subscribes to every edge's MQTT topics and keeps one row per device-hour.

`central.subscriber.Subscriber` does the work, `central.store` keeps the log (SQLite or
PostgreSQL), and `edge.cli.central` adds `aicctv central run` and `aicctv central export`.
"""
