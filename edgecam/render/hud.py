"""What an output frame shows: zones and lines under the boxes, the tracked boxes, and a HUD with the
model, its rung of the ladder and the rates. One ``Annotator`` per camera chain."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgecam.config.events import LineConfig, ZoneConfig
from edgecam.infer.result import OutputFrame
from edgecam.render.areas import draw_areas
from edgecam.render.overlay import draw_detections, draw_hud


@dataclass(frozen=True)
class HudInfo:
    """The numbers of the moment that the HUD prints (read once per annotated frame)."""

    rung: int  # 0-based position in the ladder
    rungs: int
    camera_fps: float
    inference_fps: float


def hud_lines(output: OutputFrame, info: HudInfo) -> list[str]:
    m = output.model
    device = "Edge TPU" if m.device == "edgetpu" else "CPU"
    model = f"{m.model_id} a{m.alpha:g}" if m.alpha else m.model_id
    return [
        f"{model} {device} rung {info.rung + 1}/{info.rungs}",
        f"camera {info.camera_fps:4.1f} fps  inference {info.inference_fps:4.1f} fps {output.inference_ms:4.0f} ms",
        f"{len(output.tracks)} object(s)",
    ]


class Annotator:
    def __init__(
        self,
        hud_info: Callable[[], HudInfo],
        zones: Sequence[ZoneConfig] = (),
        lines: Sequence[LineConfig] = (),
        area_state: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self._hud_info = hud_info
        self._zones = list(zones)
        self._lines = list(lines)
        self._area_state = area_state

    def __call__(self, output: OutputFrame) -> None:
        """Draw on ``output.image`` in place (the encoder calls this once per encoded frame)."""
        image = output.image
        draw_areas(image, self._zones, self._lines, self._area_state())
        draw_detections(image, output.tracks, ids=[t.id for t in output.tracks])
        draw_hud(image, hud_lines(output, self._hud_info()))
