"""On-device latency: the timing protocol (torch-free), devices x engines x threads, remote
boards over SSH, and the program a board runs. Importing this package stays light: it is copied
to remote boards."""
