"""The reference pump: the model and its plant, with the faults a test can inject, and no wire.

One class, two users: the emulated device serves it behind the protocol (hil.device), and the
scenario runner drives a second one beside the device under test as the prediction (hil.runner).
Because both go through the same methods, a fault means the same thing on the emulator and in the
prediction: an occlusion injected with the start tick of one already known re-times its end (that
is how an open-ended occlusion is cleared); a battery drain and a reset happen at a tick not in
the past; a reset loses the controller's RAM and rebuilds it from the event log, as a firmware
restarts, while the plant (the world outside) runs on.

`controller_type` lets an emulator run another controller (a firmware variant) behind the same
wire, which is how the tests build deliberately wrong devices.
"""

from __future__ import annotations

from firmware_model.commands import Command, Response, StatusReport
from firmware_model.controller import Controller, PumpConfig
from firmware_model.errors import LimitExceeded
from firmware_model.event_log import EventLog
from firmware_model.plant import Jam, MriExposure, Occlusion, Plant, PlantParams


def declared_pump(config: PumpConfig, plant_params: PlantParams, seed: int) -> "ReferencePump":
    """The model a rig's device is judged against: the rig's declared pump, calibration and patient
    (RigConfig.pump, .plant_params, .plant_seed)."""
    return ReferencePump(config, Plant(plant_params, seed=seed, stroke_nl=config.mechanism.stroke_nl))


def schedule_occlusion(plant: Plant, occlusion: Occlusion) -> None:
    """An occlusion on `plant`; one with the start tick of a known one re-times its end (how an
    open-ended occlusion is cleared). The emulator, the model and a bench fixture all use this."""
    known = next((o for o in plant.occlusions if o.start_tick == occlusion.start_tick), None)
    if known is None:
        plant.add_occlusion(occlusion)
    elif known.factor != occlusion.factor:
        raise LimitExceeded("occlusion.factor", occlusion.factor,
                            f"{known.factor}, the factor of the occlusion injected from {known.start_tick} "
                            "(a repeated start_tick re-times its end only)")
    else:
        plant.set_occlusion_end(occlusion.start_tick, occlusion.end_tick)


class ReferencePump:
    """A pump of `config` in a patient (`plant`; default an open catheter, seed 0)."""

    def __init__(self, config: PumpConfig | None = None, plant: Plant | None = None,
                 controller_type: type[Controller] = Controller) -> None:
        self.config = config or PumpConfig()
        self.plant = plant if plant is not None else Plant(stroke_nl=self.config.mechanism.stroke_nl)
        self.controller_type = controller_type
        self.controller = controller_type(self.config, self.plant)
        self.resets = 0

    @property
    def now(self) -> int:
        """The pump's present tick."""
        return self.controller.state.tick

    def status(self) -> StatusReport:
        return self.controller.status()

    def handle(self, command: Command) -> list[Response]:
        """Run a command now; its responses (a refusal raises the model's CommandRefused)."""
        responses = self.controller.handle(command, self.now)
        self.controller.advance(self.now)  # drain the events the command caused
        return responses

    def advance_to(self, tick: int) -> None:
        """Run the pump to `tick` (an earlier one is ignored: time only moves forward)."""
        if tick > self.now:
            self.controller.advance(tick)

    def outflow_nl(self) -> int:
        """What has left the catheter tip by now: what a balance under the tip collects."""
        return self.plant.outflow_nl_at(self.now)

    # ---- faults ---------------------------------------------------------------------------------

    def occlusion(self, occlusion: Occlusion) -> None:
        """A catheter occlusion; one with the start tick of a known one re-times its end."""
        schedule_occlusion(self.plant, occlusion)

    def mri(self, exposure: MriExposure) -> None:
        """An MRI scan whose magnet holds the rotor (and whose field reaches the telemetry)."""
        self.plant.add_mri(exposure)

    def stall(self, jam: Jam) -> None:
        """A mechanically jammed rotor."""
        self.plant.add_jam(jam)

    def battery_drain(self, at_tick: int, charge_nc: int) -> None:
        """Draw `charge_nc` from the battery at `at_tick` (run there first)."""
        self.check_not_past("at_tick", at_tick)
        self.advance_to(at_tick)
        self.controller.drain_battery(charge_nc, at_tick)

    def reset(self, at_tick: int | None = None) -> None:
        """A processor reset at `at_tick` (default now): RAM lost, state rebuilt from the log in flash."""
        tick = self.now if at_tick is None else at_tick
        self.check_not_past("at_tick", tick)
        self.advance_to(tick)
        self.restart(EventLog.from_bytes(self.controller.log.to_bytes()), tick)
        self.resets += 1

    def restart(self, flash: EventLog, tick: int) -> None:
        """Power up at `tick` with `flash` as the event log (Controller.rebuild), as after a reset."""
        self.controller = self.controller_type.rebuild(self.config, flash, tick, self.plant)
        self.controller.advance(tick)  # drain the POWER_ON event

    def check_not_past(self, field: str, tick: int) -> None:
        if tick < self.now:
            raise LimitExceeded(field, tick, f">= the present tick {self.now} (time only moves forward)")
