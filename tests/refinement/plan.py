"""The plan of a race run: everything the run will do that its seed decides, drawn before it starts.

A run (runner.py) sets up two files of one device, each mapping SHAPE_2, touches them a few times in
lockstep, then lets its threads race: touchers touch units of those mappings, the admin thread
disables (and, modern, enables) the device, a closer may close one of the files, and a user thread
may open the device, map SHAPE_2, unmap it and close, while a user toucher touches that mapping.
The plan fixes the sequential setup touches, each thread's actions and the pauses before them; the
interleaving is the OS's (free-running) or the scheduler's (scheduled), never the plan's.

The draws are in one fixed order from ``random.Random(seed)``, so a seed names one plan for as long
as this order is kept: a rejected run's replay command (trace.Run.rerun) relies on it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: the setup opens two files and maps each once: the touchers' choice of file and vma is among these
SETUP_FILES = 2


@dataclass(frozen=True)
class Plan:
    #: lockstep touches before the race: (file, unit, write)
    setup_touches: list[tuple[int, int, bool]]
    #: per toucher: (setup vma index, unit, write, pause before) per touch
    touches: list[list[tuple[int, int, bool, float]]]
    #: the admin thread's actions: (disable | enable, pause before)
    admin: list[tuple[str, float]]
    #: the closer's pause before it closes; None: no closer
    close_at: float | None
    #: the file the closer closes: an index into the setup files' names, sorted
    close_target: int
    #: the user thread's pauses (before open, mmap, munmap, close); None: no user thread
    user: list[float] | None
    #: the user toucher's touches of the user's mapping: (unit, write, pause before)
    user_touches: list[tuple[int, bool, float]]
    #: the user opens and maps before the race (so its mapping mostly exists when the admin acts),
    #: and only its munmap and close race
    user_early: bool
    #: the user closes its fd before the munmap: the munmap is the file's last reference
    close_first: bool

    @classmethod
    def draw(
        cls,
        seed: int,
        profile: str,
        touchers: int = 2,
        touches: int = 3,
        users: bool = True,
        force_user: bool = False,
    ) -> Plan:
        """The plan of seed ``seed``; the user thread comes in 7 of 10 seeds (``users``), always
        with ``force_user``."""
        rng = random.Random(seed)
        setup = [
            (rng.randrange(SETUP_FILES), rng.randrange(2), rng.random() < 0.5)
            for _ in range(rng.randrange(3))
        ]
        plan_t = [
            [
                (rng.randrange(SETUP_FILES), rng.randrange(2), rng.random() < 0.4, rng.random() * 3e-4)
                for _ in range(touches)
            ]
            for _ in range(touchers)
        ]
        admin = [("disable", rng.random() * 6e-4)]
        if profile == "modern" and rng.random() < 0.7:
            admin.append(("enable", rng.random() * 3e-4))
        close_at = rng.random() * 8e-4 if rng.random() < 0.5 else None
        close_target = rng.randrange(SETUP_FILES)
        user = (
            [rng.random() * 4e-4 for _ in range(4)] if users and (rng.random() < 0.7 or force_user) else None
        )
        # the user toucher's first touch comes soon after the mmap, so that the munmap after the
        # user's pause often meets its fault
        uplan = [
            (rng.randrange(2), rng.random() < 0.4, rng.random() * (1e-4 if k == 0 else 4e-4))
            for k in range(2)
        ]
        user_early = rng.random() < 0.5
        close_first = rng.random() < 0.3
        return cls(setup, plan_t, admin, close_at, close_target, user, uplan, user_early, close_first)
