/* The convergence rule of pre-copy (converge.h): pure functions. */
#include "migrate/converge.h"
#include "common/util.h"

double converge_predict_ms(uint64_t dirty, double transmit_rate)
{
	return transmit_rate > 0 ? (double)dirty * (1 + CONVERGE_WIRE_OVERHEAD) / transmit_rate * 1000 : 1e9;
}

enum converge_decision converge_decide(const struct phase_stats *ps, double predicted_ms, uint64_t goal_ms)
{
	if (ps->dirty == 0)
		return CONVERGE_SWITCHOVER;
	if (predicted_ms <= (double)goal_ms) {
		bool tiny = predicted_ms <= MAX((double)goal_ms / CONVERGE_TINY_DIVISOR, CONVERGE_TINY_MIN_MS);
		bool shrinking = (double)ps->dirty < CONVERGE_SHRINK_RATIO * (double)ps->sent;
		if (tiny || !shrinking || ps->phase >= CONVERGED_EXTRA_PHASES_MAX)
			return CONVERGE_SWITCHOVER;
	}
	if (ps->phase >= MIGRATION_PHASES_MAX)
		return CONVERGE_GIVE_UP;
	return CONVERGE_CONTINUE;
}

bool converge_stun_overshoots(uint64_t pending, double transmit_rate, uint64_t goal_ms, int retries)
{
	return pending && transmit_rate > 0 && retries < STUN_RETRIES_MAX &&
	       converge_predict_ms(pending, transmit_rate) > (double)goal_ms;
}

enum sdps_progress converge_progress(const struct phase_stats *ps)
{
	double base = (double)MIN(ps->sent, ps->prev_sent);
	if (ps->phase < 0 || (double)ps->dirty < SDPS_PROGRESS_RATIO * base)
		return SDPS_PROGRESSING;
	if ((double)ps->dirty >= SDPS_SATURATED_RATIO * (double)ps->sent)
		return SDPS_SATURATED;
	return SDPS_STALLED;
}

bool converge_sdps_acts(enum sdps_mode mode, int phase, enum sdps_progress progress, double level)
{
	return mode == SDPS_ALWAYS ||
	       (mode == SDPS_DYNAMIC && phase >= 0 && (progress != SDPS_PROGRESSING || level > 0));
}

int converge_pick_streams(const int *counts, const double *rates, int n, double tolerance)
{
	double best = -1;
	for (int i = 0; i < n; i++)
		if (rates[i] > best)
			best = rates[i];
	if (best <= 0)
		return 1;
	for (int i = n - 1; i >= 0; i--)
		if (rates[i] >= 0 && rates[i] * tolerance >= best)
			return counts[i];
	return 1;
}
