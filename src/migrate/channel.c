/* Channels (channel.h): the shared bandwidth cap and LIVE frames. */
#include "migrate/channel.h"
#include "migrate/live.h"
#include "state/state.h"
#include <stdlib.h>
#include "common/util.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

void fair_lock_init(struct fair_lock *l)
{
	pthread_mutex_init(&l->m, NULL);
	pthread_cond_init(&l->c, NULL);
	l->next = l->serving = 0;
}

void fair_lock_destroy(struct fair_lock *l)
{
	pthread_mutex_destroy(&l->m);
	pthread_cond_destroy(&l->c);
}

void fair_lock(struct fair_lock *l)
{
	pthread_mutex_lock(&l->m);
	uint64_t ticket = l->next++;
	while (l->serving != ticket)
		pthread_cond_wait(&l->c, &l->m);
	pthread_mutex_unlock(&l->m);
}

void fair_unlock(struct fair_lock *l)
{
	pthread_mutex_lock(&l->m);
	l->serving++;
	pthread_cond_broadcast(&l->c);
	pthread_mutex_unlock(&l->m);
}

/* Books bytes on clock *next (an idle clock allows a burst); returns the slot. */
static uint64_t book(struct rate_limiter *r, uint64_t *next, uint64_t now, uint64_t bytes)
{
	if (*next + RATE_LIMIT_BURST_NS < now)
		*next = now - RATE_LIMIT_BURST_NS;
	uint64_t slot = *next;
	*next += bytes * 1000000000ULL / r->bytes_per_s;
	return slot;
}

void rate_limit(struct rate_limiter *r, uint64_t bytes)
{
	if (!r || !r->bytes_per_s)
		return;
	pthread_mutex_lock(&r->lock);
	uint64_t now = now_ns(), slot = book(r, &r->next_ns, now, bytes);
	pthread_mutex_unlock(&r->lock);
	if (slot > now)
		sleep_ns(slot - now);
}

void rate_limit_clear(struct rate_limiter *r)
{
	while (r && r->bytes_per_s) {
		pthread_mutex_lock(&r->lock);
		uint64_t next = r->next_ns, now = now_ns();
		pthread_mutex_unlock(&r->lock);
		if (next <= now)
			return;
		sleep_ns(next - now); /* others may book meanwhile: look again */
	}
}

void rate_limit_charge(struct rate_limiter *r, uint64_t bytes)
{
	if (!r || !r->bytes_per_s)
		return;
	pthread_mutex_lock(&r->lock);
	book(r, &r->next_ns, now_ns(), bytes);
	pthread_mutex_unlock(&r->lock);
}

void rate_limit_ahead(struct rate_limiter *r, uint64_t bytes, uint64_t ahead_ns, unsigned share)
{
	if (!r || !r->bytes_per_s)
		return;
	pthread_mutex_lock(&r->lock);
	uint64_t now = now_ns(), slot = book(r, &r->next_ns, now, bytes);
	uint64_t own = book(r, &r->ahead_next_ns, now, bytes * share);
	if (r->in_line)
		;                           /* in line: the slot booked with everyone */
	else if (share > 1)
		slot = own > ahead_ns ? own - ahead_ns : 0; /* its share of the cap, whatever the others booked */
	else
		slot = slot > ahead_ns ? slot - ahead_ns : 0; /* nobody else to share with: all of it, in line */
	pthread_mutex_unlock(&r->lock);
	if (slot > now)
		sleep_ns(slot - now);
}

uint8_t *channel_payload(struct channel *ch)
{
	return ch->file ? ch->file_buf : wire_tx_payload(ch->ws) + LIVE_FRAME_ID_BYTES;
}

int channel_file_open(struct channel *ch)
{
	ch->file_buf = malloc(LIVE_PAYLOAD_MAX);
	return ch->file_buf ? 0 : -ENOMEM;
}

void channel_file_close(struct channel *ch)
{
	free(ch->file_buf);
	ch->file_buf = NULL;
}

int channel_send(struct channel *ch, size_t len)
{
	if (!ch->file)
		rate_limit(ch->rl, len + LIVE_FRAME_ID_BYTES);
	channel_lock(ch);
	int rc = channel_send_locked(ch, len);
	channel_unlock(ch);
	return rc;
}

int channel_send_locked(struct channel *ch, size_t len)
{
	uint8_t *frame = ch->file ? NULL : wire_tx_payload(ch->ws);
	int rc;

	if (len > LIVE_PAYLOAD_MAX) {
		snprintf(ch->err, sizeof(ch->err), "live section %u built a %zu-byte frame (at most %u)", ch->section_id,
			 len, (unsigned)LIVE_PAYLOAD_MAX);
		return -EMSGSIZE;
	}
	if (ch->file) { /* snapshot: one state section per payload, CRC-checked like every section */
		rc = state_write_section(ch->file, ch->section->name, 0, ch->section->version, ch->file_buf, len);
		if (rc)
			snprintf(ch->err, sizeof(ch->err), "writing the snapshot: %s", strerror(-rc));
		else
			ch->bytes += len;
		return rc;
	}
	memcpy(frame, &ch->section_id, LIVE_FRAME_ID_BYTES);
	len += LIVE_FRAME_ID_BYTES;
	rc = wire_send(ch->ws, FRAME_LIVE, (uint32_t)len, ch->err, sizeof(ch->err));
	if (rc)
		return rc;
	ch->bytes += len;
	__atomic_add_fetch(ch->wire_bytes, len + WIRE_FRAME_HEADER_BYTES, __ATOMIC_RELAXED);
	return 0;
}

/* A chunk from the shared counter, waiting while this channel is not
 * active (unless none is left, the count is settled without it, or the
 * migration ends). The wait is a futex on the active count, not a poll: a
 * poll by every waiting helper thread takes CPU time from the streams
 * being measured and from the guest. */
static uint64_t claim_chunk(struct channel *ch, uint64_t nchunks)
{
	for (;;) {
		if (channel_stopped(ch))
			return nchunks;
		int active = ch->active ? __atomic_load_n(ch->active, __ATOMIC_ACQUIRE) : INT32_MAX;
		if (ch->index < active) {
			uint64_t c = __atomic_fetch_add(ch->next_chunk, 1, __ATOMIC_ACQ_REL);
			return c < nchunks ? c : nchunks;
		}
		if ((ch->settled && __atomic_load_n(ch->settled, __ATOMIC_ACQUIRE)) ||
		    __atomic_load_n(ch->next_chunk, __ATOMIC_ACQUIRE) >= nchunks)
			return nchunks;
		futex_wait_while(ch->active, active, 20000000ULL); /* bounded: cancel and failure are not woken */
	}
}

uint64_t channel_first_chunk(struct channel *ch, uint64_t nchunks)
{
	if (ch->next_chunk)
		return claim_chunk(ch, nchunks);
	return (uint64_t)ch->index < nchunks ? (uint64_t)ch->index : nchunks;
}

uint64_t channel_next_chunk(struct channel *ch, uint64_t c, uint64_t nchunks)
{
	if (ch->next_chunk)
		return claim_chunk(ch, nchunks);
	return c + (uint64_t)ch->count < nchunks ? c + (uint64_t)ch->count : nchunks;
}
