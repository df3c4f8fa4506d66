"""The `aicctv` command line: one module per command, each importing its stack only when it runs."""
