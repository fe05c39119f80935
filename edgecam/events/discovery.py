"""Home Assistant MQTT discovery: one device per box, a binary sensor per class ("person detected"), a sensor
per zone (occupancy) and per line (crossings), all tied to the availability topic.

Configs are published retained under ``<prefix>/<component>/<node id>/<object id>/config`` on every
connect. See https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from edgecam import __version__
from edgecam.config.events import LineConfig, ZoneConfig, slug
from edgecam.events.topics import Topics


def discovery_messages(
    prefix: str,
    topics: Topics,
    classes: Iterable[str],
    zones: Iterable[ZoneConfig] = (),
    lines: Iterable[LineConfig] = (),
    configuration_url: str | None = None,
) -> list[tuple[str, bytes]]:
    """(topic, JSON payload) for every entity."""
    node = f"edgecam_{topics.camera}"
    device: dict[str, Any] = {
        "identifiers": [node],
        "name": f"edgecam {topics.camera}",
        "manufacturer": "edgecam",
        "model": "edgecam camera box",
        "sw_version": __version__,
    }
    if configuration_url:
        device["configuration_url"] = configuration_url
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    messages: list[tuple[str, bytes]] = []

    def add(component: str, object_id: str, config: dict[str, Any]) -> None:
        unique_id = f"{node}_{object_id}"
        # default_entity_id (HA 2025.10+; object_id is deprecated and ignored from 2026.4): the full entity id
        payload = {
            **config,
            "unique_id": unique_id,
            "default_entity_id": f"{component}.{unique_id}",
            **common,
        }
        topic = f"{prefix}/{component}/{node}/{object_id}/config"
        messages.append((topic, json.dumps(payload, separators=(",", ":")).encode()))

    for label in dict.fromkeys(classes):
        add(
            "binary_sensor",
            f"{slug(label)}_detected",
            {
                "name": f"{label.capitalize()} detected",
                "state_topic": topics.objects(label),
                "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
                "device_class": "occupancy",
            },
        )
    for zone in zones:
        add(
            "sensor",
            f"zone_{slug(zone.name)}_occupancy",
            {
                "name": f"{zone.name} occupancy",
                "state_topic": topics.zone(zone.name),
                "value_template": "{{ value_json.occupancy }}",
                "json_attributes_topic": topics.zone(zone.name),
                "json_attributes_template": "{{ value_json.classes | tojson }}",
                "unit_of_measurement": "objects",
                "state_class": "measurement",
                "icon": "mdi:account-group",
            },
        )
    for line in lines:
        add(
            "sensor",
            f"line_{slug(line.name)}_count",
            {
                "name": f"{line.name} crossings",
                "state_topic": topics.line(line.name),
                "value_template": "{{ value_json.total }}",
                "json_attributes_topic": topics.line(line.name),
                "unit_of_measurement": "crossings",
                "state_class": "total_increasing",
                "icon": "mdi:transit-transfer",
            },
        )
    return messages
