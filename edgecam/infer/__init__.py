"""The inference stage (``stage``: newest frame → detector → tracker) and what it hands on (``result``)."""
