/* The pump controller in C: firmware_model/controller.py (and its leaves) as a firmware runs it.
 *
 * One static pump, no heap, integer only. The host moves time (lockstep: AdvanceTime); a bench
 * fixture feeds the sensors: a pressure sample for every stroke that lands (the firmware asks for
 * the ticks of its next strokes and the fixture answers with the plant's samples), and two lines,
 * "rotor held" (step feedback: no stroke lands) and "EMI" (a scanner's field on the telemetry coil),
 * each a level that changes at a tick the fixture announces ahead.
 *
 * Split in three files behind this one header:
 *   pump_engine.c   time, motor, events, alarms, battery, detector, fluid path, event log, reset
 *   pump_commands.c the command handlers (validate, then apply), the drug library, status
 *   pump_wire.c     command payloads in, answer payloads out (docs/protocol.md layouts)
 * device.c (the link) calls only the functions under "public API".
 *
 * Exactness: every state variable a host can observe (status, telemetry, log codes and ticks,
 * answers, refusal reasons and fields) equals the model's, tick for tick. Where the model needs
 * numbers past 2^64 the code splits the product (see step_scheduler.h); there is no __int128 on
 * a Cortex-M3. */
#ifndef ITHIL_PUMP_H
#define ITHIL_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "step_scheduler.h"

/* ---- the declared pump (rigs/qemu-m3/rig.toml [pump] [mechanism]; firmware_model defaults) ---- */
#define PUMP_TICK_HZ 32768ull
#define PUMP_TICKS_PER_MINUTE (60ull * PUMP_TICK_HZ)
#define PUMP_TICKS_PER_HOUR (3600ull * PUMP_TICK_HZ)
#define PUMP_TICKS_PER_DAY (86400ull * PUMP_TICK_HZ)
#define PUMP_NL_PER_ML 1000000ll

#define PUMP_RESERVOIR_CAPACITY_NL 20000000ll
#define PUMP_LOW_RESERVOIR_NL 2000000ll
#define PUMP_LOW_RESERVOIR_MIN_NL 1000000ll
#define PUMP_LOW_RESERVOIR_MAX_NL 5000000ll
#define PUMP_EMPTY_RESERVOIR_NL 1000000ll
#define PUMP_REFILL_DISCREPANCY_NL 1000000ll /* 20 mL pump */
#define PUMP_MAX_FLEX_STEPS 24
#define PUMP_STALL_DETECT_STEPS 3
#define PUMP_STALL_RETRY_TICKS (2ull * PUMP_TICKS_PER_HOUR)

#define PUMP_STROKE_NL 250ll
#define PUMP_MIN_RATE_NL_PER_DAY 48000ll
#define PUMP_MAX_RATE_NL_PER_DAY 24000000ll
#define PUMP_SAFE_RATE_NL_PER_DAY 6000ll
#define PUMP_FLUID_PATH_NL (220000ll + 150000ll) /* pump tubing + catheter */

/* battery.BatterySpec */
#define BATTERY_CAPACITY_NC 985000000000ll
#define BATTERY_STEP_CHARGE_NC 50000ll
#define BATTERY_QUIESCENT_NC_PER_DAY 340000000ll
#define BATTERY_ERI_RESERVE_NC 40000000000ll
#define BATTERY_ERI_TO_EOS_TICKS (90ull * PUMP_TICKS_PER_DAY)
#define BATTERY_MAX_SERVICE_TICKS (2557ull * PUMP_TICKS_PER_DAY)

/* event_log: 32-byte records in a ring (DEFAULT_CAPACITY 8192 = 256 KiB) */
#define LOG_CAPACITY 8192u
#define LOG_RECORD_SIZE 32u
#define PUMP_CHECKPOINT_RECORDS (LOG_CAPACITY / 4u)

/* occlusion.DetectorSettings defaults */
#define DETECTOR_THRESHOLD_PA 40000
#define DETECTOR_RISE_PA 5000
#define DETECTOR_RISE_STEPS 64
#define DETECTOR_CUSUM_KAPPA_PA 40
#define DETECTOR_CUSUM_CLIP_PA 250
#define DETECTOR_CUSUM_H_PA 1000
#define DETECTOR_DEFICIT_NL 10000
#define DETECTOR_DEFICIT_STEPS 400
#define DETECTOR_COMPLIANCE_NL_PER_KPA 2000
#define DETECTOR_HISTORY 400 /* max(rise_steps, deficit_steps) */

/* ---- enumerations (the model's values; never renumber) ---------------------------------------- */
enum { MODE_STOPPED = 0, MODE_CONTINUOUS = 1, MODE_FLEX = 2, MODE_MINIMUM_RATE = 3 };
enum { BOLUS_NONE = 0, BOLUS_CLINICIAN = 1, BOLUS_PATIENT = 2, BOLUS_PRIMING = 3, BOLUS_BRIDGE = 4 };
enum { DENY_NOT_CONFIGURED = 1, DENY_LOCKOUT = 2, DENY_DAILY_COUNT = 3, DENY_DAILY_DOSE = 4,
       DENY_BOLUS_IN_PROGRESS = 5, DENY_DELIVERY_STOPPED = 6, DENY_THERAPY_STOPPED = 7 };
enum { ALARM_NONE = 0, ALARM_RESERVOIR_LOW = 1, ALARM_RESERVOIR_EMPTY = 2, ALARM_ELECTIVE_REPLACEMENT = 3,
       ALARM_END_OF_SERVICE = 4, ALARM_REFILL_DISCREPANCY = 5, ALARM_OCCLUSION = 6, ALARM_MOTOR_STALL = 7,
       ALARM_CODES = 8 };
enum { PRIORITY_NON_CRITICAL = 1, PRIORITY_CRITICAL = 2 };
enum { RULE_NONE = 0, RULE_THRESHOLD = 1, RULE_RISE = 2, RULE_CUSUM = 3, RULE_VOLUME_DEFICIT = 4 };
enum {
    LOG_POWER_ON = 1, LOG_CHECKPOINT = 2, LOG_COMMAND = 3,
    LOG_PROGRAM_CHANGED = 10, LOG_SOFT_LIMIT = 11, LOG_REFILL = 12, LOG_DRUG_CHANGED = 13, LOG_CLOCK_SET = 14,
    LOG_BOLUS_STARTED = 20, LOG_BOLUS_COMPLETED = 21, LOG_BOLUS_HALTED = 22,
    LOG_PATIENT_BOLUS_GRANTED = 23, LOG_PATIENT_BOLUS_DENIED = 24,
    LOG_ALARM_ON = 30, LOG_ALARM_OFF = 31, LOG_ALARM_ACK = 32,
    LOG_DELIVERY_STOPPED = 40, LOG_DELIVERY_RESUMED = 41,
    LOG_STALL = 50, LOG_STALL_RECOVERED = 51, LOG_OCCLUSION_DETECTED = 52, LOG_TELEMETRY_MODE = 53,
    LOG_INTERROGATION = 54, LOG_BATTERY_DRAIN = 56,
};
/* protocol.enums.NakReason values a command refusal uses */
enum { REFUSE_LIMIT_EXCEEDED = 7, REFUSE_NOT_ALLOWED_NOW = 12, REFUSE_MALFORMED = 11 };

/* ---- state: controller.PumpState, field for field where a host can see it ---------------------- */
typedef struct { int64_t volume_nl; int64_t concentration_ug_per_ml; } pump_segment_t;
/* The fluid path's segments (tip first) as a ring. Every push is whole strokes and the path holds
 * PUMP_FLUID_PATH_NL, so it never holds more than this many segments: the model's deque, exactly. */
#define PUMP_PATH_SEGMENTS (PUMP_FLUID_PATH_NL / PUMP_STROKE_NL + 1)

typedef struct { uint8_t code, condition, acknowledged; uint64_t raised_tick; } pump_alarm_t;

typedef struct { uint8_t kind; int64_t steps_total, steps_done; uint32_t increment; } pump_bolus_t;
/* next_start_tick saturates at UINT64_MAX (the model's may pass 2^64 with a huge period; it is never
 * reached before end of service, which clears the plan) */
typedef struct { int64_t steps; uint32_t increment; uint64_t period_ticks; int64_t starts_left; /* -1: forever */
                 uint64_t next_start_tick; } pump_plan_t;
typedef struct { int64_t steps; uint32_t increment; uint64_t lockout_ticks; int64_t max_per_day; } pump_patient_t;
typedef struct { int64_t steps_left; int64_t old_concentration_ug_per_ml; } pump_bridge_t;
/* The model's bolus_starts list [(tick, kind, dose pg)] of the rolling 24 h, kept as runs: `count`
 * starts of one kind and dose at first_tick, first_tick + period, ... (a periodic clinician bolus
 * may start thousands of times a day; its starts are one run). */
typedef struct { uint64_t first_tick, period; uint32_t count; uint8_t kind; int64_t dose_pg; } pump_bolus_run_t;
#define PUMP_BOLUS_RUNS 96

typedef struct { uint64_t start_tick; int64_t rate_nl_per_day; } pump_flex_step_t;

typedef struct {
    uint64_t tick;
    uint64_t clock_offset_ticks;
    uint8_t mode;
    int64_t continuous_rate_nl_per_day;
    uint8_t flex_count;
    pump_flex_step_t flex[PUMP_MAX_FLEX_STEPS];
    int8_t drug_index;                 /* -1: no drug (the model's drug == "") */
    int64_t concentration_ug_per_ml;
    int64_t reservoir_nl, low_reservoir_nl, filled_nl, withdrawn_nl;
    int64_t delivered_nl;
    int64_t dose_at_tip_pg;
    uint16_t path_head, path_count;    /* segments path[(path_head + i) % PUMP_PATH_SEGMENTS], tip first */
    pump_segment_t path[PUMP_PATH_SEGMENTS];
    step_scheduler_t basal, bolus;     /* their steps/tick fields as the model's StepScheduler */
    uint8_t has_active_bolus, has_suspended_bolus, has_plan, has_patient, has_bridge;
    pump_bolus_t active_bolus, suspended_bolus;
    pump_plan_t plan;
    pump_patient_t patient;
    pump_bridge_t bridge;
    uint8_t bolus_run_count;
    pump_bolus_run_t bolus_runs[PUMP_BOLUS_RUNS];
    uint8_t alarm_count;               /* active alarms in the order raised */
    pump_alarm_t alarms[ALARM_CODES];
    int64_t steps_total;
    uint8_t has_eri; uint64_t eri_tick;
    uint8_t eos;
    int64_t boluses_granted, boluses_denied;
    uint8_t has_occlusion_found; uint8_t occlusion_rule; int32_t occlusion_pressure_pa;
    int64_t steps_since_resume;
    int64_t missed_steps;
    uint8_t has_stall; uint64_t stall_tick; uint64_t stall_retry_tick;
    uint8_t telemetry_mode, telemetry_latched;
    int64_t battery_drained_nc;        /* saturates at 2^62: any drain past the capacity looks the same */
    uint32_t records_since_checkpoint; /* counted as the model counts its records (see pump_log_command) */
    /* ---- volatile: not in a checkpoint (a reset starts them afresh) ---- */
    /* the occlusion detector: ring of the last DETECTOR_HISTORY samples and the CUSUM */
    uint16_t history_count, history_head;  /* history_head: slot of the next sample */
    int32_t history_pa[DETECTOR_HISTORY];
    int64_t cusum_pa;
    /* Controller._quiet_cache: (threshold, tick) before which the battery cannot reach it */
    uint8_t has_quiet; int64_t quiet_threshold_nc; uint64_t quiet_tick;
} pump_state_t;

/* ---- the sensors, as the bench fixture feeds them --------------------------------------------- */
typedef struct { uint64_t tick; int32_t pressure_pa; } pump_sample_t;
typedef struct { uint64_t tick; uint8_t rotor_held, emi; } pump_line_t;
#define PUMP_FEED_MAX 120  /* samples per feed, and stroke ticks per request (protocol MAX_FIXTURE_SAMPLES) */
#define PUMP_LINES_MAX 8   /* line changes announced ahead */

typedef struct {
    pump_sample_t samples[PUMP_FEED_MAX];
    uint8_t count, next;                /* samples[next..count) not yet used */
    uint8_t used;                       /* used from the latest feed (told back to the fixture) */
    pump_line_t lines[PUMP_LINES_MAX];  /* level changes ahead, in tick order */
    uint8_t line_count;
    uint8_t rotor_held, emi;            /* the levels now */
} pump_sensors_t;

/* ---- the event log ring, in a flash region that survives a reset ------------------------------ */
typedef struct {
    uint32_t magic;                     /* LOG_MAGIC when the ring below is valid */
    uint32_t next_seq;                  /* sequence number of the next record (also its slot) */
    uint32_t overwritten;
    uint8_t ring[LOG_CAPACITY][LOG_RECORD_SIZE];
} pump_log_t;
#define LOG_MAGIC 0x474F4C49u           /* "ILOG" */

#define PUMP_SCRATCH 32768u              /* a checkpoint's bytes (about 3 KiB; 26 KiB with a full fluid path) */

typedef struct {
    pump_state_t st;
    pump_sensors_t sensors;
    pump_log_t *log;                    /* in .noinit on the board (survives a reset) */
    uint8_t replaying;                  /* rebuild: commands replayed with no plant, records not written */
    uint32_t checkpoint_seq;            /* sequence number of the newest checkpoint's first record */
    uint64_t want_test_tick;            /* a stall retry's test stroke waiting for its sample */
    uint8_t owed; uint64_t owed_tick;   /* a test stroke made with no sample (in a command's settle) */
    uint8_t span_active;                /* inside a span (between two event ticks), waiting for samples */
    uint64_t span_end;                  /* the span's event tick */
    uint8_t scratch[PUMP_SCRATCH];
} pump_t;

/* ---- a command's outcome ---------------------------------------------------------------------- */
#define PUMP_ANSWERS_MAX 2
#define PUMP_SOFT_FLAGS_MAX 4
typedef struct {
    uint8_t refused;                    /* nonzero: a Nak, nothing changed */
    uint8_t reason;                     /* REFUSE_* (protocol NakReason) */
    char field[65], value[65], expected[256];
} pump_refusal_t;

/* ---- public API (device.c) -------------------------------------------------------------------- */

/* Power on at `tick` over `log`: an invalid ring (no LOG_MAGIC) is a new implant (erase, POWER_ON,
 * checkpoint; the sensors start at rotor free, no EMI, p may be uninitialised); a valid one is a
 * reset: rebuild from its newest checkpoint and the commands logged since (Controller.rebuild),
 * then POWER_ON a0=1. A reset keeps p->sensors' line levels and the changes announced (the world's,
 * as pins read at boot: the model's rebuilt controller sees its plant at once) and drops the fed
 * samples; the fixture may announce the lines again (first at the present tick) before anything. */
void pump_power_on(pump_t *p, pump_log_t *log, uint64_t tick);

/* Announce line changes ahead (replaces those announced before; ticks in order, each > now or,
 * for the first, == now to set the present level without an event). Every announced tick > now is
 * an event tick, whether a level changes there or not: announce the plant's occlusion starts and
 * ends too (levels unchanged), as plant.next_change_tick stops the model there (it matters after a
 * reset, when an overdue stall retry fires at the first event tick). At most PUMP_LINES_MAX: do
 * not run past the last one announced while more follow. */
void pump_set_lines(pump_t *p, const pump_line_t *lines, size_t n);

/* Feed samples for the stroke ticks the pump asked for (replaces any unused ones). */
void pump_feed(pump_t *p, const pump_sample_t *samples, size_t n);

/* Run to `to_tick` (>= now). Returns true when there; false when it stopped before a stroke it
 * has no sample for: then wanted[0..*n_wanted) are the ticks of its next strokes (at most
 * PUMP_FEED_MAX; the same tick twice when both channels step on it; capped at the steps the
 * reservoir allows and at to_tick), or the one tick of a stall retry's test stroke, and p->st.tick
 * is where it is. p->sensors.used says how many of the latest feed's samples were used (a prefix
 * of them, counted since that feed). Stopping early decides nothing: the run goes on with the next
 * feed exactly as if it had not stopped (a span between two event ticks is never settled inside).
 * One case asks for a tick <= now: after a reset the model's stall retry may be overdue and fire
 * in a command's settle; that test stroke is made without a sample and its tick is wanted at the
 * next run (feed its sample as any other, so that the fixture's plant takes the stroke too). */
bool pump_run(pump_t *p, uint64_t to_tick, uint64_t *wanted, size_t *n_wanted);

/* Draw charge at the present tick (Controller.drain_battery); false and a refusal when charge == 0.
 * (uint64: the wire's InjectBatteryDrain.charge_nc as it comes.) */
bool pump_drain_battery(pump_t *p, uint64_t charge_nc, pump_refusal_t *refusal);

/* A command (msg_id and payload as on the wire) at the present tick: the answers' msg ids and
 * payloads (encoded), or a refusal. Handles GetStatus, the Program*, ClinicianBolus, PrimingBolus,
 * ConfigurePatientBolus, PatientBolusRequest, Refill, SetLowReservoirAlarm, AcknowledgeAlarm,
 * SetClock, Interrogate. Returns the number of answers (0 with refusal->refused set). A payload
 * that protocol/ would not parse (size, enum range, UTF-8, text or list limit) is refused
 * REFUSE_MALFORMED; another msg_id REFUSE_NOT_ALLOWED_NOW. The pump settles after an accepted
 * command (GetStatus too), as Controller.handle does; pump_encode_status reads without settling.
 * Inside a span still waiting for samples, the span ends here first (the model run to now). */
typedef struct { uint8_t msg_id; uint16_t len; uint8_t payload[1024]; } pump_answer_t;
size_t pump_command(pump_t *p, uint8_t msg_id, const uint8_t *payload, size_t len,
                    pump_answer_t answers[PUMP_ANSWERS_MAX], pump_refusal_t *refusal);

/* Telemetry payload (40 bytes, docs/protocol.md 0x50) at the present tick. */
size_t pump_telemetry(const pump_t *p, uint32_t counter, uint8_t out[40]);

/* ReadLog: records from first_seq, at most `count` (<= 31), encoded as a LogRecords payload. */
size_t pump_read_log(const pump_t *p, uint32_t first_seq, uint8_t count, uint8_t *out);

/* ---- shared between the three files (not for device.c) ---------------------------------------- */
/* A command as decoded from its wire payload (pump_wire.c). */
typedef struct { uint64_t start_tick; uint32_t rate_nl_per_day; } pump_wire_flex_t;
#define PUMP_WIRE_FLEX_MAX 48
typedef struct {
    uint8_t msg_id;
    uint32_t rate_nl_per_day;                       /* ProgramContinuous */
    uint8_t flex_count;                             /* ProgramFlex */
    pump_wire_flex_t flex[PUMP_WIRE_FLEX_MAX];
    uint32_t volume_nl;                             /* ClinicianBolus, PrimingBolus, ConfigurePatientBolus */
    uint64_t duration_ticks, period_ticks, lockout_ticks;
    uint32_t count;
    uint8_t max_per_day;
    uint32_t measured_residual_nl, injected_nl;     /* Refill */
    uint8_t drug_len;
    char drug[33];
    uint32_t concentration_ug_per_ml;
    uint8_t has_measured_after; uint32_t measured_after_nl;
    uint8_t bridge;
    uint32_t threshold_nl;                          /* SetLowReservoirAlarm */
    uint8_t alarm;                                  /* AcknowledgeAlarm */
    uint64_t time_of_day_ticks;                     /* SetClock */
} pump_cmd_t;

/* protocol message ids */
enum { MSG_GET_STATUS = 0x10, MSG_PROGRAM_STOPPED = 0x11, MSG_PROGRAM_CONTINUOUS = 0x12, MSG_PROGRAM_FLEX = 0x13,
       MSG_PROGRAM_MINIMUM = 0x14, MSG_CLINICIAN_BOLUS = 0x15, MSG_PRIMING_BOLUS = 0x16,
       MSG_CONFIGURE_PATIENT = 0x17, MSG_PATIENT_REQUEST = 0x18, MSG_REFILL = 0x19, MSG_LOW_ALARM = 0x1a,
       MSG_ACK_ALARM = 0x1b, MSG_SET_CLOCK = 0x1c, MSG_INTERROGATE = 0x1d,
       MSG_ACK = 0x40, MSG_ACK_SOFT_LIMITS = 0x41, MSG_BOLUS_GRANTED = 0x43, MSG_BOLUS_DENIED = 0x44,
       MSG_STATUS_REPORT = 0x45 };

/* wire (pump_wire.c) */
bool pump_decode_command(uint8_t msg_id, const uint8_t *payload, size_t len, pump_cmd_t *cmd, pump_refusal_t *refusal);
uint32_t pump_model_command_records(const pump_cmd_t *cmd); /* records the model's COMMAND blob of it takes */
size_t pump_encode_status(const pump_t *p, uint8_t *out);   /* StatusReport payload */
void pump_answer_ack(pump_answer_t *a, uint8_t command_id, const char *const *flags, size_t n_flags);
void pump_answer_granted(pump_answer_t *a, uint8_t kind, int64_t steps);
void pump_answer_denied(pump_answer_t *a, uint8_t reason, const char *detail);
char *pump_fmt_u64(char *buf, uint64_t v);                   /* decimal text of v into buf (21 bytes); buf */
void pump_refuse(pump_refusal_t *r, uint8_t reason, const char *field, const char *value, const char *expected);

/* commands (pump_commands.c) */
int64_t pump_worst_bolus_day_nl(const pump_t *p, const pump_patient_t *patient, const pump_plan_t *plan);
int64_t pump_max_concentration(const pump_t *p);
const char *pump_drug_name(int8_t index);
bool pump_refill_due_tick(const pump_t *p, uint64_t *tick);

/* engine (pump_engine.c) */
bool pump_delivery_stopped(const pump_t *p);
int64_t pump_steps_available(const pump_t *p);
void pump_log(pump_t *p, uint16_t code, int32_t a0, int32_t a1, int32_t a2);
void pump_log_blob(pump_t *p, uint16_t code, const uint8_t *data, size_t n);
/* An accepted command's COMMAND blob: msg_id and its wire payload (replayed by a rebuild). The
 * checkpoint cadence counts `model_records`, what the model's own blob of it takes, so that
 * checkpoints fall where the model's do (a rebuild replays from the newest one). */
void pump_log_command(pump_t *p, uint8_t msg_id, const uint8_t *payload, size_t len, uint32_t model_records);
void pump_raise(pump_t *p, uint8_t code);
void pump_clear(pump_t *p, uint8_t code);
bool pump_alarm_active(const pump_t *p, uint8_t code);
bool pump_alarm_acknowledge(pump_t *p, uint8_t code);  /* AlarmPanel.acknowledge: true when removed */
uint8_t pump_sounding(const pump_t *p);                /* the sounding alarm's code, 0 none */
void pump_after_alarm_removed(pump_t *p, bool was_stopped);
void pump_resume(pump_t *p);
void pump_halt_boluses(pump_t *p);
void pump_start_bolus(pump_t *p, const pump_bolus_t *b);
void pump_start_planned_clinician_bolus(pump_t *p);
void pump_note_bolus_start(pump_t *p, uint8_t kind, int64_t dose_pg);
int64_t pump_recent_bolus_pg(const pump_t *p);
/* the patient grants in the rolling 24 h: how many, and the newest one's tick */
uint32_t pump_patient_grants(const pump_t *p, uint64_t *last_tick);
void pump_settle(pump_t *p);                     /* due events, rates, checkpoint if due */
void pump_stop_here(pump_t *p);                  /* end a span left waiting for samples at the present tick */
void pump_checkpoint_soon(pump_t *p);
int64_t pump_program_rate(const pump_t *p, uint64_t tick);
int64_t pump_program_day_nl(const pump_t *p, uint8_t mode, int64_t rate, const pump_flex_step_t *flex, size_t n);
int64_t pump_battery_used_nc(int64_t steps, uint64_t elapsed_ticks);
/* BatterySpec.months_remaining */
int64_t pump_battery_months(int64_t steps, uint64_t elapsed_ticks, int64_t steps_per_day, int64_t drained_nc);
int pump_months_remaining(const pump_t *p);
int64_t pump_path_push(pump_state_t *st, int64_t volume_nl, int64_t concentration);   /* FluidPath.push */
int64_t pump_path_push_dose(const pump_state_t *st, int64_t volume_nl, int64_t concentration); /* same, no change */
int64_t pump_path_old_drug_nl(const pump_state_t *st, int64_t concentration);
int64_t pump_path_tip_concentration(const pump_state_t *st, bool *any);
int32_t pump_latest_pressure_pa(const pump_t *p);  /* detector history's newest, 0 when empty */
/* occlusion.scan_per_step on the pump's detector: one sample; the rule it fires (RULE_NONE: none) */
uint8_t pump_detector_step(pump_state_t *st, int32_t pressure_pa);
void pump_detector_reset(pump_state_t *st);

/* 128-bit unsigned arithmetic from 64-bit pieces (no __int128 on the target) */
typedef struct { uint64_t hi, lo; } pump_u128_t;
pump_u128_t pump_u128_mul(uint64_t a, uint64_t b);
pump_u128_t pump_u128_add(pump_u128_t a, uint64_t b);
int pump_u128_cmp(pump_u128_t a, pump_u128_t b);
pump_u128_t pump_u128_divmod32(pump_u128_t a, uint32_t d, uint32_t *rem);
uint64_t pump_muldiv(uint64_t a, uint64_t b, uint64_t c);   /* floor(a * b / c), the quotient < 2^64 */

#endif
