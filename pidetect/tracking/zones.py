"""Zones: which tracked objects count as being in which named area.

An object is in a zone when the bottom centre of its box (where it stands) is inside the zone's
polygon. It starts counting there after `inertia` looks in a row inside (and, with
`loiter_seconds`, once it has stood inside that long), and stops after `inertia` looks in a row
outside, or when it leaves the picture: the same hysteresis both ways, so an object standing on
the border does not flap in and out. A look is a frame in which the tracker matched the object (a
frame that missed it says nothing about where it is). Only the labels a zone lists count in it.

Zones are told about every track, candidates too, so an object that stood in a zone before it
became an event counts there from the frame it is 'entered'. Changes are reported only for
entered tracks: a candidate has no records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..config_tables import ZoneSpec
from ..frames import Area
from ..geometry import Point, bottom_centre, bounds, contains
from .tracker import Track


@dataclass
class Presence:
    """One object and one zone."""

    inside_run: int = 0  # looks in a row with the bottom centre inside
    outside_run: int = 0
    since: Optional[float] = None  # clock of the first look of the current inside run
    counting: bool = False
    announced: bool = False  # 'entered' was reported (and 'left' is owed)


@dataclass(frozen=True)
class ZoneChange:
    state: str  # "entered" | "left"
    zone: str
    track: Track


@dataclass(frozen=True)
class PlacedZone:
    """A zone in the pixels of one frame size."""

    spec: ZoneSpec
    polygon: Tuple[Point, ...]
    box: Tuple[float, float, float, float]  # its bounds: most points are rejected without the polygon test


class Zones:
    def __init__(self, specs: Sequence[ZoneSpec] = ()):
        self.specs = tuple(specs)
        self._size: Tuple[int, int] = (0, 0)
        self._placed: Tuple[PlacedZone, ...] = ()
        self._presence: Dict[Tuple[int, str], Presence] = {}

    def __bool__(self) -> bool:
        return bool(self.specs)

    def placed(self, width: int, height: int) -> Tuple[PlacedZone, ...]:
        """The zones in pixels of a width x height frame (computed again only when the size changes)."""
        if self._size != (width, height):
            self._size = (width, height)
            self._placed = tuple(PlacedZone(spec, pixels, bounds(pixels)) for spec, pixels in
                                 ((spec, spec.polygon.to_pixels(width, height)) for spec in self.specs))
        return self._placed

    @staticmethod
    def inside(zone: PlacedZone, x: float, y: float) -> bool:
        left, top, right, bottom = zone.box
        return left <= x <= right and top <= y <= bottom and contains(zone.polygon, x, y)

    def update(self, tracks: Iterable[Track], width: int, height: int, clock: float) -> List[ZoneChange]:
        """Look at every track the tracker follows; the zone entries and exits of entered ones, in zone order."""
        changes: List[ZoneChange] = []
        alive = set()
        placed = self.placed(width, height)
        for track in tracks:
            x, y = bottom_centre(track.box)
            for zone in placed:
                spec = zone.spec
                if not spec.counts(track.label):
                    continue
                key = (track.track_id, spec.name)
                alive.add(key)
                presence = self._presence.get(key)
                if presence is None:
                    presence = self._presence[key] = Presence()
                if track.seen:
                    self._look(presence, spec, self.inside(zone, x, y), clock)
                if track.entered and presence.counting != presence.announced:
                    presence.announced = presence.counting
                    changes.append(ZoneChange("entered" if presence.counting else "left", spec.name, track))
        for key in [key for key in self._presence if key not in alive]:
            del self._presence[key]  # candidates dropped without records; gone tracks were handled by leave()
        return changes

    @staticmethod
    def _look(presence: Presence, spec: ZoneSpec, inside: bool, clock: float) -> None:
        if inside:
            presence.inside_run, presence.outside_run = presence.inside_run + 1, 0
            if presence.since is None:
                presence.since = clock
            if not presence.counting and presence.inside_run >= spec.inertia and \
                    clock - presence.since >= spec.loiter_seconds - 1e-9:
                presence.counting = True
        else:
            presence.outside_run, presence.inside_run = presence.outside_run + 1, 0
            if not presence.counting:
                presence.since = None
            elif presence.outside_run >= spec.inertia:
                presence.counting, presence.since = False, None

    def counting_in(self, track: Track) -> Tuple[str, ...]:
        """The zones an entered track counts in (and was announced in), in zone order."""
        return tuple(spec.name for spec in self.specs
                     if (p := self._presence.get((track.track_id, spec.name))) is not None and p.announced)

    def leave(self, track: Track) -> List[ZoneChange]:
        """The track left the picture: 'left' for every zone it counted in; its presences are forgotten."""
        changes = [ZoneChange("left", name, track) for name in self.counting_in(track)]
        for spec in self.specs:
            self._presence.pop((track.track_id, spec.name), None)
        return changes

    def reset(self) -> None:
        self._presence.clear()

    def areas(self, width: int, height: int) -> Tuple[Area, ...]:
        """Every zone's outline and how many objects count in it now (for the overlay)."""
        occupied: Dict[str, int] = {}
        for (_track_id, name), presence in self._presence.items():
            if presence.announced:
                occupied[name] = occupied.get(name, 0) + 1
        return tuple(Area("zone", zone.spec.name, zone.polygon, occupied.get(zone.spec.name, 0))
                     for zone in self.placed(width, height))
