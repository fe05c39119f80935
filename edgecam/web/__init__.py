"""The web side: HTTP server, the MJPEG fan-out (``stream``), the auth gate (``auth``) and the password
file (``password``), the status schema (``status``), Prometheus metrics and the page (``static/``)."""
