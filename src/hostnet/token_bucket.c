/* A token bucket for the frames a VM sends (VM -> host), which the
 * device model asks before it writes each frame into the tap: tb_allow says
 * whether the frame may go now and, if not, when it can.
 *
 * Credit is kept in byte-nanoseconds per second (one byte = 1e9), so that
 * "rate bytes/s for dt ns" adds exactly rate * dt and no fraction of a byte
 * is ever lost to rounding, however small the steps between calls. The
 * bucket holds at most burst bytes. A frame bigger than the burst would
 * never fit; it goes when the bucket is full and leaves it in debt (credit
 * below zero) by the difference, so the average rate still holds. */
#include "hostnet/hostnet.h"
#include <errno.h>

#define NS_PER_S 1000000000LL

int tb_init(struct token_bucket *tb, uint64_t rate, uint64_t burst, uint64_t now)
{
	if (rate > TB_RATE_MAX || (rate && (burst == 0 || burst > TB_BURST_MAX)))
		return -EINVAL;
	tb->rate = rate;
	tb->burst = rate ? burst : 0; /* unlimited: no bucket to fill */
	tb->tokens = (int64_t)tb->burst * NS_PER_S;
	tb->last_ns = now;
	return 0;
}

/* Brings the credit up to now, never beyond a full bucket. */
static void refill(struct token_bucket *tb, uint64_t now)
{
	int64_t cap = (int64_t)tb->burst * NS_PER_S;
	uint64_t dt, room;

	if (now <= tb->last_ns)
		return; /* a clock that steps back (or stands still) adds nothing */
	dt = now - tb->last_ns;
	tb->last_ns = now;
	if (tb->tokens >= cap)
		return;
	room = (uint64_t)(cap - tb->tokens); /* at most 2 * TB_BURST_MAX * 1e9: fits */
	if (dt >= room / tb->rate + 1)
		tb->tokens = cap;
	else
		tb->tokens += (int64_t)(tb->rate * dt); /* < room + rate: no overflow */
	if (tb->tokens > cap)
		tb->tokens = cap;
}

bool tb_allow(struct token_bucket *tb, uint64_t bytes, uint64_t now, uint64_t *wait_ns)
{
	int64_t cap, need;

	if (wait_ns)
		*wait_ns = 0;
	if (tb->rate == 0)
		return true;
	refill(tb, now);
	cap = (int64_t)tb->burst * NS_PER_S;
	if (bytes > TB_BURST_MAX)
		bytes = TB_BURST_MAX; /* no real frame is this big; keeps the debt bounded */
	need = (int64_t)bytes * NS_PER_S;
	if (tb->tokens >= need || (need > cap && tb->tokens == cap)) {
		tb->tokens -= need;
		return true;
	}
	if (wait_ns) {
		int64_t missing = (need > cap ? cap : need) - tb->tokens;
		*wait_ns = ((uint64_t)missing + tb->rate - 1) / tb->rate;
	}
	return false;
}
