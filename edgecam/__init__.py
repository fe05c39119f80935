"""edgecam: detect, track and stream objects from a Raspberry Pi camera."""

__version__ = "0.1.0"
