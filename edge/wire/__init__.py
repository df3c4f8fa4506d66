"""What the edge and central both speak: the wire contract, the MQTT link, settings, SQLite helpers, exports.

Nothing here imports `edge.vision` or `edge.daemon`: central installs without OpenCV or TFLite.
"""
