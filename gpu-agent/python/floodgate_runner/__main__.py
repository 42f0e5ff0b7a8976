"""`python3 -m floodgate_runner`: the runner process (server.py)."""

from .server import main

main()
