"""One daemon's program taking over from the one a previous daemon left enforcing.

With a pin directory the program outlives the daemon (see bpf/pins.py):
each start loads a new generation, fills its maps, and only then puts it in
force and lets the previous generation go, so that there is no moment when
neither decides.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enforcer.bpf.pins import PinDir
from enforcer.service.protocol import Persistence

if TYPE_CHECKING:  # imported where used: it loads the BPF program's modules
    from enforcer.bpf.program import ExecProgram

log = logging.getLogger(__name__)


@dataclass
class Handover:
    """This run's generation of the pinned program, and whether it is the one in force."""

    generation: int = 0
    persistent: bool = False  # the program's links are pinned: it outlives us
    took_over: bool = False  # this daemon's generation is the one in force

    def prepare(self, program: ExecProgram, pins: PinDir, stack: ExitStack, keep: bool) -> None:
        """Makes the new program the next generation, ready to follow new cgroups."""
        previous = program.held.live_generation()
        pins.remove_links(keep=previous)  # from a start that died before taking over
        # A reused program stays the generation it was: there is no handover.
        self.generation = previous if program.reused else previous + 1
        program.held.prepare_generation(self.generation)
        if not keep:
            stack.callback(self._unpin, pins)

    def take_over(self, program: ExecProgram, pins: PinDir, hold_grace_s: float) -> None:
        """Puts this generation in force (its maps are full), then lets the old one go."""
        if program.links:
            pins.pin_links(self.generation, program.links, program.generation_maps(), program.key)
            self.persistent = True
        elif program.reused:
            self.persistent = True  # its links are pinned already
        program.held.take_over(self.generation)
        self.took_over = True
        replaced = pins.remove_links(keep=self.generation)
        if replaced:
            log.info("took over from the program a previous daemon left enforcing")
        unheld = program.held.unheld_execs()
        if unheld:
            log.warning(
                "%d execs in new cgroups ran unchecked: they started while no daemon had been "
                "alive for %.0f s (--hold-grace)", unheld, hold_grace_s,
            )  # fmt: skip

    def persistence(self, keep_on_exit: bool) -> Persistence:
        return Persistence(
            generation=self.generation,
            outlives_daemon=self.persistent,
            keep_on_exit=keep_on_exit,
        )

    def _unpin(self, pins: PinDir) -> None:
        if not self.took_over:
            return  # the generation in force is another daemon's: it goes on
        pins.remove_links()
        self.persistent = False
