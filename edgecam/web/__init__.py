"""The web side: JPEG broadcaster, HTTP server, status API and the page."""
