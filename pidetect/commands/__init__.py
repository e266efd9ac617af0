"""The commands of `pidetect`, one module per kind: the daemon's, detect, and the offline tools. cli.py parses
the command line and hands each command its arguments."""
