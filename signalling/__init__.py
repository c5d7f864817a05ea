"""The server process: aiohttp app factory, Socket.IO server and handlers, HTTP routes, the CLI (`python -m signalling`).

Handlers here parse and authorise input, call one domain function and emit or return what it decided.
"""
