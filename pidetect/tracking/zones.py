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
from typing import Dict, List, Optional, Sequence, Tuple

from ..config_tables import ZoneSpec
from ..frames import Area
from ..geometry import Point, PolygonSet, bottom_centre
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
class PlacedZones:
    """The zones in the pixels of one frame size, ready for one vectorised inside test per frame."""

    polygons: Tuple[Tuple[Point, ...], ...]
    tester: PolygonSet


class Zones:
    def __init__(self, specs: Sequence[ZoneSpec] = ()):
        self.specs = tuple(specs)
        self._size: Tuple[int, int] = (0, 0)
        self._placed: Optional[PlacedZones] = None
        # (track_id, zone index) -> Presence; only for objects inside a zone, or counting in one
        self._presence: Dict[Tuple[int, int], Presence] = {}

    def __bool__(self) -> bool:
        return bool(self.specs)

    def placed(self, width: int, height: int) -> PlacedZones:
        """The zones in pixels of a width x height frame (computed again only when the size changes)."""
        if self._placed is None or self._size != (width, height):
            self._size = (width, height)
            polygons = tuple(spec.polygon.to_pixels(width, height) for spec in self.specs)
            self._placed = PlacedZones(polygons, PolygonSet(polygons))
        return self._placed

    def outside(self, width: int, height: int) -> Tuple[str, ...]:
        """Zones whose polygon lies wholly beyond a width x height picture: no object can ever stand there."""
        names = []
        for spec, polygon in zip(self.specs, self.placed(width, height).polygons):
            xs, ys = [x for x, _y in polygon], [y for _x, y in polygon]
            if min(xs) >= width or min(ys) >= height or max(xs) <= 0 or max(ys) <= 0:
                names.append(spec.name)
        return tuple(names)

    def update(self, tracks: Sequence[Track], width: int, height: int, clock: float) -> List[ZoneChange]:
        """Look at every track the tracker follows; the zone entries and exits of entered ones, in track and
        zone order."""
        placed = self.placed(width, height)
        tracks = list(tracks)
        by_id = {track.track_id: (order, track) for order, track in enumerate(tracks)}
        seen = [track for track in tracks if track.seen]
        centres = [bottom_centre(track.box) for track in seen]
        inside = placed.tester.inside([c[0] for c in centres], [c[1] for c in centres]) if seen else None
        looked = set()
        for row, track in enumerate(seen):
            for zone in inside[row].nonzero()[0].tolist():
                if not self.specs[zone].counts(track.label):
                    continue
                key = (track.track_id, zone)
                presence = self._presence.get(key)
                if presence is None:
                    presence = self._presence[key] = Presence()
                self._look(presence, self.specs[zone], True, clock)
                looked.add(key)
        changes: List[Tuple[int, int, ZoneChange]] = []
        for key in list(self._presence):
            track_id, zone = key
            entry = by_id.get(track_id)
            if entry is None:
                del self._presence[key]  # a candidate dropped without records (gone tracks went through leave())
                continue
            order, track = entry
            presence = self._presence[key]
            if track.seen and key not in looked:
                self._look(presence, self.specs[zone], False, clock)
            if track.entered and presence.counting != presence.announced:
                presence.announced = presence.counting
                changes.append((order, zone, ZoneChange("entered" if presence.counting else "left",
                                                        self.specs[zone].name, track)))
            if not presence.counting and not presence.announced and not presence.inside_run:
                del self._presence[key]  # outside and not counting: nothing to remember
        changes.sort(key=lambda item: (item[0], item[1]))
        return [change for _order, _zone, change in changes]

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
        return tuple(spec.name for zone, spec in enumerate(self.specs)
                     if (p := self._presence.get((track.track_id, zone))) is not None and p.announced)

    def leave(self, track: Track) -> List[ZoneChange]:
        """The track left the picture: 'left' for every zone it counted in; its presences are forgotten."""
        changes = [ZoneChange("left", name, track) for name in self.counting_in(track)]
        for zone in range(len(self.specs)):
            self._presence.pop((track.track_id, zone), None)
        return changes

    def reset(self) -> None:
        self._presence.clear()

    def areas(self, width: int, height: int) -> Tuple[Area, ...]:
        """Every zone's outline and how many objects count in it now (for the overlay)."""
        occupied = [0] * len(self.specs)
        for (_track_id, zone), presence in self._presence.items():
            occupied[zone] += presence.announced
        return tuple(Area("zone", spec.name, polygon, occupied[zone]) for zone, (spec, polygon)
                     in enumerate(zip(self.specs, self.placed(width, height).polygons)))
