"""The Litestar HTTP API of the management server."""
