"""The executable specification of the pump controller and its plant: pure, deterministic, integer."""

from .alarms import AlarmCode, AlarmSettings, Priority
from .battery import BatterySpec
from .calibration import Mechanism
from .commands import *  # noqa: F401,F403 - the command and response vocabulary
from .controller import Controller, PumpConfig, PumpState
from .drug_library import DrugLibrary, DrugLimits
from .errors import CommandRefused, LimitExceeded, ModelError, NotAllowedNow, PrescriptionError, StateError
from .event_log import EventLog, LogCode, Record
from .step_scheduler import StepScheduler
from .units import TICK_HZ, TICKS_PER_DAY, TICKS_PER_HOUR, TICKS_PER_MINUTE
