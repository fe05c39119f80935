"""The model ladder: which models (``select``), when to switch (``controller``, pure decisions), how to load
and swap them between frames (``switcher``). The CPU accounting it judges load by is measured around each
invoke by the detector (``edgecam.detect.cpuclock``)."""
