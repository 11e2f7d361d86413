/* The pump's command handlers: firmware_model/controller.py's _on_* handlers, its drug library
 * (firmware_model/drug_library.py, with the model's source strings) and its dose arithmetic.
 *
 * Each handler checks everything first, in the model's order, and refuses (a Nak, nothing changed)
 * before it touches the state; an accepted command is logged (COMMAND: msg_id and wire payload) and
 * then applied; the pump settles after it, as Controller.handle does. */
#include "pump.h"

#define STROKE PUMP_STROKE_NL
#define DAY PUMP_TICKS_PER_DAY
#define PHASE_ONE (1ull << 32)
#define CAPACITY PUMP_RESERVOIR_CAPACITY_NL

/* ---- the drug library (drug_library.DEFAULT_LIMITS) ------------------------------------------- */

typedef struct {
    const char *name;
    int64_t max_concentration_ug_per_ml;
    int64_t max_daily_dose_ng;
    int64_t soft_daily_dose_ng; /* 0: none */
    const char *source;
} drug_limits_t;

static const drug_limits_t DRUGS[] = {
    {"morphine", 20000, 15000000, 0, "domain.md §3.1, PACC [M]"},
    {"hydromorphone", 15000, 10000000, 0, "domain.md §3.1, PACC [M]"},
    {"fentanyl", 10000, 1000000, 0, "domain.md §3.1, PACC, often cited ~1000 µg/day [M]"},
    {"sufentanil", 5000, 500000, 0, "domain.md §3.1, PACC, often cited ~500 µg/day [M]"},
    {"bupivacaine", 30000, 20000000, 10000000, "domain.md §3.1, PACC 15-20 mg/day, some summaries 10 mg/day [M]"},
    {"clonidine", 1000, 600000, 0, "domain.md §3.1, PACC 40-600 µg/day [M]"},
    {"ziconotide", 100, 19200, 10000,
     "domain.md §3.1, Prialt label max 19.2 µg/day [V S47]; effect usually 8-10 µg/day [V S48]"},
    {"baclofen", 2000, 2000000, 800000, "domain.md §3.1, up to 2000 µg/day used, maintenance 300-800 µg/day [V S26]"},
};
#define DRUG_COUNT ((int)(sizeof DRUGS / sizeof DRUGS[0]))

const char *pump_drug_name(int8_t index)
{
    return index >= 0 && index < DRUG_COUNT ? DRUGS[index].name : "";
}

static int drug_find(const char *name, size_t len)
{
    for (int i = 0; i < DRUG_COUNT; i++) {
        const char *n = DRUGS[i].name;
        size_t j = 0;
        while (j < len && n[j] != '\0' && n[j] == name[j]) {
            j++;
        }
        if (j == len && n[j] == '\0') {
            return i;
        }
    }
    return -1;
}

/* ---- text ------------------------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t cap, len;
} text_t;

static void tx_init(text_t *t, char *buf, size_t cap)
{
    t->buf = buf;
    t->cap = cap;
    t->len = 0;
    buf[0] = '\0';
}

static void tx_str(text_t *t, const char *s)
{
    while (*s != '\0' && t->len + 1u < t->cap) {
        t->buf[t->len++] = *s++;
    }
    t->buf[t->len] = '\0';
}

static void tx_mem(text_t *t, const char *s, size_t n)
{
    for (size_t i = 0; i < n && t->len + 1u < t->cap; i++) {
        t->buf[t->len++] = s[i];
    }
    t->buf[t->len] = '\0';
}

static void tx_u64(text_t *t, uint64_t v)
{
    char digits[21];
    tx_str(t, pump_fmt_u64(digits, v));
}

static void tx_i64(text_t *t, int64_t v)
{
    if (v < 0) {
        tx_str(t, "-");
        tx_u64(t, (uint64_t)0 - (uint64_t)v);
    } else {
        tx_u64(t, (uint64_t)v);
    }
}

/* drug_library._ug: picograms as µg, exact to the nanogram ("15000", "19.2", "0.001") */
static void tx_ug(text_t *t, pump_u128_t pg)
{
    uint32_t rem;
    const pump_u128_t ng = pump_u128_divmod32(pg, 1000u, &rem);
    const pump_u128_t whole = pump_u128_divmod32(ng, 1000u, &rem);
    /* whole < 2^64 for every product of two 64-bit numbers divided by 10^6 */
    tx_u64(t, whole.lo);
    if (rem != 0) {
        char frac[4] = {(char)('0' + rem / 100u), (char)('0' + rem / 10u % 10u), (char)('0' + rem % 10u), '\0'};
        size_t n = 3;
        while (frac[n - 1u] == '0') {
            frac[--n] = '\0';
        }
        tx_str(t, ".");
        tx_str(t, frac);
    }
}

/* ---- refusals --------------------------------------------------------------------------------- */

static void limit_exceeded(pump_refusal_t *r, const char *field, const char *value, const char *limit,
                           const char *source)
{
    char expected[256];
    text_t e;
    tx_init(&e, expected, sizeof expected);
    tx_str(&e, limit);
    if (source != 0 && source[0] != '\0') {
        tx_str(&e, " (");
        tx_str(&e, source);
        tx_str(&e, ")");
    }
    pump_refuse(r, REFUSE_LIMIT_EXCEEDED, field, value, expected);
}

static void limit_exceeded_u64(pump_refusal_t *r, const char *field, uint64_t value, const char *limit,
                               const char *source)
{
    char v[24];
    text_t t;
    tx_init(&t, v, sizeof v);
    tx_u64(&t, value);
    limit_exceeded(r, field, v, limit, source);
}

static void not_allowed(pump_refusal_t *r, const char *text)
{
    pump_refuse(r, REFUSE_NOT_ALLOWED_NOW, "", "", text);
}

/* ---- dose arithmetic -------------------------------------------------------------------------- */

int64_t pump_max_concentration(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    int64_t best = st->concentration_ug_per_ml;
    for (uint32_t i = 0; i < st->path_count; i++) {
        const int64_t c = st->path[(st->path_head + i) % PUMP_PATH_SEGMENTS].concentration_ug_per_ml;
        if (c > best) {
            best = c;
        }
    }
    return best;
}

static int64_t program_day_nl(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    return pump_program_day_nl(p, st->mode, st->continuous_rate_nl_per_day, st->flex, st->flex_count);
}

int64_t pump_worst_bolus_day_nl(const pump_t *p, const pump_patient_t *patient, const pump_plan_t *plan)
{
    (void)p;
    int64_t total = 0;
    if (patient != 0) {
        total += patient->max_per_day * patient->steps * STROKE;
    }
    if (plan != 0) {
        int64_t per_day = 1;
        if (plan->period_ticks != 0) {
            per_day = (int64_t)(DAY / plan->period_ticks + (DAY % plan->period_ticks != 0 ? 1u : 0u));
        }
        if (plan->starts_left > 0 && plan->starts_left < per_day) {
            per_day = plan->starts_left;
        }
        total += per_day * plan->steps * STROKE;
    }
    return total;
}

static int64_t worst_bolus_day_now(const pump_t *p)
{
    const pump_state_t *st = &p->st;
    return pump_worst_bolus_day_nl(p, st->has_patient ? &st->patient : 0, st->has_plan ? &st->plan : 0);
}

bool pump_refill_due_tick(const pump_t *p, uint64_t *tick)
{
    const pump_state_t *st = &p->st;
    const int64_t daily = program_day_nl(p) + worst_bolus_day_now(p);
    if (st->drug_index < 0 || daily == 0) {
        return false;
    }
    const int64_t above = st->reservoir_nl - st->low_reservoir_nl;
    const uint64_t ahead = above > 0 ? pump_muldiv((uint64_t)above, DAY, (uint64_t)daily) : 0u;
    *tick = st->tick > UINT64_MAX - ahead ? UINT64_MAX : st->tick + ahead; /* past 2^64: no wire form */
    return true;
}

/* a soft-limit flag (drug_library.SoftLimitFlag): at most one per check, the daily dose */
typedef struct {
    bool has;
    int drug;
    int64_t value_ng, soft_ng;
} flag_t;

/* Controller._check_daily: the programmed daily dose against the drug's hard limit (refused) and
 * soft limit (flagged). The dose in pg may pass 2^64 (a periodic bolus every few ticks), so it is
 * kept in 128 bits. */
static bool check_daily(pump_refusal_t *r, int drug, int64_t concentration, int64_t basal_day_nl, int64_t bolus_day_nl,
                        int64_t extra_pg, flag_t *flag)
{
    const drug_limits_t *lim = &DRUGS[drug];
    const pump_u128_t daily = pump_u128_add(pump_u128_mul((uint64_t)(basal_day_nl + bolus_day_nl), (uint64_t)concentration),
                                            (uint64_t)extra_pg);
    const pump_u128_t hard = {0, (uint64_t)lim->max_daily_dose_ng * 1000u};
    flag->has = false;
    if (pump_u128_cmp(daily, hard) > 0) {
        char field[48], value[48], limit[64];
        text_t f, v, l;
        tx_init(&f, field, sizeof field);
        tx_str(&f, lim->name);
        tx_str(&f, ".daily_dose_ug");
        tx_init(&v, value, sizeof value);
        tx_ug(&v, daily);
        tx_init(&l, limit, sizeof limit);
        tx_str(&l, "<= ");
        tx_ug(&l, hard);
        tx_str(&l, " µg/day");
        limit_exceeded(r, field, value, limit, lim->source);
        return false;
    }
    if (lim->soft_daily_dose_ng != 0 && daily.lo > (uint64_t)lim->soft_daily_dose_ng * 1000u) {
        flag->has = true;
        flag->drug = drug;
        flag->value_ng = (int64_t)(daily.lo / 1000u);
        flag->soft_ng = lim->soft_daily_dose_ng;
    }
    return true;
}

/* ---- the handlers ----------------------------------------------------------------------------- */

typedef struct {
    pump_t *p;
    const pump_cmd_t *cmd;
    const uint8_t *payload;
    size_t len;
    pump_answer_t *answers;
    pump_refusal_t *refusal;
} ctx_t;

/* the command passed its checks: logged before it is applied (Controller.handle) */
static void accept(ctx_t *c)
{
    if (c->cmd->msg_id != MSG_GET_STATUS) {
        pump_log_command(c->p, c->cmd->msg_id, c->payload, c->len, pump_model_command_records(c->cmd));
    }
}

/* Controller._log_flags, then the Accepted answer (Ack, or AckSoftLimits with the flag's text) */
static size_t accepted(ctx_t *c, const flag_t *flag, pump_answer_t *a)
{
    if (!flag->has) {
        pump_answer_ack(a, c->cmd->msg_id, 0, 0);
        return 1;
    }
    pump_t *p = c->p;
    pump_log(p, LOG_SOFT_LIMIT, p->st.drug_index, (int32_t)flag->value_ng, (int32_t)flag->soft_ng);
    char text[256];
    text_t t;
    tx_init(&t, text, sizeof text);
    tx_str(&t, DRUGS[flag->drug].name);
    tx_str(&t, ": daily_dose_ng = ");
    tx_i64(&t, flag->value_ng);
    tx_str(&t, " is above the soft limit ");
    tx_i64(&t, flag->soft_ng);
    tx_str(&t, " (");
    tx_str(&t, DRUGS[flag->drug].source);
    tx_str(&t, ")");
    const char *flags[1] = {text};
    pump_answer_ack(a, c->cmd->msg_id, flags, 1);
    return 1;
}

static bool require_drug(ctx_t *c, const char *what)
{
    if (c->p->st.drug_index >= 0) {
        return true;
    }
    char text[160];
    text_t t;
    tx_init(&t, text, sizeof text);
    tx_str(&t, what);
    tx_str(&t, " refused: the reservoir holds no drug yet; expected a Refill first");
    not_allowed(c->refusal, text);
    return false;
}

static bool check_rate(ctx_t *c, const char *field, int64_t rate)
{
    if (PUMP_MIN_RATE_NL_PER_DAY <= rate && rate <= PUMP_MAX_RATE_NL_PER_DAY) {
        return true;
    }
    limit_exceeded_u64(c->refusal, field, (uint64_t)rate, "48000..24000000 nL/day", "domain.md §1.1 and §6 rate range [M]");
    return false;
}

static uint32_t max_increment(void)
{
    uint32_t inc = 0;
    (void)step_increment_for_rate(PUMP_MAX_RATE_NL_PER_DAY, STROKE, &inc);
    return inc;
}

/* Controller._bolus_steps: the steps of a volume and the increment spreading them over a duration */
static bool bolus_steps(ctx_t *c, const char *what, uint32_t volume_nl, uint64_t duration_ticks, int64_t *steps,
                        uint32_t *increment)
{
    char field[48];
    text_t f;
    tx_init(&f, field, sizeof field);
    tx_str(&f, what);
    tx_str(&f, ".volume_nl");
    const int64_t n = volume_nl > 0 ? (int64_t)((2u * (uint64_t)volume_nl + STROKE) / (2u * STROKE)) : 0;
    if (n < 1) {
        limit_exceeded_u64(c->refusal, field, volume_nl, ">= half a stroke (125 nL)", "");
        return false;
    }
    if (n * STROKE > CAPACITY) {
        limit_exceeded_u64(c->refusal, field, volume_nl, "<= reservoir capacity 20000000 nL", "");
        return false;
    }
    if (duration_ticks == 0) {
        tx_init(&f, field, sizeof field);
        tx_str(&f, what);
        tx_str(&f, ".duration_ticks");
        limit_exceeded_u64(c->refusal, field, 0, "> 0", "");
        return false;
    }
    const uint64_t num = (uint64_t)n << 32; /* n <= 80000 */
    uint64_t inc = num / duration_ticks + (num % duration_ticks != 0 ? 1u : 0u);
    if (inc > max_increment()) {
        inc = max_increment();
    }
    *steps = n;
    *increment = (uint32_t)inc;
    return true;
}

/* Controller._program: a basal program (the mode's checks done by the caller) */
static size_t program(ctx_t *c, uint8_t mode, int64_t rate, const pump_flex_step_t *flex, size_t n)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    flag_t flag = {false, 0, 0, 0};
    if (mode != MODE_STOPPED) {
        static const char *const what[] = {"programming STOPPED", "programming CONTINUOUS", "programming FLEX",
                                           "programming MINIMUM_RATE"};
        if (!require_drug(c, what[mode])) {
            return 0;
        }
        const int64_t day_nl = pump_program_day_nl(p, mode, rate, flex, n);
        if (!check_daily(c->refusal, st->drug_index, st->concentration_ug_per_ml, day_nl, worst_bolus_day_now(p), 0, &flag)) {
            return 0;
        }
    }
    accept(c);
    const uint8_t before = st->mode;
    st->mode = mode;
    st->continuous_rate_nl_per_day = rate;
    st->flex_count = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        st->flex[i] = flex[i];
    }
    if (mode == MODE_STOPPED) { /* SR-20: stop halts basal and every bolus */
        pump_halt_boluses(p);
        st->has_plan = 0;
        st->has_bridge = 0;
    }
    pump_log(p, LOG_PROGRAM_CHANGED, before, mode, (int32_t)rate);
    return accepted(c, &flag, &c->answers[0]);
}

static size_t on_continuous(ctx_t *c)
{
    const int64_t rate = c->cmd->rate_nl_per_day;
    if (!check_rate(c, "rate_nl_per_day", rate)) {
        return 0;
    }
    return program(c, MODE_CONTINUOUS, rate, 0, 0);
}

static size_t on_flex(ctx_t *c)
{
    const pump_cmd_t *cmd = c->cmd;
    pump_flex_step_t steps[PUMP_MAX_FLEX_STEPS];
    if (cmd->flex_count < 1 || cmd->flex_count > PUMP_MAX_FLEX_STEPS) {
        limit_exceeded_u64(c->refusal, "flex.steps", cmd->flex_count, "1..24 steps", "domain.md §2 [M]");
        return 0;
    }
    if (cmd->flex[0].start_tick != 0) {
        limit_exceeded_u64(c->refusal, "flex.steps[0].start_tick", cmd->flex[0].start_tick,
                           "0 (the table starts at midnight)", "");
        return 0;
    }
    for (uint32_t i = 0; i < cmd->flex_count; i++) {
        char field[48];
        text_t f;
        const uint64_t start = cmd->flex[i].start_tick;
        if (start >= DAY || (i > 0 && start <= cmd->flex[i - 1u].start_tick)) {
            tx_init(&f, field, sizeof field);
            tx_str(&f, "flex.steps[");
            tx_u64(&f, i);
            tx_str(&f, "].start_tick");
            limit_exceeded_u64(c->refusal, field, start, "increasing and within the day (0..2831155199)", "");
            return 0;
        }
        if (cmd->flex[i].rate_nl_per_day != 0) {
            tx_init(&f, field, sizeof field);
            tx_str(&f, "flex.steps[");
            tx_u64(&f, i);
            tx_str(&f, "].rate_nl_per_day");
            if (!check_rate(c, field, cmd->flex[i].rate_nl_per_day)) {
                return 0;
            }
        }
        steps[i].start_tick = start;
        steps[i].rate_nl_per_day = cmd->flex[i].rate_nl_per_day;
    }
    return program(c, MODE_FLEX, 0, steps, cmd->flex_count);
}

static size_t on_clinician_bolus(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    const pump_cmd_t *cmd = c->cmd;
    if (!require_drug(c, "clinician bolus")) {
        return 0;
    }
    if (pump_delivery_stopped(p)) {
        not_allowed(c->refusal, "clinician bolus refused: delivery is stopped by an alarm; expected it cleared first");
        return 0;
    }
    if (st->has_active_bolus || st->has_plan) {
        not_allowed(c->refusal, "clinician bolus refused: a bolus is already in progress or planned; expected none");
        return 0;
    }
    int64_t steps;
    uint32_t increment;
    if (!bolus_steps(c, "clinician_bolus", cmd->volume_nl, cmd->duration_ticks, &steps, &increment)) {
        return 0;
    }
    if (cmd->period_ticks != 0 && cmd->period_ticks <= cmd->duration_ticks) {
        char limit[64];
        text_t l;
        tx_init(&l, limit, sizeof limit);
        tx_str(&l, "0 (single) or > duration (");
        tx_u64(&l, cmd->duration_ticks);
        tx_str(&l, ")");
        limit_exceeded_u64(c->refusal, "clinician_bolus.period_ticks", cmd->period_ticks, limit, "");
        return 0;
    }
    if (cmd->period_ticks == 0 && cmd->count != 1) {
        limit_exceeded_u64(c->refusal, "clinician_bolus.count", cmd->count,
                           "1 for a single bolus; >= 0 for periodic (0: forever)", "");
        return 0;
    }
    pump_plan_t plan = {steps, increment, cmd->period_ticks, cmd->count != 0 ? (int64_t)cmd->count : -1, st->tick};
    flag_t flag;
    if (!check_daily(c->refusal, st->drug_index, pump_max_concentration(p), program_day_nl(p),
                     pump_worst_bolus_day_nl(p, st->has_patient ? &st->patient : 0, &plan), pump_recent_bolus_pg(p),
                     &flag)) {
        return 0;
    }
    accept(c);
    st->plan = plan;
    st->has_plan = 1;
    pump_start_planned_clinician_bolus(p);
    accepted(c, &flag, &c->answers[0]);
    pump_answer_granted(&c->answers[1], BOLUS_CLINICIAN, steps);
    return 2;
}

static size_t on_priming(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    const pump_cmd_t *cmd = c->cmd;
    if (!require_drug(c, "priming bolus")) {
        return 0;
    }
    if (pump_delivery_stopped(p)) {
        not_allowed(c->refusal, "priming bolus refused: delivery is stopped by an alarm; expected it cleared first");
        return 0;
    }
    if (st->has_active_bolus) {
        not_allowed(c->refusal, "priming bolus refused: a bolus is in progress; expected none");
        return 0;
    }
    int64_t steps;
    uint32_t increment;
    if (!bolus_steps(c, "priming_bolus", cmd->volume_nl, cmd->duration_ticks, &steps, &increment)) {
        return 0;
    }
    const int64_t tip_pg = pump_path_push_dose(st, steps * STROKE, st->concentration_ug_per_ml);
    flag_t flag; /* the model does not flag a priming bolus's soft limit */
    if (!check_daily(c->refusal, st->drug_index, st->concentration_ug_per_ml, program_day_nl(p), worst_bolus_day_now(p),
                     pump_recent_bolus_pg(p) + tip_pg, &flag)) {
        return 0;
    }
    accept(c);
    pump_note_bolus_start(p, BOLUS_PRIMING, tip_pg);
    pump_bolus_t b = {BOLUS_PRIMING, steps, 0, increment};
    pump_start_bolus(p, &b);
    pump_answer_granted(&c->answers[0], BOLUS_PRIMING, steps);
    return 1;
}

static size_t on_configure_patient(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    const pump_cmd_t *cmd = c->cmd;
    const flag_t none = {false, 0, 0, 0};
    if (cmd->max_per_day == 0) {
        accept(c);
        st->has_patient = 0;
        return accepted(c, &none, &c->answers[0]);
    }
    if (!require_drug(c, "patient bolus settings")) {
        return 0;
    }
    int64_t steps;
    uint32_t increment;
    if (!bolus_steps(c, "patient_bolus", cmd->volume_nl, cmd->duration_ticks, &steps, &increment)) {
        return 0;
    }
    /* SR-1 is judged against the grants of the rolling 24 h window: a longer lockout is refused */
    if (!(cmd->duration_ticks <= cmd->lockout_ticks && cmd->lockout_ticks <= DAY)) {
        char limit[128];
        text_t l;
        tx_init(&l, limit, sizeof limit);
        tx_str(&l, ">= the bolus duration (");
        tx_u64(&l, cmd->duration_ticks);
        tx_str(&l, " ticks) and <= the 24 h window (2831155200 ticks)");
        limit_exceeded_u64(c->refusal, "patient_bolus.lockout_ticks", cmd->lockout_ticks, limit, "");
        return 0;
    }
    if (cmd->max_per_day > 24) {
        limit_exceeded_u64(c->refusal, "patient_bolus.max_per_day", cmd->max_per_day, "1..24 per rolling 24 h", "");
        return 0;
    }
    pump_patient_t settings = {steps, increment, cmd->lockout_ticks, cmd->max_per_day};
    flag_t flag;
    if (!check_daily(c->refusal, st->drug_index, pump_max_concentration(p), program_day_nl(p),
                     pump_worst_bolus_day_nl(p, &settings, st->has_plan ? &st->plan : 0), 0, &flag)) {
        return 0;
    }
    accept(c);
    st->patient = settings;
    st->has_patient = 1;
    return accepted(c, &flag, &c->answers[0]);
}

static size_t deny(ctx_t *c, uint8_t reason, const char *detail)
{
    accept(c);
    c->p->st.boluses_denied++;
    pump_log(c->p, LOG_PATIENT_BOLUS_DENIED, reason, 0, 0);
    pump_answer_denied(&c->answers[0], reason, detail);
    return 1;
}

static size_t on_patient_request(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    char detail[128];
    text_t d;
    tx_init(&d, detail, sizeof detail);
    if (!st->has_patient) {
        return deny(c, DENY_NOT_CONFIGURED, "no patient bolus is programmed");
    }
    if (pump_delivery_stopped(p)) {
        return deny(c, DENY_DELIVERY_STOPPED, "delivery is stopped by an alarm");
    }
    if (st->mode == MODE_STOPPED) {
        return deny(c, DENY_THERAPY_STOPPED, "the pump is programmed to stopped");
    }
    if (st->has_active_bolus && st->active_bolus.kind != BOLUS_CLINICIAN) {
        static const char *const kind[] = {"", "clinician", "patient", "priming", "bridge"};
        tx_str(&d, "a ");
        tx_str(&d, kind[st->active_bolus.kind]);
        tx_str(&d, " bolus is in progress");
        return deny(c, DENY_BOLUS_IN_PROGRESS, detail);
    }
    const pump_patient_t *pb = &st->patient;
    uint64_t last = 0;
    const uint32_t grants = pump_patient_grants(p, &last);
    if (grants > 0 && st->tick - last < pb->lockout_ticks) {
        tx_str(&d, "lockout until tick ");
        tx_u64(&d, last + pb->lockout_ticks);
        return deny(c, DENY_LOCKOUT, detail);
    }
    if ((int64_t)grants >= pb->max_per_day) {
        tx_u64(&d, grants);
        tx_str(&d, " of ");
        tx_i64(&d, pb->max_per_day);
        tx_str(&d, " already in the last 24 h");
        return deny(c, DENY_DAILY_COUNT, detail);
    }
    const int64_t conc = pump_max_concentration(p);
    const int64_t dose = pb->steps * STROKE * conc;
    const int64_t basal_pg = program_day_nl(p) * conc;
    const int64_t limit_pg = DRUGS[st->drug_index].max_daily_dose_ng * 1000;
    if (basal_pg + pump_recent_bolus_pg(p) + dose > limit_pg) { /* SR-2: basal counts too */
        return deny(c, DENY_DAILY_DOSE, "the rolling 24 h dose would pass the drug's hard limit");
    }
    accept(c);
    st->boluses_granted++;
    pump_note_bolus_start(p, BOLUS_PATIENT, dose);
    pump_log(p, LOG_PATIENT_BOLUS_GRANTED, (int32_t)pb->steps, (int32_t)(grants + 1u), 0);
    if (st->has_active_bolus) { /* SR-6: the clinician bolus waits */
        st->suspended_bolus = st->active_bolus;
        st->has_suspended_bolus = 1;
        st->has_active_bolus = 0;
    }
    pump_bolus_t b = {BOLUS_PATIENT, pb->steps, 0, pb->increment};
    pump_start_bolus(p, &b);
    pump_answer_granted(&c->answers[0], BOLUS_PATIENT, pb->steps);
    return 1;
}

static size_t on_refill(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    const pump_cmd_t *cmd = c->cmd;
    const int drug = drug_find(cmd->drug, cmd->drug_len);
    if (drug < 0) {
        char text[256];
        text_t t;
        tx_init(&t, text, sizeof text);
        tx_str(&t, "drug = '");
        tx_mem(&t, cmd->drug, cmd->drug_len);
        tx_str(&t, "' is not in the drug library; expected one of: ");
        for (int i = 0; i < DRUG_COUNT; i++) {
            tx_str(&t, i ? ", " : "");
            tx_str(&t, DRUGS[i].name);
        }
        tx_str(&t, " (SR-22, domain.md §4.5)");
        not_allowed(c->refusal, text);
        return 0;
    }
    const drug_limits_t *lim = &DRUGS[drug];
    if (!(0 < cmd->concentration_ug_per_ml && cmd->concentration_ug_per_ml <= lim->max_concentration_ug_per_ml)) {
        char field[48], limit[48];
        text_t f, l;
        tx_init(&f, field, sizeof field);
        tx_str(&f, lim->name);
        tx_str(&f, ".concentration_ug_per_ml");
        tx_init(&l, limit, sizeof limit);
        tx_str(&l, "0 < c <= ");
        tx_i64(&l, lim->max_concentration_ug_per_ml);
        tx_str(&l, " µg/mL");
        limit_exceeded_u64(c->refusal, field, cmd->concentration_ug_per_ml, limit, lim->source);
        return 0;
    }
    if (cmd->measured_residual_nl > CAPACITY) {
        limit_exceeded_u64(c->refusal, "refill.measured_residual_nl", cmd->measured_residual_nl,
                           "0..20000000 nL (reservoir capacity)", "");
        return 0;
    }
    if (cmd->injected_nl > CAPACITY) {
        limit_exceeded_u64(c->refusal, "refill.injected_nl", cmd->injected_nl, "0..20000000 nL (reservoir capacity)", "");
        return 0;
    }
    if (cmd->has_measured_after && cmd->measured_after_nl > CAPACITY) {
        limit_exceeded_u64(c->refusal, "refill.measured_after_nl", cmd->measured_after_nl, "0..20000000 nL", "");
        return 0;
    }
    const bool has_drug = st->drug_index >= 0;
    const bool drug_changes = has_drug && drug != st->drug_index;
    const bool conc_changes = has_drug && (int64_t)cmd->concentration_ug_per_ml != st->concentration_ug_per_ml;
    if (cmd->bridge && drug_changes) {
        char text[256];
        text_t t;
        tx_init(&t, text, sizeof text);
        tx_str(&t, "refill.bridge refused: a bridge bolus keeps one drug's dose across a concentration change, but the "
                   "drug changes from '");
        tx_str(&t, pump_drug_name(st->drug_index));
        tx_str(&t, "' to '");
        tx_str(&t, lim->name);
        tx_str(&t, "'; expected bridge = false and a priming of the path");
        not_allowed(c->refusal, text);
        return 0;
    }
    flag_t flag = {false, 0, 0, 0};
    if (!drug_changes) { /* the program carries over: check it at the new concentration */
        const int64_t max_conc = pump_max_concentration(p);
        const int64_t conc = (int64_t)cmd->concentration_ug_per_ml > max_conc ? (int64_t)cmd->concentration_ug_per_ml : max_conc;
        if (!check_daily(c->refusal, drug, conc, program_day_nl(p), worst_bolus_day_now(p), 0, &flag)) {
            return 0;
        }
    }
    bool any = false;
    int64_t old_conc = pump_path_tip_concentration(st, &any);
    if (!any) {
        old_conc = st->concentration_ug_per_ml;
    }
    int64_t bridge_steps = 0;
    if (cmd->bridge && conc_changes && old_conc != 0) {
        const int64_t old_nl = pump_path_old_drug_nl(st, cmd->concentration_ug_per_ml);
        bridge_steps = old_nl / STROKE + (old_nl % STROKE != 0 ? 1 : 0);
    }
    const int64_t expected = st->reservoir_nl;
    accept(c);
    st->withdrawn_nl += cmd->measured_residual_nl;
    st->filled_nl += cmd->injected_nl;
    st->reservoir_nl = cmd->injected_nl;
    pump_log(p, LOG_REFILL, (int32_t)expected, (int32_t)cmd->measured_residual_nl, (int32_t)cmd->injected_nl);
    if (drug != st->drug_index || (int64_t)cmd->concentration_ug_per_ml != st->concentration_ug_per_ml) {
        st->drug_index = (int8_t)drug;
        st->concentration_ug_per_ml = cmd->concentration_ug_per_ml;
        pump_log(p, LOG_DRUG_CHANGED, drug, (int32_t)cmd->concentration_ug_per_ml,
                 (int32_t)pump_path_old_drug_nl(st, cmd->concentration_ug_per_ml));
    }
    if (drug_changes) { /* a new drug: nothing programmed for the old one carries over */
        const uint8_t before = st->mode;
        st->mode = MODE_STOPPED;
        st->continuous_rate_nl_per_day = 0;
        st->flex_count = 0;
        st->has_patient = 0;
        st->has_plan = 0;
        pump_halt_boluses(p);
        pump_log(p, LOG_PROGRAM_CHANGED, before, MODE_STOPPED, 0);
    }
    st->has_bridge = bridge_steps != 0;
    if (bridge_steps != 0) {
        st->bridge.steps_left = bridge_steps;
        st->bridge.old_concentration_ug_per_ml = old_conc;
        pump_log(p, LOG_BOLUS_STARTED, BOLUS_BRIDGE, (int32_t)bridge_steps, 0);
    }
    const int64_t off = expected - (int64_t)cmd->measured_residual_nl;
    const int64_t off_after = (int64_t)cmd->injected_nl - (int64_t)cmd->measured_after_nl;
    if ((off < 0 ? -off : off) > PUMP_REFILL_DISCREPANCY_NL ||
        (cmd->has_measured_after && (off_after < 0 ? -off_after : off_after) > PUMP_REFILL_DISCREPANCY_NL)) {
        pump_raise(p, ALARM_REFILL_DISCREPANCY);
        pump_clear(p, ALARM_REFILL_DISCREPANCY); /* an event, not a state: latched until acknowledged */
    }
    if (st->reservoir_nl > st->low_reservoir_nl) {
        pump_clear(p, ALARM_RESERVOIR_LOW);
    }
    if (pump_steps_available(p) > 0) {
        pump_clear(p, ALARM_RESERVOIR_EMPTY);
    } else {
        pump_raise(p, ALARM_RESERVOIR_EMPTY);
    }
    return accepted(c, &flag, &c->answers[0]);
}

static size_t on_low_alarm(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    const uint32_t threshold = c->cmd->threshold_nl;
    if (threshold < PUMP_LOW_RESERVOIR_MIN_NL || threshold > PUMP_LOW_RESERVOIR_MAX_NL) {
        limit_exceeded_u64(c->refusal, "low_reservoir_alarm.threshold_nl", threshold, "1000000..5000000 nL",
                           "domain.md §6 [V S13]");
        return 0;
    }
    accept(c);
    st->low_reservoir_nl = threshold;
    if (st->reservoir_nl > st->low_reservoir_nl) {
        pump_clear(p, ALARM_RESERVOIR_LOW);
    } else if (st->drug_index >= 0) {
        pump_raise(p, ALARM_RESERVOIR_LOW);
    }
    const flag_t none = {false, 0, 0, 0};
    return accepted(c, &none, &c->answers[0]);
}

static size_t on_ack(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    static const char *const names[ALARM_CODES] = {"", "RESERVOIR_LOW", "RESERVOIR_EMPTY", "ELECTIVE_REPLACEMENT",
                                                   "END_OF_SERVICE", "REFILL_DISCREPANCY", "OCCLUSION", "MOTOR_STALL"};
    const uint8_t code = c->cmd->alarm;
    if (!pump_alarm_active(p, code)) {
        char text[256];
        text_t t;
        tx_init(&t, text, sizeof text);
        tx_str(&t, "acknowledge ");
        tx_str(&t, names[code]);
        tx_str(&t, " refused: it is not active; active: ");
        if (st->alarm_count == 0) {
            tx_str(&t, "none");
        } else {
            tx_str(&t, "[");
            for (int i = 0; i < st->alarm_count; i++) {
                tx_str(&t, i ? ", '" : "'");
                tx_str(&t, names[st->alarms[i].code]);
                tx_str(&t, "'");
            }
            tx_str(&t, "]");
        }
        not_allowed(c->refusal, text);
        return 0;
    }
    accept(c);
    const bool was_stopped = pump_delivery_stopped(p);
    pump_log(p, LOG_ALARM_ACK, code, 0, 0);
    if (pump_alarm_acknowledge(p, code)) {
        pump_log(p, LOG_ALARM_OFF, code, 0, 0);
    }
    pump_after_alarm_removed(p, was_stopped);
    const flag_t none = {false, 0, 0, 0};
    return accepted(c, &none, &c->answers[0]);
}

static size_t on_clock(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    const uint64_t tod = c->cmd->time_of_day_ticks;
    if (tod >= DAY) {
        limit_exceeded_u64(c->refusal, "set_clock.time_of_day_ticks", tod, "0..2831155199", "");
        return 0;
    }
    accept(c);
    const uint64_t old = st->clock_offset_ticks;
    st->clock_offset_ticks = (tod + DAY - st->tick % DAY) % DAY;
    pump_log(p, LOG_CLOCK_SET, (int32_t)(old / PUMP_TICK_HZ), (int32_t)(st->clock_offset_ticks / PUMP_TICK_HZ), 0);
    const flag_t none = {false, 0, 0, 0};
    return accepted(c, &none, &c->answers[0]);
}

static void answer_status(ctx_t *c, pump_answer_t *a)
{
    a->msg_id = MSG_STATUS_REPORT;
    a->len = (uint16_t)pump_encode_status(c->p, a->payload);
}

static size_t on_interrogate(ctx_t *c)
{
    pump_t *p = c->p;
    pump_state_t *st = &p->st;
    accept(c);
    const bool was_stopped = pump_delivery_stopped(p);
    const uint8_t released = st->telemetry_latched;
    st->telemetry_latched = 0;
    pump_log(p, LOG_INTERROGATION, released, 0, 0);
    if (released && was_stopped && !pump_delivery_stopped(p)) {
        pump_resume(p);
    }
    answer_status(c, &c->answers[0]);
    return 1;
}

size_t pump_command(pump_t *p, uint8_t msg_id, const uint8_t *payload, size_t len,
                    pump_answer_t answers[PUMP_ANSWERS_MAX], pump_refusal_t *refusal)
{
    refusal->refused = 0;
    refusal->reason = 0;
    refusal->field[0] = refusal->value[0] = refusal->expected[0] = '\0';
    pump_stop_here(p);
    static pump_cmd_t cmd; /* about 1 KiB: kept off the stack */
    if (!pump_decode_command(msg_id, payload, len, &cmd, refusal)) {
        return 0;
    }
    if (p->st.eos && msg_id != MSG_GET_STATUS && msg_id != MSG_ACK_ALARM) {
        static const char *const names[] = {"GetStatus", "ProgramStopped", "ProgramContinuous", "ProgramFlex",
                                            "ProgramMinimumRate", "ClinicianBolus", "PrimingBolus",
                                            "ConfigurePatientBolus", "PatientBolusRequest", "Refill",
                                            "SetLowReservoirAlarm", "AcknowledgeAlarm", "SetClock", "Interrogate"};
        char text[sizeof refusal->expected];
        text_t t;
        tx_init(&t, text, sizeof text);
        tx_str(&t, names[msg_id - MSG_GET_STATUS]);   /* decoded: one of these; named as the model names it */
        tx_str(&t, " refused: the pump is at end of service (domain.md §1.1 [V S8]); "
                   "only status and alarm acknowledgement remain");
        not_allowed(refusal, text);
        return 0;
    }
    ctx_t c = {p, &cmd, payload, len, answers, refusal};
    size_t n = 0;
    switch (msg_id) {
    case MSG_GET_STATUS:
        answer_status(&c, &answers[0]);
        n = 1;
        break;
    case MSG_PROGRAM_STOPPED:
        n = program(&c, MODE_STOPPED, 0, 0, 0);
        break;
    case MSG_PROGRAM_CONTINUOUS:
        n = on_continuous(&c);
        break;
    case MSG_PROGRAM_FLEX:
        n = on_flex(&c);
        break;
    case MSG_PROGRAM_MINIMUM:
        n = program(&c, MODE_MINIMUM_RATE, PUMP_SAFE_RATE_NL_PER_DAY, 0, 0);
        break;
    case MSG_CLINICIAN_BOLUS:
        n = on_clinician_bolus(&c);
        break;
    case MSG_PRIMING_BOLUS:
        n = on_priming(&c);
        break;
    case MSG_CONFIGURE_PATIENT:
        n = on_configure_patient(&c);
        break;
    case MSG_PATIENT_REQUEST:
        n = on_patient_request(&c);
        break;
    case MSG_REFILL:
        n = on_refill(&c);
        break;
    case MSG_LOW_ALARM:
        n = on_low_alarm(&c);
        break;
    case MSG_ACK_ALARM:
        n = on_ack(&c);
        break;
    case MSG_SET_CLOCK:
        n = on_clock(&c);
        break;
    case MSG_INTERROGATE:
        n = on_interrogate(&c);
        break;
    default:
        break;
    }
    if (n > 0) {
        pump_settle(p);
    }
    return n;
}
