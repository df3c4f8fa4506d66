"""`aicctv edge aim`'s live preview: the frame loop (`live`), the drawing (`draw`), the running
summary (`summary`) and the localhost web server (`server`). `edge.cli.aim` is its command line."""
