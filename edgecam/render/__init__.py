"""The output side: drawing (``overlay``, ``areas``, ``hud``) and the JPEG encoder that hands each output
frame's bytes to any number of sinks (``encoder``)."""
