"""MQTT topic names, in one place (the publisher, Home Assistant discovery and the tests use these).

``<base>/<camera>/``
  ``availability``      ``online`` / ``offline``, retained; ``offline`` is also the Last Will
  ``events``            one JSON object per event (not retained)
  ``objects/<label>``   number of live tracks of that class, retained
  ``zones/<zone>``      ``{"occupancy": n, "classes": {label: n}}``, retained
  ``lines/<line>``      ``{"in": n, "out": n, "total": n, "classes": {label: {"in": n, "out": n}}}``, retained
  ``snapshot``          JPEG of the annotated frame when a track starts (optional), retained
Zone and line names appear slugged (``Front door`` → ``front_door``).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecam.config.events import slug


@dataclass(frozen=True)
class Topics:
    base: str
    camera: str

    @property
    def root(self) -> str:
        return f"{self.base}/{self.camera}"

    @property
    def availability(self) -> str:
        return f"{self.root}/availability"

    @property
    def events(self) -> str:
        return f"{self.root}/events"

    @property
    def snapshot(self) -> str:
        return f"{self.root}/snapshot"

    def objects(self, label: str) -> str:
        return f"{self.root}/objects/{slug(label)}"

    def zone(self, name: str) -> str:
        return f"{self.root}/zones/{slug(name)}"

    def line(self, name: str) -> str:
        return f"{self.root}/lines/{slug(name)}"
