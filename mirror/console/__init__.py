"""mirror at a terminal: the commands and their flags, exit codes, per-image lines, the live
progress display and the logging set-up.

May import: everything below it (mirror.service down to the shared leaves).
"""
