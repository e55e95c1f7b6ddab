/* The convergence rule of pre-copy, as pure functions of a phase's
 * measured statistics (unit-tested with recorded phases in
 * tests/unit/unit_converge.c): after each phase, switch over, fail, or go
 * on (and how the dirty set progressed, for SDPS). */
#ifndef GLIDE_MIGRATE_CONVERGE_H
#define GLIDE_MIGRATE_CONVERGE_H
#include <stdbool.h>
#include <stdint.h>
#include "migrate/sdps.h"

#define CONVERGED_EXTRA_PHASES_MAX 8   /* phases spent shrinking a set that already fits the goal */
#define CONVERGE_TINY_DIVISOR 20.0     /* a rest predicted under goal / 20 ... */
#define CONVERGE_TINY_MIN_MS 5.0       /* ... or under 5 ms is tiny: switch over now */
#define CONVERGE_SHRINK_RATIO 0.5      /* another phase is worth it while the set at least halves */
#define CONVERGE_WIRE_OVERHEAD (16.0 / 4096) /* frame and run headers on top of the payload */
#define MIGRATION_PHASES_MAX 100000
/* SDPS progress classes: against what the phase sent, the new dirty set */
#define SDPS_PROGRESS_RATIO 0.8        /* below 80% of it: progressing */
#define SDPS_SATURATED_RATIO 0.95      /* 95% or more: the guest re-dirties everything */

struct phase_stats {
	int phase;                 /* -1 (all memory), 0, 1, ... */
	uint64_t sent;             /* bytes the phase had to send (what was pending at its start) */
	uint64_t prev_sent;        /* the same for the phase before (UINT64_MAX for phase -1) */
	uint64_t dirty;            /* bytes pending at its end: the next phase */
	double seconds;            /* how long it took */
	double wire_bytes;         /* bytes it put on the wire */
};

/* Predicted switchover time (ms) to send `dirty` bytes at transmit_rate bytes/s. */
double converge_predict_ms(uint64_t dirty, double transmit_rate);

enum converge_decision {
	CONVERGE_CONTINUE,         /* another phase */
	CONVERGE_SWITCHOVER,       /* the rest fits the goal: stun and send it */
	CONVERGE_GIVE_UP,          /* the phase limit is reached */
};
/* The rule: switch over when the rest fits the goal, unless there is time
 * to spare and another phase still halves the set (then the stun gets
 * shorter still), at most CONVERGED_EXTRA_PHASES_MAX times; nothing left
 * switches over at once. The timeout is the caller's. */
enum converge_decision converge_decide(const struct phase_stats *ps, double predicted_ms, uint64_t goal_ms);
/* At the stun, with the VM paused and its last changes harvested: whether
 * sending what is pending would overshoot the goal (a burst since the
 * phase that decided to switch over). The VM then runs again for another
 * phase instead, at most STUN_RETRIES_MAX times per migration; after that
 * the stun goes ahead, reported. */
#define STUN_RETRIES_MAX 3
bool converge_stun_overshoots(uint64_t pending, double transmit_rate, uint64_t goal_ms, int retries);
/* How the dirty set progressed: what SDPS reacts to. */
enum sdps_progress converge_progress(const struct phase_stats *ps);
/* Whether SDPS adjusts its level after this phase. */
bool converge_sdps_acts(enum sdps_mode mode, int phase, enum sdps_progress progress, double level);
/* "auto" streams: of the counts measured in pass -1 (ascending, rates in
 * bytes/s, a negative rate: not measured), the largest whose rate is
 * within `tolerance` of the best. Fewer streams are kept only when the
 * extra ones made the pass measurably slower (a machine short of CPUs):
 * on a fresh destination pass -1 is often bound by the first touch of
 * memory, which no stream count changes, while the later passes (into
 * memory already present) go faster with more streams, and a stream that
 * waits on a slow destination costs no CPU. Every count is measured before
 * choosing: a noisy window for two streams must not hide what four would
 * do. 1 when none was measured. */
int converge_pick_streams(const int *counts, const double *rates, int n, double tolerance);
#endif
