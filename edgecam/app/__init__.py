"""The running box: the pipeline (wiring and lifecycle), the supervisor (one watchdog that restarts stuck
stages and feeds systemd's), the systemd glue and ``edgecam doctor``."""
