"""The model ladder: which models (``select``), when to switch (``controller``, pure decisions), how to load
and swap them between frames (``switcher``), and the CPU accounting it judges load by (``cpuclock``)."""
